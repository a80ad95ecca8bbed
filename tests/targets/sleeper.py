"""Sleeps in a loop (the main thread is blocked in clock_nanosleep/select
nearly all the time). Checks that no sleep ever returns early and none takes
absurdly long. Finishes on SIGUSR1."""
import time

from _target import check, check_clean, did_work, install, say, stopped, work_done

NAP = 0.02


def nap():
    t0 = time.monotonic()
    time.sleep(NAP)
    return time.monotonic() - t0


def main():
    install()
    longest = 0.0
    say("ready", NAP)
    while not stopped():
        took = nap()
        # time.sleep must never return early, attach or not.
        check(took >= NAP - 0.001, "time.sleep(%s) returned after %.6f s" % (NAP, took))
        longest = max(longest, took)
        did_work()
    check(work_done() > 0, "no nap completed")
    check(longest < 10.0, "one time.sleep(%s) took %.3f s" % (NAP, longest))
    check_clean()
    say("ok", work_done(), "naps, longest %.4f s" % longest)


main()
