//! speedscope files: valid per speedscope's published schema, with
//! balanced, ordered events that reproduce the capture's timeline, or
//! samples that reproduce its call tree.

use std::collections::HashMap;

use rprof_format::labels::{frame_label, thread_label};
use rprof_format::{write_speedscope, Speedscope};
use serde_json::Value;

use crate::capture::{self, Capture};
use crate::{tools, util};

fn speedscope(c: &Capture) -> Vec<u8> {
    let mut out = Vec::new();
    write_speedscope(&c.paths, &Speedscope::default(), &mut out).expect("write_speedscope");
    out
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("speedscope output is JSON")
}

/// A call rebuilt from open/close events.
#[derive(Debug)]
struct Call {
    frame: String,
    start: f64,
    end: f64,
    depth: usize,
}

/// Replays an evented profile the way speedscope's importer does: every
/// close must match the innermost open frame, times never decrease, and
/// nothing is left open. Returns the calls.
fn replay(profile: &Value, frames: &[Value]) -> Vec<Call> {
    assert_eq!(profile["type"], "evented");
    assert_eq!(profile["unit"], "seconds");
    let start = profile["startValue"].as_f64().unwrap();
    let end = profile["endValue"].as_f64().unwrap();
    let mut at = start;
    let mut open: Vec<(usize, f64)> = Vec::new();
    let mut calls = Vec::new();
    for event in profile["events"].as_array().unwrap() {
        let frame = event["frame"].as_u64().unwrap() as usize;
        assert!(frame < frames.len(), "frame {frame} out of range");
        let t = event["at"].as_f64().unwrap();
        assert!(t >= at, "time goes backwards: {t} after {at}");
        at = t;
        match event["type"].as_str().unwrap() {
            "O" => open.push((frame, t)),
            "C" => {
                let (top, opened) = open.pop().expect("close with nothing open");
                assert_eq!(top, frame, "close of {frame} while {top} is innermost");
                calls.push(Call {
                    frame: frames[frame]["name"].as_str().unwrap().to_string(),
                    start: opened,
                    end: t,
                    depth: open.len(),
                });
            }
            other => panic!("unknown event type {other}"),
        }
    }
    assert!(open.is_empty(), "{} frames left open", open.len());
    assert!(at <= end, "event at {at} after endValue {end}");
    calls
}

#[test]
fn validates_against_the_published_schema() {
    let dir = util::scratch("speedscope-schema");
    let mut files = Vec::new();
    for (name, c) in [
        ("full", capture::full()),
        ("truncated", capture::truncated()),
        ("sampled", capture::without_timeline()),
    ] {
        let file = dir.join(format!("{name}.speedscope.json"));
        std::fs::write(&file, speedscope(&c)).unwrap();
        files.push(file);
    }
    let check = "speedscope schema validation";
    let schema = match tools::speedscope_schema() {
        Ok(schema) => schema,
        Err(e) => return tools::skip(check, &e),
    };
    let python = match tools::venv_python() {
        Ok(python) => python,
        Err(e) => return tools::skip(check, &e),
    };
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scripts/check_speedscope.py");
    let out = util::python_command(&python)
        .arg(script)
        .arg(&schema)
        .args(&files)
        .output()
        .expect("run check_speedscope.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "speedscope files do not match {}:\n{stdout}{}",
        schema.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), 3);
}

