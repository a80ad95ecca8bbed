//! A test-only pause: `RPROF_TEST_PAUSE_AT=PHASE[#N]` makes rprof stop at
//! that phase of an attach (`seized`, `caught`, `call#N` while the N-th
//! injected call runs, `recording`, `stopping`), print
//! `rprof: test: paused at PHASE` on stderr and wait there (up to 60 s, or
//! until a signal it catches arrives), so the adversarial tests can kill
//! it at every phase. Compiled in always; this module is the only reader
//! of the variable, and without it nothing here does anything.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn wanted() -> &'static Option<(String, Option<u32>)> {
    static WANTED: OnceLock<Option<(String, Option<u32>)>> = OnceLock::new();
    WANTED.get_or_init(|| {
        let v = std::env::var("RPROF_TEST_PAUSE_AT").ok()?;
        Some(match v.split_once('#') {
            Some((p, n)) => (p.to_string(), n.parse().ok()),
            None => (v, None),
        })
    })
}

/// Pauses here if the tests asked for this phase (and call number).
pub fn pause_at(phase: &str, n: Option<u32>) {
    let Some((p, want_n)) = wanted() else {
        return;
    };
    if p != phase || (want_n.is_some() && *want_n != n) {
        return;
    }
    let label = match n {
        Some(n) => format!("{phase}#{n}"),
        None => phase.to_string(),
    };
    eprintln!("rprof: test: paused at {label}");
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until && !crate::signals::pending() {
        std::thread::sleep(Duration::from_millis(5));
    }
}
