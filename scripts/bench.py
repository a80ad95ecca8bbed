#!/usr/bin/env python3
"""Profiler overhead benchmark: rprof vs cProfile, side by side.

SLOWDOWN = profiled wall time / unprofiled wall time of the same workload
on the same interpreter, measured in ONE invocation: for every repetition,
every configuration runs once, in an order that rotates from one
repetition to the next, so that drift in the machine's speed (other load,
thermal, caches) spreads over all configurations instead of biasing one.
Each slowdown is paired: a profiled run is divided by the unprofiled run
of the same repetition; the tables show the median over repetitions and
the min-max range.

Time is measured INSIDE the workload process: each workload in
scripts/bench/ times its own work with time.perf_counter() and prints
`BENCH_SECONDS <s>` as its last stdout line.  The profiler is active
around that region in every configuration, so interpreter start-up,
importing cProfile, loading rprof's shim with ctypes, writing the profile
and so on are all excluded.  rprof's reader runs in a separate process
(the `rprof` binary itself), so what is measured is the cost paid by the
profiled program; the reader's CPU shows up in the "whole command" table
(CPU seconds above wall seconds).

Usage:
  python3 scripts/bench.py                       # full run, ~10 min on 2 cores
  python3 scripts/bench.py --quick               # ~1 min smoke run
  python3 scripts/bench.py --python ~/.pyenv/versions/3.12.1/bin/python3 \\
      --workloads call_heavy --reps 3 --markdown /tmp/bench.md --json /tmp/bench.json

Runs with any python3 >= 3.8, standard library only.  The interpreters
benchmarked are found like the test suite finds them (every pyenv version
under $PYENV_ROOT or ~/.pyenv, then /usr/bin/python3.N; or the
os.pathsep-separated list in $RPROF_TEST_PYTHON), unless --python is given.

Adding a configuration: add an entry to CONFIGS (name -> Config with a
command builder); add a pair to RATIOS to get a "X / Y" column.
Adding a workload: drop a script into scripts/bench/ that follows the
BENCH_SECONDS protocol, accepts an optional SCALE argument and has a line
`# rprof-bench: workload` (or add it to KNOWN_WORKLOADS).
"""
from __future__ import print_function

import argparse
import collections
import datetime
import glob
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import zlib
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BENCH_DIR = os.path.join(HERE, "bench")

# Workloads in display order, with a title; any other *.py in scripts/bench/
# is appended after these, titled by the first line of its docstring.
KNOWN_WORKLOADS = [
    ("call_heavy", "call-heavy loop"),
    ("mixed", "mixed realistic workload (request-handler loop)"),
    ("builtin_heavy", "builtin-heavy loop"),
    ("threads4", "4 threads busy at once (call-heavy loop in each)"),
]

BENCH_LINE = re.compile(r"^BENCH_SECONDS\s+([0-9.eE+-]+)\s*$")
RESULT_LINE = re.compile(r"^result\s")
RPROF_SUMMARY = re.compile(
    r"rprof: (?P<events>\d+) events, .*\((?P<hook>[\w.]+) hook, (?P<clock>\w+) clock\)"
    r".*target waited (?P<waits>\d+) times for (?P<wait_s>[0-9.]+) s")


# ---------------------------------------------------------------------------
# Configurations


class Interp(object):
    def __init__(self, path, version):
        self.path = path
        self.version = version          # (major, minor, micro)
        vtag = "%d.%d.%d" % version
        self.label = vtag if "/.pyenv/" in path or _under_pyenv_root(path) else "%s (%s)" % (vtag, path)


def _under_pyenv_root(path):
    root = os.environ.get("PYENV_ROOT")
    return bool(root) and os.path.abspath(path).startswith(os.path.abspath(root) + os.sep)


class Ctx(object):
    """What a command builder gets: one run of one workload."""

    def __init__(self, interp, script, args, outfile, rprof):
        self.interp = interp
        self.python = interp.path
        self.script = script
        self.args = args
        self.outfile = outfile          # a fresh path in a temporary directory
        self.rprof = rprof


class Config(object):
    """A way of running a workload.

    build(ctx) -> argv.  applies(interp) -> bool (the cell shows "-" when
    false).  The configuration named BASELINE is the denominator of every
    slowdown.
    """

    def __init__(self, title, build, applies=None, needs_rprof=False):
        self.title = title
        self.build = build
        self.applies = applies or (lambda interp: True)
        self.needs_rprof = needs_rprof


