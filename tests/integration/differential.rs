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

use crate::util::{self, describe, run, Python, Workload};
use std::path::Path;

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
    let ours = dir.join(format!("{}-{}-rprof.prof", w.name(), hook.arg()));
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
    if let Some(f) = timing_consistent(&ours, w.threaded) {
        return Some(format!("{case}: {f}"));
    }
    let reference = dir.join(format!("{}-{}-reference.prof", w.name(), hook.arg()));
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
    if !reference.exists() {
        return Some(format!(
            "the reference profiler failed: {}",
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
/// every function's own time, to within a few percent.
fn timing_consistent(prof: &Path, threaded: bool) -> Option<String> {
    let bytes = std::fs::read(prof).ok()?;
    let profile = match rprof_format::read_pstats(&bytes) {
        Ok(p) => p,
        Err(e) => return Some(format!("cannot read rprof's own .prof: {e}")),
    };
    for f in &profile.functions {
        let t = f.totals;
        if t.tottime < 0.0 || t.tottime > t.cumtime * (1.0 + 1e-9) + 1e-9 {
            return Some(format!(
                "{:?}: tottime {} > cumtime {}",
                f.func, t.tottime, t.cumtime
            ));
        }
    }
    if threaded {
        return None;
    }
    let total = profile.total_time();
    let top = profile
        .functions
        .iter()
        .map(|f| f.totals.cumtime)
        .fold(0.0, f64::max);
    if (total - top).abs() > 0.03 * top + 1e-4 {
        return Some(format!(
            "the sum of tottime ({total:.6} s) differs from the outermost cumtime ({top:.6} s) by more than 3%"
        ));
    }
    None
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
            if let Some(f) = check(py, w, hook, dir.path()) {
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
        eprintln!("skipping: no Python 3.12+ found for the monitoring hook");
        return;
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
    let mut target = py
        .command()
        .arg(&runner)
        .arg("attach")
        .arg(&w.path)
        .args(&w.args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ours = dir.join(format!("{}-{}-attached.prof", w.name(), hook.arg()));
    let outcome = capture_attached(&mut target, hook, &ours);
    // Whatever happened, the runner is ended and reaped.
    let _ = target.kill();
    let _ = target.wait();
    if let Err(e) = outcome {
        return Some(format!("{case}: {e}"));
    }
    if let Some(f) = timing_consistent(&ours, true) {
        return Some(format!("{case}: {f}"));
    }
    let reference = dir.join(format!("{}-{}-attached-ref.prof", w.name(), hook.arg()));
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
/// the workload run, wait for `done`, detach with SIGINT.
fn capture_attached(
    target: &mut std::process::Child,
    hook: Hook,
    out: &Path,
) -> Result<(), String> {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;

    let mut stdin = target.stdin.take().ok_or("no stdin")?;
    let mut lines = BufReader::new(target.stdout.take().ok_or("no stdout")?).lines();
    let mut wait_for = |want: &str| lines.by_ref().map_while(Result::ok).any(|l| l == want);
    if !wait_for("ready") {
        return Err("the runner did not start".into());
    }
    let mut rprof = util::rprof()
        .args(["attach", "--hook", hook.arg(), "-o"])
        .arg(out)
        .arg(target.id().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let result = (|| {
        let mut err = BufReader::new(rprof.stderr.take().ok_or("no stderr")?);
        let mut log = String::new();
        loop {
            let mut line = String::new();
            if err.read_line(&mut line).unwrap_or(0) == 0 {
                return Err(format!("rprof attach failed: {log}"));
            }
            log.push_str(&line);
            if line.contains("attached to PID") {
                break;
            }
        }
        stdin.write_all(b"g").map_err(|e| e.to_string())?;
        stdin.flush().map_err(|e| e.to_string())?;
        if !wait_for("done") {
            return Err("the workload did not finish".into());
        }
        util::signal(rprof.id(), "INT");
        err.read_to_string(&mut log).ok();
        let status = rprof.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("rprof exited with {status}:\n{log}"));
        }
        Ok(())
    })();
    let _ = rprof.kill();
    let _ = rprof.wait();
    stdin.write_all(b"xx").ok();
    result
}

#[test]
fn attached_setprofile_hook_matches_cprofile() {
    suite(Hook::SetProfile, "attached", check_attached);
}

#[test]
fn attached_monitoring_hook_matches_cprofile() {
    if !util::interpreters().iter().any(|p| p.at_least(3, 12)) {
        eprintln!("skipping: no Python 3.12+ found for the monitoring hook");
        return;
    }
    suite(Hook::Monitoring, "attached", check_attached);
}
