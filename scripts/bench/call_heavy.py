"""Benchmark workload 1: call-heavy.

A tight loop calling tiny Python functions and methods (a few million
calls), plus a small recursive function.  Almost every bytecode executed
is a call or a return, so this is the worst case for a deterministic
profiler: its per-event cost dominates.

Usage: python call_heavy.py [SCALE]   (SCALE multiplies the work; default 1)
Prints the work's own CPU time (BENCH_CPU_SECONDS <s>) and, as the last
line, its wall time: BENCH_SECONDS <s>.
"""
import sys
import time


def inc(x):
    return x + 1


def add(x, y):
    return x + y


class Counter(object):
    def __init__(self):
        self.n = 0

    def bump(self, k):
        self.n += k
        return self.n


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def work(scale):
    n = int(900000 * scale)
    s = 0
    c = Counter()
    for i in range(n):
        s = inc(s)
        s = add(s, i) & 0xFFFF
        c.bump(1)
    r = 0
    for _ in range(max(1, int(4 * scale))):
        r += fib(20)          # 21891 calls each
    return s, c.n, r


def main():
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    t0, c0 = time.perf_counter(), time.process_time()
    result = work(scale)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    print("result %r" % (result,))
    print("BENCH_CPU_SECONDS %.6f" % cpu)
    print("BENCH_SECONDS %.6f" % elapsed)


if __name__ == "__main__":
    main()
