# rprof-test: threaded
"""Several threading.Threads running the same recursive Python functions at
the same time as the main thread.  Per-thread stacks give exact recursion
and caller counts; a single shared stack (cProfile 3.12+) does not.

Deliberately uses no locks, deques, sets or Events in workload code: those
builtins are also called by threading's own machinery a timing-dependent
number of times (Event.wait takes the Condition.wait path only if the new
thread has not started yet), which would make their totals racy.  Results go
into preallocated list slots instead."""
import sys
import threading


def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)


def depth(n):
    if n == 0:
        return 0
    return 1 + depth(n - 1)


def evens(n):
    for i in range(n):
        if i % 2 == 0:
            yield i


def helper(x):
    return x * 2 + 1


def worker(idx, size, results):
    acc = 0
    for _ in range(3):
        acc += fib(size)
        acc += depth(size * 10)
    acc += sum(evens(size * 20))
    vals = []
    for i in range(size * 5):
        vals.append(helper(i))
    results[idx] = (acc, sum(vals))


THREADS = []


def main():
    # switch threads often, so that the threads' frames really interleave
    sys.setswitchinterval(1e-5)
    sizes = [10, 12, 14, 11]
    results = [None] * 5  # no len(): threading's Condition.notify_all calls it
    for idx, size in enumerate(sizes):
        t = threading.Thread(target=worker, args=(idx, size, results))
        THREADS.append(t)
    for t in THREADS:
        t.start()
    # the main thread runs the same code concurrently
    worker(4, 13, results)
    for t in THREADS:
        t.join()
    print("threads", results)


main()
