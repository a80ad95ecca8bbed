#!/usr/bin/env python3
"""The target's memory while rprof is attached, over a long capture.

    python3 scripts/bench_memory.py [--minutes 10] [--python PATH] [--markdown FILE]

Starts the example service (examples/service.py --forever), samples its
resident memory (VmRSS, and the shared-memory part RssShmem) every few
seconds before, during and after a capture of the given length, and
reports the growth. rprof's part of the target's memory is the ring (a
shared mapping, 32 MiB by default, resident once the writer has gone round
it), the shim library, and the interned function table (a few dozen bytes
per distinct function); it must not grow with the length of the capture.
The service is ended by PID.
"""
import argparse
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0])  # kB
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--python", default="python3")
    ap.add_argument("--rprof", default=os.path.join(ROOT, "target", "release", "rprof"))
    ap.add_argument("--every", type=float, default=5.0)
    ap.add_argument("--markdown")
    args = ap.parse_args()
    if not os.path.exists(args.rprof):
        subprocess.run(["cargo", "build", "--release", "-p", "rprof"], cwd=ROOT, check=True)
    svc = subprocess.Popen([args.python, os.path.join(ROOT, "examples", "service.py"), "--forever"],
                           stdout=subprocess.DEVNULL)
    try:
        time.sleep(3)
        before = rss(svc.pid)
        seconds = args.minutes * 60
        rp = subprocess.Popen([args.rprof, "attach", str(svc.pid), "--duration", str(seconds),
                               "-o", os.devnull], stderr=subprocess.PIPE, text=True)
        samples = []
        t0 = time.time()
        while rp.poll() is None:
            time.sleep(args.every)
            if rp.poll() is None:
                samples.append((time.time() - t0, rss(svc.pid)))
        err = rp.stderr.read()
        time.sleep(1)
        after = rss(svc.pid)
        alive = svc.poll() is None
    finally:
        if svc.poll() is None:
            os.kill(svc.pid, signal.SIGKILL)
        svc.wait()
    summary = [l for l in err.splitlines() if "events" in l or "attached" in l or "detached" in l]
    half = [s for t, s in samples if t >= seconds / 2]
    first_half = [s for t, s in samples if t < seconds / 2]

    def mb(kb):
        return "%.1f MiB" % (kb / 1024)

    lines = [
        "| | VmRSS | RssAnon | RssShmem |",
        "|---|---|---|---|",
        "| before attach | %s | %s | %s |" % (mb(before["VmRSS"]), mb(before["RssAnon"]), mb(before["RssShmem"])),
    ]
    if first_half:
        m = max(first_half, key=lambda s: s["VmRSS"])
        lines.append("| max, first half of capture | %s | %s | %s |" % (mb(m["VmRSS"]), mb(m["RssAnon"]), mb(m["RssShmem"])))
    if half:
        m = max(half, key=lambda s: s["VmRSS"])
        lines.append("| max, second half of capture | %s | %s | %s |" % (mb(m["VmRSS"]), mb(m["RssAnon"]), mb(m["RssShmem"])))
    lines.append("| after detach | %s | %s | %s |" % (mb(after["VmRSS"]), mb(after["RssAnon"]), mb(after["RssShmem"])))
    text = "%.1f-minute capture of examples/service.py (%s):\n\n%s\n\n%s\n\ntarget alive after: %s\n" % (
        args.minutes, args.python, "\n".join(lines), "\n".join("    " + s for s in summary), alive)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if not alive:
        sys.exit(1)


if __name__ == "__main__":
    main()
