#!/usr/bin/env bash
# The main job on the bundled example: builds rprof, starts the example
# service (examples/service.py, serving synthetic requests forever), attaches
# to it by PID for a few seconds (default 3; pass another number), prints
# the profile table, and stops the service again.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-3}
python=${PYTHON:-python3}
cargo build --release --quiet -p rprof
"$python" examples/service.py --forever &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
sleep 1
target/release/rprof attach "$pid" --duration "$seconds"
