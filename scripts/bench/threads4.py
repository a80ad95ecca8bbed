"""Benchmark workload 4: four threads busy at once.

Four threads each run a call-heavy loop (tiny functions and a method) at
the same time. On a free-threaded build (python3.14t) they run in
parallel, so a profiler that serialised its threads (a global lock on the
hot path) would show up here as a slowdown near 4x its single-thread one;
on GIL builds they take turns and this is a threaded call-heavy loop.

Usage: python threads4.py [SCALE]   (SCALE multiplies the work; default 1)
Prints the work's own CPU time (BENCH_CPU_SECONDS <s>) and, as the last
line, its wall time: BENCH_SECONDS <s>.
"""
# rprof-bench: workload
import sys
import threading
import time

THREADS = 4


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


def loop(n, out, i):
    s = 0
    c = Counter()
    for j in range(n):
        s = inc(s)
        s = add(s, j) & 0xFFFF
        c.bump(1)
    out[i] = (s, c.n)


def work(scale):
    n = int(400000 * scale)
    out = [None] * THREADS
    threads = [threading.Thread(target=loop, args=(n, out, i)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


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
