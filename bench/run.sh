#!/bin/sh
# run.sh — `make bench`: see bench/bench.py. Starts its own stack on free loopback ports, runs
# wrk against it (BENCH_DURATION s per run, default 10) and the long-poll test, prints a table,
# stops everything.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
exec python3 bench/bench.py "$@"
