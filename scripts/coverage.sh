#!/usr/bin/env bash
# Line coverage of the whole test suite, behind `just test-coverage`: cargo-tarpaulin with its
# ptrace engine (cargo-llvm-cov would need the llvm-tools rustup component). Writes to
# target/coverage/: tarpaulin-report.html, lcov.info, summary.txt (per-file lines and the
# total) and tarpaulin.log (the whole run).
#
# Instrumented builds use other compiler flags, so they go to target/tarpaulin rather than
# invalidating target/debug. The tests need PostgreSQL, found or started as for `just test`.
# Extra arguments go to cargo tarpaulin, e.g. `scripts/coverage.sh --test api`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! cargo tarpaulin --version >/dev/null 2>&1; then
    echo "cargo-tarpaulin is not installed: cargo install cargo-tarpaulin --locked" >&2
    exit 1
fi

DATABASE_URL="$(scripts/local-db.sh)"
export DATABASE_URL
out=target/coverage
mkdir -p "$out"

# --follow-exec: the process-level tests (tests/processes.rs, tests/container.rs) run the
# webhookd binary as child processes; without it, only the code the test binaries run
# in-process would count.
echo "cargo tarpaulin (DATABASE_URL=$DATABASE_URL); the full log goes to $out/tarpaulin.log"
status=0
cargo tarpaulin --engine ptrace --locked --skip-clean --follow-exec \
    --target-dir target/tarpaulin --timeout 900 \
    --out Html --out Lcov --output-dir "$out" "$@" >"$out/tarpaulin.log" 2>&1 || status=$?

# The per-file table and the total line from tarpaulin's report.
sed -n '/^|| Tested\/Total Lines:/,$p' "$out/tarpaulin.log" | grep -E '^\|\| |coverage, ' >"$out/summary.txt" || true
cat "$out/summary.txt"
if ((status != 0)); then
    tail -n 40 "$out/tarpaulin.log" >&2
    echo "cargo tarpaulin failed (exit $status); see $out/tarpaulin.log" >&2
    exit "$status"
fi
echo "report: $out/tarpaulin-report.html"
