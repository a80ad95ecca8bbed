#!/bin/sh
# Every benchmark in BENCHMARKS.md, in one command (about 60 minutes):
#   1. scripts/bench.py: the target's slowdown under no profiler, cProfile,
#      yappi, rprof's floor, rprof run and rprof attach, side by side;
#   2. scripts/bench.py --sections pyperformance,attach,service: 12
#      pyperformance benchmarks in a live target (fetched into
#      target/bench-cache), attach latency by target state, and a gunicorn
#      service's throughput (gunicorn/py-spy in venvs under ~/.cache);
#   3. scripts/bench_attach.py: attach/detach latency against gdb injection;
#   4. cargo bench -p rprof-reader: the reader's events per second.
# Arguments go to scripts/bench.py (e.g. --quick for a short smoke run).
# The 10-minute memory measurement is separate: scripts/bench_memory.py.
set -e
cd "$(dirname "$0")/.."
cargo build --release
python3 scripts/bench.py --wait-idle 0.3 --max-wait 15 "$@"
python3 scripts/bench.py --sections pyperformance,attach,service --reps 3 "$@"
python3 scripts/bench_attach.py
cargo bench -p rprof-reader --bench stream
