#!/bin/sh
# Generic hook, called by pgdock-agent for every repmgr event as:
#   hook.sh EVENT NODE SUCCESS TIMESTAMP DETAILS   (PGDOCK_EVENT_JSON holds the same as JSON)
# It runs shared/failover/user-hook when that file is executable, and POSTs the JSON
# to PGDOCK_WEBHOOK_URL when the node secret webhook.env sets it.
set -eu
here=$(dirname "$0")
if [ -x "$here/user-hook" ]; then
    "$here/user-hook" "$@"
fi
conf=/run/pgdock/secrets/webhook.env
if [ -r "$conf" ]; then
    # shellcheck disable=SC1090
    . "$conf"
    curl -fsS --max-time 10 --retry 3 --retry-all-errors -o /dev/null \
        -H 'Content-Type: application/json' --data "$PGDOCK_EVENT_JSON" "$PGDOCK_WEBHOOK_URL"
fi
