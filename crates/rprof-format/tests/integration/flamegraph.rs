//! Flame graphs: inferno draws them, Python's XML parser reads them, and
//! they say what was measured and what was cut.

use rprof_format::{write_flamegraph, Flamegraph, Metric};
use serde_json::Value;

use crate::capture::{self, Capture};
use crate::util;

fn svg(c: &Capture, options: &Flamegraph) -> Vec<u8> {
    let mut out = Vec::new();
    write_flamegraph(&c.paths, options, &mut out).expect("write_flamegraph");
    out
}

/// `check_svg.py`'s summary of `svg`, from every interpreter found.
fn parse(name: &str, svg: &[u8]) -> Vec<Value> {
    let dir = util::scratch(&format!("svg-{name}"));
    let file = dir.join("graph.svg");
    std::fs::write(&file, svg).unwrap();
    util::pythons()
        .iter()
        .filter(|py| py.version >= (3, 6))
        .map(|py| {
            let out = util::run_script(py, "check_svg.py", &[&file])
                .unwrap_or_else(|e| panic!("not well-formed XML: {e}"));
            serde_json::from_slice(&out).expect("check_svg.py prints JSON")
        })
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[test]
fn svg_is_well_formed_and_says_what_it_measures() {
    let c = capture::full();
    let total = c.total_self(1e6);
    let graph = svg(&c, &Flamegraph::default());
    assert!(graph.starts_with(b"<?xml"));
    for summary in parse("time", &graph) {
        assert_eq!(summary["root"], "{http://www.w3.org/2000/svg}svg");
        let texts = strings(&summary["texts"]);
        assert!(
            texts.contains(&"rprof: wall-clock time by call path (every call counted)"),
            "{texts:?}"
        );
        let duration = c.paths.duration * 1e6;
        let subtitle = format!("Width: time in µs; 2 threads, {duration:.3} µs captured.");
        assert!(
            texts.contains(&subtitle.as_str()),
            "no {subtitle:?} in {texts:?}"
        );
        assert!(!texts.iter().any(|t| t.contains("Truncated")));
        let titles = strings(&summary["titles"]);
        let all = format!("all ({} µs, 100%)", util::thousands(total));
        assert!(titles.contains(&all.as_str()), "no {all:?} in {titles:?}");
        for frame in [
            "MainThread (tid 4242) (",
            "Thread 4243 (",
            "get (requests/api.py:62) (",
        ] {
            assert!(
                titles.iter().any(|t| t.starts_with(frame)),
                "no frame {frame:?}"
            );
        }
    }
}

#[test]
fn icicle_and_calls() {
    let c = capture::full();
    let flame = svg(&c, &Flamegraph::default());
    let icicle = svg(&c, &Flamegraph::new(Metric::SelfTime, true));
    assert_ne!(flame, icicle);
    let mut calls = Flamegraph::new(Metric::Calls, false);
    calls.title = Some("service.py, 10 s".to_string());
    let calls = svg(&c, &calls);
    for (name, graph) in [("icicle", &icicle), ("calls", &calls)] {
        for summary in parse(name, graph) {
            assert_eq!(summary["root"], "{http://www.w3.org/2000/svg}svg");
        }
    }
    let calls = String::from_utf8(calls).unwrap();
    assert!(calls.contains("service.py, 10 s"));
    assert!(calls.contains("Width: number of calls"));
    let total = c.profile.total_calls();
    assert!(
        calls.contains(&format!("all ({total} calls, 100%)")),
        "{total}"
    );
}

#[test]
fn truncation_is_in_the_subtitle() {
    let c = capture::truncated();
    let t = c.paths.truncation;
    for summary in parse("truncated", &svg(&c, &Flamegraph::default())) {
        let texts = strings(&summary["texts"]);
        let subtitle = format!(
            "Truncated: {} calls past the depth limit and {} past the node limit shown as \
             their callers, {} calls not in the timeline; 2 threads, {:.3} µs captured.",
            t.depth_folded,
            t.node_folded,
            t.spans_dropped,
            c.paths.duration * 1e6
        );
        assert!(
            texts.contains(&subtitle.as_str()),
            "no {subtitle:?} in {texts:?}"
        );
    }
}
