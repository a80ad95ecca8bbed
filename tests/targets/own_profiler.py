"""Runs with its own Python-level profiler (`sys.setprofile(my_profiler)`),
a second thread with another one (`helper_profiler`), and a thread profile
hook (`threading.setprofile(my_thread_profiler)`).

After the first SIGUSR1 (sent once rprof has detached) it checks that all
three are still installed and still called. With `strict` as argument (3.12+,
where rprof's monitoring hook coexists with sys.setprofile) it also checks
that my_profiler saw every call to `mark`, including those during the
capture."""
import sys
import threading
import time

from _target import check, check_clean, install, say, usr1

seen = {"mark": 0, "thread_mark": 0, "helper_mark": 0}


def mark():
    return 1


def thread_mark():
    return 2


def my_profiler(frame, event, arg):
    if event == "call" and frame.f_code is mark.__code__:
        seen["mark"] += 1


def my_thread_profiler(frame, event, arg):
    if event == "call" and frame.f_code is thread_mark.__code__:
        seen["thread_mark"] += 1


def helper_profiler(frame, event, arg):
    if event == "call" and frame.f_code is helper_mark.__code__:
        seen["helper_mark"] += 1


def helper_mark():
    return 3


def helper(result):
    """A second thread with a profile function of its own."""
    sys.setprofile(helper_profiler)
    result.append("started")
    while usr1() < 1:
        helper_mark()
        time.sleep(0.005)
    if sys.getprofile() is not helper_profiler:
        result.append("helper thread: sys.getprofile() is %r after detach" % (sys.getprofile(),))
        return
    before = seen["helper_mark"]
    for _ in range(10):
        helper_mark()
    if seen["helper_mark"] != before + 10:
        result.append("helper_profiler not called after detach")
    sys.setprofile(None)
    result.append("done")


def thread_profile_hook():
    getter = getattr(threading, "getprofile", None)  # 3.10+
    if getter is not None:
        return getter()
    return threading._profile_hook


def main():
    strict = sys.argv[1:] == ["strict"]
    install()
    sys.setprofile(my_profiler)
    threading.setprofile(my_thread_profiler)
    for _ in range(10):
        mark()
    check(seen["mark"] == 10, "own profiler not working before attach: %r" % seen)
    made = 10
    helper_result = []
    h = threading.Thread(target=helper, args=(helper_result,), name="helper")
    h.start()
    while not helper_result:
        time.sleep(0.001)
    say("ready")
    while usr1() < 1:
        mark()
        made += 1
        time.sleep(0.005)
    check(sys.getprofile() is my_profiler, "sys.getprofile() is %r after detach" % (sys.getprofile(),))
    hook = thread_profile_hook()
    check(hook is my_thread_profiler, "threading profile hook is %r after detach" % (hook,))
    if strict:
        check(seen["mark"] == made, "my_profiler saw %d of %d calls" % (seen["mark"], made))
    before = seen["mark"]
    for _ in range(10):
        mark()
    check(seen["mark"] == before + 10, "my_profiler not called after detach: %d -> %d" % (before, seen["mark"]))
    h.join(30)
    check(helper_result == ["started", "done"], "helper thread: %r" % (helper_result,))
    t = threading.Thread(target=thread_mark)
    t.start()
    t.join(30)
    check(seen["thread_mark"] == 1, "my_thread_profiler saw %d calls in a new thread" % seen["thread_mark"])
    sys.setprofile(None)
    threading.setprofile(None)
    check_clean()
    say("ok", made, seen)


main()
