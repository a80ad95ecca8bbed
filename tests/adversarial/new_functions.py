"""Defines and calls a new function every iteration for SECONDS seconds, so
that definition records keep coming (issue 9, item 15: with
`--on-full drop` they must not make the target wait either)."""
import sys
import time

end = time.time() + float(sys.argv[1])
n = 0
while time.time() < end:
    ns = {}
    exec("def f%d(x):\n    return x\n" % n, ns)
    ns["f%d" % n](n)
    n += 1
print("defined", n, flush=True)
