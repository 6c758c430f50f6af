#!/bin/sh
# Moves a Hetzner failover IP to this node after it became primary (pg-dock's
# failover.sh), but checks the HTTP result, retries, and keeps the credentials
# off the command line. Called by pgdock-agent as: hetzner.sh EVENT SUCCESS.
# Configure it with the node secret hetzner.env, KEY=VALUE lines read as data
# (lib.sh): HETZNER_USER, HETZNER_PASS, HETZNER_FAILOVER_IP; optional
# HETZNER_ACTIVE_SERVER_IP (default: this node's address), HETZNER_API.
set -eu
event=$1
success=$2
case "$event" in
    repmgrd_failover_promote | standby_promote | standby_switchover) ;;
    *) exit 0 ;;
esac
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "$0")/lib.sh"
conf=$secrets/hetzner.env
[ "$success" = 1 ] && [ -r "$conf" ] || exit 0
user=$(env_value "$conf" HETZNER_USER)
pass=$(env_value "$conf" HETZNER_PASS)
ip=$(env_value "$conf" HETZNER_FAILOVER_IP)
api=$(env_value "$conf" HETZNER_API https://robot-ws.your-server.de)
target=$(env_value "$conf" HETZNER_ACTIVE_SERVER_IP "$PGDOCK_ADDRESS")
attempt=1
while :; do
    # 200: routed now; 409: already routed here.
    code=$(curl_option user "$user:$pass" |
        curl -sS -K - -o /dev/null -w '%{http_code}' --max-time 10 \
            --data-urlencode "active_server_ip=$target" "$api/failover/$ip") || code=000
    case "$code" in 200 | 409) echo "hetzner: $ip now routes to $target"; exit 0 ;; esac
    if [ "$attempt" -ge 5 ]; then
        echo "hetzner: moving $ip to $target failed (HTTP $code) after $attempt attempts" >&2
        exit 1
    fi
    attempt=$((attempt + 1))
    sleep 3
done
