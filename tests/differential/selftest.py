#!/usr/bin/env python3
"""Self-test of compare.py on synthetic profiles: it must accept identical
statistics (modulo the documented artifact and address rules) and reject
every kind of difference it promises to catch.

Usage: python selftest.py      (any Python 3.8+; exit 0 when all cases pass)
"""
import copy
import marshal
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
COMPARE = os.path.join(HERE, "compare.py")

W = "work.py"
MOD = (W, 1, "<module>")
F = (W, 3, "f")
G = (W, 7, "g")
EXEC = ("~", 0, "<built-in method builtins.exec>")
LEN = ("~", 0, "<built-in method builtins.len>")
NEW = ("~", 0, "<built-in method __new__ of type object at 0x7f0011223344>")
DISABLE = ("~", 0, "<method 'disable' of '_lsprof.Profiler' objects>")
TH_RUN = ("/usr/lib/python3/threading.py", 900, "run")
TH_LEN_CALLER = ("/usr/lib/python3/threading.py", 300, "notify_all")


def base():
    # (cc, nc, tt, ct, {caller: (nc, cc, tt, ct)})
    return {
        EXEC: (1, 1, 0.001, 0.010, {}),
        MOD: (1, 1, 0.001, 0.009, {EXEC: (1, 1, 0.001, 0.009)}),
        F: (2, 10, 0.003, 0.005, {MOD: (2, 2, 0.001, 0.004), F: (8, 0, 0.002, 0.003)}),
        G: (5, 5, 0.001, 0.002, {F: (5, 5, 0.001, 0.002)}),
        LEN: (7, 7, 0.0001, 0.0001, {G: (7, 7, 0.0001, 0.0001)}),
        NEW: (2, 2, 0.0001, 0.0001, {MOD: (2, 2, 0.0001, 0.0001)}),
    }


def with_disable(stats):
    s = copy.deepcopy(stats)
    s[DISABLE] = (1, 1, 0.0, 0.0, {})
    return s


def threaded_base():
    s = base()
    s[TH_RUN] = (3, 3, 0.001, 0.006, {})
    cc, nc, tt, ct, callers = s[F]
    callers = dict(callers)
    callers[TH_RUN] = (3, 3, 0.0, 0.001)
    s[F] = (cc + 3, nc + 3, tt, ct, callers)
    return s


def mutate(stats, key, idx=None, value=None, caller=None, edge=None, delete=False):
    s = copy.deepcopy(stats)
    if delete and caller is None:
        del s[key]
        return s
    entry = list(s[key])
    if caller is not None:
        callers = dict(entry[4])
        if delete:
            del callers[caller]
        else:
            callers[caller] = edge
        entry[4] = callers
    else:
        entry[idx] = value
    s[key] = tuple(entry)
    return s


CASES = []


def merged(a, extra):
    out = dict(a)
    out.update(extra)
    return out


def case(name, rprof, ref, expect, must_contain=None, extra=()):
    CASES.append((name, rprof, ref, expect, must_contain, list(extra)))


b = base()
case("identical", b, b, 0)
case("cProfile disable() artifact dropped", b, with_disable(b), 0)
case("disable() with a caller is not an artifact", mutate(with_disable(b), DISABLE, caller=MOD, edge=(1, 1, 0.0, 0.0)),
     mutate(with_disable(b), DISABLE, caller=MOD, edge=(1, 1, 0.0, 0.0)), 0)
case("disable() in rprof only, with a caller",
     mutate(with_disable(b), DISABLE, caller=MOD, edge=(1, 1, 0.0, 0.0)), b, 1, "extra in rprof")
case("addresses normalised",
     merged(mutate(b, NEW, delete=True), {("~", 0, NEW[2].replace("7f0011223344", "55aa")): b[NEW]}), b, 0)
