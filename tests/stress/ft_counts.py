"""Eight (or argv[1]) threads call the same functions at the same time for
argv[2] seconds, and count their own calls: the exact numbers rprof must
report, per thread and in total (tests/integration/free_threaded.rs).

Each thread (named w0, w1, ...) loops: mid(i) calls leaf twice and the
builtin abs once; shared() is called directly too, and every 64th round
recurse(3) adds 4 nested calls. The threads start together at a barrier
and stop on a shared deadline, so on a free-threaded build they run Python
concurrently for the whole time. Prints one JSON object: per thread its
native id and call counts, and the totals."""
import json
import sys
import threading
import time


def leaf(x):
    return x + 1


def mid(x):
    return leaf(x) + leaf(x) + abs(x)


def shared(x):
    return x ^ 1


def recurse(n):
    if n == 0:
        return 0
    return recurse(n - 1) + 1


def worker(barrier, deadline_box, out, name):
    counts = {"leaf": 0, "mid": 0, "shared": 0, "recurse": 0, "abs": 0}
    barrier.wait()
    deadline = deadline_box[0]
    i = 0
    while True:
        # Check the clock every 256 rounds (time.monotonic is a builtin call
        # too: counted).
        if i & 255 == 0:
            if time.monotonic() >= deadline:
                break
        mid(i)
        counts["mid"] += 1
        counts["leaf"] += 2
        counts["abs"] += 1
        shared(i)
        counts["shared"] += 1
        if i & 63 == 0:
            recurse(3)
            counts["recurse"] += 4
        i += 1
    counts["monotonic"] = i // 256 + 1
    out[name] = {"tid": threading.get_native_id(), "calls": counts}


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    barrier = threading.Barrier(n + 1)
    deadline_box = [0.0]
    out = {}
    threads = [threading.Thread(target=worker, args=(barrier, deadline_box, out, "w%d" % k),
                                name="w%d" % k) for k in range(n)]
    for t in threads:
        t.start()
    deadline_box[0] = time.monotonic() + seconds
    barrier.wait()
    for t in threads:
        t.join()
    totals = {}
    for v in out.values():
        for k, c in v["calls"].items():
            totals[k] = totals.get(k, 0) + c
    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print(json.dumps({"threads": out, "totals": totals, "gil": gil}, sort_keys=True))


main()
