#!/usr/bin/env bash
# Attach/detach stress: 200 cycles (RPROF_STRESS_CYCLES to change) against
# each target state (plain, vfork/D-state), with random detach points
# (a duration, or SIGINT or SIGKILL of rprof at a random moment), on the
# oldest and newest interpreter found (RPROF_TEST_PYTHON=path1:path2 to
# choose). Fails on the first target failure or thread left traced.
#
#   RPROF_STRESS=1 bash scripts/stress.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${RPROF_STRESS:-}" != 1 ]; then
    echo "scripts/stress.sh: set RPROF_STRESS=1 to run the stress loop (it takes minutes)" >&2
    exit 2
fi
exec cargo test --test integration stress_attach_detach_cycles -- --ignored --nocapture
