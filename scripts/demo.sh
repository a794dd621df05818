#!/usr/bin/env bash
# The newcomer's tour, behind `just up`: build, make sure PostgreSQL answers, migrate, start the
# demo partner receiver and `webhookd run`, submit sample events, wait until they are delivered
# (a few are retried), print the statistics and what the receiver saw, then stop both.
#
#   scripts/demo.sh up      the tour; with KEEP=1 the receiver and webhookd keep running
#   scripts/demo.sh down    stops what `KEEP=1 scripts/demo.sh up` left running
#
# Logs: .local/webhookd.log and .local/receiver.log.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

api=http://127.0.0.1:8080
receiver_host=127.0.0.1
receiver_port=9090
webhookd=target/debug/webhookd
pidfiles=(.local/webhookd.pid .local/receiver.pid)

step() { printf '\n==> %s\n' "$*"; }
die() { echo "error: $*" >&2; exit 1; }

# Stops the processes named in the pid files (only those this script started).
down() {
    local pidfile pid
    for pidfile in "${pidfiles[@]}"; do
        [[ -f $pidfile ]] || continue
        pid="$(cat "$pidfile")"
        if kill "$pid" 2>/dev/null; then
            # Both shut down gracefully on SIGTERM; give them ten seconds.
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
}

api_answers() { curl -fsS -o /dev/null --max-time 2 "$api/health" 2>/dev/null; }
receiver_listens() { (exec 3<>"/dev/tcp/$receiver_host/$receiver_port") 2>/dev/null; }

# wait_for CHECK PIDFILE LOG: until the CHECK function succeeds, 30 s at most; fails at once
# when the process exits.
wait_for() {
    local deadline=$((SECONDS + 30)) pid
    pid="$(cat "$2")"
    until "$1"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$3" >&2
            die "the process logging to $3 exited"
        fi
        ((SECONDS < deadline)) || { tail -n 30 "$3" >&2; die "$1: no answer within 30 s"; }
        sleep 0.2
    done
}

# Rows still pending or processing, from `webhookd stats --json`.
unfinished() {
    LOG_LEVEL=warn "$webhookd" stats --json |
        python3 -c 'import json, sys; s = json.load(sys.stdin)["by_status"]; print(s["pending"] + s["processing"])'
}

up() {
    command -v python3 >/dev/null || die "python3 is needed to read webhookd's JSON"
    mkdir -p .local
    api_answers && die "something already answers at $api (a \`KEEP=1 just up\` still running? \`just down\` stops it)"
    receiver_listens && die "something already listens on $receiver_host:$receiver_port (\`just down\` stops a previous demo)"
    export LOG_FORMAT=pretty

    step "building webhookd and the demo receiver"
    cargo build --bins --examples

    step "PostgreSQL"
    DATABASE_URL="$(scripts/local-db.sh)"
    export DATABASE_URL
    echo "DATABASE_URL=$DATABASE_URL"

    # The demo's partner secrets are sealed with a key kept beside its database, so that the
    # next `just up` opens what this one stored.
    [[ -s .local/secret_key ]] || head -c 32 /dev/urandom | base64 >.local/secret_key
    SECRET_KEYS="$(cat .local/secret_key)"
    export SECRET_KEYS

    step "webhookd migrate"
    "$webhookd" migrate

    # From here on, stop what we started however the script ends (Ctrl-C included).
    trap down EXIT
    trap 'exit 130' INT TERM

    step "starting the demo receiver on $receiver_host:$receiver_port (log: .local/receiver.log)"
    target/debug/examples/demo_receiver --addr "$receiver_host:$receiver_port" >.local/receiver.log 2>&1 &
    echo $! >.local/receiver.pid

    step "starting webhookd run on $api (log: .local/webhookd.log)"
    # The receiver is on loopback, which deliveries may reach only when allowed; short retry
    # delays and probes make the retried events and the tripped partner finish within seconds.
    OUTBOUND_ALLOW_NETWORKS=127.0.0.1/32 \
        SERVER_ADDR=127.0.0.1:8080 \
        RETRY_BASE_DELAY=200ms \
        RETRY_MAX_DELAY=2s \
        WORKER_POLL_INTERVAL=1s \
        CIRCUIT_PROBE_INTERVAL=1s \
        "$webhookd" run >.local/webhookd.log 2>&1 &
    echo $! >.local/webhookd.pid

    wait_for receiver_listens .local/receiver.pid .local/receiver.log
    wait_for api_answers .local/webhookd.pid .local/webhookd.log
    curl -fsS "$api/health"
    echo

    step "creating sample webhooks"
    API="$api" scripts/create-sample-webhooks.sh

    step "waiting for deliveries (at most 20 s)"
    local deadline=$((SECONDS + 20)) left
    while left="$(unfinished)" && ((left > 0 && SECONDS < deadline)); do
        echo "$left still pending or processing"
        sleep 1
    done

    step "webhookd stats"
    LOG_LEVEL=warn "$webhookd" stats

    if [[ ${KEEP:-} != 1 ]]; then
        step "stopping webhookd and the receiver"
        down
    fi
    trap - EXIT INT TERM

    step "what the partner receiver saw (.local/receiver.log)"
    cat .local/receiver.log
    echo
    echo "webhookd's own log: .local/webhookd.log"

    if [[ ${KEEP:-} == 1 ]]; then
        step "still running (KEEP=1)"
        echo "API:      $api   (try: just get-stats, just create-sample-webhooks)"
        echo "dashboard: $api/   (with API_TOKEN set: $api/?token=<token>)"
        echo "metrics:  $api/metrics"
        echo "receiver: http://$receiver_host:$receiver_port"
        echo "logs:     tail -f .local/webhookd.log .local/receiver.log"
        echo "stop:     just down"
    fi
}

case "${1:-up}" in
up) up ;;
down) down ;;
*) die "usage: $0 [up|down]" ;;
esac
