#!/usr/bin/env bash
# Fuzzes request parsing and URL building (fuzz/fuzz_targets/submit_and_build_url.rs) with
# cargo-fuzz and libFuzzer for SECONDS (default 300). Not part of `just test`: too slow.
#
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address, ...); RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them. The corpus grows in fuzz/corpus/ (ignored by git), seeded from
# fuzz/seeds/; a failing input is saved in fuzz/artifacts/ and the run exits non-zero.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-300}"
target=submit_and_build_url

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install cargo-fuzz --locked
fi
mkdir -p "fuzz/corpus/$target"
RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1
