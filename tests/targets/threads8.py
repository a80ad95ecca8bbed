"""Eight threads busy in pure Python, each checking its own results; the
main thread waits. Finishes on SIGUSR1: every worker must have done work and
found no wrong result."""
import sys
import threading
import time

from _target import check, check_clean, did_work, install, leftover_hooks, say, stopped

WORKERS = 8


def mul(a, b):
    return a * b


def work_unit(k, i):
    total = 0
    for j in range(200):
        total += mul(j, k + i % 3)
    return total


def worker(k, counts, errors, started):
    i = 0
    while not stopped():
        got = work_unit(k, i)
        want = (k + i % 3) * 199 * 200 // 2
        if got != want:
            errors.append("worker %d unit %d: %d != %d" % (k, i, got, want))
        i += 1
        counts[k] = i
        did_work()
        if i == 1:
            started[k].set()
    # Detach must have removed the hook from this thread too.
    if "--attached-at-exit" not in sys.argv[1:]:
        # (This thread's own state only: the others are ending meanwhile;
        # the main thread checks every thread once they are joined.)
        for what in leftover_hooks(this_thread_only=True):
            errors.append("worker %d: %s" % (k, what))


def main():
    install()
    counts = [0] * WORKERS
    errors = []
    started = [threading.Event() for _ in range(WORKERS)]
    threads = [
        threading.Thread(target=worker, args=(k, counts, errors, started), name="w%d" % k)
        for k in range(WORKERS)
    ]
    for t in threads:
        t.start()
    for e in started:
        check(e.wait(60), "a worker never started")
    say("ready", WORKERS)
    while not stopped():
        time.sleep(0.01)
    for t in threads:
        t.join(60)
        check(not t.is_alive(), "%s did not stop" % t.name)
    check(not errors, "; ".join(errors[:5]))
    check(all(c > 0 for c in counts), "counts %r" % (counts,))
    check_clean()
    say("ok", counts)


main()
