"""The target of the adversarial attach tests (tests/integration/adversarial_attach.rs).

Its main thread does checked Python work with short sleeps in between, so
that it is sometimes running the interpreter and sometimes blocked. Options:
* `--slow-dlopen LIB`: a second thread loads LIB with ctypes (its
  constructor takes seconds, holding the dynamic loader's lock) and prints
  `dlopen-started tid=N` first; the target checks that the load finished;
* `--spin-main LIB` (with `--slow-dlopen`): the main thread prints
  `spinning`, starts the slow load (then a foreign call of dlopen(3), so
  that the GIL is free during the constructor) and spins 4 s in LIB's
  native code (`spin_then_vfork`), so the constructor's thread is the only
  one blocked in a system call or running the interpreter meanwhile;
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
    # Loaded before the slow load starts: it holds the loader's lock.
    spin = arg("--spin-main")
    spinner = ctypes.CDLL(spin) if spin else None
    dlopen = None
    if spinner is not None:
        # With --spin-main the slow load calls dlopen(3) as a foreign
        # function, which lets go of the GIL (ctypes.CDLL may keep it
        # through the constructor, and the main thread would then wait for
        # the GIL instead of spinning).
        dlopen = ctypes.CDLL(None).dlopen
        dlopen.restype = ctypes.c_void_p
        dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        # Looked up (dlsym takes the loader's lock) and called once (its
        # lazy bindings) before the constructor holds that lock.
        spin_then_vfork = spinner.spin_then_vfork
        check(spin_then_vfork(0, 0) == 0, "spin_then_vfork failed")
    announced = threading.Event()
    if slow:
        def load():
            say("dlopen-started tid=%d" % threading.get_native_id())
            announced.set()
            if dlopen is not None:
                check(dlopen(slow.encode(), 2) is not None, "dlopen(%r) failed" % slow)
            else:
                ctypes.CDLL(slow)
            loaded.append(slow)

        threads.append(threading.Thread(target=load))
    vfork = arg("--vfork")
    lib = ctypes.CDLL(vfork) if vfork else None
    if lib is not None:
        threads.append(threading.Thread(target=worker))
    if spinner is not None:
        say("spinning")
    for t in threads:
        t.start()
    if spinner is not None:
        # ctypes lets go of the GIL for the call, so the other thread starts
        # its load (which may keep the GIL through the constructor) while
        # this one spins.
        check(spin_then_vfork(4000, 0) == 0, "spin_then_vfork failed")
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
