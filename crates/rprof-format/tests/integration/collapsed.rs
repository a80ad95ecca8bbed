//! Collapsed stacks: inferno reads them, and their values add up to the
//! capture's totals.

use std::collections::HashMap;

use rprof_format::{write_collapsed, Metric};

use crate::capture::{self, Capture};
use crate::util;

fn collapsed(c: &Capture, metric: Metric) -> String {
    let mut out = Vec::new();
    write_collapsed(&c.paths, metric, &mut out).expect("write_collapsed");
    String::from_utf8(out).expect("UTF-8")
}

/// `(frames, value)` of every line, checking the line's shape.
fn parse(text: &str) -> Vec<(Vec<&str>, u64)> {
    assert!(text.ends_with('\n'));
    text.lines()
        .map(|line| {
            let (stack, value) = line.rsplit_once(' ').expect("a value");
            let value: u64 = value.parse().expect("an integer value");
            assert!(value > 0, "zero value: {line}");
            let frames: Vec<&str> = stack.split(';').collect();
            assert!(frames.len() >= 2, "no call under the thread: {line}");
            assert!(frames.iter().all(|f| !f.is_empty()), "{line}");
            (frames, value)
        })
        .collect()
}

/// inferno's own collapsed-stack reader accepts every line (it fails on
/// lines it cannot parse only by ignoring them, so the graph's total is
/// compared with the lines' total too).
fn inferno_accepts(text: &str) {
    let mut opt = inferno::flamegraph::Options::default();
    opt.hash = true;
    let mut svg = Vec::new();
    inferno::flamegraph::from_lines(&mut opt, text.lines(), &mut svg)
        .expect("inferno reads the collapsed stacks");
    let total: u64 = parse(text).iter().map(|(_, v)| v).sum();
    let svg = String::from_utf8(svg).unwrap();
    let all = format!("all ({} samples, 100%)", util::thousands(total));
    assert!(
        svg.contains(&all),
        "inferno's total is not {total}: no {all:?}"
    );
}

#[test]
fn self_time_lines_add_up_to_the_total_self_time() {
    for c in [
        capture::full(),
        capture::truncated(),
        capture::without_timeline(),
    ] {
        let text = collapsed(&c, Metric::SelfTime);
        inferno_accepts(&text);
        let lines = parse(&text);
        let sum: u64 = lines.iter().map(|(_, v)| v).sum();
        // Exactly the rounded sum of the paths' self times...
        assert_eq!(sum, c.total_self(1e6));
        // ...which is pstats' total time, to the microsecond.
        let pstats = c.profile.total_time() * 1e6;
        assert!(
            (sum as f64 - pstats).abs() <= 1.0,
            "{sum} µs vs {pstats} µs"
        );
    }
}

#[test]
fn call_lines_add_up_to_each_functions_calls() {
    let c = capture::full();
    let text = collapsed(&c, Metric::Calls);
    inferno_accepts(&text);
    let mut by_leaf: HashMap<String, u64> = HashMap::new();
    for (frames, value) in parse(&text) {
        *by_leaf
            .entry(frames.last().unwrap().to_string())
            .or_default() += value;
    }
    assert_eq!(by_leaf, c.calls_by_label());
    assert_eq!(by_leaf.values().sum::<u64>(), c.profile.total_calls());

    // With limits, folded calls are not counted, and nothing else changes.
    let c = capture::truncated();
    let mut by_leaf: HashMap<String, u64> = HashMap::new();
    for (frames, value) in parse(&collapsed(&c, Metric::Calls)) {
        *by_leaf
            .entry(frames.last().unwrap().to_string())
            .or_default() += value;
    }
    assert_eq!(by_leaf, c.path_calls_by_label());
}

#[test]
fn frames_are_labelled_like_py_spy() {
    let c = capture::full();
    let text = collapsed(&c, Metric::Calls);
    let lines = parse(&text);
    let threads: Vec<&str> = lines.iter().map(|(f, _)| f[0]).collect();
    assert!(threads.contains(&"MainThread (tid 4242)"));
    assert!(threads.contains(&"Thread 4243"));
    assert!(threads
        .iter()
        .all(|t| *t == "MainThread (tid 4242)" || *t == "Thread 4243"));
    for expected in [
        "MainThread (tid 4242);_run_module_as_main (runpy.py:198);_run_code (runpy.py:86);\
         <module> (/home/dev/proj/app/main.py:1);_find_and_load (<frozen importlib._bootstrap>:1165) 2",
        "MainThread (tid 4242);_run_module_as_main (runpy.py:198);_run_code (runpy.py:86);\
         <module> (/home/dev/proj/app/main.py:1);main (/home/dev/proj/app/main.py:10);\
         get (requests/api.py:62);request (requests/api.py:14);\
         <method 'append' of 'list' objects> 6",
        "MainThread (tid 4242);_run_module_as_main (runpy.py:198);_run_code (runpy.py:86);\
         <module> (/home/dev/proj/app/main.py:1);main (/home/dev/proj/app/main.py:10);\
         loads (json/__init__.py:299);decode (json/decoder.py:332);\
         <built-in method builtins.len> 3",
        "Thread 4243;_bootstrap (threading.py:995);_bootstrap_inner (threading.py:1038);\
         run (threading.py:975);work (/home/dev/proj/app/worker.py:8);\
         load (yaml/__init__.py:74);<method 'append' of 'list' objects> 4",
        "Thread 4243;_bootstrap (threading.py:995);_bootstrap_inner (threading.py:1038);\
         run (threading.py:975);work (/home/dev/proj/app/worker.py:8);\
         <built-in method time.sleep> 5",
    ] {
        assert!(text.lines().any(|l| l == expected), "no line {expected:?} in\n{text}");
    }
    // Recursion shows as nested frames.
    assert!(text.contains(
        "fib (/home/dev/proj/app/fib.py:4);fib (/home/dev/proj/app/fib.py:4);\
         fib (/home/dev/proj/app/fib.py:4);fib (/home/dev/proj/app/fib.py:4);\
         fib (/home/dev/proj/app/fib.py:4)"
    ));
    assert!(text.contains(
        "is_even (/home/dev/proj/app/parity.py:1);is_odd (/home/dev/proj/app/parity.py:5);\
         is_even (/home/dev/proj/app/parity.py:1)"
    ));
}
