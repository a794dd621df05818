# syntax=docker/dockerfile:1
# webhookd container: `docker build -t webhookd .` (or `just docker-build`), then for example
#   docker run --rm -p 8080:8080 -e DATABASE_URL=postgres://user:pass@db:5432/webhookd webhookd
# The default command is `run` (API and workers in one process); `migrate`, `serve`, `work`,
# `stats` and `probe` are the other subcommands: `docker run webhookd work`. Configuration comes
# from /etc/webhookd/config/default.toml and the environment variables of SPEC §3.
#
# Stages: `build` compiles; `demo` is the demo partner receiver used by docker-compose.yml
# (`docker build --target demo -t webhookd-demo-receiver .`); the last stage, the default
# target, is the production image and holds nothing but webhookd and its config.

# Pinned to the toolchain CI builds with, so a rebuild of the same commit compiles the same way;
# Cargo.lock (--locked) pins every crate.
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and target/ between builds; the binaries are copied
# out of target/ in the same step because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin webhookd --example demo_receiver \
    && cp target/release/webhookd /usr/local/bin/webhookd \
    && cp target/release/examples/demo_receiver /usr/local/bin/demo_receiver

# The demo partner: answers every GET with 200 (or 503 while fail_first says so) and prints one
# line per call. For docker-compose.yml only; never part of the production image.
FROM debian:bookworm-slim AS demo
RUN groupadd --gid 10001 demo \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin demo
COPY --from=build /usr/local/bin/demo_receiver /usr/local/bin/demo_receiver
USER 10001:10001
EXPOSE 9090
ENTRYPOINT ["demo_receiver", "--addr", "0.0.0.0:9090"]

FROM debian:bookworm-slim AS runtime
# ca-certificates: partners are called over https. Nothing else: no shell tools are needed at
# run time, and the health check is the binary itself (`webhookd probe`), not curl.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 webhookd \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin webhookd
COPY --from=build /usr/local/bin/webhookd /usr/local/bin/webhookd
COPY config/ /etc/webhookd/config/
WORKDIR /etc/webhookd
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 8080
# Fits the default command `run` (and `serve`): healthy while GET /health answers 200, which
# includes the database answering. A `work` or `migrate` container has no HTTP server and must
# override it (docker-compose.yml does: `probe --database` for work, none for migrate).
# Kubernetes ignores HEALTHCHECK; deploy/kubernetes declares its own probes.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["webhookd", "probe", "--url", "http://127.0.0.1:8080/health", "--timeout", "2s"]
# webhookd is PID 1 and handles SIGTERM itself (graceful shutdown, SPEC §7): no init wrapper.
ENTRYPOINT ["webhookd"]
CMD ["run"]
