"""Defines and calls a new function every iteration for SECONDS seconds, so
that definition records keep coming (issue 9, item 15: with
`--on-full drop` they must not make the target wait either). Prints the
longest time one iteration took."""
import sys
import time

end = time.time() + float(sys.argv[1])
n = 0
longest = 0.0
last = time.monotonic()
while time.time() < end:
    ns = {}
    exec("def f%d(x):\n    return x\n" % n, ns)
    ns["f%d" % n](n)
    n += 1
    now = time.monotonic()
    longest = max(longest, now - last)
    last = now
print("defined", n, flush=True)
print("longest_iteration %.3f" % longest, flush=True)
