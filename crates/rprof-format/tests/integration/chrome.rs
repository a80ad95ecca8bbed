//! Chrome traces: the structure the Trace Event Format document asks for,
//! calls that nest, and durations that add up to the capture's.

use std::collections::HashMap;

use rprof_format::labels::frame_label;
use rprof_format::{write_chrome_trace, ChromeTrace};
use serde_json::Value;

use crate::capture::{self, Capture, MAIN_TID, WORKER_TID};

fn trace(c: &Capture, pid: u32) -> Value {
    let mut out = Vec::new();
    let mut options = ChromeTrace::new(pid);
    options.process_name = Some("service.py".to_string());
    write_chrome_trace(&c.paths, &options, &mut out).expect("write_chrome_trace");
    serde_json::from_slice(&out).expect("the trace is JSON")
}

fn events<'a>(trace: &'a Value, ph: &str) -> Vec<&'a Value> {
    trace["traceEvents"]
        .as_array()
        .expect("traceEvents is an array")
        .iter()
        .filter(|e| e["ph"] == ph)
        .collect()
}

/// Structure per the Trace Event Format: every complete event has a name,
/// category, phase, timestamp, duration, pid and tid of the right types;
/// metadata names the process and every thread.
fn check_structure(c: &Capture, trace: &Value, pid: u32) {
    let all = trace["traceEvents"].as_array().unwrap();
    for e in all {
        let ph = e["ph"].as_str().expect("every event has a phase");
        assert!(["X", "M", "i"].contains(&ph), "unexpected phase {ph}");
        assert!(e["name"].is_string(), "{e}");
        assert_eq!(e["pid"], pid, "{e}");
        assert!(e["tid"].is_u64(), "{e}");
    }
    for e in events(trace, "X") {
        let ts = e["ts"].as_f64().expect("ts is a number");
        let dur = e["dur"].as_f64().expect("dur is a number");
        assert!(ts >= 0.0 && dur >= 0.0, "{e}");
        let cat = e["cat"].as_str().unwrap();
        let args = e["args"].as_object().expect("args is an object");
        match cat {
            "python" => {
                assert!(args["file"].is_string() && args["line"].is_u64(), "{e}");
            }
            "builtin" => assert!(args.is_empty(), "{e}"),
            _ => panic!("unexpected category {cat}"),
        }
    }
    let metadata = events(trace, "M");
    let named = |name: &str, tid: u64| {
        metadata
            .iter()
            .find(|e| e["name"] == name && e["tid"] == tid)
            .map(|e| &e["args"])
    };
    assert_eq!(named("process_name", 0).unwrap()["name"], "service.py");
    assert_eq!(
        named("thread_name", MAIN_TID).unwrap()["name"],
        "MainThread"
    );
    assert_eq!(
        named("thread_name", WORKER_TID).unwrap()["name"],
        "Thread 4243"
    );
    assert_eq!(
        named("thread_sort_index", MAIN_TID).unwrap()["sort_index"],
        0
    );
    assert_eq!(
        named("thread_sort_index", WORKER_TID).unwrap()["sort_index"],
        1
    );
    let other = &trace["otherData"];
    assert_eq!(other["exporter"], "rprof");
    let t = c.paths.truncation;
    assert_eq!(other["spans_dropped"], t.spans_dropped);
    assert_eq!(other["depth_folded"], t.depth_folded);
    assert_eq!(other["node_folded"], t.node_folded);
}

