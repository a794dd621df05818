#!/usr/bin/env bash
# Regenerate src/store/schema.rs from migrations/: apply them to a fresh scratch database
# (webhookd_schema, on the server scripts/local-db.sh finds) and run `diesel print-schema`
# there, so the file shows the migrations and not whatever a development database drifted to.
# diesel.toml, when present, still decides how the file is printed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=src/store/schema.rs

if ! command -v diesel >/dev/null; then
    echo "diesel_cli is not installed; install it with:" >&2
    echo "  cargo install diesel_cli --no-default-features --features postgres" >&2
    exit 1
fi
if ! command -v psql >/dev/null; then
    echo "psql (the PostgreSQL client) is needed to create the scratch database" >&2
    exit 1
fi

url="$(scripts/local-db.sh)"
server="${url%%\?*}"
server="${server%/*}"
scratch="$server/webhookd_schema"

admin() { PGOPTIONS=--client-min-messages=warning psql -X -q -v ON_ERROR_STOP=1 -d "$server/postgres" "$@"; }
admin -c 'DROP DATABASE IF EXISTS webhookd_schema' -c 'CREATE DATABASE webhookd_schema'
cleanup() {
    rm -f "$out.tmp"
    admin -c 'DROP DATABASE IF EXISTS webhookd_schema' || true
}
trap cleanup EXIT

diesel migration run --migration-dir migrations --database-url "$scratch" >&2
mkdir -p "$(dirname "$out")"
diesel print-schema --database-url "$scratch" >"$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out" >&2
