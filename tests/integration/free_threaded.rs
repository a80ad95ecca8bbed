//! Free-threaded builds (`python3.14t`): several threads run Python, and
//! the hooks, at the same time, each recording into a segment of its own.
//!
//! `tests/stress/ft_counts.py` has eight threads call the same functions
//! concurrently for a few seconds and count their own calls; rprof's
//! numbers must be exactly those, per thread (from the collapsed stacks,
//! `--metric calls`, whose first frame names the thread) and in total (from
//! the `.prof`, loaded by that interpreter's `pstats`). The differential
//! suites also run on these builds (see `util::FREE_THREADED_SUPPORTED`).

use crate::util::{self, describe, run};
use std::collections::BTreeMap;

/// The counted functions: (name in the JSON, pstats key suffix or builtin
/// label, collapsed frame prefix).
const COUNTED: &[(&str, &str)] = &[
    ("leaf", "leaf ("),
    ("mid", "mid ("),
    ("shared", "shared ("),
    ("recurse", "recurse ("),
    ("abs", "<built-in method builtins.abs>"),
];

#[test]
fn eight_threads_calling_the_same_functions_at_once_are_counted_exactly() {
    let fts = util::free_threaded_interpreters();
    if fts.is_empty() {
        eprintln!("RPROF_TEST_PYTHON names no free-threaded build: nothing to test");
    }
    let script = util::root().join("tests/stress/ft_counts.py");
    let dir = tempfile::tempdir().unwrap();
    let mut compared = 0;
    for py in &fts {
        for hook in ["monitoring", "setprofile"] {
            let ctx = format!("ft_counts.py on {} with --hook {hook}", py.label());
            let prof = dir.path().join(format!("{hook}.prof"));
            let collapsed = dir.path().join(format!("{hook}.collapsed"));
            let out = run(util::rprof()
                .args(["run", "--hook", hook, "--metric", "calls", "--python"])
                .arg(&py.path)
                .arg("-o")
                .arg(&prof)
                .arg("-o")
                .arg(&collapsed)
                .arg(&script)
                .args(["8", "3"]));
            assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
            let truth: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("{ctx}: the workload's JSON: {e}: {}", describe(&out)));
            assert_eq!(truth["gil"], false, "{ctx}: the GIL was enabled");

            // Per thread, from the collapsed stacks.
            let text = std::fs::read_to_string(&collapsed).unwrap();
            let mut seen: BTreeMap<(u64, &str), u64> = BTreeMap::new();
            for line in text.lines() {
                let (stack, value) = line.rsplit_once(' ').unwrap();
                let frames: Vec<&str> = stack.split(';').collect();
                let tid = thread_id(frames[0]).unwrap_or_else(|| panic!("{ctx}: {line}"));
                let last = frames[frames.len() - 1];
                for (name, prefix) in COUNTED {
                    if last.starts_with(prefix) {
                        *seen.entry((tid, name)).or_default() += value.parse::<u64>().unwrap();
                    }
                }
            }
            let threads = truth["threads"].as_object().unwrap();
            assert_eq!(threads.len(), 8, "{ctx}");
            for (name, t) in threads {
                let tid = t["tid"].as_u64().unwrap();
                for (func, _) in COUNTED {
                    let want = t["calls"][func].as_u64().unwrap();
                    let got = seen.get(&(tid, func)).copied().unwrap_or(0);
                    assert!(want > 0, "{ctx}: {name} made no {func} calls");
                    assert_eq!(
                        got, want,
                        "{ctx}: calls of {func} in thread {name} (tid {tid})"
                    );
                    compared += 1;
                }
            }

            // In total, from the .prof in this interpreter's pstats.
            let check = py
                .command()
                .arg("-c")
                .arg(
                    "import json, pstats, sys\n\
                     s = pstats.Stats(sys.argv[1]).stats\n\
                     out = {}\n\
                     for (f, line, name), v in s.items():\n\
                     \x20   if f.endswith('ft_counts.py') or f == '~':\n\
                     \x20       out[name] = out.get(name, 0) + v[1]\n\
                     print(json.dumps(out))",
                )
                .arg(&prof)
                .output()
                .unwrap();
            assert!(check.status.success(), "{ctx}: pstats: {check:?}");
            let totals: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
            for (func, label) in [
                ("leaf", "leaf"),
                ("mid", "mid"),
                ("shared", "shared"),
                ("recurse", "recurse"),
                ("abs", "<built-in method builtins.abs>"),
            ] {
                assert_eq!(
                    totals[label].as_u64(),
                    truth["totals"][func].as_u64(),
                    "{ctx}: total calls of {func}"
                );
                compared += 1;
            }
        }
    }
    eprintln!("{compared} exact counts compared");
}

/// The native id in a collapsed line's thread frame: `name (tid N)` or
/// `Thread N`.
fn thread_id(frame: &str) -> Option<u64> {
    if let Some(rest) = frame.rsplit_once("(tid ") {
        return rest.1.trim_end_matches(')').parse().ok();
    }
    frame.strip_prefix("Thread ")?.parse().ok()
}