case("ncalls differ", mutate(b, G, 1, 6), b, 1, "ncalls differ for work.py:7(g): rprof 6 vs reference 5")
case("primitive calls differ", mutate(b, F, 0, 3), b, 1, "primitive calls differ for work.py:3(f)")
case("missing function", mutate(b, G, delete=True), b, 1, "missing in rprof: work.py:7(g)")
case("extra function", merged(b, {(W, 20, "h"): (1, 1, 0.0, 0.0, {})}), b, 1, "extra in rprof: work.py:20(h)")
case("missing caller edge", mutate(b, F, caller=F, delete=True), b, 1, "caller edge missing in rprof")
case("extra caller edge", mutate(b, G, caller=MOD, edge=(1, 1, 0.0, 0.0)), b, 1, "extra caller edge in rprof")
case("edge nc differs", mutate(b, F, caller=F, edge=(9, 0, 0.002, 0.003)), b, 1, "caller edge work.py:3(f) -> work.py:3(f) differs")
case("edge cc differs", mutate(b, F, caller=F, edge=(8, 1, 0.002, 0.003)), b, 1, "differs: rprof (nc 8, cc 1)")
case("tottime > cumtime", mutate(b, G, 2, 0.5), b, 1, "tottime > cumtime")
case("negative tottime", mutate(b, G, 2, -0.5), b, 1, "negative tottime")
case("edge tt > ct", mutate(b, G, caller=F, edge=(5, 5, 0.01, 0.002)), b, 1, "tt > ct on edge")
case("same changed counts on both sides", mutate(mutate(b, G, 0, 6), G, 1, 6), mutate(mutate(b, G, 0, 6), G, 1, 6), 0)
case("bad counts", mutate(b, G, 0, 9), mutate(b, G, 0, 9), 1, "bad counts")
case("timing not checked on the reference", b, mutate(b, G, 2, 0.5), 0)
many = dict(b)
for i in range(100):
    many[(W, 100 + i, "x%d" % i)] = (1, 1, 0.0, 0.0, {})
case("report is bounded", many, b, 1, "... and 60 more")
tb = threaded_base()
other = copy.deepcopy(tb)
# threading internals differ between hooks/runs: only the workload matters
other[TH_LEN_CALLER] = (4, 4, 0.0, 0.0, {})
other = mutate(other, TH_RUN, 1, 7)
case("threaded ignores threading internals", tb, other, 0, extra=["--threaded"])
case("unthreaded compare sees them", tb, other, 1, "ncalls differ for /usr/lib/python3/threading.py:900(run)")
case("threaded still compares workload functions", mutate(tb, G, 1, 6), tb, 1, "ncalls differ for work.py:7(g)",
     extra=["--threaded"])
case("threaded compares builtins called by the workload", mutate(tb, LEN, 1, 8), tb, 1,
     "ncalls differ for {built-in method builtins.len}", extra=["--threaded"])
case("threaded ignores edges from threading into workload", mutate(tb, F, caller=TH_RUN, edge=(2, 2, 0.0, 0.0)),
     tb, 0, extra=["--threaded"])


def main():
    tmp = tempfile.mkdtemp(prefix="rprof-selftest-")
    failed = 0
    for i, (name, rprof, ref, expect, must, extra) in enumerate(CASES):
        pa = os.path.join(tmp, "%d-rprof.prof" % i)
        pb = os.path.join(tmp, "%d-ref.prof" % i)
        with open(pa, "wb") as f:
            marshal.dump(rprof, f)
        with open(pb, "wb") as f:
            marshal.dump(ref, f)
        p = subprocess.run([sys.executable, COMPARE, "--workload", W] + extra + [pa, pb],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp)
        out = p.stdout.decode()
        ok = p.returncode == expect and (must is None or must in out)
        if p.returncode == 0 and len(out.strip().splitlines()) != 1:
            ok = False
        print("%s  %s" % ("ok  " if ok else "FAIL", name))
        if not ok:
            failed += 1
            print("    exit %d (expected %d); output:\n    %s"
                  % (p.returncode, expect, out.replace("\n", "\n    ")))
    print("%d passed, %d failed" % (len(CASES) - failed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