#[test]
fn events_replay_the_timeline() {
    let c = capture::full();
    let file = json(&speedscope(&c));
    assert_eq!(
        file["$schema"],
        "https://www.speedscope.app/file-format-schema.json"
    );
    assert_eq!(file["exporter"], "rprof");
    assert_eq!(file["name"], "rprof");
    let frames = file["shared"]["frames"].as_array().unwrap();
    // Frames: label, full path and first line (none for builtins), each once.
    let by_label: HashMap<String, _> = c
        .paths
        .functions
        .iter()
        .map(|f| (frame_label(f), f))
        .collect();
    let mut seen = std::collections::HashSet::new();
    for frame in frames {
        let name = frame["name"].as_str().unwrap();
        assert!(seen.insert(name), "frame {name} twice");
        let f = by_label[name];
        if f.is_builtin() {
            assert!(frame.get("file").is_none() && frame.get("line").is_none());
        } else {
            assert_eq!(frame["file"], f.file.as_str());
            assert_eq!(frame["line"], f.line);
        }
    }
    assert!(seen.contains("get (requests/api.py:62)"));
    assert!(seen.contains("<built-in method builtins.len>"));

    let profiles = file["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), c.paths.threads.len());
    for (profile, thread) in profiles.iter().zip(&c.paths.threads) {
        assert_eq!(
            profile["name"],
            thread_label(thread.tid, thread.name.as_deref())
        );
        assert_eq!(profile["startValue"], 0);
        assert_eq!(profile["endValue"].as_f64().unwrap(), c.paths.duration);
        let calls = replay(profile, frames);
        // Every span, and only those, with its times and depth.
        assert_eq!(calls.len(), thread.spans.len());
        let mut want: Vec<(String, u64, u64, usize)> = thread
            .spans
            .iter()
            .map(|s| {
                let label = frame_label(&c.paths.functions[s.func as usize]);
                (label, s.start.to_bits(), s.end.to_bits(), s.depth as usize)
            })
            .collect();
        let mut got: Vec<(String, u64, u64, usize)> = calls
            .iter()
            .map(|k| (k.frame.clone(), k.start.to_bits(), k.end.to_bits(), k.depth))
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want);
        // The outermost calls take the thread's outermost total time.
        let outer: f64 = calls
            .iter()
            .filter(|k| k.depth == 0)
            .map(|k| k.end - k.start)
            .sum();
        let roots: f64 = thread
            .nodes
            .iter()
            .filter(|n| n.parent.is_none())
            .map(|n| n.total_time)
            .sum();
        assert!((outer - roots).abs() < 1e-12, "{outer} vs {roots}");
    }
}

#[test]
fn a_truncated_timeline_says_so() {
    let c = capture::truncated();
    let dropped = c.paths.truncation.spans_dropped;
    let file = json(&speedscope(&c));
    assert_eq!(
        file["name"],
        format!("rprof (truncated: {dropped} calls did not fit in the timeline and are not shown)")
    );
    let frames = file["shared"]["frames"].as_array().unwrap();
    let mut calls = 0;
    for profile in file["profiles"].as_array().unwrap() {
        calls += replay(profile, frames).len();
    }
    let kept: usize = c.paths.threads.iter().map(|t| t.spans.len()).sum();
    assert_eq!(calls, kept);
}

#[test]
fn without_a_timeline_samples_are_the_call_tree() {
    let c = capture::without_timeline();
    let file = json(&speedscope(&c));
    assert_eq!(file["name"], "rprof");
    let frames = file["shared"]["frames"].as_array().unwrap();
    let profiles = file["profiles"].as_array().unwrap();
    for (profile, thread) in profiles.iter().zip(&c.paths.threads) {
        assert_eq!(profile["type"], "sampled");
        assert_eq!(profile["unit"], "seconds");
        let samples = profile["samples"].as_array().unwrap();
        let weights = profile["weights"].as_array().unwrap();
        assert_eq!(samples.len(), weights.len());
        // Each sample is a path from the outermost call inwards, weighted by
        // that path's self time.
        let mut got: Vec<(Vec<String>, u64)> = samples
            .iter()
            .zip(weights)
            .map(|(stack, w)| {
                let stack = stack
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| {
                        frames[i.as_u64().unwrap() as usize]["name"]
                            .as_str()
                            .unwrap()
                            .to_string()
                    })
                    .collect();
                (stack, w.as_f64().unwrap().to_bits())
            })
            .collect();
        let mut want: Vec<(Vec<String>, u64)> = Vec::new();
        for (i, node) in thread.nodes.iter().enumerate() {
            if node.self_time <= 0.0 {
                continue;
            }
            let mut stack = Vec::new();
            let mut n = Some(i);
            while let Some(k) = n {
                stack.push(frame_label(
                    &c.paths.functions[thread.nodes[k].func as usize],
                ));
                n = thread.nodes[k].parent.map(|p| p as usize);
            }
            stack.reverse();
            want.push((stack, node.self_time.to_bits()));
        }
        got.sort();
        want.sort();
        assert_eq!(got, want);
        let total: f64 = weights.iter().map(|w| w.as_f64().unwrap()).sum();
        assert_eq!(profile["endValue"].as_f64().unwrap(), total);
    }
}
