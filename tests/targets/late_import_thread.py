"""Has not imported `threading` when rprof attaches (the attach must not
import it either); on the first SIGUSR1 (sent once rprof has attached) it
imports `threading` and starts a thread running `late_worker`, which must be
profiled from its first call; on the second SIGUSR1 (sent after the detach)
it checks that nothing of rprof is left: not in `_thread`, not in
`threading`, not in a thread started now."""
import signal
import sys
import time

_usr1 = [0]


def _on_usr1(signum, frame):
    _usr1[0] += 1


def _fail(msg):
    sys.stderr.write("FAIL: %s\n" % (msg,))
    sys.stderr.flush()
    sys.exit(1)


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


def originals(threading):
    """The thread-starting functions of `_thread` and `threading` that are
    not `_thread`'s own builtins (what a detached rprof might leave)."""
    import _thread
    wrong = []
    for mod, names in ((_thread, ("start_new_thread", "start_joinable_thread")),
                       (threading, ("_start_new_thread", "_start_joinable_thread"))):
        for name in names:
            f = getattr(mod, name, None)
            if f is not None and getattr(f, "__self__", None) is not _thread:
                wrong.append("%s.%s = %r" % (mod.__name__, name, f))
    return wrong


def main():
    signal.signal(signal.SIGUSR1, _on_usr1)
    # Some builds import it at start-up (pyenv's 3.11.7 has a .pth file
    # that does): there only the late thread is checked.
    early = "threading" in sys.modules
    # Free-threaded builds: the shim imports it at attach there (on purpose).
    free_threaded = hasattr(sys, "_is_gil_enabled") and not sys._is_gil_enabled()
    n = 0
    print("ready", "early" if early else "late", flush=True)
    while _usr1[0] < 1:
        n = tick(n)
        time.sleep(0.005)
    if not early and not free_threaded and "threading" in sys.modules:
        _fail("threading was imported during the attach")
    import threading
    out = []
    t = threading.Thread(target=late_worker, args=(out,), name="late")
    t.start()
    t.join(60)
    if t.is_alive() or out != [sum(i * i for i in range(300))]:
        _fail("late_worker: %r" % (out,))
    print("late done", flush=True)
    while _usr1[0] < 2:
        n = tick(n)
        time.sleep(0.005)
    # Detached: nothing may be left, in this thread or a new one.
    from _target import check, leftover_hooks
    left = originals(threading) + leftover_hooks()
    seen = []
    t = threading.Thread(target=lambda: seen.extend(leftover_hooks() + [sys.getprofile()]))
    t.start()
    t.join(60)
    check(not left, "left behind after detach: %s" % "; ".join(left))
    check(seen == [None], "a thread started after detach has: %r" % (seen,))
    print("ok", n, flush=True)


main()
