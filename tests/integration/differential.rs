//! The differential suite: every workload in `tests/workloads/` under
//! `rprof run` and under a reference profiler on every interpreter found,
//! compared by `tests/differential/compare.py` (keys, call counts, primitive
//! counts and caller edges must be identical; rprof's times consistent).
//!
//! The reference is cProfile itself (on 3.15 and newer `profiling.tracing`,
//! which replaced it: see [`reference_module`]), except for threaded workloads: cProfile
//! before 3.12 sees only the main thread, and from 3.12 on pushes every
//! thread onto one stack (CPython PR #138229), so its recursion and caller
//! counts are wrong for threads. Those are compared with
//! `tests/differential/reference.py`, a per-thread replica of `_lsprof.c`
//! built on the same hook as the one under test.

use crate::util::{self, describe, run, Python, Spawned, Workload};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Hook {
    SetProfile,
    Monitoring,
}

impl Hook {
    fn arg(self) -> &'static str {
        match self {
            Hook::SetProfile => "setprofile",
            Hook::Monitoring => "monitoring",
        }
    }
}

/// The reference profiler for single-threaded workloads: cProfile up to
/// 3.14; from 3.15 on the deterministic profiler is `profiling.tracing`
/// (PEP 799), of which `cProfile` is only an alias, so the suite runs that.
pub fn reference_module(py: &Python) -> &'static str {
    if py.at_least(3, 15) {
        "profiling.tracing"
    } else {
        "cProfile"
    }
}

