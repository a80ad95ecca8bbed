#!/usr/bin/env python3
"""Compare an rprof profile with a reference profile (cProfile or reference.py).

Usage:
    python compare.py --workload PATH [--threaded] [--restrict]
                      [--reference-name NAME] RPROF.prof REFERENCE.prof

Both files are loaded with ``pstats.Stats``.  After dropping profiler
artifacts (rules below) the two must have

  * the same set of function keys ``(file, line, name)``,
  * the same ncalls and primitive calls per key,
  * the same caller edges, with the same (nc, cc) per edge.

Times are never compared between the files (they are different runs), but the
rprof file must be internally consistent: for every entry
``0 <= tottime <= cumtime`` and for every caller edge ``0 <= tt <= ct`` (up to
a tiny epsilon for float rounding); count fields must be sane in both files
(``0 <= cc <= nc`` for entries and edges, and an entry's callers add up to at
most its ncalls).

On a match: one summary line, exit 0.  On a mismatch: a bounded report (the
first ``--max-report`` differences, 40 by default), exit 1.  Unreadable input
or bad usage: exit 2.

--threaded
    Compare only the functions defined in the workload file(s), plus the
    builtins that are called by at least one of those functions (in either
    profile), and only the caller edges whose two ends are both in that set.
    Why: the threading module's own bootstrap (``Thread._bootstrap``,
    ``_bootstrap_inner``, ``Event.set``/``wait``, ``_delete``, lock methods...)
    runs partly before a ``threading.setprofile`` hook is installed in the new
    thread and entirely under a ``sys.monitoring`` tool, so which of its frames
    are seen depends on the hook mechanism; and how many times the main thread
    goes through ``Condition.wait`` depends on thread timing.  None of that is
    the workload.  (Threaded workloads therefore avoid calling, themselves,
    the builtins that threading's machinery calls a timing-dependent number of
    times: lock methods, deque.append, _thread.allocate_lock.)
--restrict
    The same restriction without the threaded label: for comparing ``-m``
    runs made by launchers that find and import the module differently.
--workload PATH
    The workload script (or, for ``-m`` workloads, the package directory: all
    files under it count as workload files).
"""
import argparse
import os
import pstats
import re
import sys

MAX_REPORT_DEFAULT = 40
EPS_ABS = 1e-9
EPS_REL = 1e-9

# ---------------------------------------------------------------------------
# Artifact rules.  Each rule removes something that is provably produced by
# the profiler's own operation, never by the profiled program.  Anything not
# listed here is compared.
#
# Rule 1 -- cProfile's disable() call.
#   ``cProfile.Profile.runctx`` does ``enable(); exec(...); disable()``.  The
#   call to ``disable`` is itself seen as a builtin call (a c_call event, or a
#   CALL event on 3.12+) and is then closed by ``flush_unmatched`` inside
#   ``disable``, leaving the entry
#       ('~', 0, "<method 'disable' of '_lsprof.Profiler' objects>")
#   with exactly one call and no caller (it runs after the script's exec has
#   returned, so the stack is empty).  rprof and reference.py have no such
#   call.  The rule is strict: the entry is dropped only when it has no
#   callers and ncalls == 1, i.e. when it is that top-level call; a workload
#   that itself drives cProfile would keep it.
DISABLE_ARTIFACT = ("~", 0, "<method 'disable' of '_lsprof.Profiler' objects>")

# Builtin labels may embed an object address, e.g.
#   "<built-in method __new__ of type object at 0x7f3a2b1c40>"
# (repr of a bound builtin method found by normalizeUserObj).  Addresses
# differ per process, so every hex address in a key's name is replaced by
# "0x?" before comparison.  If two keys of one profile collapse to the same
# normalised key their counts and caller edges are summed (and this is
# reported), which is what pstats itself does with equal keys.
HEX_RE = re.compile(r"0x[0-9a-fA-F]+")


def norm_func(func):
    f, line, name = func
    return (f, line, HEX_RE.sub("0x?", name))


def fmt(func):
    return pstats.func_std_string(func)


class Profile(object):
    def __init__(self, path, role):
        self.path = path
        self.role = role
        self.notes = []
        try:
            raw = pstats.Stats(path).stats
        except Exception as exc:  # noqa: BLE001 - report any load failure
            raise SystemExit("compare.py: cannot load %s profile %s: %s"
                             % (role, path, exc))
        self.raw = raw
        self.stats = self._normalise(raw)

    def _normalise(self, raw):
        out = {}
        merged = 0
        for func, (cc, nc, tt, ct, callers) in raw.items():
            key = norm_func(func)
            ncallers = {}
            for caller, val in callers.items():
                ck = norm_func(caller)
                if ck in ncallers:
                    a = ncallers[ck]
                    val = tuple(x + y for x, y in zip(a, val))
                ncallers[ck] = tuple(val)
            if key in out:
                merged += 1
                pcc, pnc, ptt, pct, pcallers = out[key]
                for ck, val in ncallers.items():
                    if ck in pcallers:
                        val = tuple(x + y for x, y in zip(pcallers[ck], val))
                    pcallers[ck] = val
                out[key] = (pcc + cc, pnc + nc, ptt + tt, pct + ct, pcallers)
            else:
                out[key] = (cc, nc, tt, ct, ncallers)
        if merged:
            self.notes.append("%s: %d keys merged after address normalisation"
                              % (self.role, merged))
        return out

    def drop_artifacts(self, extra=()):
        dropped = []
        s = self.stats
        for key in (DISABLE_ARTIFACT,) + tuple(extra):
            if key in s:
                cc, nc, tt, ct, callers = s[key]
                if not callers and nc == 1:
                    del s[key]
                    dropped.append(key)
        return dropped


