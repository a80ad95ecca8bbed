"""Targets for the attach scenarios of issue 9, items 7 and 16.

Usage: attach_target.py STATUS DONE MODE. Writes its PID to STATUS once
ready; the test attaches, creates DONE + ".go" while attached (the target
then does what MODE says during the capture and creates STATUS + ".set"),
and DONE once rprof has detached. The target then checks what MODE
promises, prints `FAIL: ...` and exits 1 if it does not hold, else exits 0.

Modes:
* subinterp: one idle sub-interpreter exists; the main thread calls f().
* own_profiler: thread U has its own sys.setprofile() profiler from before
  the attach; thread T sets one during the capture. Both must have theirs
  after the detach.
* reused_thread: thread A has a profiler before the attach and exits
  during the capture; thread B starts then. B must have no profiler after
  the detach (not A's, whatever address its thread state reuses).
* tool_ids (3.12+): the program holds sys.monitoring tool ids 2-5; rprof
  must not take the debugger (0) or coverage (1) id.
* fork_child: during the capture a thread forks; the child writes its PID
  to STATUS + ".child", calls f() until DONE + ".child" exists, then writes
  STATUS + ".child.ok" and exits (item 6: the test attaches to it). The
  parent waits for the child.
* audit: an audit hook checks that no "sys.setprofile" event runs with
  another thread's state current (its frames would be a waiting worker's;
  item 16, 3.8).
* slow_repr: a worker calls a builtin whose cProfile label is computed by
  a Python __repr__ that sleeps 3 s, so the detach lands while the
  profiler's callback is suspended in it (item 4).
"""
import os
import sys
import threading
import time

status, done, mode = sys.argv[1:4]
go = done + ".go"
failures = []


def wait_for(path, limit=60):
    end = time.time() + limit
    while not os.path.exists(path):
        if time.time() > end:
            failures.append("timed out waiting for " + path)
            return
        time.sleep(0.005)


def f(x):
    return x + 1


def busy_until(path):
    n = 0
    end = time.time() + 60
    while not os.path.exists(path) and time.time() < end:
        for _ in range(1000):
            n = f(n)
        # Release the GIL now and then, as a real service does (the attach
        # needs a thread at a safe point; that is not what is tested here).
        time.sleep(0.0002)
    return n


def mark_set():
    with open(status + ".set", "w") as fh:
        fh.write("set")


def uprof(frame, event, arg):
    pass


def tprof(frame, event, arg):
    pass


def aprof(frame, event, arg):
    pass


threads = []
sub = None
if mode == "subinterp":
    try:
        import _interpreters as interpreters
    except ImportError:
        import _xxsubinterpreters as interpreters
    sub = interpreters.create()
elif mode == "own_profiler":
    seen = {}

    def u():
        sys.setprofile(uprof)
        wait_for(done)
        seen["u"] = sys.getprofile()

    def t():
        wait_for(go)
        sys.setprofile(tprof)
        mark_set()
        wait_for(done)
        seen["t"] = sys.getprofile()

    threads = [threading.Thread(target=u), threading.Thread(target=t)]
elif mode == "reused_thread":
    seen = {}

    def a():
        sys.setprofile(aprof)
        wait_for(go)

    def b():
        mark_set()
        wait_for(done)
        seen["b"] = sys.getprofile()

    threads = [threading.Thread(target=a)]
elif mode == "tool_ids":
    for i in (2, 3, 4, 5):
        sys.monitoring.use_tool_id(i, "program")
elif mode == "fork_child":

    def forker():
        wait_for(go)
        pid = os.fork()
        if pid == 0:
            with open(status + ".child.tmp", "w") as fh:
                fh.write(str(os.getpid()))
            os.rename(status + ".child.tmp", status + ".child")
            n = busy_until(done + ".child")
            with open(status + ".child.ok", "w") as fh:
                fh.write("ok %d" % n)
            os._exit(0)
        mark_set()
        # The parent outlives the child (an orphan is another attach case).
        wait_for(done + ".child")
        os.waitpid(pid, 0)

    threads = [threading.Thread(target=forker)]
elif mode == "audit":

    def audit(event, args):
        if event != "sys.setprofile":
            return
        f = sys._getframe()
        while f is not None:
            if f.f_code.co_name == "worker_waiting":
                failures.append("the sys.setprofile audit hook ran on a waiting worker's thread state")
                return
            f = f.f_back

    sys.addaudithook(audit)

    def worker_waiting():
        wait_for(go)
        mark_set()
        wait_for(done)

    threads = [threading.Thread(target=worker_waiting)]
elif mode == "slow_repr":

    class SlowRepr:
        def __repr__(self):
            time.sleep(3.0)
            return "<slow repr>"

    class L(list):
        append = SlowRepr()

    def worker():
        wait_for(go)
        mark_set()
        while not os.path.exists(done):
            obj = L()
            list.append.__get__(obj)(1)  # a builtin method bound to an L
            list.append(obj, 2)  # the descriptor form (sys.monitoring)
            if obj != [1, 2]:
                failures.append("wrong result %r" % (obj,))
                return
            time.sleep(0.01)

    threads = [threading.Thread(target=worker)]
for th in threads:
    th.start()
with open(status + ".tmp", "w") as fh:
    fh.write(str(os.getpid()))
os.rename(status + ".tmp", status)

if mode == "subinterp":
    busy_until(done)
    try:
        interpreters.destroy(sub)
    except Exception as e:  # pragma: no cover - reported below
        failures.append("destroy: %r" % e)
elif mode == "reused_thread":
    threads[0].join()
    tb = threading.Thread(target=b)
    tb.start()
    threads.append(tb)
    wait_for(done)
elif mode == "tool_ids":
    wait_for(done)
    for i in (0, 1):
        try:
            sys.monitoring.use_tool_id(i, "program")
        except ValueError as e:
            failures.append("tool id %d was taken: %r" % (i, e))
else:
    wait_for(done)
for th in threads:
    th.join()
if mode == "own_profiler":
    if seen.get("u") is not uprof:
        failures.append("U's own profiler was not put back: %r" % (seen.get("u"),))
    if seen.get("t") is not tprof:
        failures.append("T's profiler, set during the capture, was overwritten: %r" % (seen.get("t"),))
if mode == "reused_thread" and seen.get("b") is not None:
    failures.append("B got a profiler it never set: %r" % (seen.get("b"),))
if failures:
    print("FAIL: " + "; ".join(failures), file=sys.stderr, flush=True)
    sys.exit(1)
