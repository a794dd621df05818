#!/usr/bin/env bash
# Make sure a PostgreSQL answers, and print the DATABASE_URL to use on the last stdout line:
#
#   DATABASE_URL="$(scripts/local-db.sh)"; export DATABASE_URL
#
# If the server named by $DATABASE_URL (default postgres://postgres@127.0.0.1:5432/webhookd)
# answers, that URL is printed back unchanged. Otherwise a project-local cluster in .local/pg
# (trust auth, 127.0.0.1 only, TCP port $LOCAL_PG_PORT, default 5433, log in .local/pg.log) is
# created or restarted and its URL printed. Running it again reuses that cluster.
#
#   scripts/local-db.sh stop    stops the project-local cluster (its data stays in .local/pg)
#
# Everything except the URL goes to stderr. The server binaries are taken from PATH, or from
# /usr/lib/postgresql/*/bin (Debian, Ubuntu) or /usr/pgsql-*/bin (RHEL). initdb and pg_ctl refuse
# to run as root, so as root they run as the `postgres` system user.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
local_dir="$root/.local"
data="$local_dir/pg"
log="$local_dir/pg.log"
port="${LOCAL_PG_PORT:-5433}"
local_url="postgres://postgres@127.0.0.1:$port/webhookd"

say() { echo "local-db: $*" >&2; }
die() { say "error: $*"; exit 1; }

# The URL without its password, for messages.
redact() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

# Directory holding initdb and pg_ctl: PATH first, then the usual package locations (newest).
pg_bindir() {
    local initdb dir
    if initdb="$(command -v initdb)" && command -v pg_ctl >/dev/null; then
        dirname "$initdb"
        return
    fi
    for dir in $(printf "%s\n" /usr/lib/postgresql/*/bin /usr/pgsql-*/bin | sort -V -r); do
        if [[ -x $dir/initdb && -x $dir/pg_ctl ]]; then
            echo "$dir"
            return
        fi
    done
    return 1
}

# A client program from PATH or from the server's directory; fails when neither has it.
pg_tool() {
    command -v "$1" && return
    [[ -n $bindir && -x $bindir/$1 ]] && echo "$bindir/$1"
}

# Does a server answer at this URL? pg_isready when installed, else a plain TCP connect.
answers() {
    local url=$1 isready
    if isready="$(pg_tool pg_isready)"; then
        "$isready" -q -t 3 -d "$url"
        return
    fi
    [[ $url =~ ^postgres(ql)?://([^@/]*@)?([^:/?]+)(:([0-9]+))? ]] || return 1
    local host=${BASH_REMATCH[3]} tcp_port=${BASH_REMATCH[5]:-5432}
    timeout 3 bash -c "exec 3<>/dev/tcp/$host/$tcp_port" 2>/dev/null
}

# Run a server binary as ourselves, or as the postgres system user when we are root.
as_pg() {
    if [[ $(id -u) != 0 ]]; then
        "$@"
    elif command -v runuser >/dev/null; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && su postgres -s /bin/sh -c "$(printf '%q ' "$@")")
    fi
}

# As root, the postgres user owns the data directory and must be able to reach it. When a
# parent of the checkout is closed to other users (a clone under /root, say), the cluster lives
# under /var/tmp and .local/pg and .local/pg.log are symlinks to it.
prepare_dirs() {
    mkdir -p "$local_dir"
    [[ $(id -u) == 0 ]] || return 0
    id postgres >/dev/null 2>&1 || die "running as root and there is no 'postgres' user to run the server as"
    chmod a+rx "$local_dir"
    if [[ ! -e $data ]] && ! as_pg test -x "$local_dir" 2>/dev/null; then
        local elsewhere
        elsewhere="/var/tmp/webhookd-pg-$(cksum <<<"$root" | cut -d' ' -f1)"
        say "the postgres user cannot reach $local_dir; keeping the cluster in $elsewhere"
        mkdir -p "$elsewhere"
        chown postgres: "$elsewhere"
        ln -sfn "$elsewhere/pg" "$data"
        ln -sfn "$elsewhere/pg.log" "$log"
    fi
    if [[ -L $data ]]; then
        data="$(readlink -f "$data")"
        log="$(readlink -f "$log")"
    fi
    mkdir -p "$data"
    chown postgres: "$data"
    touch "$log"
    chown postgres: "$log"
}

start_local() {
    [[ -n $bindir ]] ||
        die "no PostgreSQL server binaries (initdb, pg_ctl) found; install PostgreSQL or set DATABASE_URL to a server that answers"
    prepare_dirs

    if [[ ! -s $data/PG_VERSION ]]; then
        say "creating a local cluster in $data ($("$bindir/initdb" --version))"
        if ! as_pg "$bindir/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --no-locale >>"$log" 2>&1; then
            tail -n 20 "$log" >&2 || true
            die "initdb failed (see $log)"
        fi
        # A throwaway development cluster: TCP on 127.0.0.1 only, no Unix socket (its default
        # directory is often not writable), and durability traded for speed.
        cat >>"$data/postgresql.conf" <<EOF

# Added by scripts/local-db.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    fi

    if as_pg "$bindir/pg_ctl" status -D "$data" >/dev/null 2>&1; then
        say "local cluster in $data is already running"
    else
        say "starting the local cluster in $data on 127.0.0.1:$port (log: $log)"
        if ! as_pg "$bindir/pg_ctl" start -D "$data" -l "$log" -w -t 60 -o "-p $port" >&2; then
            tail -n 20 "$log" >&2 || true
            die "the local cluster did not start (see $log)"
        fi
    fi
    answers "$local_url" || die "the local cluster runs but does not answer on 127.0.0.1:$port (another cluster in $data on another port? see $log)"

    # Create the database too, so the URL works for psql as well as for `webhookd migrate`.
    local psql
    if psql="$(pg_tool psql)"; then
        local admin="postgres://postgres@127.0.0.1:$port/postgres"
        if [[ -z $("$psql" -d "$admin" -XtAc "SELECT 1 FROM pg_database WHERE datname = 'webhookd'") ]]; then
            "$psql" -d "$admin" -Xqc 'CREATE DATABASE webhookd' >&2
        fi
    fi
}

stop_local() {
    if [[ ! -s $data/PG_VERSION ]]; then
        say "no local cluster in $data"
        return
    fi
    [[ -n $bindir ]] || die "no PostgreSQL server binaries (pg_ctl) found"
    [[ -L $data ]] && data="$(readlink -f "$data")"
    if as_pg "$bindir/pg_ctl" status -D "$data" >/dev/null 2>&1; then
        as_pg "$bindir/pg_ctl" stop -D "$data" -m fast -w >&2
    else
        say "local cluster in $data is not running"
    fi
}

bindir="$(pg_bindir || true)"

case "${1:-start}" in
start)
    url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/webhookd}"
    if answers "$url"; then
        echo "$url"
        exit 0
    fi
    say "nothing answers at $(redact "$url"); using the project-local cluster instead"
    start_local
    say "use: export DATABASE_URL=$local_url"
    echo "$local_url"
    ;;
stop) stop_local ;;
*) die "usage: $0 [start|stop]" ;;
esac
