# rprof-test: threaded
"""Threads that start and join threads of their own, a thread whose target
raises and catches an exception, mutual recursion inside threads, and a
Thread subclass overriding run().  No locks/Events/deques in workload code
(see threads.py for why)."""
import sys
import threading


def ping(n):
    if n <= 0:
        return 0
    return 1 + pong(n - 1)


def pong(n):
    if n <= 0:
        return 0
    return 1 + ping(n - 1)


def risky(n):
    if n % 5 == 0:
        raise ValueError(n)
    return n


def guarded(n, out, slot):
    total = 0
    for i in range(n):
        try:
            total += risky(i)
        except ValueError:
            total -= 1
    out[slot] = total


def parent(n, out, slot):
    children = []
    for k in range(2):
        children.append(threading.Thread(target=guarded, args=(n + k, out, slot + 1 + k)))
    for c in children:
        c.start()
    out[slot] = ping(n * 4)
    for c in children:
        c.join()
    KEEP.extend(children)


class Counter(threading.Thread):
    def __init__(self, n, out, slot):
        threading.Thread.__init__(self)
        self.n = n
        self.out = out
        self.slot = slot

    def run(self):
        self.out[self.slot] = self.count(self.n)

    def count(self, n):
        if n == 0:
            return 0
        return n + self.count(n - 1)


KEEP = []


def main():
    # switch threads often, so that the threads' frames really interleave
    sys.setswitchinterval(1e-5)
    out = [None] * 8
    p1 = threading.Thread(target=parent, args=(20, out, 0))
    p2 = threading.Thread(target=parent, args=(30, out, 3))
    c = Counter(60, out, 6)
    KEEP.extend([p1, p2, c])
    p1.start()
    p2.start()
    c.start()
    out[7] = pong(50)
    p1.join()
    p2.join()
    c.join()
    print("nested", out)


main()