def same_file(a, b):
    if a == b:
        return True
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def workload_matcher(path):
    """Return a predicate telling whether a profile's file name belongs to
    the workload."""
    if os.path.isdir(path):
        root = os.path.realpath(path)

        def match(f):
            if f == "~" or f.startswith("<"):
                return False
            rp = os.path.realpath(f)
            return rp == root or rp.startswith(root + os.sep)
        return match
    cache = {}

    def match_file(f):
        if f == "~" or f.startswith("<"):
            return False
        if f not in cache:
            cache[f] = same_file(f, path)
        return cache[f]
    return match_file


def restrict(a, b, is_workload):
    """The --threaded / --restrict filter (see the module docstring)."""
    keys = set(a) | set(b)
    wl = set(k for k in keys if is_workload(k[0]))
    builtins = set()
    for prof in (a, b):
        for k, v in prof.items():
            if k[:2] == ("~", 0) and any(c in wl for c in v[4]):
                builtins.add(k)
    keep = wl | builtins

    def cut(prof):
        out = {}
        for k, (cc, nc, tt, ct, callers) in prof.items():
            if k in keep:
                out[k] = (cc, nc, tt, ct,
                          dict((c, e) for c, e in callers.items() if c in keep))
        return out
    return cut(a), cut(b), len(wl), len(builtins)


def check_counts(stats, role, problems):
    """Sanity of the count fields (applies to both files)."""
    for func in sorted(stats):
        cc, nc, tt, ct, callers = stats[func]
        if not (0 <= cc <= nc):
            problems.append("%s: bad counts for %s: cc %r, nc %r"
                            % (role, fmt(func), cc, nc))
        total = 0
        for caller in sorted(callers):
            enc, ecc = callers[caller][0], callers[caller][1]
            total += enc
            if not (0 <= ecc <= enc):
                problems.append("%s: bad counts on edge %s -> %s: nc %r, cc %r"
                                % (role, fmt(caller), fmt(func), enc, ecc))
        if total > nc:
            problems.append("%s: callers of %s add up to %d calls, more than its ncalls %d"
                            % (role, fmt(func), total, nc))


def check_times(stats, role, problems):
    """0 <= tottime <= cumtime per entry and 0 <= tt <= ct per caller edge."""
    def le(x, y):
        return x <= y + EPS_ABS + EPS_REL * abs(y)
    for func in sorted(stats):
        cc, nc, tt, ct, callers = stats[func]
        if not le(0.0, tt):
            problems.append("%s: negative tottime for %s: %r" % (role, fmt(func), tt))
        if not le(tt, ct):
            problems.append("%s: tottime > cumtime for %s: %r > %r"
                            % (role, fmt(func), tt, ct))
        for caller in sorted(callers):
            ett, ect = callers[caller][2], callers[caller][3]
            if not le(0.0, ett):
                problems.append("%s: negative tt on edge %s -> %s: %r"
                                % (role, fmt(caller), fmt(func), ett))
            if not le(ett, ect):
                problems.append("%s: tt > ct on edge %s -> %s: %r > %r"
                                % (role, fmt(caller), fmt(func), ett, ect))


def diff(a, b, an, bn):
    """Differences between two (already filtered) stats dicts."""
    out = []
    for func in sorted(set(b) - set(a)):
        out.append("missing in %s: %s (%s ncalls %s)" % (an, fmt(func), bn, b[func][1]))
    for func in sorted(set(a) - set(b)):
        out.append("extra in %s: %s (%s ncalls %s; absent from %s)"
                   % (an, fmt(func), an, a[func][1], bn))
    common = sorted(set(a) & set(b))
    for func in common:
        acc, anc = a[func][0], a[func][1]
        bcc, bnc = b[func][0], b[func][1]
        if anc != bnc:
            out.append("ncalls differ for %s: %s %d vs %s %d" % (fmt(func), an, anc, bn, bnc))
        if acc != bcc:
            out.append("primitive calls differ for %s: %s %d vs %s %d"
                       % (fmt(func), an, acc, bn, bcc))
    for func in common:
        ac, bc = a[func][4], b[func][4]
        for caller in sorted(set(bc) - set(ac)):
            out.append("caller edge missing in %s: %s -> %s (%s nc %d)"
                       % (an, fmt(caller), fmt(func), bn, bc[caller][0]))
        for caller in sorted(set(ac) - set(bc)):
            out.append("extra caller edge in %s: %s -> %s (%s nc %d)"
                       % (an, fmt(caller), fmt(func), an, ac[caller][0]))
        for caller in sorted(set(ac) & set(bc)):
            (anc, acc), (bnc, bcc) = ac[caller][:2], bc[caller][:2]
            if (anc, acc) != (bnc, bcc):
                out.append("caller edge %s -> %s differs: %s (nc %d, cc %d) vs %s (nc %d, cc %d)"
                           % (fmt(caller), fmt(func), an, anc, acc, bn, bnc, bcc))
    return out


