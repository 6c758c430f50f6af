# shellcheck shell=sh
# Sourced by hetzner.sh and hook.sh, not a hook itself. The secrets' env files are data:
# their KEY=VALUE lines are parsed here, never run as shell code, so a value such as
# `ab"cd`, `$(...)` or `x;y` reaches the hook byte for byte.

# The node's secrets volume; PGDOCK_SECRETS_DIR points elsewhere (the hooks' tests).
# shellcheck disable=SC2034 # used by the hooks that source this file
secrets=${PGDOCK_SECRETS_DIR:-/run/pgdock/secrets}

# env_value FILE KEY [DEFAULT]: the value of FILE's last KEY=VALUE line, without one
# pair of surrounding quotes (nothing else is unquoted or expanded). Empty or missing,
# it is DEFAULT; without a DEFAULT that is an error.
env_value() (
    value=
    while IFS= read -r line || [ -n "$line" ]; do
        case $line in "$2="*) value=${line#*=} ;; esac
    done <"$1"
    case $value in \"*\" | \'*\') value=${value#?}; value=${value%?} ;; esac
    if [ -z "$value" ] && [ $# -lt 3 ]; then
        echo "$(basename "$0"): $1 sets no $2" >&2
        return 1
    fi
    printf '%s' "${value:-${3:-}}"
)

# curl_option NAME VALUE: a line of curl's config syntax, so that secrets reach curl
# on its stdin (-K -), never on a command line that every process can read.
curl_option() {
    printf '%s = "%s"\n' "$1" "$(printf '%s' "$2" | LC_ALL=C sed 's/[\\"]/\\&/g')"
}
