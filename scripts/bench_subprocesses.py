#!/usr/bin/env python3
"""Attach latency of `rprof attach --subprocesses` for process trees of 1,
4 and 16 workers.

    python3 scripts/bench_subprocesses.py [--reps 3] [--python PATH] [--gunicorn DIR]

Two kinds of tree, each started fresh per repetition and ended by PID:

* fork: tests/subprocesses/forktree.py, N forked idle workers (each calls
  a function and sleeps 50 ms in a loop) below an idle parent, and one
  non-Python child (`sleep`, skipped);
* gunicorn: a gunicorn master with N sync workers serving
  tests/subprocesses/app.py (idle), if gunicorn is found (DIR defaults to
  target/test-tools/gunicorn, installed by scripts/test-tools.sh).

Measured: wall time from starting `rprof attach --subprocesses PID` to its
`attached to K processes` line (every process then records), and the
latency rprof itself prints on that line; median and min-max. "1 worker"
means the parent plus 1 worker (2 processes), and so on.
"""
import argparse
import glob
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RPROF = os.path.join(ROOT, "target", "release", "rprof")
LINE = re.compile(r"attached to (\d+) process(?:es)? \(PID \d+ and \d+ below it\) in (\d+) ms")


def children(pid):
    out = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
        with open(task) as f:
            out += [int(c) for c in f.read().split()]
    return out


def attach(pid, want):
    start = time.monotonic()
    p = subprocess.Popen(
        [RPROF, "attach", "--subprocesses", "-d", "0.3", "-o", os.devnull, str(pid)],
        stderr=subprocess.PIPE,
        text=True,
    )
    wall = None
    reported = None
    for line in p.stderr:
        m = LINE.search(line)
        if m and wall is None:
            wall = time.monotonic() - start
            reported = int(m.group(2)) / 1e3
            got = int(m.group(1))
            if got != want:
                print(f"  attached to {got} processes, expected {want}", file=sys.stderr)
    p.wait(60)
    if wall is None:
        raise SystemExit(f"rprof did not attach (status {p.returncode})")
    return wall, reported


def fork_tree(python, n, tmp):
    quit_file = os.path.join(tmp, f"quit-{n}-{time.monotonic_ns()}")
    p = subprocess.Popen(
        [python, os.path.join(ROOT, "tests/subprocesses/forktree.py"), str(n), "0.05", quit_file],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout.readline().strip() == "ready"

    def end():
        open(quit_file, "w").close()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    return p.pid, n + 1, end


def gunicorn_tree(python, n, tmp, gpath):
    sock = os.path.join(tmp, f"g-{n}-{time.monotonic_ns()}.sock")
    env = dict(os.environ, PYTHONPATH=f"{gpath}:{os.path.join(ROOT, 'tests/subprocesses')}")
    p = subprocess.Popen(
        [python, "-m", "gunicorn", "--workers", str(n), "--bind", f"unix:{sock}", "app:app"],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while len(children(p.pid)) < n or not os.path.exists(sock):
        if time.monotonic() > deadline:
            p.kill()
            raise SystemExit("gunicorn did not start")
        time.sleep(0.05)
    time.sleep(1.0)  # let the workers finish booting

    def end():
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    return p.pid, n + 1, end


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--gunicorn", default=os.path.join(ROOT, "target/test-tools/gunicorn"))
    args = ap.parse_args()
    if not os.path.exists(RPROF):
        raise SystemExit("build first: cargo build --release")
    kinds = [("fork", fork_tree)]
    if os.path.exists(os.path.join(args.gunicorn, "gunicorn")):
        kinds.append(("gunicorn", lambda py, n, tmp: gunicorn_tree(py, n, tmp, args.gunicorn)))
    print(f"python: {args.python}; load average {os.getloadavg()[0]:.1f}")
    print("| tree | workers | processes | attach wall s, median [min-max] | rprof's own figure, median |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in kinds:
            for n in (1, 4, 16):
                walls, reported = [], []
                for _ in range(args.reps):
                    pid, procs, end = make(args.python, n, tmp)
                    try:
                        w, r = attach(pid, procs)
                    finally:
                        end()
                    walls.append(w)
                    reported.append(r)
                print(
                    f"| {name} | {n} | {procs} | {statistics.median(walls):.2f} "
                    f"[{min(walls):.2f}-{max(walls):.2f}] | {statistics.median(reported):.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
