"""Runs a benchmark workload under cProfile.Profile(**options), for
scripts/bench.py (the reference of rprof's --no-builtins/--no-subcalls).

    python cprofile_run.py [--builtins=0|1] [--subcalls=0|1] OUTFILE SCRIPT [ARGS...]

The script runs as __main__ (as `python -m cProfile` runs it) with the
profiler enabled around it; the profile is dumped to OUTFILE. On 3.15+ the
profiler is profiling.tracing (cProfile is an alias of it there).
"""
import runpy
import sys


def main():
    argv = sys.argv[1:]
    opts = {}
    while argv and argv[0].startswith("--"):
        key, _, value = argv.pop(0)[2:].partition("=")
        opts[key] = bool(int(value))
    outfile, script = argv[0], argv[1]
    if sys.version_info >= (3, 15):
        from profiling.tracing import Profile
    else:
        from cProfile import Profile
    sys.argv[:] = argv[1:]
    prof = Profile(**opts)
    prof.enable()
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        prof.disable()
        prof.dump_stats(outfile)


if __name__ == "__main__":
    main()