def _rprof(*extra):
    return lambda c: [c.rprof, "run", "-o", c.outfile] + list(extra) + ["--python", c.python, c.script] + c.args


_YAPPI = {}


def yappi_python(interp):
    """A virtual environment of `interp` with yappi installed (made once and
    kept under ~/.cache/rprof-bench), or None where that is not possible
    (e.g. an interpreter without venv/ensurepip)."""
    key = interp.path
    if key in _YAPPI:
        return _YAPPI[key]
    root = os.path.join(os.path.expanduser("~"), ".cache", "rprof-bench",
                        "yappi-%s-%08x" % (".".join(map(str, interp.version)),
                                           zlib.crc32(interp.path.encode())))
    py = os.path.join(root, "bin", "python")
    ok = os.path.exists(py) and subprocess.run([py, "-c", "import yappi"],
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL).returncode == 0
    if not ok:
        made = subprocess.run([interp.path, "-m", "venv", root], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0
        ok = made and subprocess.run([py, "-m", "pip", "install", "-q", "yappi"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        if not ok:
            print("yappi: cannot make a virtual environment with yappi for %s; its column shows -"
                  % interp.path, file=sys.stderr)
    _YAPPI[key] = py if ok else None
    return _YAPPI[key]


def reference_module(interp):
    """cProfile, renamed profiling.tracing in 3.15 (PEP 799; cProfile is an alias)."""
    return "profiling.tracing" if interp.version >= (3, 15) else "cProfile"


def _attach(c):
    return [sys.executable, os.path.join(REPO, "scripts", "bench", "attach_run.py"),
            c.rprof, c.python, c.outfile, c.script] + c.args


BASELINE = "none"
CONFIGS = collections.OrderedDict([
    ("none", Config("no profiler", lambda c: [c.python, c.script] + c.args)),
    ("cprofile", Config("python -m cProfile -o FILE (on 3.15+: python -m profiling.tracing, its new name)",
                        lambda c: [c.python, "-m", reference_module(c.interp), "-o", c.outfile, c.script]
                        + c.args)),
    ("yappi", Config("yappi, wall clock (python -m yappi -c wall), in a venv of the same interpreter",
                     lambda c: [yappi_python(c.interp), "-m", "yappi", "-c", "wall", "-f", "pstat",
                                "-o", c.outfile, c.script] + c.args,
                     applies=lambda i: yappi_python(i) is not None)),
    ("floor", Config("rprof's hook installed, callbacks return at once (rprof run --floor)",
                     _rprof("--floor"), needs_rprof=True)),
    ("rprof-auto", Config("rprof run -o FILE (default hook)", _rprof(), needs_rprof=True)),
    ("rprof-attach", Config("rprof attach PID -o FILE (default hook), attached before the timed work",
                            _attach, needs_rprof=True)),
    ("floor-setprofile", Config("the floor of --hook setprofile", _rprof("--floor", "--hook", "setprofile"),
                                applies=lambda i: i.version >= (3, 12), needs_rprof=True)),
    ("rprof-setprofile", Config("rprof run -o FILE --hook setprofile", _rprof("--hook", "setprofile"),
                                applies=lambda i: i.version >= (3, 12), needs_rprof=True)),
])

# (numerator, denominator, column title): per-repetition time ratios.
RATIOS = [
    ("rprof-auto", "cprofile", "rprof-auto / cProfile"),
    ("rprof-attach", "cprofile", "rprof-attach / cProfile"),
    ("rprof-auto", "floor", "rprof-auto / its floor"),
    ("rprof-setprofile", "cprofile", "rprof-setprofile / cProfile"),
    ("rprof-setprofile", "floor-setprofile", "rprof-setprofile / its floor"),
]


# ---------------------------------------------------------------------------
# Discovery


def version_of(path):
    try:
        out = subprocess.run([path, "-c", "import sys; print('%d %d %d' % sys.version_info[:3])"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    parts = out.stdout.decode().split()
    if len(parts) != 3:
        return None
    return tuple(int(p) for p in parts)


def candidates():
    env = os.environ.get("RPROF_TEST_PYTHON")
    if env:
        return [p for p in env.split(os.pathsep) if p]
    out = []
    root = os.environ.get("PYENV_ROOT") or os.path.join(os.path.expanduser("~"), ".pyenv")
    out.extend(sorted(p for p in glob.glob(os.path.join(root, "versions", "*", "bin", "python3"))
                      if os.path.exists(p)))
    out.extend(sorted(p for p in glob.glob("/usr/bin/python3.*")
                      if re.match(r"^python3\.\d+$", os.path.basename(p))))
    # Unpacked from ../shared/pythons by scripts/pythons.sh.
    out.extend(p for p in ("/opt/cpython-3.14/bin/python3.14",
                           "/opt/cpython-3.14t/bin/python3.14t",
                           "/opt/debian-python3.15/usr/bin/python3.15")
               if os.path.exists(p))
    return out


def find_interpreters(explicit):
    seen = set()
    found = []
    for path in (explicit or candidates()):
        path = os.path.expanduser(path)
        if not os.path.exists(path):
            print("skipping %s: not found" % path, file=sys.stderr)
            continue
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        v = version_of(path)
        if v is None:
            print("skipping %s: does not run" % path, file=sys.stderr)
        elif v < (3, 8, 0):
            print("skipping %s: Python %d.%d is not supported (3.8 or newer)" % (path, v[0], v[1]),
                  file=sys.stderr)
        else:
            found.append(Interp(path, v))
    if not found:
        sys.exit("bench.py: no supported Python interpreter found (looked in $PYENV_ROOT/versions "
                 "and /usr/bin/python3.N; use --python PATH)")
    # By version; pyenv before the system's copy of the same version.
    found.sort(key=lambda i: (i.version, i.label != "%d.%d.%d" % i.version, i.path))
    return found


def find_workloads(selected):
    present = {os.path.splitext(os.path.basename(p))[0]: p
               for p in glob.glob(os.path.join(BENCH_DIR, "*.py"))}
    order = [(n, t) for n, t in KNOWN_WORKLOADS if n in present]
    known = set(n for n, _ in KNOWN_WORKLOADS)
    for name in sorted(present):
        if name not in known and _is_workload(present[name]):
            order.append((name, _doc_title(present[name]) or name))
    if selected:
        wanted = []
        for s in selected:
            wanted.extend(x.strip() for x in s.split(",") if x.strip())
        unknown = [w for w in wanted if w not in present]
        if unknown:
            sys.exit("bench.py: unknown workload(s) %s; have: %s"
                     % (", ".join(unknown), ", ".join(n for n, _ in order)))
        order = [(n, t) for n, t in order if n in wanted]
    return [(n, t, present[n]) for n, t in order]


def _is_workload(path):
    """Scripts in scripts/bench/ that are not in KNOWN_WORKLOADS count as
    workloads only if they say so with a `# rprof-bench: workload` line
    (helpers such as attach_run.py live there too)."""
    with open(path) as f:
        return any(line.strip() == "# rprof-bench: workload" for line in f)


def _doc_title(path):
    with open(path) as f:
        text = f.read(2000)
    m = re.search(r'^"""(.*?)$', text, re.M)
    return m.group(1).strip().rstrip(".") if m else None


def find_rprof(path, explicit):
    if os.path.exists(path):
        return path
    if explicit:
        sys.exit("bench.py: --rprof %s does not exist" % path)
    print("bench.py: %s is missing; running cargo build --release" % path, file=sys.stderr)
    rc = subprocess.call(["cargo", "build", "--release"], cwd=REPO)
    if rc != 0 or not os.path.exists(path):
        sys.exit("bench.py: cargo build --release failed")
    return path


# ---------------------------------------------------------------------------
# Running


class RunResult(object):
    def __init__(self, **kw):
        self.__dict__.update(kw)


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError):
        return float("nan")


CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_jiffies():
    """(busy, steal) jiffies of the whole machine, from /proc/stat; None if unknown."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq = fields[:7]
    steal = fields[7] if len(fields) > 7 else 0
    return user + nice + system + irq + softirq, steal


def wait_idle(max_cores, max_wait):
    """Waits until the rest of the machine uses at most max_cores CPUs
    (sampled over 0.3 s while nothing of ours runs), for at most max_wait
    seconds.  Returns the seconds waited."""
    t0 = time.time()
    while True:
        a = cpu_jiffies()
        time.sleep(0.3)
        b = cpu_jiffies()
        if a is None or b is None:
            return 0.0
        used = (b[0] - a[0]) / float(CLK_TCK) / 0.3
        waited = time.time() - t0
        if used <= max_cores or waited >= max_wait:
            return waited
        time.sleep(1.0)


def run_one(argv, env, cwd, timeout):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    jiffies_before = cpu_jiffies()
    t0 = time.perf_counter()
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                           timeout=timeout)
        rc, out, err = p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", (e.stdout or b"").decode("utf-8", "replace"), "timed out after %ss" % timeout
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    jiffies_after = cpu_jiffies()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # CPU the rest of the machine used meanwhile (jiffy resolution: ~10 ms).
    foreign = steal = None
    if jiffies_before and jiffies_after:
        foreign = max(0.0, (jiffies_after[0] - jiffies_before[0]) / float(CLK_TCK) - cpu)
        steal = (jiffies_after[1] - jiffies_before[1]) / float(CLK_TCK)
    lines = out.strip().splitlines()
    seconds = None
    if lines:
        m = BENCH_LINE.match(lines[-1])
        if m:
            seconds = float(m.group(1))
    result = next((l for l in lines if RESULT_LINE.match(l)), None)
    summary = RPROF_SUMMARY.search(err)
    ok = rc == 0 and seconds is not None
    return RunResult(ok=ok, rc=rc, seconds=seconds, wall=wall, cpu=cpu, result=result,
                     foreign=foreign, steal=steal,
                     stderr=err.strip()[-2000:],
                     hook=summary.group("hook") if summary else None,
                     events=int(summary.group("events")) if summary else None,
                     waits=int(summary.group("waits")) if summary else None,
                     wait_s=float(summary.group("wait_s")) if summary else None)


def _interrupted(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def configs_for(interp, names):
    return [n for n in names if CONFIGS[n].applies(interp)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Configurations: " + ", ".join(CONFIGS))
    ap.add_argument("--python", action="append", metavar="PATH",
                    help="interpreter to benchmark (repeatable; default: every supported one found)")
    ap.add_argument("--rprof", metavar="PATH",
                    help="the rprof binary (default: target/release/rprof, built if missing)")
    ap.add_argument("--workloads", action="append", metavar="NAME[,NAME]",
                    help="only these workloads (names of scripts in scripts/bench/, without .py)")
    ap.add_argument("--configs", action="append", metavar="NAME[,NAME]",
                    help="only these configurations (%s is always included)" % BASELINE)
    ap.add_argument("--reps", type=int, help="repetitions (default 5; 2 with --quick)")
    ap.add_argument("--scale", type=float, help="workload size factor (default 1; 0.2 with --quick)")
    ap.add_argument("--quick", action="store_true", help="a ~1-minute smoke run: --reps 2 --scale 0.2")
    ap.add_argument("--markdown", metavar="FILE", help="also write the tables as Markdown to FILE")
    ap.add_argument("--json", metavar="FILE", help="also write every run's raw numbers as JSON to FILE")
    ap.add_argument("--timeout", type=float, default=300, help="seconds before a run is abandoned")
    ap.add_argument("--wait-idle", type=float, nargs="?", const=0.3, metavar="CORES",
                    help="before each workload/interpreter group, wait (up to --max-wait s) until "
                         "other processes use at most CORES CPUs (default 0.3); off unless given")
    ap.add_argument("--max-wait", type=float, default=60, metavar="S",
                    help="longest --wait-idle wait per group (default 60)")
    ap.add_argument("--no-warmup", action="store_true",
                    help="skip the unrecorded warm-up run of each workload on each interpreter")
    args = ap.parse_args()

    reps = args.reps if args.reps is not None else (2 if args.quick else 5)
    scale = args.scale if args.scale is not None else (0.2 if args.quick else 1.0)
    if reps < 1:
        ap.error("--reps must be at least 1")

    config_names = list(CONFIGS)
    if args.configs:
        wanted = set([BASELINE])
        for s in args.configs:
            wanted.update(x.strip() for x in s.split(",") if x.strip())
        unknown = wanted - set(CONFIGS)
        if unknown:
            ap.error("unknown configuration(s): %s" % ", ".join(sorted(unknown)))
        config_names = [n for n in CONFIGS if n in wanted]

    interps = find_interpreters(args.python)
    workloads = find_workloads(args.workloads)
    if not workloads:
        sys.exit("bench.py: no workloads in %s" % BENCH_DIR)
    rprof = None
    if any(CONFIGS[n].needs_rprof for n in config_names):
        rprof = os.path.abspath(find_rprof(args.rprof or os.path.join(REPO, "target", "release", "rprof"),
                                           args.rprof is not None))

    env = dict(os.environ)
    env["PYTHONHASHSEED"] = "0"        # same dict/set layouts in every run
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    # SIGTERM/SIGHUP unwind like Ctrl-C, so the temporary directory goes away.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupted)
    tmp = tempfile.mkdtemp(prefix="rprof-benchpy-")
    wl_args = [] if scale == 1.0 else [repr(scale)]
    meta = describe(interps, rprof, reps, scale, sys.argv[1:])
    if rprof:
        # Run a private copy: a concurrent `cargo build` must not swap the
        # binary halfway through the benchmark.  (The shim is embedded.)
        copy = os.path.join(tmp, "rprof")
        shutil.copy2(rprof, copy)
        rprof = copy
    print("rprof bench: %d interpreter(s), %d workload(s), %d repetition(s), scale %g"
          % (len(interps), len(workloads), reps, scale), file=sys.stderr)
    print("machine: %s; %s CPUs; kernel %s; load average at start %.2f"
          % (meta["cpu_model"], meta["nproc"], meta["kernel"], meta["load_start"]), file=sys.stderr)
    if meta["load_start"] > 0.5:
        print("warning: the machine is not idle (load average %.2f); numbers will be noisier"
              % meta["load_start"], file=sys.stderr)

    runs = collections.defaultdict(dict)   # (workload, label, config) -> {rep: RunResult}
    reference = {}                         # (workload, label) -> the workload's `result` line
    problems = []
    loads = []
    waited = 0.0
    started = time.time()
    try:
        if not args.no_warmup:
            for wname, _, script in workloads:
                for interp in interps:
                    r = run_one(CONFIGS[BASELINE].build(Ctx(interp, script, wl_args, None, rprof)),
                                env, tmp, args.timeout)
                    if r.ok:
                        reference[(wname, interp.label)] = r.result
                    else:
                        problems.append("%s on %s: warm-up failed (%s): %s"
                                        % (wname, interp.label, r.rc, r.stderr[-300:]))
        for rep in range(reps):
            for wname, _, script in workloads:
                for i, interp in enumerate(interps):
                    if args.wait_idle is not None:
                        waited += wait_idle(args.wait_idle, args.max_wait)
                    names = configs_for(interp, config_names)
                    k = (rep + i) % len(names)
                    for cname in names[k:] + names[:k]:
                        outfile = os.path.join(tmp, "out.prof")
                        if os.path.exists(outfile):
                            os.unlink(outfile)
                        loads.append(loadavg())
                        r = run_one(CONFIGS[cname].build(Ctx(interp, script, wl_args, outfile, rprof)),
                                    env, tmp, args.timeout)
                        if r.ok and CONFIGS[cname].needs_rprof and r.hook is None:
                            r.ok = False
                            r.stderr = "no rprof summary line on stderr\n" + r.stderr
                        if r.ok and cname != BASELINE and not os.path.exists(outfile):
                            r.ok = False
                            r.stderr = "no profile was written\n" + r.stderr
                        ref = reference.setdefault((wname, interp.label), r.result if r.ok else None)
                        if r.ok and ref is not None and r.result != ref:
                            problems.append("%s on %s under %s: result differs: %s != %s"
                                            % (wname, interp.label, cname, r.result, ref))
                        if not r.ok:
                            problems.append("%s on %s under %s (rep %d) failed (%s): %s"
                                            % (wname, interp.label, cname, rep + 1, r.rc, r.stderr[-500:]))
                        if r.waits:
                            problems.append("%s on %s under %s (rep %d): the target waited for rprof "
                                            "%d times, %.3f s" % (wname, interp.label, cname, rep + 1,
                                                                  r.waits, r.wait_s))
                        runs[(wname, interp.label, cname)][rep] = r
                        print("[rep %d/%d] %-13s %-32s %-16s %s%s"
                              % (rep + 1, reps, wname, interp.label, cname,
                                 ("%.3f s" % r.seconds) if r.ok else "FAILED",
                                 "" if r.foreign is None or r.wall <= 0 else
                                 "  (others used %.2f CPUs)" % (r.foreign / r.wall)), file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    meta["elapsed_s"] = time.time() - started
    meta["load_end"] = loadavg()
    meta["load_during"] = [min(loads), statistics.median(loads), max(loads)] if loads else None
    meta["waited_idle_s"] = waited
    meta["wait_idle"] = args.wait_idle
    shares = [r.foreign / r.wall for cell in runs.values() for r in cell.values()
              if r.foreign is not None and r.wall > 0]
    steals = [r.steal / r.wall for cell in runs.values() for r in cell.values()
              if r.steal is not None and r.wall > 0]
    meta["foreign_cpu"] = [statistics.median(shares), max(shares)] if shares else None
    meta["steal"] = [statistics.median(steals), max(steals)] if steals else None
    report = Report(meta, interps, workloads, config_names, runs, reps, problems)
    text = report.render(markdown=False)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(report.render(markdown=True))
        print("wrote %s" % args.markdown, file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report.raw(), f, indent=1, sort_keys=True)
        print("wrote %s" % args.json, file=sys.stderr)
    return 1 if any("failed" in p or "differs" in p for p in problems) else 0


def git_commit():
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL).stdout.decode().strip() or None
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.strip()
    except OSError:
        return None
    if commit and dirty:
        commit += " (with uncommitted changes)"
    return commit


def describe(interps, rprof, reps, scale, argv):
    cpu_model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    rprof_version = commit = None
    if rprof:
        try:
            rprof_version = subprocess.run([rprof, "--version"], stdout=subprocess.PIPE,
                                           stderr=subprocess.DEVNULL).stdout.decode().strip()
        except OSError:
            pass
    if not rprof or os.path.realpath(rprof).startswith(os.path.realpath(REPO) + os.sep):
        commit = git_commit()
    # else: a binary built elsewhere; this checkout's commit says nothing about it.
    binary = None
    if rprof:
        with open(rprof, "rb") as f:
            binary = "%s, sha256 %s, built %s" % (
                rprof, hashlib.sha256(f.read()).hexdigest()[:12],
                datetime.datetime.fromtimestamp(os.path.getmtime(rprof)).strftime("%Y-%m-%d %H:%M"))
    return {
        "binary": binary,
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "command": " ".join(["python3", "scripts/bench.py"] + argv),
        "cpu_model": cpu_model,
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "rprof": rprof_version,
        "commit": commit,
        "reps": reps,
        "scale": scale,
        "load_start": loadavg(),
        "interpreters": [{"label": i.label, "path": i.path} for i in interps],
    }


# ---------------------------------------------------------------------------
# Reporting


def _stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def _fmt(st, markdown, digits=2):
    if st is None:
        return "-"
    dash = "\u2013" if markdown else "-"
    return "%.*f [%.*f%s%.*f]" % (digits, st[0], digits, st[1], dash, digits, st[2])


class Report(object):
    def __init__(self, meta, interps, workloads, config_names, runs, reps, problems):
        self.meta = meta
        self.interps = interps
        self.workloads = workloads
        self.configs = config_names
        self.runs = runs
        self.reps = reps
        self.problems = problems

    def _times(self, w, label, c):
        cell = self.runs.get((w, label, c), {})
        return [cell[r].seconds if r in cell and cell[r].ok else None for r in range(self.reps)]

    def _paired(self, w, label, num, den):
        a, b = self._times(w, label, num), self._times(w, label, den)
        return _stats([x / y if x is not None and y else None for x, y in zip(a, b)])

    def tables(self, markdown):
        """[(heading, header, rows)] for every table."""
        out = []
        ratio_cols = [(n, d, t) for n, d, t in RATIOS if n in self.configs and d in self.configs]
        profiled = [c for c in self.configs if c != BASELINE]
        for w, title, _ in self.workloads:
            show_hook = "rprof-auto" in self.configs
            header = (["Python", "baseline s"] + profiled + [t for _, _, t in ratio_cols]
                      + (["auto hook"] if show_hook else []))
            rows = []
            for interp in self.interps:
                names = configs_for(interp, self.configs)
                row = [interp.label, _fmt(_stats(self._times(w, interp.label, BASELINE)), markdown, 3)]
                for c in profiled:
                    row.append(_fmt(self._paired(w, interp.label, c, BASELINE), markdown)
                               if c in names else "-")
                for n, d, _ in ratio_cols:
                    row.append(_fmt(self._paired(w, interp.label, n, d), markdown)
                               if n in names and d in names else "-")
                hooks = sorted(set(r.hook for r in self.runs.get((w, interp.label, "rprof-auto"), {}).values()
                                   if r.hook))
                if show_hook:
                    row.append("/".join(hooks) or "-")
                rows.append(row)
            out.append(("%s (%s): slowdown = profiled / unprofiled, median [min-max] of %d"
                        % (title, w, self.reps), header, rows))
        # Whole-command wall and CPU time: shows the reader's CPU on the other core.
        for w, title, _ in self.workloads:
            header = ["Python"] + self.configs
            rows = []
            for interp in self.interps:
                names = configs_for(interp, self.configs)
                row = [interp.label]
                for c in self.configs:
                    cell = [r for r in self.runs.get((w, interp.label, c), {}).values() if r.ok]
                    if c not in names or not cell:
                        row.append("-")
                        continue
                    row.append("%.2f / %.2f" % (statistics.median(r.wall for r in cell),
                                                statistics.median(r.cpu for r in cell)))
                rows.append(row)
            out.append(("%s (%s): whole command, wall s / CPU s (process tree, incl. start-up), median"
                        % (title, w), header, rows))
        return out

    def render(self, markdown):
        m = self.meta
        lines = []
        if markdown:
            lines.append("Generated by `%s` on %s." % (m["command"], m["date"]))
            lines.append("")
        else:
            lines.append("")
        lines.append("Machine: %s, %s CPUs, kernel %s. rprof: %s, commit %s; binary %s."
                     % (m["cpu_model"], m["nproc"], m["kernel"], m["rprof"],
                        m["commit"] or "unknown (built outside this checkout)", m["binary"]))
        ld = m.get("load_during")
        lines.append("Repetitions: %d, scale %g, run time %.0f s; 1-minute load average at start %.2f, "
                     "during runs %s, at end %.2f."
                     % (m["reps"], m["scale"], m.get("elapsed_s", 0), m["load_start"],
                        ("%.2f/%.2f/%.2f (min/median/max)" % tuple(ld)) if ld else "n/a",
                        m.get("load_end", float("nan"))))
        fc, st = m.get("foreign_cpu"), m.get("steal")
        if fc:
            lines.append("Other processes' CPU while a run was going (in CPUs, of %s): median %.2f, max %.2f%s"
                         "; hypervisor steal: median %.2f, max %.2f.%s"
                         % (m["nproc"], fc[0], fc[1],
                            "" if m.get("wait_idle") is None else
                            " (waited for <= %.2f CPUs before each group, %.0f s in all)"
                            % (m["wait_idle"], m.get("waited_idle_s", 0)),
                            st[0] if st else float("nan"), st[1] if st else float("nan"),
                            "" if not markdown else ""))
        lines.append("")
        for heading, header, rows in self.tables(markdown):
            if markdown:
                lines.append("### " + heading.replace("min-max", "min\u2013max"))
                lines.append("")
                lines.append("| " + " | ".join(h.replace(" / ", " \u00f7 ") for h in header) + " |")
                lines.append("|" + "|".join("---" for _ in header) + "|")
                for row in rows:
                    lines.append("| " + " | ".join(row) + " |")
            else:
                lines.append(heading)
                widths = [max(len(h), max(len(r[i]) for r in rows)) for i, h in enumerate(header)]
                lines.append("  ".join(h.ljust(widths[i]) for i, h in enumerate(header)))
                lines.append("  ".join("-" * wd for wd in widths))
                for row in rows:
                    lines.append("  ".join(v.ljust(widths[i]) for i, v in enumerate(row)))
            lines.append("")
        if self.problems:
            lines.append("Problems:" if not markdown else "Problems:\n")
            for p in self.problems:
                lines.append(("- " if markdown else "  ") + p.replace("\n", " | "))
            lines.append("")
        return "\n".join(lines)

    def raw(self):
        data = {"meta": self.meta, "configs": self.configs, "workloads": [w for w, _, _ in self.workloads],
                "runs": []}
        for (w, label, c), cell in sorted(self.runs.items()):
            for rep, r in sorted(cell.items()):
                data["runs"].append({"workload": w, "python": label, "config": c, "rep": rep,
                                     "ok": r.ok, "rc": r.rc, "seconds": r.seconds, "wall": r.wall,
                                     "cpu": r.cpu, "foreign_cpu": r.foreign, "steal": r.steal,
                                     "hook": r.hook, "events": r.events,
                                     "waits": r.waits, "wait_s": r.wait_s})
        data["problems"] = self.problems
        return data


if __name__ == "__main__":
    sys.exit(main())