/// Per thread, in event order: the depth of every complete event, checking
/// that each lies within the one it is nested in.
fn nesting(trace: &Value) -> HashMap<u64, Vec<(usize, f64, &Value)>> {
    // Integer nanoseconds, so that nesting is checked exactly.
    let ns = |x: &Value| (x.as_f64().unwrap() * 1000.0).round() as i64;
    let mut out: HashMap<u64, Vec<(usize, f64, &Value)>> = HashMap::new();
    let mut open: HashMap<u64, Vec<i64>> = HashMap::new();
    for e in events(trace, "X") {
        let tid = e["tid"].as_u64().unwrap();
        let (start, end) = (ns(&e["ts"]), ns(&e["ts"]) + ns(&e["dur"]));
        let stack = open.entry(tid).or_default();
        while stack
            .last()
            .is_some_and(|&parent_end| parent_end <= start && parent_end != end)
        {
            stack.pop();
        }
        if let Some(&parent_end) = stack.last() {
            assert!(
                end <= parent_end,
                "{e} ends after its caller ({parent_end} ns)"
            );
        }
        out.entry(tid)
            .or_default()
            .push((stack.len(), e["dur"].as_f64().unwrap(), e));
        stack.push(end);
    }
    out
}

#[test]
fn trace_events_are_complete_and_add_up() {
    let c = capture::full();
    let trace = trace(&c, 31337);
    check_structure(&c, &trace, 31337);
    assert!(events(&trace, "i").is_empty());
    assert!(trace["otherData"].get("warning").is_none());
    let by_thread = nesting(&trace);
    for thread in &c.paths.threads {
        let calls = &by_thread[&thread.tid];
        assert_eq!(calls.len(), thread.spans.len());
        // The events' names and depths are the spans'.
        let mut got: Vec<(String, usize)> = calls
            .iter()
            .map(|(depth, _, e)| (e["name"].as_str().unwrap().to_string(), *depth))
            .collect();
        let mut want: Vec<(String, usize)> = thread
            .spans
            .iter()
            .map(|s| {
                (
                    frame_label(&c.paths.functions[s.func as usize]),
                    s.depth as usize,
                )
            })
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        // Outermost calls add up to the thread's outermost total time.
        let outer_us: f64 = calls.iter().filter(|k| k.0 == 0).map(|k| k.1).sum();
        let roots_us: f64 = thread
            .nodes
            .iter()
            .filter(|n| n.parent.is_none())
            .map(|n| n.total_time * 1e6)
            .sum();
        let outer = calls.iter().filter(|k| k.0 == 0).count() as f64;
        assert!(
            (outer_us - roots_us).abs() <= 0.001 * outer,
            "thread {}: {outer_us} µs vs {roots_us} µs",
            thread.tid
        );
    }
    // Python frames carry their full path.
    let get = events(&trace, "X")
        .into_iter()
        .find(|e| e["name"] == "get (requests/api.py:62)")
        .unwrap();
    assert_eq!(
        get["args"]["file"],
        "/home/dev/.venv/lib/python3.11/site-packages/requests/api.py"
    );
    assert_eq!(get["args"]["line"], 62);
}

#[test]
fn a_truncated_timeline_says_so() {
    let c = capture::truncated();
    let dropped = c.paths.truncation.spans_dropped;
    let trace = trace(&c, 7);
    check_structure(&c, &trace, 7);
    let instants = events(&trace, "i");
    assert_eq!(instants.len(), 1);
    let marker = instants[0];
    assert_eq!(
        marker["name"],
        format!("rprof: timeline truncated ({dropped} calls not recorded)")
    );
    assert_eq!(marker["s"], "g");
    assert_eq!(marker["args"]["spans_dropped"], dropped);
    // At the end of the last recorded call.
    let last_end = events(&trace, "X")
        .iter()
        .map(|e| e["ts"].as_f64().unwrap() + e["dur"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!((marker["ts"].as_f64().unwrap() - last_end).abs() < 1e-6);
    assert!(trace["otherData"]["warning"]
        .as_str()
        .unwrap()
        .contains("timeline truncated"));
    let kept: usize = c.paths.threads.iter().map(|t| t.spans.len()).sum();
    assert_eq!(events(&trace, "X").len(), kept);
    nesting(&trace);
}

#[test]
fn without_a_timeline_only_metadata() {
    let c = capture::without_timeline();
    let trace = trace(&c, 1);
    check_structure(&c, &trace, 1);
    assert!(events(&trace, "X").is_empty());
}
