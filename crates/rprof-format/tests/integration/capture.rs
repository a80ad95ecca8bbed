//! A synthetic capture for the call-path formats: two threads (one named,
//! one not), recursion and mutual recursion, builtins, a function shared by
//! both threads, realistic paths (stdlib, site-packages, dist-packages,
//! frozen modules, the user's own code), calls still running at the end,
//! and irregular times that do not fall on whole microseconds. It is built
//! by replaying events through rprof-stats' `Aggregator`, so the
//! `Profile` and the `CallPaths` are the ones a real capture would pair.

use std::collections::HashMap;

use rprof_format::labels::frame_label;
use rprof_stats::{Aggregator, CallPaths, FuncId, Function, PathLimits, Profile};

pub const MAIN_TID: u64 = 4242;
pub const WORKER_TID: u64 = 4243;

/// A capture and the numbers the formats must reproduce.
pub struct Capture {
    pub profile: Profile,
    pub paths: CallPaths,
}

/// Every limit generous: nothing is cut.
pub fn full() -> Capture {
    capture(PathLimits {
        max_depth: 512,
        max_nodes: 1_000_000,
        max_spans: 1_000_000,
    })
}

/// No timeline recorded.
pub fn without_timeline() -> Capture {
    capture(PathLimits {
        max_depth: 512,
        max_nodes: 1_000_000,
        max_spans: 0,
    })
}

/// Every limit bites: deep calls folded, a full tree, a full timeline.
pub fn truncated() -> Capture {
    capture(PathLimits {
        max_depth: 6,
        max_nodes: 20,
        max_spans: 40,
    })
}

const STDLIB: &str = "/usr/lib/python3.11";
const VENV: &str = "/home/dev/.venv/lib/python3.11/site-packages";
const APP: &str = "/home/dev/proj/app";

/// Events of one thread, with its own clock.
struct Thread {
    tid: u64,
    clock: u64,
    seed: u64,
    events: Vec<(u64, u64, bool, FuncId)>,
}

impl Thread {
    fn new(tid: u64, start: u64) -> Self {
        Thread {
            tid,
            clock: start,
            seed: tid.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            events: Vec::new(),
        }
    }

    /// Advances the clock by 0.137 to 5.1 µs, never a whole microsecond.
    fn tick(&mut self) -> u64 {
        self.seed = self
            .seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.clock += 137 + (self.seed >> 33) % 5_000;
        self.clock
    }

    fn enter(&mut self, f: FuncId) {
        let t = self.tick();
        self.events.push((t, self.tid, true, f));
    }

    fn leave(&mut self, f: FuncId) {
        let t = self.tick();
        self.events.push((t, self.tid, false, f));
    }

    fn call(&mut self, f: FuncId, body: impl FnOnce(&mut Self)) {
        self.enter(f);
        body(self);
        self.leave(f);
    }
}

