"""What a program sees of how it was started (issue 9, item 14): its
`__main__` globals (names and types, in order), `__loader__`, sys.argv,
sys.path[0], sys.modules, and its signal dispositions and blocked signals
(printed after the modules, since reading them imports `signal`). With an
argument `raise`, it then fails with a traceback two frames deep."""
import sys

g = [(k, type(v).__name__) for k, v in globals().items() if k != "g"]
print("GLOBALS", g)
print("LOADER", type(__loader__).__name__, getattr(__loader__, "name", None), getattr(__loader__, "path", None))
print("ARGV", sys.argv, sys.path[0] == __file__.rpartition("/")[0] or sys.path[0])
print("MODULES", " ".join(sorted(sys.modules)))
import signal  # noqa: E402  (after MODULES, which must not show it)

SIGS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGPIPE", "SIGUSR1", "SIGCHLD")
print("SIGNALS", [(n, str(signal.getsignal(getattr(signal, n)))) for n in SIGS],
      sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])))
sys.stdout.flush()


def fail():
    raise ValueError("boom")


if sys.argv[1:] == ["raise"]:
    fail()