def hints(a, b, an, bn, is_workload):
    """Likely causes of a mismatch, printed after the report."""
    out = []

    def loads(prof):
        # importlib._bootstrap._find_and_load runs once per module actually
        # loaded (not for a sys.modules hit)
        return sum(v[1] for k, v in prof.items() if k[2] == "_find_and_load")
    la, lb = loads(a), loads(b)
    if la != lb:
        out.append("hint: %s loaded %d module(s) inside the profiled region, %s %d: "
                   "which modules a launcher pre-imports leaks into the profile; run "
                   "every profiler with PYTHONPATH=tests/differential/preload "
                   "(see README.md)" % (an, la, bn, lb))
    files_a = set(k[0] for k in a if k[0] != "~")
    files_b = set(k[0] for k in b if k[0] != "~")
    for fa in sorted(files_a - files_b):
        for fb in sorted(files_b - files_a):
            if fa != fb and same_file(fa, fb):
                out.append("hint: the same file is named differently: %s %r vs %s %r"
                           % (an, fa, bn, fb))
    if not any(is_workload(f) for f in files_a | files_b):
        out.append("hint: no function of the workload %r was found in either profile"
                   % (ARGS.workload,))
    return out


def main(argv=None):
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workload", required=True,
                   help="the workload script (or package directory for -m)")
    p.add_argument("--threaded", action="store_true",
                   help="compare only workload functions and their builtins")
    p.add_argument("--restrict", action="store_true",
                   help="apply the --threaded restriction to a non-threaded run")
    p.add_argument("--reference-name", default=None,
                   help="name of the reference in the report (default: cProfile "
                        "if the file has cProfile's disable() entry, else reference)")
    p.add_argument("--harness-call", action="append", default=[], metavar="LABEL",
                   help="Rule 2: a builtin the attach harness is blocked in when "
                        "rprof detaches (open, so flushed as one call with no "
                        "caller, like cProfile's own disable()); dropped from the "
                        "rprof profile under the same conditions as Rule 1")
    p.add_argument("--max-report", type=int, default=MAX_REPORT_DEFAULT)
    p.add_argument("rprof")
    p.add_argument("reference")
    ARGS = args = p.parse_args(argv)

    a = Profile(args.rprof, "rprof")
    b = Profile(args.reference, "reference")
    an = "rprof"
    bn = args.reference_name or ("cProfile" if DISABLE_ARTIFACT in b.stats else "reference")
    b.role = bn

    harness = tuple(("~", 0, label) for label in args.harness_call)
    dropped = a.drop_artifacts(harness) + b.drop_artifacts()
    is_workload = workload_matcher(args.workload)

    problems = []
    check_counts(a.stats, an, problems)
    check_counts(b.stats, bn, problems)
    check_times(a.stats, an, problems)

    sa, sb = a.stats, b.stats
    scope = "all functions"
    if args.threaded or args.restrict:
        sa, sb, nwl, nbi = restrict(sa, sb, is_workload)
        scope = ("%s scope: %d workload functions + %d builtins they call"
                 % ("threaded" if args.threaded else "restricted", nwl, nbi))
        if nwl == 0:
            problems.append("no function of the workload %r in either profile"
                            % args.workload)

    problems.extend(diff(sa, sb, an, bn))

    if problems:
        print("MISMATCH: %s vs %s for %s (%s): %d difference(s)"
              % (args.rprof, args.reference, args.workload, scope, len(problems)))
        for line in problems[:args.max_report]:
            print("  " + line)
        if len(problems) > args.max_report:
            print("  ... and %d more" % (len(problems) - args.max_report))
        for note in a.notes + b.notes:
            print("  note: " + note)
        for h in hints(sa, sb, an, bn, is_workload):
            print("  " + h)
        return 1

    nfuncs = len(sa)
    nedges = sum(len(v[4]) for v in sa.values())
    ncalls = sum(v[1] for v in sa.values())
    extra = ""
    if dropped:
        extra = "; dropped %s" % ", ".join(fmt(d) for d in dropped)
    if a.notes or b.notes:
        extra += "; " + "; ".join(a.notes + b.notes)
    print("OK: %s matches %s for %s: %d functions, %d caller edges, %d calls (%s%s)"
          % (args.rprof, bn, args.workload, nfuncs, nedges, ncalls, scope, extra))
    return 0


ARGS = None

if __name__ == "__main__":
    sys.exit(main())
