#!/usr/bin/env bash
# Line coverage of the whole test suite, behind `just test-coverage`: cargo-tarpaulin with its
# ptrace engine (cargo-llvm-cov would need the llvm-tools rustup component). Writes to
# target/coverage/: tarpaulin-report.html, lcov.info, summary.txt (per-file lines and the
# total) and tarpaulin.log (the whole run).
#
# Counted: src/ (test code is left out by tarpaulin's default; examples/demo_receiver.rs, which
# no test runs, is left out here). Instrumented builds use other compiler flags, so they go to target/tarpaulin rather than
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

# Only code that runs inside the test binaries is counted. The process-level tests
# (tests/processes.rs, tests/container.rs, `webhookd stats` in tests/api.rs) run the webhookd
# binary as child processes, so what only that binary runs (src/main.rs, most of src/cli.rs,
# src/logging.rs, the probe command) shows as uncovered. tarpaulin's --follow-exec would count
# it, but under it the api test binary died with a segfault (cargo-tarpaulin 0.37.5, ptrace).
# --no-fail-fast: every test binary runs even when one fails, so a report is written; the
# script still exits non-zero then.
#
# tests/processes.rs is left out unless WITH_PROCESS_TESTS=1: its fault tests are bound to
# 3-second leases, and under ptrace the test process is slow enough that a lease expires
# mid-call and a row is called twice (at-least-once, as designed), which fails its
# exactly-once assertion. Every other test binary (tests/*.rs) runs, and the library's tests.
targets=(--lib)
for file in tests/*.rs; do
    name="$(basename "$file" .rs)"
    [[ $name == processes && ${WITH_PROCESS_TESTS:-} != 1 ]] && continue
    targets+=(--test "$name")
done
echo "cargo tarpaulin ${targets[*]} (DATABASE_URL=$DATABASE_URL); the full log goes to $out/tarpaulin.log"
status=0
cargo tarpaulin --engine ptrace --locked --skip-clean --no-fail-fast \
    --target-dir target/tarpaulin --timeout 900 --exclude-files "examples/*" \
    --out Html --out Lcov --output-dir "$out" "${targets[@]}" "$@" >"$out/tarpaulin.log" 2>&1 || status=$?

# The per-file table and the total line from tarpaulin's report.
sed -n '/^|| Tested\/Total Lines:/,$p' "$out/tarpaulin.log" | grep -E '^\|\| |coverage, ' >"$out/summary.txt" || true
cat "$out/summary.txt"
if ((status != 0)); then
    if grep -q -- '^test .* FAILED$' "$out/tarpaulin.log"; then
        echo "tests failed under tarpaulin (timing-bound tests are slower there):" >&2
        grep -- '^test .* FAILED$' "$out/tarpaulin.log" >&2
        [[ -s $out/summary.txt ]] && echo "the figures above and $out/tarpaulin-report.html are from this run" >&2
    else
        tail -n 40 "$out/tarpaulin.log" >&2
    fi
    echo "cargo tarpaulin failed (exit $status); see $out/tarpaulin.log" >&2
    exit "$status"
fi
echo "report: $out/tarpaulin-report.html"
