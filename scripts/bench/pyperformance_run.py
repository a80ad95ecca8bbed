"""Runs one pyperformance benchmark for scripts/bench.py.

    python pyperformance_run.py RUN_BENCHMARK_PY LOOPS

Puts the pyperf stand-in (pyperf_shim/pyperf.py) first on sys.path, runs
the benchmark's script as __main__ with no arguments (its defaults), and
prints `BENCH_SECONDS <s>`: the time of the LOOPS timed calls only (setup
and the import of the script are left out), following the protocol of the
other workloads. The benchmark scripts are fetched by bench.py at
benchmark time (pyperformance's sdist) and never committed.
"""
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    script, loops = sys.argv[1], int(sys.argv[2])
    sys.path.insert(0, os.path.join(HERE, "pyperf_shim"))
    sys.path.insert(0, os.path.dirname(script))
    import pyperf
    pyperf.LOOPS[0] = max(1, loops)
    sys.argv[:] = [script]
    runpy.run_path(script, run_name="__main__")
    sys.stdout.write("BENCH_SECONDS %.6f\n" % pyperf.ELAPSED[0])
    sys.stdout.flush()


if __name__ == "__main__":
    main()
