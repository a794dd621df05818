# syntax=docker/dockerfile:1
# webhookd container: `docker build -t webhookd .` (or `just docker-build`), then for example
#   docker run --rm -p 8080:8080 -e DATABASE_URL=postgres://user:pass@db:5432/webhookd webhookd
# The default command is `run` (API and workers in one process); `migrate`, `serve`, `work` and
# `stats` are the other subcommands. Configuration comes from /etc/webhookd/config/default.toml
# and the environment variables of SPEC §3.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the crate registry and target/ between builds; the binary is copied out
# of target/ in the same step because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin webhookd \
    && cp target/release/webhookd /usr/local/bin/webhookd

FROM debian:bookworm-slim
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
ENTRYPOINT ["webhookd"]
CMD ["run"]
