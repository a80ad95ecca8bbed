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
import math
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
CPU_LINE = re.compile(r"^BENCH_CPU_SECONDS\s+([0-9.eE+-]+)\s*$")
# Which time a run's `seconds` is: "wall" (BENCH_SECONDS) or "cpu"
# (BENCH_CPU_SECONDS: the workload process's own CPU time over the same
# region; much less sensitive to other processes on a busy machine, and
# still what the profiled program pays, the reader being another process).
CLOCK = ["wall"]
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

    def __init__(self, title, build, applies=None, needs_rprof=False, default=True):
        self.title = title
        self.build = build
        self.applies = applies or (lambda interp: True)
        self.needs_rprof = needs_rprof
        self.default = default          # run unless --configs names the ones to run


def _rprof(*extra):
    return lambda c: [c.rprof, "run", "-o", c.outfile] + list(extra) + ["--python", c.python, c.script] + c.args


# Another rprof binary to compare with (--rprof-before), e.g. a build from
# before a change: its floor and its recording run are the "-before"
# configurations.  Copied to the temporary directory like the main one.
RPROF_BEFORE = [None]


def _rprof_before(*extra):
    return lambda c: [RPROF_BEFORE[0], "run", "-o", c.outfile] + list(extra) + ["--python", c.python,
                                                                                c.script] + c.args


_HELP = {}


def rprof_has_flag(flag):
    """Whether the rprof binary under test knows `flag` (rows for options that
    a build may not have yet show "-" instead of failing)."""
    rprof = RPROF_UNDER_TEST[0]
    if rprof is None:
        return False
    if rprof not in _HELP:
        try:
            _HELP[rprof] = subprocess.run([rprof, "run", "--help"], stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT).stdout.decode("utf-8", "replace")
        except OSError:
            _HELP[rprof] = ""
    return flag in _HELP[rprof]


RPROF_UNDER_TEST = [None]


def _cprofile_with(**opts):
    """cProfile.Profile(**opts) around the workload (scripts/bench/cprofile_run.py)."""
    flags = ["--%s=%s" % (k, int(v)) for k, v in sorted(opts.items())]
    return lambda c: [c.python, os.path.join(REPO, "scripts", "bench", "cprofile_run.py")] + flags + [
        c.outfile, c.script] + c.args


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


def _attach(c, *extra):
    return [sys.executable, os.path.join(REPO, "scripts", "bench", "attach_run.py")] + [
        "--rprof-arg=%s" % e for e in extra] + [c.rprof, c.python, c.outfile, c.script] + c.args


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
    # The least an exact recorder does per event on the same hook: the floor
    # plus a clock read and one 8-byte store where rprof reads the clock
    # (PY_START/PY_RETURN on 3.12+, every event with setprofile). Where this
    # row is above a target, no exact recorder on this hook can meet it.
    ("floor-clock", Config("the floor plus one clock read and one 8-byte store per recorded event "
                           "(rprof run --floor-clock)", _rprof("--floor-clock"), needs_rprof=True,
                           default=False)),
    ("rprof-auto", Config("rprof run -o FILE (default hook)", _rprof(), needs_rprof=True)),
    ("rprof-attach", Config("rprof attach PID -o FILE (default hook), attached before the timed work",
                            _attach, needs_rprof=True)),
    ("floor-setprofile", Config("the floor of --hook setprofile", _rprof("--floor", "--hook", "setprofile"),
                                applies=lambda i: i.version >= (3, 12), needs_rprof=True)),
    ("rprof-setprofile", Config("rprof run -o FILE --hook setprofile", _rprof("--hook", "setprofile"),
                                applies=lambda i: i.version >= (3, 12), needs_rprof=True)),
    # Issue 13: cProfile(builtins=False) and rprof's --no-builtins, which
    # registers no CALL/C_RETURN/C_RAISE on 3.12+ and drops C events first
    # thing before.  Shown as "-" with a binary that has no --no-builtins.
    ("cprofile-nobuiltins", Config("cProfile.Profile(builtins=False) around the workload",
                                   _cprofile_with(builtins=False), default=False)),
    ("rprof-no-builtins", Config("rprof run --no-builtins -o FILE",
                                 _rprof("--no-builtins"), needs_rprof=True, default=False,
                                 applies=lambda i: rprof_has_flag("--no-builtins"))),
    ("floor-no-builtins", Config("the floor of --no-builtins (rprof run --floor --no-builtins)",
                                 _rprof("--floor", "--no-builtins"), needs_rprof=True, default=False,
                                 applies=lambda i: rprof_has_flag("--no-builtins"))),
    ("rprof-attach-no-builtins", Config("rprof attach --no-builtins, attached before the timed work",
                                        lambda c: _attach(c, "--no-builtins"), needs_rprof=True,
                                        default=False, applies=lambda i: rprof_has_flag("--no-builtins"))),
    # Floors per callback style: the floor of the binary under test (its
    # callbacks: vectorcall objects on 3.12+ from issue 13 on) against the
    # floor of --rprof-before (e.g. the PyCFunction callbacks before).
    ("floor-before", Config("the floor of the --rprof-before binary (rprof run --floor)",
                            _rprof_before("--floor"), needs_rprof=True, default=False,
                            applies=lambda i: RPROF_BEFORE[0] is not None)),
    ("rprof-before", Config("rprof run -o FILE with the --rprof-before binary",
                            _rprof_before(), needs_rprof=True, default=False,
                            applies=lambda i: RPROF_BEFORE[0] is not None)),
])

