#!/bin/sh
# Sets this machine up, then runs every test: the fast unit layer first, then the
# end-to-end layer on the real Docker engine. Extra arguments go to pytest.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
ruff check .
status=0
python3 -m pytest tests/unit "$@" || status=$?
[ "$status" -eq 5 ] && status=0   # "no tests collected" is not a failure
[ "$status" -eq 0 ] || exit "$status"
python3 -m pytest tests/e2e -m e2e "$@" || status=$?
[ "$status" -eq 5 ] && status=0
exit "$status"
