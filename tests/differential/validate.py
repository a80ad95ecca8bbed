#!/usr/bin/env python3
"""Validate the workloads, reference.py and compare.py without rprof.

For every interpreter and workload:
  non-threaded  cProfile twice -> compare (determinism of the workload);
                reference.py --hook setprofile vs cProfile;
                reference.py --hook monitoring vs cProfile (3.12+).
                Together these prove reference.py implements cProfile's
                counting rules and compare.py accepts identical statistics.
  threaded      reference.py twice per hook -> compare --threaded
                (determinism of the per-thread reference), repeated
                --threaded-repeats times; on 3.12+ also the monitoring
                reference vs the setprofile reference ("xhook").

Usage: python validate.py [--python PATH ...] [--only NAME ...]
                          [--threaded-repeats N] [--keep DIR]

Every run uses PYTHONPATH=tests/differential/preload (see README.md).  Run it
with any Python 3; it drives the interpreters given with --python (default:
every supported one found on this machine).  Exit status 0 when every check
passed.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = os.path.normpath(os.path.join(HERE, "..", "workloads"))
PRELOAD = os.path.join(HERE, "preload")
COMPARE = os.path.join(HERE, "compare.py")
REFERENCE = os.path.join(HERE, "reference.py")

DEFAULT_PYTHONS = [
    os.path.expanduser("~/.pyenv/versions/%s/bin/python3" % v)
    for v in ("3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0")
] + ["/usr/bin/python3.11"]

MARKER = re.compile(r"^#\s*rprof-test:\s*(\S+)\s*(.*?)\s*$")


class Workload(object):
    def __init__(self, path, markers):
        self.path = path                 # script path, or package dir for -m
        self.name = os.path.basename(path)
        self.threaded = "threaded" in markers
        self.min_python = tuple(int(x) for x in markers.get("min-python", "3.0").split("."))
        self.exit = int(markers.get("exit", "0"))
        self.args = markers.get("args", "").split()
        self.module = markers.get("module")

    def target(self):
        """Arguments naming the program, relative to WORKLOADS (the cwd)."""
        if self.module:
            return ["-m", self.module]
        return [self.name]


def read_markers(path):
    markers = {}
    with open(path) as f:
        for line in f:
            m = MARKER.match(line)
            if not m:
                if line.startswith("#"):
                    continue
                break
            markers[m.group(1)] = m.group(2)
    return markers


def discover():
    out = []
    for path in sorted(glob.glob(os.path.join(WORKLOADS, "*.py"))):
        out.append(Workload(path, read_markers(path)))
    for main in sorted(glob.glob(os.path.join(WORKLOADS, "*", "__main__.py"))):
        pkg = os.path.dirname(main)
        markers = read_markers(main)
        markers.setdefault("module", os.path.basename(pkg))
        out.append(Workload(pkg, markers))
    return out


# Run inside each interpreter: two code objects with the same
# (co_filename, co_firstlineno, co_name) share one pstats key, and cProfile
# then keeps only one of the two entries (which one depends on memory
# addresses), so workloads must not contain such pairs (e.g. two lambdas or
# nested comprehensions on one line).
DUP_CHECK = r"""
import collections, sys, types
def walk(co):
    yield co
    for c in co.co_consts:
        if isinstance(c, types.CodeType):
            yield from walk(c)
bad = []
for path in sys.argv[1:]:
    with open(path) as f:
        co = compile(f.read(), path, 'exec')
    cnt = collections.Counter((c.co_firstlineno, c.co_name) for c in walk(co))
    bad += ['%s:%d(%s) x%d' % (path, k[0], k[1], n) for k, n in cnt.items() if n > 1]
