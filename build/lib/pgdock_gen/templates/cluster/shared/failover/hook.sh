#!/bin/sh
# Generic hook, called by pgdock-agent for every repmgr event as:
#   hook.sh EVENT NODE SUCCESS TIMESTAMP DETAILS   (PGDOCK_EVENT_JSON holds the same as JSON)
# It runs shared/failover/user-hook when that file is executable, and POSTs the JSON
# to PGDOCK_WEBHOOK_URL when the node secret webhook.env sets it (read as data, lib.sh).
# The two run side by side, each killed a second before the hook's own budget
# (PGDOCK_HOOK_SECONDS), so neither a failing nor a hanging one stops the other.
set -u
here=$(dirname "$0")
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
budget=${PGDOCK_HOOK_SECONDS:-60}
limit=$((budget > 1 ? budget - 1 : 1))

# part NAME COMMAND...: runs COMMAND within the limit and says why it failed.
part() {
    name=$1
    shift
    timeout -s KILL "$limit" "$@"
    code=$?
    case $code in
        0) return 0 ;;
        124 | 137) echo "$name: killed after $limit s" >&2 ;;
        *) echo "$name: failed (exit $code)" >&2 ;;
    esac
    return "$code"
}

user_hook=
if [ -x "$here/user-hook" ]; then
    part user-hook "$here/user-hook" "$@" &
    user_hook=$!
fi
status=0
conf=$secrets/webhook.env
if [ -r "$conf" ]; then
    url=$(env_value "$conf" PGDOCK_WEBHOOK_URL) &&
        curl_option url "$url" |
        part webhook curl -fsS -K - --max-time 10 --retry 3 --retry-all-errors -o /dev/null \
            -H 'Content-Type: application/json' --data "$PGDOCK_EVENT_JSON" || status=1
fi
if [ -n "$user_hook" ]; then
    wait "$user_hook" || status=1
fi
exit "$status"
