# webhookd developer tasks. `just` lists them; `just up` is the five-minute tour.
# Long logic lives in scripts/, so each recipe reads as one or two commands.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes
default:
    @{{ just_executable() }} --justfile {{ justfile() }} --list --unsorted

# Make sure PostgreSQL answers at $DATABASE_URL, else start a local one in .local/pg on port 5433
db:
    @url="$(scripts/local-db.sh)" && echo "export DATABASE_URL=$url"

# Stop the local PostgreSQL that `just db` started (its data stays in .local/pg)
db-stop:
    @scripts/local-db.sh stop

# Build, start the demo receiver and webhookd, submit sample events, show what was delivered (KEEP=1 leaves both running)
up:
    @scripts/demo.sh up

# Stop what `KEEP=1 just up` left running
down:
    @scripts/demo.sh down

# Create the demo partner config and submit sample events to a running API (${API:-http://127.0.0.1:8080})
create-sample-webhooks:
    @scripts/create-sample-webhooks.sh

# Print GET /webhooks/stats of a running API
get-stats:
    @curl -fsS ${API_TOKEN:+-H "Authorization: Bearer $API_TOKEN"} "${API:-http://127.0.0.1:8080}/webhooks/stats" | python3 -m json.tool

# Formatting check, clippy with warnings as errors, and no import cycle between modules
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings
    python3 scripts/module-cycles.py

# Lint, the whole test suite against a PostgreSQL that answers (see `just db`), then a one-minute fault soak
test: lint
    #!/usr/bin/env bash
    set -euo pipefail
    DATABASE_URL="$(scripts/local-db.sh)"
    export DATABASE_URL
    echo "cargo test --locked  (DATABASE_URL=$DATABASE_URL)"
    cargo test --locked
    {{ just_executable() }} --justfile {{ justfile() }} soak 60

# Fault soak for SECONDS (default 300), debug build, own PostgreSQL cluster: kills, stops, restarts, partner outages, then checks (docs/development.md; flags e.g. --rate 100 --keep)
soak seconds="300" *flags:
    #!/usr/bin/env bash
    set -euo pipefail
    echo "cargo build --locked --bin webhookd --example fault_soak"
    cargo build --locked --bin webhookd --example fault_soak
    target_dir="${CARGO_TARGET_DIR:-target}"
    echo "$target_dir/debug/examples/fault_soak {{ seconds }} {{ flags }}"
    "$target_dir/debug/examples/fault_soak" {{ seconds }} {{ flags }}

# Benchmark in release mode against the PostgreSQL that answers (see `just db`): `just bench` prints
# the table (ingest, delivery, end to end, per-event costs, latency, RSS, same-run ceilings; ~5 min),
# `just bench latency` sweeps submit -> first call over paced rates, `just bench soak` runs minutes at
# half the end-to-end rate, `just bench ab A B [--anchor C] [--pairs 4]` compares builds (binaries,
# worktrees or git revisions) in alternating rounds (~5 min), `just bench history` loads 10 million
# rows of history and times the operator's calls, end to end and retention against an empty queue
# (~20 min; `--history-rows 1000000` for a quick one). Extra flags after the mode:
# `just bench full --rounds 5`
bench mode="full" *flags:
    #!/usr/bin/env bash
    set -euo pipefail
    DATABASE_URL="$(scripts/local-db.sh)"
    export DATABASE_URL
    echo "cargo build --release --locked --bin webhookd --example bench"
    cargo build --release --locked --bin webhookd --example bench
    bench="${CARGO_TARGET_DIR:-target}/release/examples/bench"
    if [[ "{{mode}}" == ab ]]; then
        exec scripts/bench-ab.sh "$bench" {{flags}}
    fi
    echo "$bench {{mode}} {{flags}}"
    "$bench" {{mode}} {{flags}}

# Benchmark the statistics on a million-row queue, release build (arguments go to examples/bench_stats.rs, e.g. --runs 50 --keep)
[positional-arguments]
bench-stats *args:
    #!/usr/bin/env bash
    set -euo pipefail
    DATABASE_URL="$(scripts/local-db.sh)"
    export DATABASE_URL
    cargo run --release --example bench_stats -- "$@"

# Fuzz request parsing and URL building with cargo-fuzz for SECONDS (default 300); not part of `test`
fuzz seconds="300":
    @scripts/fuzz.sh {{ seconds }}

# Test suite under cargo-tarpaulin (ptrace): line coverage as HTML, lcov and a summary in target/coverage/
test-coverage:
    @scripts/coverage.sh

# Build the container images: `webhookd` (production) and `webhookd-demo-receiver` (compose demo only)
docker-build:
    docker build -t webhookd .
    docker build --target demo -t webhookd-demo-receiver .

# PostgreSQL, migrate, the API on 127.0.0.1:8080, `workers` work containers and the demo receiver, in Docker
compose-up workers="1":
    docker compose up --build --detach --scale work={{ workers }}
    docker compose ps
    @echo "submit demo events: RECEIVER=http://demo-receiver:9090 just create-sample-webhooks"
    @echo "what the partner saw: docker compose logs --follow demo-receiver"

# Stop the compose stack; its database volume stays (`docker compose down --volumes` drops it)
compose-down:
    docker compose down --remove-orphans

# Validate deploy/kubernetes offline against the Kubernetes schemas (needs: pip install kubernetes-validate)
k8s-validate:
    @scripts/validate-deploy.sh k8s

# Validate docker-compose.yml offline against the compose-spec schema (needs: pip install check-jsonschema)
compose-validate:
    @scripts/validate-deploy.sh compose

# Peak memory of serve and work under a loopback load, for sizing deploy/kubernetes (see deploy/README.md)
measure-rss *args:
    scripts/measure-rss.py {{ args }}

# Regenerate src/store/schema.rs from migrations/ with `diesel print-schema` (needs diesel_cli)
schema:
    @scripts/print-schema.sh