print('\n'.join(bad))
sys.exit(1 if bad else 0)
"""


def version_of(python):
    out = subprocess.check_output(
        [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
    return tuple(int(x) for x in out.decode().split("."))


def run(cmd, env, expect=None):
    p = subprocess.run(cmd, cwd=WORKLOADS, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    text = p.stdout.decode(errors="replace")
    if expect is not None and p.returncode != expect:
        return False, "exit %d (expected %d): %s" % (p.returncode, expect, text[-600:])
    return True, text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", action="append")
    ap.add_argument("--only", action="append", help="workload file/dir name")
    ap.add_argument("--threaded-repeats", type=int, default=3)
    ap.add_argument("--keep", help="keep .prof files in this directory")
    args = ap.parse_args()

    pythons = [p for p in (args.python or DEFAULT_PYTHONS) if os.path.exists(p)]
    workloads = [w for w in discover() if not args.only or w.name in args.only]
    tmp = args.keep or tempfile.mkdtemp(prefix="rprof-validate-")
    os.makedirs(tmp, exist_ok=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = PRELOAD
    env.pop("PYTHONHASHSEED", None)  # hash randomisation stays on: workloads must not depend on it

    failures = []
    rows = []
    for python in pythons:
        ver = version_of(python)
        vtag = "%d.%d.%d" % ver
        label = vtag if "pyenv" in python else "%s (%s)" % (vtag, python)
        for w in workloads:
            if ver[:2] < w.min_python[:2]:
                rows.append((label, w.name, "skipped (min-python %s)" % ".".join(map(str, w.min_python))))
                print("%-10s %-24s %s" % rows[-1], flush=True)
                continue
            results = []
            files = [w.path] if not w.module else sorted(glob.glob(os.path.join(w.path, "*.py")))
            ok, text = run([python, "-c", DUP_CHECK] + files, env, expect=0)
            results.append("labels %s" % ("ok" if ok else "FAIL"))
            if not ok:
                failures.append("%s %s duplicate (file, line, name) keys: %s" % (label, w.name, text))
            stem = os.path.join(tmp, "%s-%s" % (vtag, w.name.replace(".py", "")))
            target = w.target() + w.args
            # warm-up run, unprofiled: writes .pyc files, checks the exit status
            ok, text = run([python] + target, env, expect=w.exit)
            if not ok:
                results.append("warm FAIL")
                failures.append("%s %s warm-up: %s" % (label, w.name, text))
                rows.append((label, w.name, " ".join(results)))
                continue
            wl_arg = ["--workload", w.path if w.module else w.name]

            def check(tag, rprof, ref, extra=()):
                cmd = [python, COMPARE] + wl_arg + list(extra) + [rprof, ref]
                ok, text = run(cmd, env, expect=0)
                results.append("%s %s" % (tag, "ok" if ok else "FAIL"))
                if not ok:
                    failures.append("%s %s %s:\n%s" % (label, w.name, tag, text))

            def profile(tag, cmd, out, expect):
                ok, text = run(cmd, env, expect=expect)
                if not ok:
                    results.append("%s run FAIL" % tag)
                    failures.append("%s %s %s run: %s" % (label, w.name, tag, text))
                return ok

            hooks = ["setprofile"] + (["monitoring"] if ver >= (3, 12) else [])
            if not w.threaded:
                c1, c2 = stem + ".cprof1.prof", stem + ".cprof2.prof"
                # cProfile swallows SystemExit and exits 0
                if not (profile("cProfile#1", [python, "-m", "cProfile", "-o", c1] + target, c1, 0)
                        and profile("cProfile#2", [python, "-m", "cProfile", "-o", c2] + target, c2, 0)):
                    rows.append((label, w.name, " ".join(results)))
                    continue
                check("det", c2, c1)
                for hook in hooks:
                    r = "%s.ref-%s.prof" % (stem, hook)
                    if profile("ref-" + hook, [python, REFERENCE, "--hook", hook, "-o", r] + target,
                               r, w.exit):
                        check("ref-%s" % hook, r, c1)
            else:
                for hook in hooks:
                    for i in range(args.threaded_repeats):
                        r1 = "%s.ref-%s-%da.prof" % (stem, hook, i)
                        r2 = "%s.ref-%s-%db.prof" % (stem, hook, i)
                        if (profile("ref-" + hook, [python, REFERENCE, "--hook", hook, "-o", r1] + target, r1, w.exit)
                                and profile("ref-" + hook, [python, REFERENCE, "--hook", hook, "-o", r2] + target, r2, w.exit)):
                            check("det-%s#%d" % (hook, i), r2, r1, ["--threaded"])
                if len(hooks) == 2:
                    # the two hooks must agree on the workload's own functions
                    check("xhook", "%s.ref-monitoring-0a.prof" % stem,
                          "%s.ref-setprofile-0a.prof" % stem, ["--threaded"])
            rows.append((label, w.name, " ".join(results)))
            print("%-10s %-24s %s" % rows[-1], flush=True)

    print()
    for f in failures:
        print("FAILURE:", f)
    npass = sum(r[2].count(" ok") for r in rows)
    nfail = sum(r[2].count("FAIL") for r in rows)
    print("%d passed, %d failed" % (npass, nfail))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
