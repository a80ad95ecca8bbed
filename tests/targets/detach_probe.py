"""Measures its own call speed before, during and after an attach, and
checks from inside that nothing of the profiler is left once it detached.

Three worker threads keep calling Python functions the whole time (so a
setprofile hook is installed on every one of them, and must be removed
from every one). The main thread times bursts of calls to `f`, taking the
fastest burst of a phase as that phase's speed:

* `ready before=S`: measured before anything attached;
* the first SIGUSR1 (sent while rprof is attached) starts the `during`
  phase, the second (sent after rprof exited) the `after` phase;
* then it checks that no hook is left (check_clean: C-level profile
  function on every thread state, sys.monitoring tools and events) and
  prints `speeds before=S during=S after=S` and `ok`.

It fails (exit 1) if `after` is more than 1.5 times `before`: a hook left
installed costs 1.3-4x per call (see FIELD-NOTES.md); the C-level probe is
the exact check, the speed a second, independent one.
"""
import threading
import time

from _target import check, check_clean, did_work, install, say, usr1

CALLS = 20000


def f(x):
    return x + 1


def burst():
    t = time.perf_counter()
    x = 0
    for _ in range(CALLS):
        x = f(x)
    check(x == CALLS, "burst computed %r" % (x,))
    return time.perf_counter() - t


def speed(n):
    return min(burst() for _ in range(n))


def worker(stop, counts, i):
    while not stop.is_set():
        x = 0
        for _ in range(1000):
            x = f(x)
        check(x == 1000, "worker computed %r" % (x,))
        counts[i] += 1


def main():
    install()
    stop = threading.Event()
    counts = [0, 0, 0]
    threads = [threading.Thread(target=worker, args=(stop, counts, i)) for i in range(3)]
    for t in threads:
        t.start()
    before = speed(15)
    say("ready before=%.6f" % before)
    while usr1() < 1:
        burst()
        did_work()
    during = speed(9)
    say("measured during=%.6f" % during)
    while usr1() < 2:
        burst()
        did_work()
    after = speed(15)
    stop.set()
    for t in threads:
        t.join()
    check(all(counts), "a worker did no work: %r" % (counts,))
    check_clean()
    say("speeds before=%.6f during=%.6f after=%.6f" % (before, during, after))
    check(after <= 1.5 * before,
          "calls are %.2fx slower after detach than before: a hook is left" % (after / before))
    say("ok")


main()
