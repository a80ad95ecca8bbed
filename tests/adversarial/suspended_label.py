"""A builtin whose cProfile label runs Python code that releases the GIL
while the capture stops (issue 9, item 4).

cProfile labels a bound builtin method by repr() of the attribute of the
same name on type(self); here that attribute's __repr__ sleeps, so the
profiler's callback is suspended in Python when the main thread ends the
script (rprof run stops the capture then). The thread must resume safely,
and the process exit 0 after printing `done`.
"""
import threading
import time

started = threading.Event()


class SlowRepr:
    def __repr__(self):
        started.set()
        time.sleep(1.0)
        return "<slow repr>"


class L(list):
    append = SlowRepr()


def worker():
    obj = L()
    bound = list.append.__get__(obj)  # a builtin method bound to an L
    bound(1)
    # The descriptor form, recorded by the sys.monitoring hook (3.12+).
    list.append(L(), 2)
    assert obj == [1], obj


t = threading.Thread(target=worker)
t.start()
if not started.wait(30):
    raise SystemExit("the label was never computed")
print("done", flush=True)
# The script ends here: rprof run stops the capture while the worker's
# callback is suspended in SlowRepr.__repr__.