struct Funcs(HashMap<&'static str, FuncId>);

impl Funcs {
    fn get(&self, name: &str) -> FuncId {
        self.0[name]
    }
}

fn fib(t: &mut Thread, f: &Funcs, n: u32) {
    t.call(f.get("fib"), |t| {
        if n >= 2 {
            fib(t, f, n - 1);
            fib(t, f, n - 2);
        }
    });
}

fn is_even(t: &mut Thread, f: &Funcs, n: u32) {
    t.call(f.get("is_even"), |t| {
        if n > 0 {
            is_odd(t, f, n - 1)
        }
    });
}

fn is_odd(t: &mut Thread, f: &Funcs, n: u32) {
    t.call(f.get("is_odd"), |t| {
        if n > 0 {
            is_even(t, f, n - 1)
        }
    });
}

fn capture(limits: PathLimits) -> Capture {
    let mut agg = Aggregator::new();
    agg.record_paths(limits);
    agg.name_thread(MAIN_TID, "MainThread".to_string());
    let functions: Vec<(&'static str, Function)> = vec![
        (
            "run_module",
            Function::python(format!("{STDLIB}/runpy.py"), 198, "_run_module_as_main"),
        ),
        (
            "run_code",
            Function::python(format!("{STDLIB}/runpy.py"), 86, "_run_code"),
        ),
        (
            "module",
            Function::python(format!("{APP}/main.py"), 1, "<module>"),
        ),
        (
            "find_and_load",
            Function::python("<frozen importlib._bootstrap>", 1165, "_find_and_load"),
        ),
        (
            "main",
            Function::python(format!("{APP}/main.py"), 10, "main"),
        ),
        ("fib", Function::python(format!("{APP}/fib.py"), 4, "fib")),
        (
            "is_even",
            Function::python(format!("{APP}/parity.py"), 1, "is_even"),
        ),
        (
            "is_odd",
            Function::python(format!("{APP}/parity.py"), 5, "is_odd"),
        ),
        ("len", Function::builtin("<built-in method builtins.len>")),
        (
            "append",
            Function::builtin("<method 'append' of 'list' objects>"),
        ),
        ("sleep", Function::builtin("<built-in method time.sleep>")),
        (
            "get",
            Function::python(format!("{VENV}/requests/api.py"), 62, "get"),
        ),
        (
            "request",
            Function::python(format!("{VENV}/requests/api.py"), 14, "request"),
        ),
        (
            "loads",
            Function::python(format!("{STDLIB}/json/__init__.py"), 299, "loads"),
        ),
        (
            "decode",
            Function::python(format!("{STDLIB}/json/decoder.py"), 332, "decode"),
        ),
        (
            "bootstrap",
            Function::python(format!("{STDLIB}/threading.py"), 995, "_bootstrap"),
        ),
        (
            "bootstrap_inner",
            Function::python(format!("{STDLIB}/threading.py"), 1038, "_bootstrap_inner"),
        ),
        (
            "thread_run",
            Function::python(format!("{STDLIB}/threading.py"), 975, "run"),
        ),
        (
            "work",
            Function::python(format!("{APP}/worker.py"), 8, "work"),
        ),
        (
            "yaml_load",
            Function::python(
                "/usr/lib/python3/dist-packages/yaml/__init__.py",
                74,
                "load",
            ),
        ),
        (
            "already_running",
            Function::python(format!("{STDLIB}/selectors.py"), 451, "select"),
        ),
    ];
    let f = Funcs(
        functions
            .into_iter()
            .map(|(key, func)| (key, agg.intern(func)))
            .collect(),
    );

    let mut main = Thread::new(MAIN_TID, 1_000);
    main.call(f.get("run_module"), |t| {
        t.call(f.get("run_code"), |t| {
            t.call(f.get("module"), |t| {
                for _ in 0..2 {
                    t.call(f.get("find_and_load"), |_| {});
                }
                t.call(f.get("main"), |t| {
                    for round in 0..3 {
                        fib(t, &f, 5);
                        t.call(f.get("len"), |_| {});
                        t.call(f.get("get"), |t| {
                            t.call(f.get("request"), |t| {
                                for _ in 0..=round {
                                    t.call(f.get("append"), |_| {});
                                }
                            });
                        });
                        t.call(f.get("loads"), |t| {
                            t.call(f.get("decode"), |t| {
                                t.call(f.get("len"), |_| {});
                            });
                        });
                    }
                    is_even(t, &f, 7);
                });
            });
        });
    });

    let mut worker = Thread::new(WORKER_TID, 2_500);
    // A frame that was already running when the capture started returns:
    // ignored, as cProfile ignores it.
    worker.leave(f.get("already_running"));
    worker.enter(f.get("bootstrap"));
    worker.enter(f.get("bootstrap_inner"));
    worker.enter(f.get("thread_run"));
    for i in 0..4 {
        worker.call(f.get("work"), |t| {
            t.call(f.get("yaml_load"), |t| {
                t.call(f.get("append"), |_| {});
            });
            t.call(f.get("sleep"), |_| {});
            fib(t, &f, 3 + i % 2);
        });
    }
    // Still running when the capture ends.
    worker.enter(f.get("work"));
    worker.call(f.get("sleep"), |_| {});

    let mut events = main.events;
    events.extend(worker.events);
    events.sort_by_key(|e| e.0);
    let end = events.last().map_or(0, |e| e.0) + 1_234;
    for (t, tid, enter, func) in events {
        agg.switch_thread(tid);
        if enter {
            agg.enter(func, t);
        } else {
            agg.leave(func, t);
        }
    }
    let (profile, paths) = agg.finish_with_paths(end);
    Capture {
        profile,
        paths: paths.expect("paths were recorded"),
    }
}

impl Capture {
    /// The profile's call count per frame label.
    pub fn calls_by_label(&self) -> HashMap<String, u64> {
        let mut out = HashMap::new();
        for f in &self.profile.functions {
            *out.entry(frame_label(&f.func)).or_default() += f.totals.ncalls;
        }
        out
    }

    /// The call paths' calls per frame label (summed over nodes).
    pub fn path_calls_by_label(&self) -> HashMap<String, u64> {
        let mut out = HashMap::new();
        for thread in &self.paths.threads {
            for node in &thread.nodes {
                let label = frame_label(&self.paths.functions[node.func as usize]);
                *out.entry(label).or_default() += node.calls;
            }
        }
        out.retain(|_, calls| *calls > 0);
        out
    }

    /// Exact total self time over all paths, in `unit`s per second
    /// (1e6 for µs, 1e9 for ns), rounded to the nearest unit.
    pub fn total_self(&self, per_second: f64) -> u64 {
        let total: f64 = self
            .paths
            .threads
            .iter()
            .flat_map(|t| &t.nodes)
            .map(|n| n.self_time * per_second)
            .sum();
        total.round() as u64
    }
}

/// Sanity checks of the fixture itself, so that the format tests test
/// what they claim to.
#[test]
fn fixture_is_what_the_tests_need() {
    let c = full();
    let threads: Vec<_> = c
        .paths
        .threads
        .iter()
        .map(|t| (t.tid, t.name.clone()))
        .collect();
    assert_eq!(
        threads,
        [
            (MAIN_TID, Some("MainThread".to_string())),
            (WORKER_TID, None)
        ]
    );
    assert!(c.paths.truncation.is_empty());
    assert_eq!(c.calls_by_label(), c.path_calls_by_label());
    // Recursion: fib calls itself; a builtin under two different callers.
    let fib = c
        .profile
        .get(&Function::python(format!("{APP}/fib.py"), 4, "fib"))
        .unwrap();
    assert!(fib.totals.ncalls > fib.totals.primitive);
    let len = frame_label(&Function::builtin("<built-in method builtins.len>"));
    assert_eq!(c.calls_by_label()[&len], 6);
    let spans: usize = c.paths.threads.iter().map(|t| t.spans.len()).sum();
    assert_eq!(spans as u64, c.profile.total_calls());
    let self_us = c.total_self(1e6) as f64;
    assert!((self_us - c.profile.total_time() * 1e6).abs() <= 1.0);
    // Times are not whole microseconds.
    assert!(c
        .paths
        .threads
        .iter()
        .flat_map(|t| &t.nodes)
        .any(|n| (n.self_time * 1e6).fract() > 0.01));

    let t = truncated().paths.truncation;
    assert!(
        t.depth_folded > 0 && t.node_folded > 0 && t.spans_dropped > 0,
        "{t:?}"
    );
    assert!(without_timeline()
        .paths
        .threads
        .iter()
        .all(|t| t.spans.is_empty()));
}
