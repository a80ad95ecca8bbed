"""For many attach/detach cycles: the main thread burns CPU in pure Python
while a helper thread naps in short sleeps. Both check their results;
finishes on SIGUSR1 and reports what each did."""
import threading
import time

from _target import check, check_clean, did_work, install, say, stopped, work_done


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def nap_tick(i):
    t0 = time.monotonic()
    time.sleep(0.003)
    return time.monotonic() - t0


def napper(result):
    naps = 0
    while not stopped():
        took = nap_tick(naps)
        if took < 0.002:
            result.append("nap %d took %.6f s" % (naps, took))
        naps += 1
    result.append(naps)


def main():
    install()
    result = []
    t = threading.Thread(target=napper, args=(result,), name="napper")
    t.start()
    check(fib(12) == 144, "fib(12)")
    say("ready")
    while not stopped():
        f = fib(12)
        check(f == 144, "fib(12) = %r" % (f,))
        did_work()
    t.join(30)
    check(not t.is_alive(), "napper did not stop")
    check(len(result) == 1 and isinstance(result[0], int) and result[0] > 0, "napper: %r" % (result,))
    check(work_done() > 0, "no work")
    check_clean()
    say("ok", work_done(), "rounds,", result[0], "naps")


main()
