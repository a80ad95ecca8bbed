"""Shared helpers for the `rprof attach` test targets (tests/integration/attach.rs).

Protocol, for every target:
* it prints `ready ...` on stdout (flushed) once it is in the state under test;
* SIGUSR1 advances it (counted in `usr1()`): most targets finish on the first
  one, after checking their own results;
* SIGUSR2 makes it print `progress N` (N: units of work done so far), which
  only happens if its main thread still runs Python code;
* it exits 0 if every check passed; any wrong result prints `FAIL: ...` on
  stderr and exits 1 at once;
* before it exits it checks that no profiler is left behind (`check_clean`),
  unless `--attached-at-exit` is among its arguments (the test lets it exit
  while rprof is still attached).

Kept compatible with Python 3.6 so that the too-old-interpreter tests can run
the same targets.
"""
import os
import signal
import sys
import threading

_usr1 = [0]
_progress = [0]


def _on_usr1(signum, frame):
    _usr1[0] += 1


def _on_usr2(signum, frame):
    say("progress", _progress[0])


def install():
    signal.signal(signal.SIGUSR1, _on_usr1)
    signal.signal(signal.SIGUSR2, _on_usr2)


def usr1():
    """How many SIGUSR1 have arrived."""
    return _usr1[0]


def stopped():
    return _usr1[0] > 0


def did_work(n=1):
    _progress[0] += n


def work_done():
    return _progress[0]


def say(*words):
    print(*words, flush=True)


def fail(msg):
    sys.stderr.write("FAIL: %s\n" % (msg,))
    sys.stderr.flush()
    os._exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def leftover_hooks():
    """What a detached rprof might have left behind in this thread: a
    Python-level profile function, threading's profile hook, or (3.12+) a
    registered sys.monitoring tool. C-level profile functions (the setprofile
    hook) are invisible to sys.getprofile()."""
    found = []
    if sys.getprofile() is not None:
        found.append("sys.getprofile() = %r" % (sys.getprofile(),))
    getter = getattr(threading, "getprofile", None)  # 3.10+
    hook = getter() if getter is not None else threading._profile_hook
    if hook is not None:
        found.append("threading profile hook = %r" % (hook,))
    mon = getattr(sys, "monitoring", None)  # 3.12+
    if mon is not None:
        for tool in range(6):
            if mon.get_tool(tool) is not None:
                found.append("sys.monitoring tool %d = %r" % (tool, mon.get_tool(tool)))
    return found


def check_clean():
    if "--attached-at-exit" in sys.argv[1:]:
        return
    left = leftover_hooks()
    check(not left, "left behind after detach: %s" % "; ".join(left))
