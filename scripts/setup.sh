#!/bin/sh
# Installs everything pgdock's commands and tests need on a fresh Debian machine.
# Idempotent: re-running only installs what is missing.
# Docker Compose v2 and buildx come from Debian's next release (trixie), whose
# docker-compose 2.x and docker-buildx packages install on bookworm (without
# their recommended docker-cli, which would replace the engine package); the trixie
# source reuses the mirror this machine's apt is already configured with.
set -eu
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

apt_missing() {
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || echo "$pkg"
    done
}

add_next_release_source() {
    list=/etc/apt/sources.list.d/pgdock-trixie.sources
    [ -f "$list" ] && return 0
    uri=$(grep -h -m1 -E '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | grep -v -E 'security|updates' | head -n1 | awk '{print $2}')
    [ -n "$uri" ] || { echo "setup: cannot find a Debian mirror in apt's sources; add one and retry" >&2; exit 1; }
    printf 'Types: deb\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
        | $SUDO tee "$list" >/dev/null
    # Never upgrade anything else from trixie: only what we ask for with -t trixie.
    printf 'Package: *\nPin: release n=trixie\nPin-Priority: 100\n' | $SUDO tee /etc/apt/preferences.d/pgdock-trixie >/dev/null
    $SUDO apt-get update -qq
}

if command -v apt-get >/dev/null; then
    base=$(apt_missing debootstrap shellcheck postgresql-client rsync openssl iproute2 openssh-client iptables util-linux)
    if [ -n "$base" ]; then
        $SUDO apt-get update -qq
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $base
    fi
    # The unit tests check rendered monitoring/ and proxy/ files with the real tools: promtool (in
    # Debian's prometheus package) and haproxy -c. Without recommends: no node exporter.
    checkers=$(apt_missing prometheus haproxy)
    if [ -n "$checkers" ]; then
        $SUDO apt-get update -qq
        # shellcheck disable=SC2086
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $checkers
    fi
    if ! docker compose version >/dev/null 2>&1 || ! docker buildx version >/dev/null 2>&1; then
        add_next_release_source
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends -t trixie docker-compose docker-buildx
    fi
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
if command -v pyenv >/dev/null; then pyenv rehash; fi
docker compose version
docker buildx version
