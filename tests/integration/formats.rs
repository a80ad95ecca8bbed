//! Every output format from one capture, launched and attached: each file
//! is read back by a consumer (pstats, JSON parsers, gzip, XML) and the
//! totals agree across formats: collapsed self time adds up to the `.prof`
//! total tottime, and per-function calls summed over call paths equal
//! pstats ncalls.

use crate::util::{self, describe, run, KillOnDrop, Python};
use rprof_format::labels::frame_label;
use rprof_stats::Profile;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

const OUTPUTS: [&str; 7] = [
    "out.prof",
    "out.txt",
    "out.collapsed",
    "out.svg",
    "out.speedscope.json",
    "out.trace.json",
    "out.pb.gz",
];

fn outputs(dir: &Path) -> Vec<String> {
    OUTPUTS
        .iter()
        .flat_map(|o| ["-o".to_string(), dir.join(o).display().to_string()])
        .collect()
}

fn load_prof(dir: &Path, name: &str) -> Profile {
    rprof_format::read_pstats(&std::fs::read(dir.join(name)).unwrap()).unwrap()
}

/// `(path, value)` per collapsed line.
fn collapsed(file: &Path) -> Vec<(Vec<String>, u64)> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| {
            let (stack, v) = l.rsplit_once(' ').unwrap();
            (
                stack.split(';').map(String::from).collect(),
                v.parse().unwrap(),
            )
        })
        .collect()
}

/// Checks the files of one capture with every format against its `.prof`.
fn check_formats(dir: &Path, py: &Python, what: &str) {
    let profile = load_prof(dir, "out.prof");
    assert!(!profile.functions.is_empty(), "{what}: empty profile");

    // Collapsed self time (µs) adds up to the total tottime.
    let lines = collapsed(&dir.join("out.collapsed"));
    let total_us: u64 = lines.iter().map(|(_, v)| v).sum();
    let tottime_us = profile.total_time() * 1e6;
    assert!(
        (total_us as f64 - tottime_us).abs() <= 1.0 + 1e-3 * tottime_us,
        "{what}: collapsed {total_us} µs vs pstats {tottime_us} µs"
    );
    // Every stack starts with a thread named as Python names it.
    assert!(lines
        .iter()
        .all(|(s, _)| s[0].contains("(tid ") || s[0].starts_with("Thread ")));
    assert!(
        lines
            .iter()
            .any(|(s, _)| s[0].starts_with("MainThread (tid ")),
        "{what}"
    );

    // JSON formats parse; the trace has one complete event per call.
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out.trace.json")).unwrap()).unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    let complete = events.iter().filter(|e| e["ph"] == "X").count() as u64;
    assert_eq!(
        complete,
        profile.total_calls(),
        "{what}: one X event per call"
    );
    assert!(events.iter().any(|e| e["ph"] == "M"
        && e["name"] == "thread_name"
        && e["args"]["name"] == "MainThread"));
    let speedscope: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("out.speedscope.json")).unwrap()).unwrap();
    assert_eq!(
        speedscope["exporter"]
            .as_str()
            .map(|e| e.starts_with("rprof")),
        Some(true)
    );
    assert!(!speedscope["profiles"].as_array().unwrap().is_empty());

    // The SVG and pprof are read by Python's XML parser and gzip.
    let check = run(py
        .command()
        .arg("-c")
        .arg(
            "import gzip, sys, xml.etree.ElementTree as ET\n\
             ET.parse(sys.argv[1])\n\
             data = gzip.open(sys.argv[2]).read()\n\
             assert len(data) > 100, len(data)\n\
             print('ok')\n",
        )
        .arg(dir.join("out.svg"))
        .arg(dir.join("out.pb.gz")));
    assert_eq!(
        String::from_utf8_lossy(&check.stdout),
        "ok\n",
        "{what}: {}",
        describe(&check)
    );
    let table = std::fs::read_to_string(dir.join("out.txt")).unwrap();
    assert!(table.contains("function calls"), "{what}");
}

