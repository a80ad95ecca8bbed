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


def _probe_c_profile_offset():
    """Where `c_profilefunc` lives in this interpreter's PyThreadState,
    found from inside: install a known C function with PyEval_SetProfile
    (PyErr_Occurred: it returns NULL, i.e. 0, when no exception is set,
    which is what a profile function returns to say "carry on") and look
    for its address in the thread state's memory, then remove it again.
    Done at import, before any profiler is attached."""
    import ctypes
    import struct
    api = ctypes.pythonapi
    api.PyThreadState_Get.restype = ctypes.c_void_p
    api.PyEval_SetProfile.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    api.PyEval_SetProfile.restype = None
    marker = ctypes.cast(api.PyErr_Occurred, ctypes.c_void_p).value
    ts = api.PyThreadState_Get()
    size = 256
    before = ctypes.string_at(ts, size)
    api.PyEval_SetProfile(marker, None)
    during = ctypes.string_at(ts, size)
    api.PyEval_SetProfile(None, None)
    after = ctypes.string_at(ts, size)
    word = struct.calcsize("P")
    for off in range(0, size, word):
        (b,), (d,), (a,) = (struct.unpack_from("P", x, off) for x in (before, during, after))
        if d == marker and b == 0 and a == 0:
            return off
    fail("cannot find c_profilefunc in PyThreadState (the probe itself is broken)")


_C_PROFILE_OFFSET = [None]


def c_profile_functions(this_thread_only=False):
    """`(thread id, c_profilefunc)` of every thread state of this
    interpreter whose C-level profile function is set: what a setprofile
    hook left behind would look like (sys.getprofile() cannot see it).

    The walk of the thread-state list takes no lock, so it must not run
    while other threads start or end (their states are freed under it: a
    crash of this probe, seen on free-threaded builds): threads that check
    themselves while others exit pass `this_thread_only`."""
    import ctypes
    api = ctypes.pythonapi
    if _C_PROFILE_OFFSET[0] is None:
        _C_PROFILE_OFFSET[0] = _probe_c_profile_offset()
    off = _C_PROFILE_OFFSET[0]
    api.PyInterpreterState_Head.restype = ctypes.c_void_p
    api.PyInterpreterState_ThreadHead.argtypes = [ctypes.c_void_p]
    api.PyInterpreterState_ThreadHead.restype = ctypes.c_void_p
    api.PyThreadState_Next.argtypes = [ctypes.c_void_p]
    api.PyThreadState_Next.restype = ctypes.c_void_p
    found = []
    if this_thread_only:
        api.PyThreadState_Get.restype = ctypes.c_void_p
        ts = api.PyThreadState_Get()
        func = ctypes.c_void_p.from_address(ts + off).value
        return [(ts, func)] if func else []
    interp = api.PyInterpreterState_Head()
    ts = api.PyInterpreterState_ThreadHead(interp)
    while ts:
        func = ctypes.c_void_p.from_address(ts + off).value
        if func:
            found.append((ts, func))
        ts = api.PyThreadState_Next(ts)
    return found


def leftover_hooks(this_thread_only=False):
    """What a detached rprof might have left behind: a Python-level profile
    function, threading's profile hook, a C-level profile function on any
    thread (the setprofile hook: invisible to sys.getprofile(), so read
    from the thread states through ctypes), or (3.12+) a registered
    sys.monitoring tool or events still set for one."""
    found = []
    for ts, func in c_profile_functions(this_thread_only):
        found.append("C profile function 0x%x on thread state 0x%x" % (func, ts))
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
            if mon.get_events(tool):
                found.append("sys.monitoring events 0x%x set for tool %d" % (mon.get_events(tool), tool))
    return found


def check_clean():
    if "--attached-at-exit" in sys.argv[1:]:
        return
    left = leftover_hooks()
    check(not left, "left behind after detach: %s" % "; ".join(left))


# Found now, before any profiler can be attached (see c_profile_functions).
_C_PROFILE_OFFSET[0] = _probe_c_profile_offset()
