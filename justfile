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

# Formatting check and clippy with warnings as errors
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# Lint, then the whole test suite against a PostgreSQL that answers (see `just db`)
test: lint
    #!/usr/bin/env bash
    set -euo pipefail
    DATABASE_URL="$(scripts/local-db.sh)"
    export DATABASE_URL
    echo "cargo test --locked  (DATABASE_URL=$DATABASE_URL)"
    cargo test --locked

# Benchmark in release mode against the PostgreSQL that answers (see `just db`): `just bench` prints
# the table (ingest, delivery, latency, RSS, same-run ceilings; ~4 min), `just bench soak` runs
# minutes at half the saturation rate. Extra flags after the mode: `just bench full --rounds 5`
bench mode="full" *flags:
    #!/usr/bin/env bash
    set -euo pipefail
    DATABASE_URL="$(scripts/local-db.sh)"
    export DATABASE_URL
    echo "cargo build --release --locked --bin webhookd --example bench"
    cargo build --release --locked --bin webhookd --example bench
    echo "target/release/examples/bench {{mode}} {{flags}}"
    target/release/examples/bench {{mode}} {{flags}}

# Build the container image `webhookd`
docker-build:
    docker build -t webhookd .

# Regenerate src/infra/db/schema.rs from migrations/ with `diesel print-schema` (needs diesel_cli)
schema:
    @scripts/print-schema.sh
