"""Starts a new threading.Thread running `late_worker` on the first SIGUSR1
(sent by the test once rprof has attached), and checks its results; finishes
on the second SIGUSR1."""
import threading
import time

from _target import check, check_clean, install, say, usr1


def late_leaf(i):
    return i * i


def late_worker(out):
    total = 0
    for i in range(300):
        total += late_leaf(i)
        if i % 50 == 0:
            time.sleep(0.001)
    out.append(total)


def tick(n):
    return n + 1


def main():
    install()
    n = 0
    say("ready")
    while usr1() < 1:
        n = tick(n)
        time.sleep(0.005)
    out = []
    t = threading.Thread(target=late_worker, args=(out,), name="late")
    t.start()
    t.join(60)
    check(not t.is_alive(), "late thread did not finish")
    want = sum(i * i for i in range(300))
    check(out == [want], "late_worker result %r != [%d]" % (out, want))
    say("late done")
    while usr1() < 2:
        n = tick(n)
        time.sleep(0.005)
    check_clean()
    say("ok", n)


main()
