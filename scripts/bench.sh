#!/bin/sh
# Builds rprof (release) and runs the overhead benchmark; see scripts/bench.py --help.
# Example: scripts/bench.sh --markdown /tmp/bench.md      (full run, ~10 min)
#          scripts/bench.sh --quick                       (~1 min smoke run)
set -e
cd "$(dirname "$0")/.."
cargo build --release
exec python3 scripts/bench.py "$@"
