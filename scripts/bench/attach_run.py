"""Runs a benchmark workload under `rprof attach`, for scripts/bench.py.

    python attach_run.py [--rprof-arg=ARG]... RPROF PYTHON OUTFILE SCRIPT [ARGS...]

Starts PYTHON on a tiny launcher that prints "ready" and waits for one
byte on stdin; attaches `RPROF attach PID -o OUTFILE` to it; once rprof
says the hook is live, sends the byte, and the launcher runs SCRIPT as
__main__ (it times its own work and prints BENCH_SECONDS). When SCRIPT
ends, the process exits and rprof writes what it captured. The workload's
stdout is passed through on stdout and rprof's messages on stderr, so the
harness reads this like any other configuration. Every process it starts
is ended by PID.
"""
import os
import signal
import subprocess
import sys

LAUNCHER = r"""
import runpy, sys
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.buffer.read(1)
script = sys.argv[1]
sys.argv[:] = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


def main():
    argv = sys.argv[1:]
    extra = []
    while argv and argv[0].startswith("--rprof-arg="):
        extra.append(argv.pop(0)[len("--rprof-arg="):])
    rprof, python, outfile, script = argv[:4]
    args = argv[4:]
    target = subprocess.Popen([python, "-c", LAUNCHER, script] + args,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    rp = None
    try:
        if target.stdout.readline().strip() != b"ready":
            sys.exit("attach_run: the launcher did not start")
        rp = subprocess.Popen([rprof, "attach", str(target.pid), "-o", outfile] + extra,
                              stderr=subprocess.PIPE)
        err = []
        for line in rp.stderr:
            err.append(line)
            if b"attached to PID" in line:
                break
        else:
            sys.stderr.write(b"".join(err).decode("utf-8", "replace"))
            sys.exit("attach_run: rprof attach failed")
        target.stdin.write(b"g")
        target.stdin.flush()
        out = target.stdout.read()
        rc = target.wait()
        err.extend(rp.stderr.readlines())
        rrc = rp.wait()
        sys.stdout.write(out.decode("utf-8", "replace"))
        sys.stderr.write(b"".join(err).decode("utf-8", "replace"))
        sys.exit(rc or rrc)
    finally:
        for p in (target, rp):
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()


if __name__ == "__main__":
    main()
