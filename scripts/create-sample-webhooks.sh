#!/usr/bin/env bash
# Create the demo partner config (or find the one that exists) and submit sample events to a
# running webhookd API at $API (default http://127.0.0.1:8080). The partner URLs point at
# examples/demo_receiver at $RECEIVER (default http://127.0.0.1:9090; under docker compose,
# RECEIVER=http://demo-receiver:9090); events with fail_first=2 are refused twice there, so
# webhookd retries them. Then the two rules a newcomer came for: a chargeback held until its
# postback is delivered, and a second partner, down for 4 s, that trips and recovers (probes
# come every CIRCUIT_PROBE_INTERVAL; `just up` sets 1s). Sends `Authorization: Bearer
# $API_TOKEN` when API_TOKEN is set.
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

# submit EVENT_TYPE URL_PARAMS_JSON [EVENT_ID [CONFIG_ID]]
submit() {
    n=$((n + 1))
    local id="${3:-demo-$run-$n}" partner="${4:-$config_id}"
    local event="{\"event_type\":\"$1\",\"event_id\":\"$id\",\"config_id\":$partner,\"url_params\":$2}"
    local status
    status="$(request POST /webhooks "$event")"
    [[ $status == 201 || $status == 200 ]] || fail "POST /webhooks ($1 $id) answered $status:"
    printf '%-8s %-34s queue_id %s%s\n' "$1" "$id" "$(json 'doc["queue_id"]')" \
        "$(json '"  held: " + doc["held_reason"] if doc.get("held_reason") else ""')"
}

echo "submitting sample events to $API:"
submit +credit '{"user_id":"user_1","value":"100","token":"abc123"}'
submit +credit '{"user_id":"user_2","value":"250","token":"abc123","signature":"xyz789"}'
submit -debit '{"user_id":"user_1","value":"100","token":"abc123"}'
submit +credit '{"user_id":"user_3","value":"75","fail_first":"2"}'
submit -debit '{"user_id":"user_2","value":"50","fail_first":"2"}'
submit +credit '{"user_id":"user 4","value":12.5,"vip":true}'

echo
echo "money order: a chargeback waits for its postback (same event_id), which is refused twice:"
submit +credit '{"user_id":"user_5","value":"40","fail_first":"2"}' "demo-$run-order"
submit -debit '{"user_id":"user_5","value":"40"}' "demo-$run-order"

echo
echo "partner requests: demo-post-partner takes a POST with a JSON body and a header of its own;"
echo "with SECRET_KEYS set it also gets a bearer token, stored sealed and shown as ***:"
bearer=""
[[ -n ${SECRET_KEYS:-} ]] && bearer=', "auth": {"type": "bearer", "token": "demo-token-'"$run"'"}'
config='{"name":"demo-post-partner-'"$run"'",
 "postback_url":"'"$RECEIVER"'/post-partner/postback",
 "postback_request":{"method":"POST","body":{"format":"json",
   "template":{"user":"{user_id}","amount":"{value}","event":"{event_id}"}}},
 "headers":[{"name":"X-Partner-Ref","value":"demo-{user_id}"}]'"$bearer"'}'
status="$(request POST /webhook-configs "$config")"
[[ $status == 201 ]] || fail "POST /webhook-configs (demo-post-partner) answered $status:"
post_id="$(json 'doc["id"]')"
echo "  auth as the API shows it: $(json 'doc["auth"]')"
submit +credit '{"user_id":"user_11","value":42.5}' "demo-$run-post" "$post_id"

echo
echo "partner health: demo-down-partner answers 503 for the next 4 s; after 3 failures in a row it"
echo "trips, its events wait, and a probe every second finds it back:"
down_until=$(($(date +%s) + 4))
config='{"name":"demo-down-partner-'"$run"'",
 "postback_url":"'"$RECEIVER"'/down-partner/postback?uid={user_id}&down_until='"$down_until"'",
 "max_retries":6, "circuit_failure_threshold":3}'
status="$(request POST /webhook-configs "$config")"
[[ $status == 201 ]] || fail "POST /webhook-configs (demo-down-partner) answered $status:"
down_id="$(json 'doc["id"]')"
for user in 6 7 8 9 10; do
    submit +credit '{"user_id":"user_'"$user"'","value":"10"}' "demo-$run-down-$user" "$down_id"
done
deadline=$((SECONDS + 20))
last=""
while ((SECONDS < deadline)); do
    status="$(request GET "/webhook-configs/$down_id")"
    [[ $status == 200 ]] || fail "GET /webhook-configs/$down_id answered $status:"
    state="$(json 'doc["health"]["state"] + " (held " + str(doc["health"]["held"]) + ", failures in a row " + str(doc["health"]["consecutive_failures"]) + ")"')"
    if [[ $state != "$last" ]]; then
        echo "  demo-down-partner: $state"
        last="$state"
    fi
    if [[ $state == active* ]] && (($(date +%s) >= down_until)) &&
        [[ $(json 'doc["health"]["consecutive_failures"]') == 0 ]]; then
        break
    fi
    sleep 0.5
done
