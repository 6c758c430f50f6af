#!/bin/sh
# Sets this machine up, then brings the example cluster (two data nodes and a
# witness) up in the local lab and prints its status.
set -eu
cd "$(dirname "$0")/.."
./scripts/setup.sh
python3 -m pgdock_gen lab up -f examples/shop.yaml