# (numerator, denominator, column title): per-repetition time ratios.
RATIOS = [
    ("rprof-auto", "cprofile", "rprof-auto / cProfile"),
    ("rprof-attach", "cprofile", "rprof-attach / cProfile"),
    ("rprof-auto", "floor", "rprof-auto / its floor"),
    ("rprof-attach", "floor", "rprof-attach / the floor"),
    ("floor", "cprofile", "floor / cProfile"),
    ("floor-clock", "cprofile", "floor+clock / cProfile"),
    ("rprof-auto", "floor-clock", "rprof-auto / floor+clock"),
    ("rprof-setprofile", "cprofile", "rprof-setprofile / cProfile"),
    ("rprof-setprofile", "floor-setprofile", "rprof-setprofile / its floor"),
    ("rprof-no-builtins", "cprofile-nobuiltins", "rprof --no-builtins / cProfile(builtins=False)"),
    ("rprof-attach-no-builtins", "cprofile-nobuiltins", "rprof-attach --no-builtins / cProfile(builtins=False)"),
    ("rprof-no-builtins", "floor-no-builtins", "rprof --no-builtins / its floor"),
    ("floor", "floor-before", "floor / floor of --rprof-before"),
    ("rprof-auto", "rprof-before", "rprof-auto / rprof of --rprof-before"),
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
        if CLOCK[0] == "cpu":
            cpus = [float(c.group(1)) for c in map(CPU_LINE.match, lines) if c]
            seconds = cpus[-1] if cpus and seconds is not None else None
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
    ap.add_argument("--sections", action="append", metavar="NAME[,NAME]",
                    help="what to run: %s, or all (default: workloads)" % ", ".join(SECTIONS))
    ap.add_argument("--rprof-before", metavar="PATH",
                    help="a second rprof binary (e.g. built before a change): adds the floor-before and "
                         "rprof-before configurations and a 'before' column to the attach latency")
    ap.add_argument("--pp-seconds", type=float, default=0.25, metavar="S",
                    help="pyperformance: unprofiled seconds each benchmark runs for (times --scale; "
                         "the loop count is calibrated in the warm-up run; default 0.25)")
    ap.add_argument("--service-seconds", type=float, default=3.0, metavar="S",
                    help="service: seconds of load per run (default 3)")
    ap.add_argument("--service-clients", type=int, default=2, metavar="N",
                    help="service: concurrent loopback clients (default 2)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="time the workloads by wall time (default) or by their process's CPU time "
                         "(BENCH_CPU_SECONDS; steadier on a loaded machine)")
    args = ap.parse_args()
    CLOCK[0] = args.clock

    reps = args.reps if args.reps is not None else (2 if args.quick else 5)
    scale = args.scale if args.scale is not None else (0.2 if args.quick else 1.0)
    if reps < 1:
        ap.error("--reps must be at least 1")

    sections = []
    for x in (args.sections or ["workloads"]):
        sections.extend(y.strip() for y in x.split(",") if y.strip())
    if "all" in sections:
        sections = list(SECTIONS)
    unknown = [x for x in sections if x not in SECTIONS]
    if unknown:
        ap.error("unknown section(s): %s (have: %s, all)" % (", ".join(unknown), ", ".join(SECTIONS)))
    if args.rprof_before:
        if not os.path.exists(args.rprof_before):
            ap.error("--rprof-before %s does not exist" % args.rprof_before)
        RPROF_BEFORE[0] = os.path.abspath(args.rprof_before)

    config_names = [n for n in CONFIGS if CONFIGS[n].default]
    if "pyperformance" in sections and "workloads" not in sections:
        config_names = list(PP_CONFIGS)
    if args.configs:
        wanted = set([BASELINE])
        for s in args.configs:
            wanted.update(x.strip() for x in s.split(",") if x.strip())
        unknown = wanted - set(CONFIGS)
        if unknown:
            ap.error("unknown configuration(s): %s" % ", ".join(sorted(unknown)))
        config_names = [n for n in CONFIGS if n in wanted]

    interps = find_interpreters(args.python)
    workloads = find_workloads(args.workloads) if "workloads" in sections else []
    if "workloads" in sections and not workloads:
        sys.exit("bench.py: no workloads in %s" % BENCH_DIR)
    if "pyperformance" in sections:
        workloads += pyperformance_workloads(args.workloads if "workloads" not in sections else None)
    if not workloads:
        config_names = []
    rprof = None
    if any(CONFIGS[n].needs_rprof for n in config_names) or set(sections) & {"attach", "service"}:
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
    pp_loops = {}                          # (workload, label) -> calibrated loop count

    def args_for(wname, interp):
        if wname in PP_SCRIPTS:
            return [PP_SCRIPTS[wname], str(pp_loops.get((wname, interp.label), 1))]
        return wl_args

    meta = describe(interps, rprof, reps, scale, sys.argv[1:])
    meta["sections"] = sections
    meta["clock"] = args.clock
    if rprof:
        # Run a private copy: a concurrent `cargo build` must not swap the
        # binary halfway through the benchmark.  (The shim is embedded.)
        copy = os.path.join(tmp, "rprof")
        shutil.copy2(rprof, copy)
        rprof = copy
        RPROF_UNDER_TEST[0] = rprof
    if RPROF_BEFORE[0]:
        copy = os.path.join(tmp, "rprof-before")
        shutil.copy2(RPROF_BEFORE[0], copy)
        RPROF_BEFORE[0] = copy
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
    extra_tables = []
    try:
        if not args.no_warmup or any(w in PP_SCRIPTS for w, _, _ in workloads):
            for wname, _, script in workloads:
                for interp in interps:
                    r = run_one(CONFIGS[BASELINE].build(Ctx(interp, script, args_for(wname, interp), None,
                                                            rprof)),
                                env, tmp, args.timeout)
                    if r.ok:
                        reference[(wname, interp.label)] = r.result
                        if wname in PP_SCRIPTS:
                            # One loop ran: calibrate the loop count.
                            want = args.pp_seconds * scale
                            pp_loops[(wname, interp.label)] = max(1, int(round(want / max(r.seconds, 1e-6))))
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
                        r = run_one(CONFIGS[cname].build(Ctx(interp, script, args_for(wname, interp),
                                                                 outfile, rprof)),
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
        if "attach" in sections:
            extra_tables.extend(attach_latency(interps, rprof, reps, env, tmp, problems, loads))
        if "service" in sections:
            extra_tables.extend(service_ratio(interps, rprof, reps, env, tmp, problems, loads, args))
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
    meta["pp_loops"] = {"%s on %s" % k: v for k, v in sorted(pp_loops.items())}
    report = Report(meta, interps, workloads, config_names, runs, reps, problems)
    report.extra_tables = extra_tables
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
# Sections beyond the workload matrix (--sections)

SECTIONS = ["workloads", "pyperformance", "attach", "service"]

# The pyperformance set: 12 benchmarks of pure Python with no dependencies,
# from pyperformance's sdist, fetched at benchmark time (never committed).
PP_VERSION = "1.14.0"
PP_BENCHMARKS = ["chaos", "deltablue", "fannkuch", "float", "go", "hexiom", "json_dumps", "nbody",
                 "nqueens", "raytrace", "richards", "spectral_norm"]
PP_SCRIPTS = {}                        # workload name -> the benchmark's run_benchmark.py
# Attached to a live target, interleaved with cProfile (and run mode).
PP_CONFIGS = ["none", "cprofile", "rprof-attach"]
CACHE = os.path.join(REPO, "target", "bench-cache")


def geomean(values):
    values = [v for v in values if v and v > 0]
    if not values:
        return float("nan")
    return math.exp(sum(math.log(v) for v in values) / len(values))


def pyperformance_workloads(selected):
    """[(name, title, script)] of the pyperformance benchmarks, fetching
    pyperformance's sdist into target/bench-cache on first use."""
    root = os.path.join(CACHE, "pyperformance-%s" % PP_VERSION)
    bench_root = os.path.join(root, "pyperformance", "data-files", "benchmarks")
    if not os.path.isdir(bench_root):
        os.makedirs(CACHE, exist_ok=True)
        print("bench.py: fetching pyperformance %s (sdist) into %s" % (PP_VERSION, CACHE), file=sys.stderr)
        rc = subprocess.call([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                              "pyperformance==%s" % PP_VERSION, "-d", CACHE])
        tarball = os.path.join(CACHE, "pyperformance-%s.tar.gz" % PP_VERSION)
        if rc != 0 or not os.path.exists(tarball):
            sys.exit("bench.py: cannot download pyperformance %s with pip; the pyperformance section "
                     "needs PyPI" % PP_VERSION)
        import tarfile
        with tarfile.open(tarball) as t:
            t.extractall(CACHE)
    wanted = None
    if selected:
        wanted = set()
        for x in selected:
            wanted.update(y.strip() for y in x.split(",") if y.strip())
    out = []
    runner = os.path.join(BENCH_DIR, "pyperformance_run.py")
    for b in PP_BENCHMARKS:
        if wanted and b not in wanted and "pp_" + b not in wanted:
            continue
        script = os.path.join(bench_root, "bm_" + b, "run_benchmark.py")
        if not os.path.exists(script):
            sys.exit("bench.py: %s is missing from pyperformance %s" % (script, PP_VERSION))
        PP_SCRIPTS["pp_" + b] = script
        out.append(("pp_" + b, "pyperformance %s" % b, runner))
    return out


ATTACH_TARGETS = collections.OrderedDict([
    ("idle", r'''
import sys, time
sys.stdout.write("ready\n"); sys.stdout.flush()
while True:
    time.sleep(0.05)
'''),
    # Has not imported threading (the case that took 130-156 ms before
    # issue 13 on 3.9, 3.10 and Debian's 3.11).
    ("busy", r'''
import sys
def f(x):
    return x + 1
sys.stdout.write("ready\n"); sys.stdout.flush()
n = 0
while True:
    n = f(n)
'''),
    ("8 busy threads", r'''
import sys, threading, time
def f(x):
    return x + 1
def work():
    n = 0
    while True:
        n = f(n)
for _ in range(8):
    threading.Thread(target=work, daemon=True).start()
sys.stdout.write("ready\n"); sys.stdout.flush()
while True:
    time.sleep(1)
'''),
])

ATTACHED_MS = re.compile(r"attached to PID \d+ .* in (\d+) ms")
DEBUG_START = re.compile(r"rprof: debug: .*start ([0-9.]+)(ns|µs|us|ms|s)\b")
_UNIT = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}


def _kill(p):
    if p is not None and p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
    if p is not None:
        p.wait()


def attach_once(rprof, python, source, tmp, env):
    """(attach ms, agent start ms, target alive after) for one fresh target."""
    script = os.path.join(tmp, "attach_target.py")
    with open(script, "w") as f:
        f.write(source)
    target = subprocess.Popen([python, script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        if target.stdout.readline().strip() != b"ready":
            raise RuntimeError("the target did not start")
        time.sleep(0.3)
        denv = dict(env)
        denv["RPROF_DEBUG"] = "1"
        r = subprocess.run([rprof, "attach", str(target.pid), "--duration", "0.05", "-o", os.devnull],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=denv, timeout=60)
        err = r.stderr.decode("utf-8", "replace")
        m = ATTACHED_MS.search(err)
        if r.returncode != 0 or not m:
            raise RuntimeError("rprof attach failed (%s): %s" % (r.returncode, err.strip()[-300:]))
        d = DEBUG_START.search(err)
        start_ms = float(d.group(1)) * _UNIT[d.group(2)] if d else None
        time.sleep(0.05)
        return float(m.group(1)), start_ms, target.poll() is None
    finally:
        _kill(target)


def attach_latency(interps, rprof, reps, env, tmp, problems, loads):
    """Attach latency by target state (idle, busy without threading, 8 busy
    threads): a fresh target per attach, interleaved, with --rprof-before's
    binary alongside when given."""
    binaries = [("now", rprof)] + ([("before", RPROF_BEFORE[0])] if RPROF_BEFORE[0] else [])
    got = collections.defaultdict(list)    # (label, state, which) -> [(ms, start_ms)]
    alive = collections.Counter()
    for rep in range(reps):
        for i, interp in enumerate(interps):
            states = list(ATTACH_TARGETS)
            k = (rep + i) % len(states)
            for state in states[k:] + states[:k]:
                for which, binary in (binaries if rep % 2 == 0 else binaries[::-1]):
                    loads.append(loadavg())
                    try:
                        ms, start_ms, ok = attach_once(binary, interp.path, ATTACH_TARGETS[state], tmp, env)
                    except (RuntimeError, subprocess.TimeoutExpired) as e:
                        problems.append("attach latency, %s target on %s (%s binary, rep %d): %s"
                                        % (state, interp.label, which, rep + 1, e))
                        continue
                    got[(interp.label, state, which)].append((ms, start_ms))
                    alive[(interp.label, state, which)] += ok
                    if not ok:
                        problems.append("attach latency: the %s target on %s died after the attach (%s)"
                                        % (state, interp.label, which))
                    print("[rep %d/%d] attach %-16s %-32s %-6s %4.0f ms (agent start %s)"
                          % (rep + 1, reps, state, interp.label, which, ms,
                             "%.1f ms" % start_ms if start_ms is not None else "?"), file=sys.stderr)

    def cell(label, state, which, idx):
        xs = [v[idx] for v in got.get((label, state, which), []) if v[idx] is not None]
        return _fmt(_stats(xs), True, 0 if idx == 0 else 1) if xs else "-"

    header = ["Python", "target", "attach ms", "agent start ms"]
    if len(binaries) > 1:
        header += ["before: attach ms", "before: agent start ms"]
    rows = []
    for interp in interps:
        for state in ATTACH_TARGETS:
            row = [interp.label, state, cell(interp.label, state, "now", 0), cell(interp.label, state, "now", 1)]
            if len(binaries) > 1:
                row += [cell(interp.label, state, "before", 0), cell(interp.label, state, "before", 1)]
            rows.append(row)
    return [("attach latency by target state: `rprof attach` start to its `attached ... in M ms` line, "
             "median [min-max] of %d, a fresh target each time (agent start = the shim's agent taking the "
             "GIL and installing the hooks, from RPROF_DEBUG)" % reps, header, rows)]


# --- the service -----------------------------------------------------------

SERVICE_PATHS = [b"/search?category=books&limit=25", b"/product/17", b"/search?max_price=20&limit=40",
                 b"/product/230", b"/search?category=toys", b"/product/999"]


def service_venv(interp):
    """A virtual environment of `interp` with gunicorn (made once, kept under
    ~/.cache/rprof-bench), or None."""
    root = os.path.join(os.path.expanduser("~"), ".cache", "rprof-bench",
                        "service-%s-%08x" % (".".join(map(str, interp.version)), zlib.crc32(interp.path.encode())))
    py = os.path.join(root, "bin", "python")
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if os.path.exists(py) and subprocess.run([py, "-c", "import gunicorn"], **quiet).returncode == 0:
        return py
    made = subprocess.run([interp.path, "-m", "venv", root], **quiet).returncode == 0
    if not made:
        # No ensurepip (Debian without python3-venv, the /opt 3.15): a venv
        # without pip, filled by this interpreter's pip from outside.
        shutil.rmtree(root, ignore_errors=True)
        made = subprocess.run([interp.path, "-m", "venv", "--without-pip", root], **quiet).returncode == 0
    if made and subprocess.run([py, "-m", "pip", "--version"], **quiet).returncode == 0:
        ok = subprocess.run([py, "-m", "pip", "install", "-q", "gunicorn"], **quiet).returncode == 0
    else:
        pip = _new_pip()
        ok = made and pip is not None and subprocess.run(
            [pip, "-m", "pip", "--python", py, "install", "-q", "gunicorn"], **quiet).returncode == 0
    if not ok:
        print("service: cannot make a virtual environment with gunicorn for %s; its row shows -" % interp.path,
              file=sys.stderr)
        return None
    return py


def _new_pip():
    """A Python whose pip is new enough (25+) to install into the newest
    interpreters from outside (`pip --python`), in a venv of the harness's
    Python under ~/.cache/rprof-bench; None if it cannot be had."""
    root = os.path.join(os.path.expanduser("~"), ".cache", "rprof-bench", "pip")
    py = os.path.join(root, "bin", "python")
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    check = [py, "-c", "import pip, sys; sys.exit(int(pip.__version__.split('.')[0]) < 25)"]
    if os.path.exists(py) and subprocess.run(check, **quiet).returncode == 0:
        return py
    ok = (subprocess.run([sys.executable, "-m", "venv", root], **quiet).returncode == 0
          and subprocess.run([py, "-m", "pip", "install", "-q", "pip>=25"], **quiet).returncode == 0)
    return py if ok else None


_PYSPY = []


def pyspy_binary():
    """py-spy from PyPI, in a virtual environment of the harness's Python, or None."""
    if _PYSPY:
        return _PYSPY[0]
    root = os.path.join(os.path.expanduser("~"), ".cache", "rprof-bench", "py-spy")
    exe = os.path.join(root, "bin", "py-spy")
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not os.path.exists(exe):
        ok = (subprocess.run([sys.executable, "-m", "venv", root], **quiet).returncode == 0
              and subprocess.run([os.path.join(root, "bin", "python"), "-m", "pip", "install", "-q", "py-spy"],
                                 **quiet).returncode == 0)
        if not ok or not os.path.exists(exe):
            print("service: py-spy cannot be installed from PyPI here; its column shows -", file=sys.stderr)
            exe = None
    _PYSPY.append(exe)
    return exe


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def load(port, seconds, clients):
    """Closed-loop load: `clients` connections at a time, each sending the
    next request as soon as the previous answer has arrived, for `seconds`.
    Returns (requests answered 200/404, errors)."""
    import asyncio

    async def client(k, stop, counts):
        i = k
        while time.perf_counter() < stop:
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port)
                w.write(b"GET " + SERVICE_PATHS[i % len(SERVICE_PATHS)] + b" HTTP/1.0\r\nHost: x\r\n\r\n")
                data = await r.read()
                w.close()
            except OSError:
                counts[1] += 1
                await asyncio.sleep(0.01)
                continue
            i += 1
            if data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.1 404") \
                    or data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.0 404"):
                counts[0] += 1
            else:
                counts[1] += 1

    async def main():
        counts = [0, 0]
        stop = time.perf_counter() + seconds
        await asyncio.gather(*(client(k, stop, counts) for k in range(clients)))
        return counts

    return tuple(asyncio.run(main()))


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _cpu_of(pid):
    """User + system CPU seconds of a live process, from /proc/PID/stat."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / float(CLK_TCK)
    except (OSError, IndexError, ValueError):
        return None


def service_once(py, config, rprof, seconds, clients, env, tmp):
    """One run of the service under `config`; a dict of what was measured."""
    port = free_port()
    senv = dict(env)
    senv.pop("RPROF_BENCH_CPROFILE", None)
    if config == "cprofile":
        senv["RPROF_BENCH_CPROFILE"] = "1"
    log = open(os.path.join(tmp, "gunicorn.log"), "w")
    master = subprocess.Popen([py, "-m", "gunicorn", "-w", "1", "-k", "sync", "-b", "127.0.0.1:%d" % port,
                               "--chdir", BENCH_DIR, "service_app:app"], stdout=log, stderr=log, env=senv)
    prof = None
    try:
        deadline = time.time() + 30
        worker = None
        while time.time() < deadline and worker is None:
            time.sleep(0.1)
            kids = _children(master.pid)
            if kids and load(port, 0.05, 1)[0] > 0:
                worker = kids[0]
        if worker is None:
            with open(log.name) as f:
                raise RuntimeError("gunicorn did not start: %s" % f.read()[-300:])
        load(port, 0.5, clients)             # warm-up
        out = {}
        if config.startswith("rprof"):
            prof = subprocess.Popen([rprof, "attach", str(worker), "-o", os.path.join(tmp, "svc.prof")]
                                    + SERVICE_RPROF_ARGS[config],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            line = b""
            for line in prof.stderr:
                if b"attached to PID" in line:
                    break
            m = ATTACHED_MS.search(line.decode("utf-8", "replace"))
            if not m:
                raise RuntimeError("rprof attach failed: %s" % line.decode("utf-8", "replace"))
            out["attach_ms"] = float(m.group(1))
        elif config == "py-spy":
            prof = subprocess.Popen([pyspy_binary(), "record", "--pid", str(worker), "--rate", "100",
                                     "--format", "raw", "-o", os.path.join(tmp, "pyspy.txt")],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            time.sleep(0.5)                  # py-spy prints nothing reliable once it samples
            if prof.poll() is not None:
                raise RuntimeError("py-spy failed: %s" % prof.stdout.read().decode("utf-8", "replace")[-300:])
        cpu0 = _cpu_of(prof.pid) if prof is not None else None
        w0 = _cpu_of(worker)
        ok, errors = load(port, seconds, clients)
        w1 = _cpu_of(worker)
        cpu1 = _cpu_of(prof.pid) if prof is not None else None
        out.update(rps=ok / seconds, errors=errors, requests=ok,
                   cpu_per_request=(w1 - w0) / ok if ok and w0 is not None and w1 is not None else None,
                   worker_cpu=(w1 - w0) / seconds if w0 is not None and w1 is not None else None,
                   profiler_cpu=(cpu1 - cpu0) / seconds if cpu0 is not None and cpu1 is not None else None)
        if prof is not None:
            os.kill(prof.pid, signal.SIGINT)
            try:
                _, rest = prof.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                raise RuntimeError("the profiler did not stop")
            if config.startswith("rprof"):
                err = (line + (rest or b"")).decode("utf-8", "replace")
                s = RPROF_SUMMARY.search(err)
                if prof.returncode != 0:
                    raise RuntimeError("rprof ended with %s: %s" % (prof.returncode, err.strip()[-300:]))
                if s:
                    out["events"] = int(s.group("events"))
                    out["waits"] = int(s.group("waits"))
        return out
    finally:
        _kill(prof)
        if master.poll() is None:
            os.kill(master.pid, signal.SIGTERM)
            try:
                master.wait(10)
            except subprocess.TimeoutExpired:
                _kill(master)
        for kid in _children(master.pid):
            os.kill(kid, signal.SIGKILL)
        log.close()


# rprof's configurations in the service section: the attach, its floor (the
# hook installed, callbacks returning at once: what no rprof change can go
# below) and, where the binary has it, --no-builtins.
SERVICE_RPROF_ARGS = {"rprof": [], "rprof-floor": ["--floor"], "rprof-no-builtins": ["--no-builtins"]}


def service_ratio(interps, rprof, reps, env, tmp, problems, loads, args):
    """Requests per second of a small WSGI service on gunicorn (one sync
    worker) under a bounded loopback load: unprofiled, under cProfile in the
    worker, with rprof attached to the worker, with py-spy (100 Hz)
    attached; interleaved, a fresh server per run."""
    configs = (["none", "cprofile", "rprof", "rprof-floor"]
               + (["rprof-no-builtins"] if rprof_has_flag("--no-builtins") else [])
               + (["py-spy"] if pyspy_binary() else []))
    got = collections.defaultdict(dict)    # (label, config) -> {rep: result}
    venvs = {}
    for interp in interps:
        venvs[interp.label] = service_venv(interp)
    for rep in range(reps):
        for i, interp in enumerate(interps):
            py = venvs[interp.label]
            if py is None:
                continue
            k = (rep + i) % len(configs)
            for config in configs[k:] + configs[:k]:
                loads.append(loadavg())
                try:
                    r = service_once(py, config, rprof, args.service_seconds, args.service_clients, env, tmp)
                except (RuntimeError, OSError) as e:
                    problems.append("service on %s under %s (rep %d): %s" % (interp.label, config, rep + 1, e))
                    continue
                if r.get("waits"):
                    problems.append("service on %s under rprof (rep %d): the target waited %d times"
                                    % (interp.label, rep + 1, r["waits"]))
                got[(interp.label, config)][rep] = r
                print("[rep %d/%d] service %-32s %-9s %7.0f req/s%s" % (
                    rep + 1, reps, interp.label, config, r["rps"],
                    "" if "events" not in r else "  %.0f events/request" % (r["events"] / max(1, r["requests"]))),
                    file=sys.stderr)

    def ratio(label, config):
        xs = []
        for rep, r in got.get((label, config), {}).items():
            base = got.get((label, "none"), {}).get(rep)
            if base and base["rps"] > 0:
                xs.append(r["rps"] / base["rps"])
        return _stats(xs)

    def capacity(label, config):
        # Worker CPU per request, unprofiled / profiled (same repetition):
        # what a CPU-bound worker could serve, independent of how long the
        # busy machine made it wait for a CPU.
        xs = []
        for rep, r in got.get((label, config), {}).items():
            base = got.get((label, "none"), {}).get(rep)
            if base and base.get("cpu_per_request") and r.get("cpu_per_request"):
                xs.append(base["cpu_per_request"] / r["cpu_per_request"])
        return _stats(xs)

    def med(label, config, key):
        xs = [r[key] for r in got.get((label, config), {}).values() if r.get(key) is not None]
        return statistics.median(xs) if xs else None

    header = ["Python", "req/s unprofiled", "cProfile in-process", "rprof attached", "py-spy 100 Hz",
              "rprof / cProfile", "capacity: cProfile", "capacity: rprof", "capacity: rprof --floor",
              "capacity: rprof --no-builtins", "capacity: py-spy",
              "worker ms CPU / request", "events / request", "rprof cost / event (ns)", "reader CPU (cores)",
              "attach ms"]
    rows = []
    for interp in interps:
        base = med(interp.label, "none", "rps")
        if base is None:
            rows.append([interp.label] + ["-"] * (len(header) - 1))
            continue
        ev = None
        per_ev = None
        runs = got.get((interp.label, "rprof"), {})
        c0, c1 = med(interp.label, "none", "cpu_per_request"), med(interp.label, "rprof", "cpu_per_request")
        if runs:
            ev = statistics.median(r["events"] / max(1, r["requests"]) for r in runs.values())
            if ev and c0 and c1:
                # Extra worker CPU per request while attached, spread over its events.
                per_ev = (c1 - c0) / ev * 1e9
        rc = [r["rps"] / c["rps"] for rep, r in runs.items()
              for c in [got.get((interp.label, "cprofile"), {}).get(rep)] if c and c["rps"] > 0]
        rows.append([
            interp.label, "%.0f" % base,
            _fmt(ratio(interp.label, "cprofile"), True),
            _fmt(ratio(interp.label, "rprof"), True),
            _fmt(ratio(interp.label, "py-spy"), True) if "py-spy" in configs else "-",
            _fmt(_stats(rc), True),
            _fmt(capacity(interp.label, "cprofile"), True),
            _fmt(capacity(interp.label, "rprof"), True),
            _fmt(capacity(interp.label, "rprof-floor"), True),
            _fmt(capacity(interp.label, "rprof-no-builtins"), True) if "rprof-no-builtins" in configs else "-",
            _fmt(capacity(interp.label, "py-spy"), True) if "py-spy" in configs else "-",
            "/".join("%.2f" % (v * 1e3) if v else "?" for v in
                     (med(interp.label, c, "cpu_per_request") for c in ("none", "cprofile", "rprof"))),
            "%.0f" % ev if ev else "-",
            "%.0f" % per_ev if per_ev is not None else "-",
            "%.2f" % med(interp.label, "rprof", "profiler_cpu") if med(interp.label, "rprof", "profiler_cpu")
            is not None else "-",
            "%.0f" % med(interp.label, "rprof", "attach_ms") if med(interp.label, "rprof", "attach_ms")
            is not None else "-",
        ])
    return [("service: requests per second while profiled / unprofiled (same repetition), median [min-max] of "
             "%d; gunicorn, 1 sync worker, %d loopback clients, %.0f s per run. capacity = worker CPU per "
             "request unprofiled / profiled (py-spy's pauses of the worker are not in it); worker ms CPU / "
             "request: unprofiled/cProfile/rprof" % (reps, args.service_clients, args.service_seconds), header, rows)]


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
        self.extra_tables = []          # [(heading, header, rows)] of the attach/service sections

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
        plain = [(w, t, p) for w, t, p in self.workloads if w not in PP_SCRIPTS]
        for w, title, _ in plain:
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
        out.extend(self.pp_tables(markdown, ratio_cols, profiled))
        # Whole-command wall and CPU time: shows the reader's CPU on the other core.
        for w, title, _ in plain:
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
        return out + list(self.extra_tables)

    def pp_tables(self, markdown, ratio_cols, profiled):
        """The pyperformance set: per benchmark and interpreter, the median of
        each paired ratio, and per interpreter the geometric mean over the
        benchmarks of those medians."""
        pp = [w for w, _, _ in self.workloads if w in PP_SCRIPTS]
        if not pp:
            return []
        out = []
        cols = [("%s slowdown" % c, c, BASELINE) for c in profiled] + [(t, n, d) for n, d, t in ratio_cols]
        geo_rows = []
        for title, num, den in cols:
            header = ["benchmark"] + [i.label for i in self.interps]
            rows = []
            per_interp = collections.defaultdict(list)
            for w in pp:
                row = [w[len("pp_"):]]
                for interp in self.interps:
                    names = configs_for(interp, self.configs)
                    st = self._paired(w, interp.label, num, den) if num in names and den in names else None
                    row.append("%.2f" % st[0] if st else "-")
                    if st:
                        per_interp[interp.label].append(st[0])
                rows.append(row)
            geo = ["geomean"]
            for interp in self.interps:
                v = per_interp.get(interp.label)
                geo.append("%.2f (%d)" % (geomean(v), len(v)) if v else "-")
            rows.append(geo)
            geo_rows.append([title] + geo[1:])
            if num != BASELINE and title.endswith(" slowdown") is False:
                out.append(("pyperformance: %s, median of %d per benchmark" % (title, self.reps), header, rows))
        out.insert(0, ("pyperformance (%d benchmarks): geometric mean over the benchmarks of the median "
                       "of %d paired repetitions (number of benchmarks in parentheses)" % (len(pp), self.reps),
                       ["measure"] + [i.label for i in self.interps], geo_rows))
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
        lines.append("Clock: %s." % ("the workload process's CPU time (--clock cpu)" if m.get("clock") == "cpu"
                                 else "wall time"))
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
        data["extra_tables"] = [{"heading": h, "header": hd, "rows": r} for h, hd, r in self.extra_tables]
        return data


if __name__ == "__main__":
    sys.exit(main())
