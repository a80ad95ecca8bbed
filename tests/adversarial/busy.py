"""A busy target for the reader-death scenarios (issue 9, item 5).

Usage: busy.py STATUS DONE. Writes its PID to STATUS once running, then
calls Python functions and builtins as fast as it can (so a ring nobody
drains fills up) until the file DONE exists, then writes `finished` to
STATUS + ".ok" and exits 0. A ticker thread records the longest pause it
saw (a writer waiting for ring space holds the GIL) in the same file.
"""
import os
import sys
import threading
import time

status, done = sys.argv[1], sys.argv[2]
longest = [0.0]


def ticker():
    last = time.monotonic()
    while True:
        time.sleep(0.01)
        now = time.monotonic()
        longest[0] = max(longest[0], now - last)
        last = now


def f(x):
    return x + 1


def chunk():
    s = 0
    for _ in range(2000):
        s = f(s)
        len(())
    return s


threading.Thread(target=ticker, daemon=True).start()
with open(status + ".tmp", "w") as fh:
    fh.write(str(os.getpid()))
os.rename(status + ".tmp", status)
deadline = time.time() + 120
while not os.path.exists(done):
    chunk()
    if time.time() > deadline:
        sys.exit(2)
with open(status + ".ok", "w") as fh:
    fh.write("finished longest_pause=%.3f\n" % longest[0])
