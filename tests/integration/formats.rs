//! Every output format from one capture, launched and attached: each file
//! is read back by a consumer (pstats, JSON parsers, gzip, XML) and the
//! totals agree across formats: collapsed self time adds up to the `.prof`
//! total tottime, and per-function calls summed over call paths equal
//! pstats ncalls. Every file is read by its consumers, never by rprof's
//! own code: `.prof` by each interpreter's `pstats`, pprof by the protobuf
//! library and speedscope by its JSON schema (`scripts/test-tools.sh`
//! installs both; missing, they are a skip, and under CI a failure).

use crate::util::{self, describe, run, Python, Spawned};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

type Stats = util::PstatsMap;

fn load_prof(py: &Python, dir: &Path, name: &str) -> Stats {
    util::pstats(py, &dir.join(name))
}

/// The directory of the consumers' tools (`scripts/test-tools.sh`), or a
/// skip naming what is missing.
fn tools() -> Option<PathBuf> {
    let dir = std::env::var_os("RPROF_TEST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::root().join("target/test-tools"));
    let python = dir.join("venv/bin/python");
    let ok = python.exists()
        && dir.join("speedscope-schema.json").exists()
        && run(
            std::process::Command::new(&python).args(["-c", "import google.protobuf, jsonschema"])
        )
        .status
        .success();
    if ok {
        Some(dir)
    } else {
        util::skip(format!(
            "pprof and speedscope files not checked by protobuf and the speedscope schema: no tools in {} (run scripts/test-tools.sh)",
            dir.display()
        ));
        None
    }
}

/// Runs `tests/formats/check_tools.py KIND FILE OTHER` with the tools' venv.
fn check_with_tool(tools: &Path, kind: &str, file: &Path, other: &Path, what: &str) {
    let out = run(std::process::Command::new(tools.join("venv/bin/python"))
        .arg(util::root().join("tests/formats/check_tools.py"))
        .arg(kind)
        .arg(file)
        .arg(other));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ok\n",
        "{what}: {kind} check of {}: {}",
        file.display(),
        describe(&out)
    );
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
    let profile = load_prof(py, dir, "out.prof");
    assert!(!profile.is_empty(), "{what}: empty profile");
    let total_calls: u64 = profile.values().map(|v| v.1).sum();
    let total_time: f64 = profile.values().map(|v| v.2).sum();

    // Collapsed self time (µs) adds up to the total tottime.
    let lines = collapsed(&dir.join("out.collapsed"));
    let total_us: u64 = lines.iter().map(|(_, v)| v).sum();
    let tottime_us = total_time * 1e6;
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
    assert_eq!(complete, total_calls, "{what}: one X event per call");
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

    // The SVG is read by Python's XML parser; pprof and speedscope by
    // their own tools.
    let check = run(py
        .command()
        .arg("-c")
        .arg("import sys, xml.etree.ElementTree as ET\nET.parse(sys.argv[1])\nprint('ok')\n")
        .arg(dir.join("out.svg")));
    assert_eq!(
        String::from_utf8_lossy(&check.stdout),
        "ok\n",
        "{what}: {}",
        describe(&check)
    );
    if let Some(tools) = tools() {
        let stats = dir.join("stats.json");
        let rows: Vec<serde_json::Value> = profile
            .iter()
            .map(|((f, l, n), v)| serde_json::json!([f, l, n, v.1, v.2]))
            .collect();
        std::fs::write(&stats, serde_json::to_vec(&rows).unwrap()).unwrap();
        check_with_tool(&tools, "pprof", &dir.join("out.pb.gz"), &stats, what);
        check_with_tool(
            &tools,
            "speedscope",
            &dir.join("out.speedscope.json"),
            &tools.join("speedscope-schema.json"),
            what,
        );
    }
    // The table's header counts every call, as pstats does.
    let table = std::fs::read_to_string(dir.join("out.txt")).unwrap();
    assert!(
        table.contains(&format!("{total_calls} function calls")),
        "{what}: the table should count {total_calls} calls:\n{table}"
    );
}

