"""Forks while profiled; parent and child call the same functions (issue 9,
item 6). The child reports (as JSON on stdout, through the parent) what it
inherited: sys.monitoring tools, threading's profile hook, rprof mappings,
and how long its loop took; the parent reports its own loop time.
Usage: fork_child.py PARENT_CALLS CHILD_CALLS."""
import json
import os
import sys
import threading
import time


def f(x):
    return x + 1


def loop(n):
    s = 0
    for _ in range(n):
        s = f(s)
    return s


parent_calls, child_calls = int(sys.argv[1]), int(sys.argv[2])
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    t0 = time.perf_counter()
    loop(child_calls)
    t1 = time.perf_counter()
    info = {
        "time": t1 - t0,
        "threading_hook": repr(getattr(threading, "_profile_hook", None)),
        "maps": [l.strip() for l in open("/proc/self/maps") if "rprof" in l and ".so" not in l],
        "tools": [],
    }
    if sys.version_info >= (3, 12):
        info["tools"] = [sys.monitoring.get_tool(i) for i in range(6)]
    os.write(w, json.dumps(info).encode())
    os._exit(0)
os.close(w)
chunks = []
while True:
    b = os.read(r, 65536)
    if not b:
        break
    chunks.append(b)
os.waitpid(pid, 0)
t0 = time.perf_counter()
loop(parent_calls)
t1 = time.perf_counter()
child = json.loads(b"".join(chunks))
print("CHILD " + json.dumps(child))
print("PARENT " + json.dumps({"time": t1 - t0}), flush=True)
