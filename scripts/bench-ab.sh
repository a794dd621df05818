#!/usr/bin/env bash
# `just bench ab A B [--anchor C] [flags]`: turn each build into a webhookd binary, then run
# `bench ab` on them (examples/bench/ab.rs: alternating rounds, medians and per-pair ratios).
#
#   scripts/bench-ab.sh BENCH A B [--anchor C] [bench flags ...]
#
# BENCH is the bench binary to run. A, B and C are each one of:
#   * a webhookd binary (a file): run as it is;
#   * a directory holding a checkout (a git worktree): `cargo build --release --bin webhookd`
#     there, into the shared target directory below (this checkout itself: the binary the
#     recipe just built);
#   * a git revision (4e68e84, HEAD~3, a branch): checked out once with `git worktree add --detach`
#     in target/ab/<commit>, built like a directory, its binary kept in target/ab/bin/<commit>/
#     so that the next A/B of the same commit skips the build.
# Builds of other checkouts share one target directory, target/ab/cargo-target (seeded from this
# checkout's release build the first time, so dependencies compile once), and each binary is
# copied out right after its build. A build's processes run in its binary's directory, so an
# older build reads its own compiled-in settings, not this checkout's config/default.toml.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ab="$root/target/ab"
shared="$ab/cargo-target"
own_target="$(cd "$root" && realpath -m "${CARGO_TARGET_DIR:-target}")"

say() { echo "bench-ab: $*" >&2; }
die() { say "error: $*"; exit 1; }

[[ $# -ge 3 ]] || die "usage: scripts/bench-ab.sh BENCH A B [--anchor C] [bench flags]"
bench="$1"
shift

# Builds `dir` into the shared target directory and copies the binary to `out`.
build_into() {
    local dir="$1" out="$2"
    if [[ ! -d $shared && -d $own_target/release/deps ]]; then
        say "seeding $shared from $own_target/release (dependencies compile once)"
        mkdir -p "$shared"
        cp -a "$own_target/release" "$shared/"
    fi
    say "cargo build --release --bin webhookd in $dir"
    (cd "$dir" && CARGO_TARGET_DIR="$shared" cargo build --release --locked --bin webhookd >&2)
    mkdir -p "$(dirname "$out")"
    cp "$shared/release/webhookd" "$out"
}

# Prints `LABEL=BINARY` for one build.
resolve() {
    local spec="$1" dir commit short
    if [[ -f $spec ]]; then
        [[ -x $spec ]] || die "$spec is not executable"
        echo "$spec=$(realpath "$spec")"
    elif [[ -d $spec ]]; then
        dir="$(realpath "$spec")"
        [[ -f $dir/Cargo.toml ]] || die "$spec holds no Cargo.toml"
        if [[ $dir == "$root" ]]; then
            echo "$spec=$own_target/release/webhookd"
            return
        fi
        short="$(git -C "$dir" rev-parse --short=12 HEAD)"
        [[ -z "$(git -C "$dir" status --porcelain --untracked-files=no)" ]] || short="$short-dirty"
        build_into "$dir" "$ab/bin/$(basename "$dir")-$short/webhookd"
        echo "$spec=$ab/bin/$(basename "$dir")-$short/webhookd"
    else
        commit="$(git -C "$root" rev-parse --verify --quiet "$spec^{commit}")" ||
            die "$spec is neither a file, a directory nor a git revision"
        short="${commit:0:12}"
        if [[ ! -x $ab/bin/$short/webhookd ]]; then
            if [[ ! -d $ab/$short ]]; then
                say "git worktree add --detach target/ab/$short $short"
                git -C "$root" worktree add --detach "$ab/$short" "$commit" >&2
            fi
            build_into "$ab/$short" "$ab/bin/$short/webhookd"
        fi
        echo "$spec ($short)=$ab/bin/$short/webhookd"
    fi
}

a="$(resolve "$1")"
b="$(resolve "$2")"
shift 2
rest=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --anchor) [[ $# -ge 2 ]] || die "--anchor wants a build"; rest+=(--anchor "$(resolve "$2")"); shift 2 ;;
        --anchor=*) rest+=(--anchor "$(resolve "${1#--anchor=}")"); shift ;;
        *) rest+=("$1"); shift ;;
    esac
done
echo "$bench ab $a $b ${rest[*]}" >&2
exec "$bench" ab "$a" "$b" "${rest[@]}"