/// Checks that call counts summed over paths, per leaf function, equal
/// pstats ncalls (a capture with `calls.collapsed` and `calls.prof`).
fn check_calls(py: &Python, dir: &Path, what: &str) {
    let profile = load_prof(py, dir, "calls.prof");
    let calls = collapsed(&dir.join("calls.collapsed"));
    let mut by_leaf: HashMap<&str, u64> = HashMap::new();
    for (stack, v) in &calls {
        *by_leaf.entry(stack.last().unwrap().as_str()).or_default() += v;
    }
    for ((file, line, name), v) in &profile {
        let label = expected_label(file, *line, name);
        assert_eq!(
            by_leaf.get(label.as_str()).copied().unwrap_or(0),
            v.1,
            "{what}: calls over paths for {label}"
        );
    }
}

/// A collapsed frame as the format's documentation spells it, written out
/// here rather than taken from the crate under test: cProfile's label for a
/// builtin; `name (path:line)` for Python code, with the path cut after
/// the last `site-packages`/`dist-packages` or `lib/pythonX.Y` directory;
/// `;` becomes `,` and control characters `?`.
fn expected_label(file: &str, line: u32, name: &str) -> String {
    let label = if file == "~" && line == 0 {
        name.to_string()
    } else {
        let parts: Vec<&str> = file.split('/').collect();
        let cut = parts
            .iter()
            .rposition(|p| *p == "site-packages" || *p == "dist-packages")
            .or_else(|| {
                (1..parts.len()).rev().find(|&i| {
                    let lib = parts[i - 1] == "lib" || parts[i - 1] == "lib64";
                    let py = parts[i]
                        .strip_prefix("python")
                        .or_else(|| parts[i].strip_prefix("pypy"))
                        .is_some_and(|v| {
                            v.starts_with(|c: char| c.is_ascii_digit()) && v.contains('.')
                        });
                    lib && py
                })
            });
        let short = if file.starts_with('<') || file.is_empty() {
            file.to_string()
        } else {
            match cut {
                Some(i) if i + 1 < parts.len() => parts[i + 1..].join("/"),
                _ => file.to_string(),
            }
        };
        format!("{name} ({short}:{line})")
    };
    label
        .chars()
        .map(|c| match c {
            ';' => ',',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
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
        check_calls(py, dir.path(), &what);
    }
}

/// Runs the workload in a process rprof attaches to, with `args`; every
/// wait has a time limit, and both processes must exit 0.
fn attached(py: &Python, args: Vec<String>) {
    let limit = Duration::from_secs(60);
    let runner = util::root().join("tests/differential/attach_runner.py");
    let mut target = Spawned::spawn(
        format!("attach_runner on {}", py.label()),
        py.command().arg(&runner).arg("attach").arg(workload()),
    );
    target.expect_out("ready", limit);
    let mut rprof = Spawned::spawn(
        "rprof attach",
        util::rprof()
            .arg("attach")
            .arg(target.pid().to_string())
            .args(args),
    );
    rprof.others.push(target.describe());
    rprof.expect_err("attached to PID", limit);
    target.write_stdin(b"g");
    target.others.push(rprof.describe());
    target.expect_out("done", limit);
    util::signal(rprof.pid(), "INT");
    rprof.expect_exit(0, limit);
    target.write_stdin(b"xx");
    target.expect_exit(0, limit);
}

#[test]
fn every_format_from_an_attached_capture() {
    for py in util::interpreters() {
        let dir = tempfile::tempdir().unwrap();
        attached(py, outputs(dir.path()));
        attached(py, calls_outputs(dir.path()));
        let what = format!("attach on {}", py.label());
        check_formats(dir.path(), py, &what);
        check_calls(py, dir.path(), &what);
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
