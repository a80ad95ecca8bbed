"""``python -m cProfile`` with switches of ``cProfile.Profile``.

    python cprofile_with.py builtins=False -o OUT.prof SCRIPT [ARGS]
    python cprofile_with.py subcalls=False -o OUT.prof SCRIPT [ARGS]

The reference for rprof's ``--no-builtins`` and ``--no-subcalls``: the
command line profiler runs exactly as ``python -m cProfile`` (on 3.15
``profiling.tracing``) does, except that every ``Profile`` it makes gets
the given keyword arguments, in ``Profile()`` and again in ``enable()``.

Why both: from 3.14 on, ``_lsprof.Profiler.enable`` takes ``subcalls`` and
``builtins`` with a default of True (Argument Clinic ``bool = True``; before
3.14 the default -1 meant "leave as set"), so ``Profile(builtins=False)``
followed by a plain ``enable()``, which is what ``runctx`` does, records
builtins and caller edges anyway. Passing the switches to ``enable()`` too
gives their documented meaning on every version.
"""
import sys

if sys.version_info >= (3, 15):
    import profiling.tracing as profiler
else:
    import cProfile as profiler


def main():
    kw = {}
    for item in sys.argv[1].split(","):
        name, value = item.split("=")
        if name not in ("builtins", "subcalls") or value not in ("True", "False"):
            sys.exit("usage: cprofile_with.py builtins=False|subcalls=False -o OUT SCRIPT")
        kw[name] = value == "True"
    base = profiler.Profile

    class Profile(base):
        def __init__(self, *args, **kwargs):
            kwargs.update(kw)
            super().__init__(*args, **kwargs)

        def enable(self, *args, **kwargs):
            kwargs.update(kw)
            return super().enable(*args, **kwargs)

    # runctx() looks the class up in its module at call time.
    profiler.Profile = Profile
    sys.argv[:] = [profiler.__file__] + sys.argv[2:]
    profiler.main()


main()