/// Runs one workload on one interpreter; returns a failure message.
fn check(py: &Python, w: &Workload, hook: Hook, dir: &Path) -> Option<String> {
    let case = format!(
        "{} on Python {} with --hook {}",
        w.name(),
        py.label(),
        hook.arg()
    );
    // Plain run: warms the bytecode cache and gives the expected output.
    let plain = run(py.command().arg(&w.path).args(&w.args));
    if plain.status.code() != Some(w.exit) {
        return Some(format!(
            "{case}: the workload itself failed: {}",
            describe(&plain)
        ));
    }
    let ours = dir.join("rprof.prof");
    let out = run(util::rprof()
        .args(["run", "--hook", hook.arg(), "--python"])
        .arg(&py.path)
        .arg("-o")
        .arg(&ours)
        .arg(&w.path)
        .args(&w.args));
    if out.status.code() != Some(w.exit) {
        return Some(format!(
            "{case}: rprof exited {:?}, the workload exits {}: {}",
            out.status.code(),
            w.exit,
            describe(&out)
        ));
    }
    if out.stdout != plain.stdout {
        return Some(format!(
            "{case}: the workload's output changed under rprof:\n--- plain\n{}\n--- under rprof\n{}",
            String::from_utf8_lossy(&plain.stdout),
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    if let Some(f) = timing_consistent(py, &ours, w.threaded) {
        return Some(format!("{case}: {f}"));
    }
    let reference = dir.join("reference.prof");
    let mut cprofile = py.command();
    cprofile
        .args(["-m", reference_module(py), "-o"])
        .arg(&reference)
        .arg(&w.path)
        .args(&w.args);
    compare_with_reference(py, w, hook, &ours, &reference, cprofile, &[])
        .map(|f| format!("{case}: {f}"))
}

/// Makes the reference profile of `w` — with `cprofile` (a command that
/// writes `reference`), or for threaded workloads with the per-thread
/// replica of `_lsprof` on the same hook — and compares `ours` with it
/// (`extra` goes to compare.py). Returns what went wrong.
fn compare_with_reference(
    py: &Python,
    w: &Workload,
    hook: Hook,
    ours: &Path,
    reference: &Path,
    mut cprofile: std::process::Command,
    extra: &[&str],
) -> Option<String> {
    let differential = util::root().join("tests/differential");
    let refrun = if w.threaded {
        run(py
            .command()
            .arg(differential.join("reference.py"))
            .args(["--hook", hook.arg(), "-o"])
            .arg(reference)
            .arg(&w.path)
            .args(&w.args))
    } else {
        run(&mut cprofile)
    };
    if !refrun.status.success() || !reference.exists() {
        return Some(format!(
            "the reference profiler failed (or wrote nothing): {}",
            describe(&refrun)
        ));
    }
    let mut cmp = py.command();
    cmp.arg(differential.join("compare.py"))
        .arg("--workload")
        .arg(&w.path)
        .args(extra);
    if w.threaded {
        cmp.arg("--threaded");
    }
    let cmp = run(cmp.arg(ours).arg(reference));
    if !cmp.status.success() {
        return Some(format!("differs from the reference:\n{}", describe(&cmp)));
    }
    None
}

/// Times must add up: no function's own time exceeds its cumulative time,
/// and (single-threaded) the outermost call's cumulative time is the sum of
/// every function's own time, to within a few percent. The file is read by
/// the interpreter's own `pstats`; a file it cannot read is a failure.
fn timing_consistent(py: &Python, prof: &Path, threaded: bool) -> Option<String> {
    let out = run(py
        .command()
        .arg("-c")
        .arg(
            "import pstats, sys\n\
             st = pstats.Stats(sys.argv[1]).stats\n\
             for k, (cc, nc, tt, ct, _) in st.items():\n\
             \x20   print(repr(k), tt, ct)\n",
        )
        .arg(prof));
    if !out.status.success() {
        return Some(format!(
            "pstats cannot read rprof's {}: {}",
            prof.display(),
            describe(&out)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut total = 0.0;
    let mut top: f64 = 0.0;
    for line in text.lines() {
        let mut it = line.rsplitn(3, ' ');
        let (Some(ct), Some(tt), Some(key)) = (it.next(), it.next(), it.next()) else {
            return Some(format!("unexpected pstats line {line:?}"));
        };
        let (tt, ct): (f64, f64) = (tt.parse().unwrap(), ct.parse().unwrap());
        if tt < 0.0 || tt > ct * (1.0 + 1e-9) + 1e-9 {
            return Some(format!("{key}: tottime {tt} > cumtime {ct}"));
        }
        total += tt;
        top = top.max(ct);
    }
    if threaded {
        return None;
    }
    if (total - top).abs() > 0.03 * top + 1e-4 {
        return Some(format!(
            "the sum of tottime ({total:.6} s) differs from the outermost cumtime ({top:.6} s) by more than 3%"
        ));
    }
    None
}

/// A fresh directory for one case, named after the workload, the
/// interpreter and the hook, so that no file of another case can stand in
/// for a missing one.
fn case_dir(root: &Path, w: &Workload, py: &Python, hook: Hook) -> PathBuf {
    let (a, b, c) = py.version;
    let family = py
        .path
        .to_string_lossy()
        .replace(|ch: char| !ch.is_ascii_alphanumeric(), "_");
    let d = root.join(format!("{}-{a}.{b}.{c}-{family}-{}", w.name(), hook.arg()));
    std::fs::create_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d
}

/// Runs `check` for every workload on every interpreter the hook applies
/// to, and fails with every failure at once.
fn suite(hook: Hook, what: &str, check: fn(&Python, &Workload, Hook, &Path) -> Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let workloads = util::workloads();
    let mut failures = Vec::new();
    let mut ran = 0;
    for py in util::interpreters() {
        if hook == Hook::Monitoring && !py.at_least(3, 12) {
            eprintln!(
                "skipping --hook monitoring on Python {}: needs 3.12+",
                py.label()
            );
            continue;
        }
        for w in &workloads {
            if !w.runs_on(py) {
                eprintln!(
                    "skipping {} on Python {}: needs a newer Python",
                    w.name(),
                    py.label()
                );
                continue;
            }
            ran += 1;
            let case = case_dir(dir.path(), w, py, hook);
            if let Some(f) = check(py, w, hook, &case) {
                eprintln!("FAIL {f}");
                failures.push(f);
            }
        }
    }
    eprintln!("{ran} {what} cases, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {ran} {what} cases failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn setprofile_hook_matches_cprofile() {
    suite(Hook::SetProfile, "launched", check);
}

#[test]
fn monitoring_hook_matches_cprofile() {
    if !util::interpreters().iter().any(|p| p.at_least(3, 12)) {
        return util::skip(
            "no Python 3.12+ found: the launched monitoring-hook differential suite did not run",
        );
    }
    suite(Hook::Monitoring, "launched", check);
}

/// The workload run by `attach_runner.py` in a process rprof attaches to
/// while it waits in a blocking builtin call, and detaches from afterwards;
/// the reference is the same runner with cProfile enabled at the same
/// points.
fn check_attached(py: &Python, w: &Workload, hook: Hook, dir: &Path) -> Option<String> {
    use std::process::Stdio;

    let case = format!(
        "{} attached on Python {} with --hook {}",
        w.name(),
        py.label(),
        hook.arg()
    );
    let runner = util::root().join("tests/differential/attach_runner.py");
    let ours = dir.join("rprof-attached.prof");
    let capture = std::panic::catch_unwind(|| {
        capture_attached(py, &runner, w, hook, &ours, &[]);
    });
    if let Err(e) = capture {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        return Some(format!("{case}: {msg}"));
    }
    if let Some(f) = timing_consistent(py, &ours, true) {
        return Some(format!("{case}: {f}"));
    }
    let reference = dir.join("reference-attached.prof");
    let mut cprofile = py.command();
    cprofile
        .arg(&runner)
        .arg("cprofile")
        .arg(&reference)
        .arg(&w.path)
        .args(&w.args)
        .stdin(Stdio::null());
    compare_with_reference(
        py,
        w,
        hook,
        &ours,
        &reference,
        cprofile,
        &[
            "--harness-call",
            "<method 'read' of '_io.BufferedReader' objects>",
        ],
    )
    .map(|f| format!("{case}: {f}"))
}

/// Drives one attached run of the runner: wait for `ready`, attach, let
/// the workload run, wait for `done`, detach with SIGINT. Every wait has a
/// time limit; a hang, or either process exiting other than 0, panics with
/// both outputs (and both processes are ended by PID).
fn capture_attached(
    py: &Python,
    runner: &Path,
    w: &Workload,
    hook: Hook,
    out: &Path,
    flags: &[&str],
) {
    let limit = Duration::from_secs(120);
    let mut target = Spawned::spawn(
        format!("attach_runner {} on {}", w.name(), py.label()),
        py.command()
            .arg(runner)
            .arg("attach")
            .arg(&w.path)
            .args(&w.args),
    );
    target.expect_out("ready", limit);
    let mut rprof = Spawned::spawn(
        "rprof attach",
        util::rprof()
            .args(["attach", "--hook", hook.arg()])
            .args(flags)
            .arg("-o")
            .arg(out)
            .arg(target.pid().to_string()),
    );
    rprof.expect_err("attached to PID", limit);
    target.write_stdin(b"g");
    target.others.push(rprof.describe());
    target.expect_out("done", limit);
    util::signal(rprof.pid(), "INT");
    rprof.others.push(target.describe());
    rprof.expect_exit(0, limit);
    target.write_stdin(b"xx");
    target.others.clear();
    target.expect_exit(0, limit);
}

#[test]
fn attached_setprofile_hook_matches_cprofile() {
    suite(Hook::SetProfile, "attached", check_attached);
}

#[test]
fn attached_monitoring_hook_matches_cprofile() {
    if !util::interpreters().iter().any(|p| p.at_least(3, 12)) {
        return util::skip(
            "no Python 3.12+ found: the attached monitoring-hook differential suite did not run",
        );
    }
    suite(Hook::Monitoring, "attached", check_attached);
}

/// compare.py's own self-test: it accepts identical statistics and rejects
/// every kind of difference it promises to catch.
#[test]
fn compare_script_self_test() {
    let py = util::interpreters().last().unwrap();
    let out = run(py
        .command()
        .arg(util::root().join("tests/differential/selftest.py")));
    assert!(out.status.success(), "{}: {}", py.label(), describe(&out));
}

/// The pure-Python per-thread reference against real cProfile (and the
/// workloads' determinism), on one interpreter per hook; on every
/// interpreter with `RPROF_STRESS=1`.
#[test]
fn reference_profiler_matches_real_cprofile() {
    let pythons: Vec<&Python> = if std::env::var_os("RPROF_STRESS").is_some() {
        util::interpreters().iter().collect()
    } else {
        util::one_per_hook()
    };
    let mut cmd = pythons[0].command();
    cmd.arg(util::root().join("tests/differential/validate.py"));
    for py in &pythons {
        cmd.arg("--python").arg(&py.path);
    }
    if std::env::var_os("RPROF_STRESS").is_none() {
        cmd.args(["--threaded-repeats", "1"]);
    }
    let out = run(&mut cmd);
    assert!(out.status.success(), "{}", describe(&out));
}

/// Checks rprof's times against the truth `timing_truth.py` measured
/// itself: cumtime of `sleeper` and `spinner` and tottime of `time.sleep`
/// within 2 % + 1 ms of the summed wall time of their calls; `spinner`'s
/// own time plus that of the clock it reads is its cumtime.
fn check_timing_truth(py: &Python, prof: &Path, truth: &Path, what: &str) {
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(truth).unwrap_or_else(|e| {
            panic!(
                "{what}: the workload wrote no truth to {}: {e}",
                truth.display()
            )
        }))
        .unwrap();
    let t = |k: &str| truth[k].as_f64().unwrap();
    let stats = util::pstats(py, prof);
    let find = |name: &str| -> (u64, u64, f64, f64) {
        let hits: Vec<_> = stats.iter().filter(|(k, _)| k.2 == name).collect();
        assert_eq!(hits.len(), 1, "{what}: {name} in {hits:?}");
        *hits[0].1
    };
    let close = |got: f64, want: f64, label: &str| {
        assert!(
            (got - want).abs() <= 0.02 * want + 1e-3,
            "{what}: {label} is {got:.6} s, the workload measured {want:.6} s (tolerance 2 % + 1 ms)"
        );
    };
    let sleeper = find("sleeper");
    let spinner = find("spinner");
    let sleep = find("<built-in method time.sleep>");
    let clock = find("<built-in method time.process_time>");
    assert_eq!((sleeper.1, spinner.1, sleep.1), (4, 3, 4), "{what}: calls");
    close(sleeper.3, t("sleeper"), "cumtime of sleeper");
    close(sleep.2, t("time.sleep"), "tottime of time.sleep");
    close(spinner.3, t("spinner"), "cumtime of spinner");
    close(
        spinner.2 + clock.2,
        spinner.3,
        "tottime of spinner + process_time",
    );
    // The sleeper's own time is the little around the sleep.
    assert!(
        sleeper.2 < 0.1 * sleeper.3,
        "{what}: tottime of sleeper {sleeper:?}"
    );
}

/// rprof's tottime and cumtime against times the workload measured itself,
/// launched and attached, on one interpreter per hook (and the setprofile
/// hook on the newest too).
#[test]
fn times_match_what_the_workload_measured() {
    let script = util::root().join("tests/targets/timing_truth.py");
    let runner = util::root().join("tests/differential/attach_runner.py");
    let dir = tempfile::tempdir().unwrap();
    for py in util::one_per_hook() {
        let hooks: &[Hook] = if py.at_least(3, 12) {
            &[Hook::Monitoring, Hook::SetProfile]
        } else {
            &[Hook::SetProfile]
        };
        for &hook in hooks {
            let case = dir
                .path()
                .join(format!("{}.{}-{}", py.version.0, py.version.1, hook.arg()));
            std::fs::create_dir(&case).unwrap();
            let what = format!(
                "timing_truth.py on {} with --hook {}",
                py.label(),
                hook.arg()
            );
            let (prof, truth) = (case.join("run.prof"), case.join("run.json"));
            let out = run(util::rprof()
                .args(["run", "--hook", hook.arg(), "--python"])
                .arg(&py.path)
                .arg("-o")
                .arg(&prof)
                .arg(&script)
                .arg(&truth));
            assert!(out.status.success(), "{what}: {}", describe(&out));
            check_timing_truth(py, &prof, &truth, &format!("{what}, launched"));
            let (prof, truth) = (case.join("attached.prof"), case.join("attached.json"));
            let w = Workload {
                path: script.clone(),
                threaded: false,
                min_python: None,
                exit: 0,
                args: vec![truth.display().to_string()],
            };
            capture_attached(py, &runner, &w, hook, &prof, &[]);
            check_timing_truth(py, &prof, &truth, &format!("{what}, attached"));
        }
    }
}

/// cProfile's `Profile(builtins=False)` and `Profile(subcalls=False)`, and
/// rprof's switches for them.
#[derive(Clone, Copy, Debug)]
enum Switch {
    NoBuiltins,
    NoSubcalls,
}

impl Switch {
    fn flag(self) -> &'static str {
        match self {
            Switch::NoBuiltins => "--no-builtins",
            Switch::NoSubcalls => "--no-subcalls",
        }
    }

    fn kw(self) -> &'static str {
        match self {
            Switch::NoBuiltins => "builtins=False",
            Switch::NoSubcalls => "subcalls=False",
        }
    }
}

/// The workloads the switch suites run by default (every non-threaded one
/// with `RPROF_DIFF_ALL=1`): recursion, builtins called every way, C
/// calling Python (whose builtins' time goes to the caller).
const SWITCH_WORKLOADS: [&str; 4] = [
    "deep_recursion.py",
    "builtins_loop.py",
    "builtin_methods.py",
    "c_callbacks.py",
];

fn switch_workloads() -> Vec<Workload> {
    let all = std::env::var_os("RPROF_DIFF_ALL").is_some_and(|v| v == "1");
    util::workloads()
        .into_iter()
        .filter(|w| !w.threaded && (all || SWITCH_WORKLOADS.contains(&w.name().as_str())))
        .collect()
}

/// `rprof run SWITCH` against `cprofile_with.py KW` (`python -m cProfile`
/// with `Profile(KW)`).
fn check_switch(
    py: &Python,
    w: &Workload,
    hook: Hook,
    switch: Switch,
    dir: &Path,
) -> Option<String> {
    let case = format!(
        "{} on Python {} with --hook {} {}",
        w.name(),
        py.label(),
        hook.arg(),
        switch.flag()
    );
    let plain = run(py.command().arg(&w.path).args(&w.args));
    if plain.status.code() != Some(w.exit) {
        return Some(format!(
            "{case}: the workload itself failed: {}",
            describe(&plain)
        ));
    }
    let ours = dir.join("rprof.prof");
    let out = run(util::rprof()
        .args(["run", switch.flag(), "--hook", hook.arg(), "--python"])
        .arg(&py.path)
        .arg("-o")
        .arg(&ours)
        .arg(&w.path)
        .args(&w.args));
    if out.status.code() != Some(w.exit) || out.stdout != plain.stdout {
        return Some(format!(
            "{case}: rprof exited {:?} (the workload exits {}) or changed its output: {}",
            out.status.code(),
            w.exit,
            describe(&out)
        ));
    }
    if let Some(f) = timing_consistent(py, &ours, false) {
        return Some(format!("{case}: {f}"));
    }
    let reference = dir.join("reference.prof");
    let mut cprofile = py.command();
    cprofile
        .arg(util::root().join("tests/differential/cprofile_with.py"))
        .arg(switch.kw())
        .arg("-o")
        .arg(&reference)
        .arg(&w.path)
        .args(&w.args);
    compare_with_reference(py, w, hook, &ours, &reference, cprofile, &[])
        .map(|f| format!("{case}: {f}"))
}

/// The same, attached: `rprof attach SWITCH` against `attach_runner.py
/// --kw=KW cprofile`.
fn check_switch_attached(
    py: &Python,
    w: &Workload,
    hook: Hook,
    switch: Switch,
    dir: &Path,
) -> Option<String> {
    use std::process::Stdio;

    let case = format!(
        "{} attached on Python {} with --hook {} {}",
        w.name(),
        py.label(),
        hook.arg(),
        switch.flag()
    );
    let runner = util::root().join("tests/differential/attach_runner.py");
    let ours = dir.join("rprof-attached.prof");
    let capture = std::panic::catch_unwind(|| {
        capture_attached(py, &runner, w, hook, &ours, &[switch.flag()]);
    });
    if let Err(e) = capture {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        return Some(format!("{case}: {msg}"));
    }
    let reference = dir.join("reference-attached.prof");
    let mut cprofile = py.command();
    cprofile
        .arg(&runner)
        .arg(format!("--kw={}", switch.kw()))
        .arg("cprofile")
        .arg(&reference)
        .arg(&w.path)
        .args(&w.args)
        .stdin(Stdio::null());
    compare_with_reference(
        py,
        w,
        hook,
        &ours,
        &reference,
        cprofile,
        &[
            "--harness-call",
            "<method 'read' of '_io.BufferedReader' objects>",
        ],
    )
    .map(|f| format!("{case}: {f}"))
}

/// Runs `switch` on every interpreter: launched on [`switch_workloads`],
/// attached on one of them. With `--no-builtins` the setprofile hook is
/// also checked on a 3.12+ interpreter (the monitoring hook does not
/// register the C events, the setprofile hook ignores them first thing);
/// `--no-subcalls` is the reader's, so the default hook is enough.
fn switch_suite(switch: Switch) {
    let dir = tempfile::tempdir().unwrap();
    let workloads = switch_workloads();
    assert!(!workloads.is_empty(), "no workload for the switch suite");
    let mut failures = Vec::new();
    let mut ran = 0;
    for py in util::interpreters() {
        let mut hooks = vec![if py.at_least(3, 12) {
            Hook::Monitoring
        } else {
            Hook::SetProfile
        }];
        // The setprofile hook on top, for --no-builtins, on the oldest
        // 3.12+ interpreter only (every one with RPROF_DIFF_ALL=1): a
        // bound on the suite's time.
        let all = std::env::var_os("RPROF_DIFF_ALL").is_some_and(|v| v == "1");
        let first_312 = util::interpreters()
            .iter()
            .find(|p| p.at_least(3, 12))
            .is_some_and(|p| p.path == py.path);
        if matches!(switch, Switch::NoBuiltins) && py.at_least(3, 12) && (all || first_312) {
            hooks.push(Hook::SetProfile);
        }
        for (h, hook) in hooks.into_iter().enumerate() {
            for w in &workloads {
                if !w.runs_on(py) {
                    continue;
                }
                // Attached: one workload, with the interpreter's default
                // hook.
                let attached = h == 0 && w.name() == "builtin_methods.py";
                ran += 1 + usize::from(attached);
                let case = case_dir(dir.path(), w, py, hook);
                let mut fails = vec![check_switch(py, w, hook, switch, &case)];
                if attached {
                    fails.push(check_switch_attached(py, w, hook, switch, &case));
                }
                for f in fails.into_iter().flatten() {
                    eprintln!("FAIL {f}");
                    failures.push(f);
                }
            }
        }
    }
    eprintln!("{ran} {} cases, {} failed", switch.flag(), failures.len());
    assert!(
        failures.is_empty(),
        "{} of {ran} {} cases failed:\n\n{}",
        failures.len(),
        switch.flag(),
        failures.join("\n\n")
    );
}

#[test]
fn no_builtins_matches_cprofile_builtins_false() {
    switch_suite(Switch::NoBuiltins);
}

#[test]
fn no_subcalls_matches_cprofile_subcalls_false() {
    switch_suite(Switch::NoSubcalls);
}
