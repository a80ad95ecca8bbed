"""The target of the adversarial attach tests (tests/integration/adversarial_attach.rs).

Its main thread does checked Python work with short sleeps in between, so
that it is sometimes running the interpreter and sometimes blocked. Options:
* `--slow-dlopen LIB`: a second thread loads LIB with ctypes (its
  constructor takes seconds, holding the dynamic loader's lock) and prints
  `dlopen-started` first; the target checks that the load finished;
* `--vfork LIB`: the main thread alternates 20 ms of native spinning with a
  vfork() whose child lives 200 ms (the thread waits uninterruptibly, state
  D), while a second thread does the Python work;
* `--attached-at-exit`: see _target.py.
Protocol as in _target.py (ready / SIGUSR1 / SIGUSR2 / exit 0 if all good).
"""
import ctypes
import sys
import threading
import time

from _target import check, check_clean, did_work, install, say, stopped, work_done


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def one_round():
    f = fib(12)
    check(f == 144, "fib(12) = %r" % (f,))


def worker():
    while not stopped():
        one_round()
        did_work()
        time.sleep(0.001)


def arg(name):
    args = sys.argv[1:]
    return args[args.index(name) + 1] if name in args else None


def main():
    install()
    threads = []
    loaded = []
    slow = arg("--slow-dlopen")
    announced = threading.Event()
    if slow:
        def load():
            say("dlopen-started")
            announced.set()
            ctypes.CDLL(slow)
            loaded.append(slow)

        threads.append(threading.Thread(target=load))
    vfork = arg("--vfork")
    lib = ctypes.CDLL(vfork) if vfork else None
    if lib is not None:
        threads.append(threading.Thread(target=worker))
    for t in threads:
        t.start()
    if slow:
        announced.wait()
    one_round()
    say("ready")
    while not stopped():
        if lib is not None:
            st = lib.spin_then_vfork(20, 200)
            check(st == 0, "vfork child status %r" % (st,))
        else:
            one_round()
            did_work()
            time.sleep(0.002)
    for t in threads:
        t.join()
    if slow:
        check(loaded == [slow], "the slow dlopen did not finish")
    check(work_done() > 0, "no work done")
    check_clean()
    say("ok", work_done())


main()
