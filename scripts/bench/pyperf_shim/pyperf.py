"""A stand-in for the `pyperf` module, enough to run pyperformance's
`run_benchmark.py` scripts once, for a fixed number of loops, inside a
profiled process (scripts/bench/pyperformance_run.py).

pyperf itself spawns worker processes, calibrates the loop count and tunes
the system: none of that may happen under a profiler that compares runs of
the same process. This keeps the benchmark's own code and arguments and
only replaces the driver: `bench_func` calls the function LOOPS times,
`bench_time_func` passes LOOPS to it, and the time is summed for
pyperformance_run.py to print.
"""
import argparse
import time

perf_counter = time.perf_counter

# Filled by pyperformance_run.py.
LOOPS = [1]
ELAPSED = [0.0]


class Runner(object):
    def __init__(self, *args, **kwargs):
        self.metadata = {}
        self.argparser = argparse.ArgumentParser()
        self.args = None

    def parse_args(self, args=None):
        if self.args is None:
            self.args = self.argparser.parse_args([] if args is None else args)
        return self.args

    def _loops(self, inner_loops):
        return LOOPS[0]

    def bench_func(self, name, func, *args, **kwargs):
        self.parse_args()
        loops = self._loops(kwargs.get("inner_loops"))
        t0 = perf_counter()
        for _ in range(loops):
            func(*args)
        ELAPSED[0] += perf_counter() - t0

    def bench_time_func(self, name, func, *args, **kwargs):
        self.parse_args()
        loops = self._loops(kwargs.get("inner_loops"))
        t0 = perf_counter()
        func(loops, *args)
        ELAPSED[0] += perf_counter() - t0

    def bench_async_func(self, name, func, *args, **kwargs):
        import asyncio
        self.parse_args()
        loops = self._loops(kwargs.get("inner_loops"))
        t0 = perf_counter()
        for _ in range(loops):
            asyncio.run(func(*args))
        ELAPSED[0] += perf_counter() - t0
