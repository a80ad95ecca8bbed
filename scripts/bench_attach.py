#!/usr/bin/env python3
"""Attach and detach latency of `rprof attach`, side by side with gdb-based
injection (what pyrasite and memray's attach do: gdb attaches, calls
dlopen in the target, detaches), on the same targets in the same run.

    python3 scripts/bench_attach.py [--reps 5] [--python PATH]... [--markdown FILE]

For every interpreter found (pyenv's versions and /usr/bin/python3.N, 3.8+)
and two targets -- an idle service (examples/service.py --forever, which
sleeps between batches of requests) and a CPU-bound pure-Python loop --
each repetition measures, interleaved:

* rprof attach: wall time from starting `rprof attach PID` to its
  `attached to PID` line (the hook is live on every thread then), and the
  detach time rprof reports (stop requested -> end of stream received);
* gdb: wall time of `gdb -p PID -batch -ex 'call (void*)dlopen(LIB, 2)'`,
  loading a copy of rprof's shim under another name (so that it does not
  interfere with rprof's own reuse of its loaded shim). This is only the
  injection; gdb-based tools then still have to start their profiler.

Medians with min-max are reported. Every target is ended by PID.
"""
import argparse
import glob
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BUSY = """
import sys
def f(x):
    return x + 1
sys.stdout.write("ready\\n"); sys.stdout.flush()
n = 0
while True:
    n = f(n)
"""


def interpreters(explicit):
    if explicit:
        cands = explicit
    else:
        root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
        cands = sorted(glob.glob(os.path.join(root, "versions", "*", "bin", "python3")))
        cands += sorted(p for p in glob.glob("/usr/bin/python3.*") if re.search(r"python3\.\d+$", p))
    out = []
    for p in cands:
        try:
            v = subprocess.run([p, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            continue
        if not v or tuple(map(int, v.split(".")[:2])) < (3, 8):
            print("skipping %s (%s): unsupported" % (p, v or "does not run"), file=sys.stderr)
            continue
        out.append((v, p))
    if not out:
        sys.exit("no supported Python found")
    return out


def start_target(python, kind, tmp):
    if kind == "idle service":
        cmd = [python, os.path.join(ROOT, "examples", "service.py"), "--forever"]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    else:
        script = os.path.join(tmp, "busy.py")
        with open(script, "w") as f:
            f.write(BUSY)
        p = subprocess.Popen([python, script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        p.stdout.readline()
        time.sleep(0.2)
    return p


def stop_target(p):
    if p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
    p.wait()


def rprof_once(rprof, pid):
    t0 = time.perf_counter()
    proc = subprocess.Popen([rprof, "attach", str(pid), "--duration", "0.2", "-o", os.devnull],
                            stderr=subprocess.PIPE, text=True)
    attach = None
    detach = None
    for line in proc.stderr:
        if attach is None and "attached to PID" in line:
            attach = time.perf_counter() - t0
        m = re.search(r"detached from PID \d+ in ([\d.]+) ms", line)
        if m:
            detach = float(m.group(1)) / 1e3
    proc.wait()
    if proc.returncode != 0 or attach is None:
        raise RuntimeError("rprof attach failed (exit %s)" % proc.returncode)
    return attach, detach


GDB_NOTES = set()


def gdb_once(gdb, pid, lib):
    t0 = time.perf_counter()
    r = subprocess.run([gdb, "-p", str(pid), "-batch", "-nx", "-q",
                        "-ex", "set debuginfod enabled off",
                        "-ex", 'call (void*)dlopen("%s", 2)' % lib],
                       capture_output=True, text=True)
    took = time.perf_counter() - t0
    out = r.stdout + r.stderr
    if "detached" not in out:
        raise RuntimeError("gdb did not attach (exit %d): %s" % (r.returncode, out[-300:]))
    if r.returncode != 0:
        # gdb attached and detached, but its inferior call failed; on some
        # VMs gdb cannot restore the AVX-512 register state ("Couldn't write
        # extended state status"). The time still covers attach, the
        # attempted call and detach: a lower bound for gdb injection.
        last = [l for l in out.splitlines() if l.strip()][-2:]
        GDB_NOTES.add(" / ".join(last))
    return took


def fmt(xs, scale=1e3):
    xs = [x * scale for x in xs]
    return "%.1f [%.1f-%.1f]" % (statistics.median(xs), min(xs), max(xs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--python", action="append", default=[])
    ap.add_argument("--rprof", default=os.path.join(ROOT, "target", "release", "rprof"))
    ap.add_argument("--markdown")
    args = ap.parse_args()
    if not os.path.exists(args.rprof):
        subprocess.run(["cargo", "build", "--release", "-p", "rprof"], cwd=ROOT, check=True)
    gdb = shutil.which("gdb")
    tmp = tempfile.mkdtemp(prefix="rprof-bench-")
    # A copy of the shim, for gdb to load.
    shim = os.path.join(tmp, "gdb-loaded-copy.so")
    built = glob.glob(os.path.join(ROOT, "target", "release", "build", "rprof-controller-*", "out",
                                   "librprof_injector.so"))
    shutil.copy(max(built, key=os.path.getmtime), shim)
    rows = []
    for version, python in interpreters(args.python):
        for kind in ("idle service", "busy loop"):
            att, det, g = [], [], []
            rprof_ok = gdb_ok = 0
            for _ in range(args.reps):
                # A fresh target per repetition: gdb's injection may not
                # leave it in a usable state.
                target = start_target(python, kind, tmp)
                try:
                    a, d = rprof_once(args.rprof, target.pid)
                    att.append(a)
                    det.append(d)
                    time.sleep(0.1)
                    rprof_ok += target.poll() is None
                    if gdb:
                        g.append(gdb_once(gdb, target.pid, shim))
                        time.sleep(0.1)
                        gdb_ok += target.poll() is None
                finally:
                    stop_target(target)
            row = (version, kind, fmt(att), fmt(det), fmt(g) if g else "n/a",
                   "%.0f" % (statistics.median(g) / statistics.median(att)) if g else "n/a",
                   "%d/%d" % (rprof_ok, args.reps), "%d/%d" % (gdb_ok, len(g)))
            rows.append(row)
            print("  ".join(row), flush=True)
    header = ("| Python | target | rprof attach (ms) | rprof detach (ms) | gdb injection (ms) "
              "| gdb ÷ rprof | alive after rprof | alive after gdb |\n|---|---|---|---|---|---|---|---|\n")
    table = header + "".join("| " + " | ".join(r) + " |\n" for r in rows)
    if GDB_NOTES:
        table += "\ngdb's inferior call failed on this machine (%s); its times cover attach, the attempted call and detach.\n" % "; ".join(sorted(GDB_NOTES))
    print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
