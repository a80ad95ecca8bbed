"""Runs a workload the way the attach differential test needs it.

    python attach_runner.py attach SCRIPT [ARGS]
    python attach_runner.py cprofile OUT.prof SCRIPT [ARGS]
    python attach_runner.py --kw=builtins=False cprofile OUT.prof SCRIPT [ARGS]

Both modes prepare the script exactly as ``python -m cProfile`` does
(sys.argv, sys.path[0], compiled code, fresh globals), then:

* ``attach``: prints ``ready`` and blocks in one builtin call (reading a
  byte from stdin) while rprof attaches; when the byte arrives it runs the
  workload with ``exec``, prints ``done`` and blocks again in the same
  builtin while rprof detaches; a third byte (or EOF) ends it. rprof sees
  the first read return with an empty stack (ignored, as cProfile ignores
  returns of frames older than the capture), the workload, the ``done``
  output, and the second read, still open when it detaches (flushed as one
  call with no caller: ``compare.py --harness-call``).
* ``cprofile``: the same, with ``cProfile.Profile().enable()`` where the
  first read returns and ``disable()`` where the second read starts, and
  the result dumped to OUT.prof. This is the reference. ``--kw=NAME=BOOL``
  (``builtins`` or ``subcalls``) is passed to ``Profile()``: the reference
  for rprof's ``--no-builtins`` and ``--no-subcalls`` (also given to
  ``enable()``: from 3.14 on, its own defaults of True would undo them;
  see cprofile_with.py).
"""
import os
import sys


def main():
    kw = {}
    if sys.argv[1].startswith("--kw="):
        name, value = sys.argv.pop(1)[len("--kw="):].split("=")
        kw[name] = value == "True"
    mode = sys.argv[1]
    rest = sys.argv[2:]
    out = None
    if mode == "cprofile":
        out, rest = rest[0], rest[1:]
    script, args = rest[0], rest[1:]
    sys.argv[:] = [script] + args
    sys.path.insert(0, os.path.dirname(script))
    with open(script, "rb") as f:
        code = compile(f.read(), script, "exec")
    globs = {"__file__": script, "__name__": "__main__",
             "__package__": None, "__cached__": None}
    ctl = sys.stdin.buffer
    if mode == "attach":
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        ctl.read(1)
        try:
            exec(code, globs)
        except SystemExit:
            pass
        sys.stdout.write("done\n")
        sys.stdout.flush()
        ctl.read(1)
        ctl.read(1)
    else:
        # From 3.15 on the deterministic profiler is profiling.tracing
        # (cProfile is an alias of it); the reference uses its real name.
        if sys.version_info >= (3, 15):
            from profiling.tracing import Profile
        else:
            from cProfile import Profile
        pr = Profile(**kw)
        pr.enable(**kw)
        try:
            exec(code, globs)
        except SystemExit:
            pass
        sys.stdout.write("done\n")
        sys.stdout.flush()
        pr.disable()
        pr.dump_stats(out)


main()
