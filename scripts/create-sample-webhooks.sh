#!/usr/bin/env bash
# Create the demo partner config (or find the one that exists) and submit sample events to a
# running webhookd API at $API (default http://127.0.0.1:8080). The partner URLs point at
# examples/demo_receiver at $RECEIVER (default http://127.0.0.1:9090; under docker compose,
# RECEIVER=http://demo-receiver:9090); events with fail_first=2 are refused twice there, so
# webhookd retries them. Sends `Authorization: Bearer $API_TOKEN` when API_TOKEN is set.
# The config is created once: with another RECEIVER, delete or rename demo-partner first.
set -euo pipefail

API="${API:-http://127.0.0.1:8080}"
RECEIVER="${RECEIVER:-http://127.0.0.1:9090}"
command -v python3 >/dev/null || { echo "python3 is needed to read the API's JSON" >&2; exit 1; }

body="$(mktemp)"
trap 'rm -f "$body"' EXIT

auth=()
if [[ -n ${API_TOKEN:-} ]]; then
    auth=(-H "Authorization: Bearer $API_TOKEN")
fi

# request METHOD PATH [JSON]: prints the HTTP status; the response body is left in $body.
request() {
    local args=(-sS -o "$body" -w '%{http_code}' -X "$1" -H 'Accept: application/json')
    if [[ $# -ge 3 ]]; then
        args+=(-H 'Content-Type: application/json' --data "$3")
    fi
    curl "${args[@]}" ${auth[@]+"${auth[@]}"} "$API$2"
}

fail() {
    echo "$1" >&2
    cat "$body" >&2
    echo >&2
    exit 1
}

# json EXPRESSION: evaluates a Python expression over the response body, bound to `doc`.
json() { python3 -c "import json, sys; doc = json.load(sys.stdin); print($1)" <"$body"; }

config='{"name":"demo-partner",
 "postback_url":"'"$RECEIVER"'/postback?uid={user_id}&amount={value}",
 "chargeback_url":"'"$RECEIVER"'/chargeback?uid={user_id}&amount={value}",
 "max_retries":3}'

status="$(request POST /webhook-configs "$config")"
case $status in
201)
    config_id="$(json 'doc["id"]')"
    echo "created config demo-partner: id $config_id"
    ;;
409)
    status="$(request GET /webhook-configs)"
    [[ $status == 200 ]] || fail "GET /webhook-configs answered $status:"
    config_id="$(json 'next((c["id"] for c in doc["items"] if c["name"] == "demo-partner"), "")')"
    [[ -n $config_id ]] || fail "config demo-partner exists (409) but GET /webhook-configs does not list it:"
    echo "using existing config demo-partner: id $config_id"
    ;;
*) fail "POST /webhook-configs answered $status:" ;;
esac

run="$(date -u +%Y%m%dT%H%M%S)-$$"
n=0

# submit EVENT_TYPE URL_PARAMS_JSON
submit() {
    n=$((n + 1))
    local event="{\"event_type\":\"$1\",\"event_id\":\"demo-$run-$n\",\"config_id\":$config_id,\"url_params\":$2}"
    local status
    status="$(request POST /webhooks "$event")"
    [[ $status == 201 || $status == 200 ]] || fail "POST /webhooks ($1 demo-$run-$n) answered $status:"
    printf '%-8s demo-%s-%s  queue_id %s\n' "$1" "$run" "$n" "$(json 'doc["queue_id"]')"
}

echo "submitting sample events to $API:"
submit +credit '{"user_id":"user_1","value":"100","token":"abc123"}'
submit +credit '{"user_id":"user_2","value":"250","token":"abc123","signature":"xyz789"}'
submit -debit '{"user_id":"user_1","value":"100","token":"abc123"}'
submit +credit '{"user_id":"user_3","value":"75","fail_first":"2"}'
submit -debit '{"user_id":"user_2","value":"50","fail_first":"2"}'
submit +credit '{"user_id":"user 4","value":12.5,"vip":true}'
