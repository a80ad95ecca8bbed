"""Processes that call the same function, for `rprof run --subprocesses`
and the fork-safety checks (tests/integration/subprocesses_run.rs).

    subprocs.py MODE OUTDIR [--check-clean]

Every process calls `counted` a known number of times and appends that
number to OUTDIR/PID.count, so the test knows what each process and the
whole tree computed. MODE says how the children are made: `fork`
(os.fork, children _exit), `mp-fork`, `mp-forkserver`, `mp-spawn`
(a multiprocessing Pool of 2 with that start method), `executor`
(ProcessPoolExecutor of 2), `subprocess` (subprocess.run of sys.executable
on this file, MODE `leaf`).

`longpool`: a fork Pool of 2 whose tasks call `counted` for a minute
(each writes OUTDIR/spinning-PID first), for Ctrl-C.
`forklater` (for attach): writes OUTDIR/ready, waits for OUTDIR/go,
then forks 2 children. `orphan` (rprof killed): forks child A, which is
profiled, writes OUTDIR/a-ready and waits for OUTDIR/go (the test kills
rprof first); then the parent forks child B (whose announcement fails),
and both verify they run unhooked (A after its agent noticed rprof is
gone); the parent writes `ok` or why not to OUTDIR/result.

With --check-clean, forked children verify they run unhooked (no profiler
running in this process: no C-level profile function on any thread, no
sys.monitoring tool; see _target.leftover_hooks) and exit 3 if not.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def counted(x):
    return x + 1


def work(n):
    s = 0
    for _ in range(n):
        s = counted(s)
    assert s == n
    return s


def record(outdir, n):
    with open(os.path.join(outdir, "%d.count" % os.getpid()), "a") as f:
        f.write("%d\n" % n)


def task(args):
    outdir, n = args
    work(n)
    record(outdir, n)
    return n


def spin(outdir):
    """A pool task that calls counted until interrupted (at most 60 s)."""
    import time
    touch(outdir, "spinning-%d" % os.getpid())
    t = time.monotonic()
    s = 0
    while time.monotonic() - t < 60:
        s = counted(s)
    return s


def forked_child(outdir, n, check_clean):
    code = 0
    try:
        work(n)
        record(outdir, n)
        if check_clean:
            sys.path.insert(0, HERE)
            import _target
            left = _target.leftover_hooks()
            if left:
                sys.stderr.write("child %d is hooked: %s\n" % (os.getpid(), "; ".join(left)))
                code = 3
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 2
    sys.stderr.flush()
    os._exit(code)


def agent_running():
    """Whether the shim's agent thread (named rprof-agent) runs here."""
    tasks = "/proc/self/task"
    for t in os.listdir(tasks):
        try:
            with open(os.path.join(tasks, t, "comm")) as f:
                if f.read().strip() == "rprof-agent":
                    return True
        except OSError:
            pass
    return False


def wait_for(path, limit=120):
    import time
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit("%s never appeared" % path)
        time.sleep(0.01)


def touch(outdir, name):
    with open(os.path.join(outdir, name), "w"):
        pass


def main():
    mode, outdir = sys.argv[1], sys.argv[2]
    check_clean = "--check-clean" in sys.argv[3:]
    if mode == "fork":
        pids = []
        for k in range(3):
            pid = os.fork()
            if pid == 0:
                forked_child(outdir, 1000 * (k + 1), check_clean)
            pids.append(pid)
        work(100)
        record(outdir, 100)
        for p in pids:
            _, status = os.waitpid(p, 0)
            if status != 0:
                sys.exit("child %d ended with wait status %d" % (p, status))
    elif mode.startswith("mp-"):
        import multiprocessing
        ctx = multiprocessing.get_context(mode[3:])
        with ctx.Pool(2) as pool:
            done = pool.map(task, [(outdir, 100 * (i + 1)) for i in range(4)], chunksize=1)
        assert done == [100, 200, 300, 400], done
        work(50)
        record(outdir, 50)
    elif mode == "executor":
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(2) as ex:
            done = list(ex.map(task, [(outdir, 10 * (i + 1)) for i in range(4)]))
        assert done == [10, 20, 30, 40], done
        work(5)
        record(outdir, 5)
    elif mode == "subprocess":
        import subprocess
        subprocess.run([sys.executable, os.path.abspath(__file__), "leaf", outdir], check=True)
        if "--isolated-too" in sys.argv[3:]:
            # Cannot be profiled (-I ignores PYTHONPATH): rprof must say so.
            subprocess.run([sys.executable, "-I", "-c", "import time; time.sleep(2)"], check=True)
        subprocess.run(["true"], check=True)
        work(10)
        record(outdir, 10)
    elif mode == "forklater":
        touch(outdir, "ready")
        wait_for(os.path.join(outdir, "go"))
        pids = []
        for k in range(2):
            pid = os.fork()
            if pid == 0:
                forked_child(outdir, 100 * (k + 1), check_clean)
            pids.append(pid)
        work(7)
        record(outdir, 7)
        for p in pids:
            _, status = os.waitpid(p, 0)
            if status != 0:
                sys.exit("child %d ended with wait status %d" % (p, status))
    elif mode == "orphan":
        import time
        with open(os.path.join(outdir, "main.pid"), "w") as f:
            f.write(str(os.getpid()))
        a = os.fork()
        if a == 0:
            work(300)
            record(outdir, 300)
            touch(outdir, "a-ready")
            wait_for(os.path.join(outdir, "go"))
            # Its agent stops the capture once rprof is silent for 1 s,
            # then exits: wait for that (bounded), then check.
            deadline = time.monotonic() + 60
            while agent_running() and time.monotonic() < deadline:
                time.sleep(0.05)
            forked_child(outdir, 30, True)
        wait_for(os.path.join(outdir, "go"))
        b = os.fork()
        if b == 0:
            forked_child(outdir, 40, True)
        results = [os.waitpid(p, 0)[1] for p in (a, b)]
        # Written whole, then renamed: the test reads it once it exists.
        with open(os.path.join(outdir, "result.tmp"), "w") as f:
            f.write("ok" if results == [0, 0] else "children ended with %r" % (results,))
        os.rename(os.path.join(outdir, "result.tmp"), os.path.join(outdir, "result"))
    elif mode == "longpool":
        # Ctrl-C: the test interrupts the whole process group.
        import multiprocessing
        with multiprocessing.get_context("fork").Pool(2) as pool:
            pool.map(spin, [outdir, outdir], chunksize=1)
    elif mode == "leaf":
        work(777)
        record(outdir, 777)
    else:
        sys.exit("unknown mode %r" % mode)
    print("done")


if __name__ == "__main__":
    main()
