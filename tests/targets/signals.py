"""Signal-heavy: an interval timer delivers SIGALRM every 2 ms to a handler
while the main thread alternates pure-Python work and short sleeps, so
signals arrive while rprof stops, borrows and releases threads. Checks the
timer keeps firing (none of its signals turned into an error, a stop or a
lost timer) and the work stays right. Finishes on SIGUSR1."""
import signal
import time

from _target import check, check_clean, did_work, install, say, stopped, work_done

ticks = [0]


def on_alarm(signum, frame):
    ticks[0] += 1


def work(i):
    total = 0
    for j in range(500):
        total += j * i
    return total


def main():
    install()
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
    t0 = time.monotonic()
    while ticks[0] < 5:
        work(1)
    say("ready")
    i = 0
    while not stopped():
        check(work(i) == i * 499 * 500 // 2, "work(%d)" % i)
        if i % 20 == 0:
            time.sleep(0.001)
        i += 1
        did_work()
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    took = time.monotonic() - t0
    # A 2 ms timer: at least a quarter of the ticks it should have made.
    check(ticks[0] >= took / 0.002 / 4, "%d ticks in %.3f s" % (ticks[0], took))
    check_clean()
    say("ok", work_done(), "rounds,", ticks[0], "ticks in %.3f s" % took)


main()