/// Checks that call counts summed over paths, per leaf function, equal
/// pstats ncalls (a capture with `calls.collapsed` and `calls.prof`).
fn check_calls(dir: &Path, what: &str) {
    let profile = load_prof(dir, "calls.prof");
    let calls = collapsed(&dir.join("calls.collapsed"));
    let mut by_leaf: HashMap<&str, u64> = HashMap::new();
    for (stack, v) in &calls {
        *by_leaf.entry(stack.last().unwrap().as_str()).or_default() += v;
    }
    for f in &profile.functions {
        let label = rprof_format::collapsed::sanitize_frame(&frame_label(&f.func)).into_owned();
        assert_eq!(
            by_leaf.get(label.as_str()).copied().unwrap_or(0),
            f.totals.ncalls,
            "{what}: calls over paths for {label}"
        );
    }
}

/// `-o` arguments for the call-count capture.
fn calls_outputs(dir: &Path) -> Vec<String> {
    vec![
        "--metric".into(),
        "calls".into(),
        "-o".into(),
        dir.join("calls.collapsed").display().to_string(),
        "-o".into(),
        dir.join("calls.prof").display().to_string(),
    ]
}

fn workload() -> PathBuf {
    util::root().join("tests/workloads/threads.py")
}

#[test]
fn every_format_from_a_launched_run() {
    for py in util::interpreters() {
        let dir = tempfile::tempdir().unwrap();
        for args in [outputs(dir.path()), calls_outputs(dir.path())] {
            let out = run(util::rprof()
                .args(["run", "--python"])
                .arg(&py.path)
                .args(args)
                .arg(workload()));
            assert!(out.status.success(), "{}: {}", py.label(), describe(&out));
        }
        let what = format!("run on {}", py.label());
        check_formats(dir.path(), py, &what);
        check_calls(dir.path(), &what);
    }
}

/// Runs the workload in a process rprof attaches to, with `args`.
fn attached(py: &Python, args: Vec<String>) {
    use std::io::Write;
    let runner = util::root().join("tests/differential/attach_runner.py");
    let mut target = py
        .command()
        .arg(&runner)
        .arg("attach")
        .arg(workload())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop::new(target.id(), runner.display().to_string());
    let mut stdin = target.stdin.take().unwrap();
    let mut lines = BufReader::new(target.stdout.take().unwrap()).lines();
    assert!(lines.by_ref().map_while(Result::ok).any(|l| l == "ready"));
    let mut rprof = util::rprof()
        .arg("attach")
        .arg(target.id().to_string())
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(rprof.stderr.take().unwrap()).lines();
    assert!(err
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("attached to PID")));
    stdin.write_all(b"g").unwrap();
    stdin.flush().unwrap();
    assert!(lines.by_ref().map_while(Result::ok).any(|l| l == "done"));
    util::signal(rprof.id(), "INT");
    let rest: Vec<String> = err.map_while(Result::ok).collect();
    let status = rprof.wait().unwrap();
    stdin.write_all(b"xx").ok();
    drop(stdin);
    target.wait().unwrap();
    guard.disarm();
    assert!(status.success(), "{}: {}", py.label(), rest.join("\n"));
}

#[test]
fn every_format_from_an_attached_capture() {
    for py in util::interpreters() {
        let dir = tempfile::tempdir().unwrap();
        attached(py, outputs(dir.path()));
        attached(py, calls_outputs(dir.path()));
        let what = format!("attach on {}", py.label());
        check_formats(dir.path(), py, &what);
        check_calls(dir.path(), &what);
    }
}

#[test]
fn timeline_cap_is_reported() {
    let py = util::interpreters().last().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = run(util::rprof()
        .args(["run", "--max-trace-events", "10", "--python"])
        .arg(&py.path)
        .arg("-o")
        .arg(dir.path().join("t.trace.json"))
        .arg(workload()));
    assert!(out.status.success(), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing from the timeline"), "{err}");
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("t.trace.json")).unwrap()).unwrap();
    let complete = trace["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .count();
    assert_eq!(complete, 10);
}

#[test]
fn unknown_format_is_a_clear_error() {
    let out = run(util::rprof().args(["run", "--format", "gif", "-o", "/tmp/x", "whatever.py"]));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("gif") && err.contains("speedscope"), "{err}");
}
