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
# End-to-end tests time failovers on a shared 2-core engine: a failed one runs once more (pytest's
# summary lists it as rerun, so a flaky test stays visible); failing twice fails the run.
python3 -m pytest tests/e2e -m e2e --reruns 1 --reruns-delay 5 "$@" || status=$?
[ "$status" -eq 5 ] && status=0
exit "$status"
