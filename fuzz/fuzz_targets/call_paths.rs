//! Call-path recording (`Aggregator::record_paths`) under any sequence of
//! thread switches, calls and returns (matched or not, clock going
//! backwards), with small limits so that the depth, node and timeline caps
//! are hit: no panic, and the counts stay consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rprof_stats::{Aggregator, Function, PathLimits};

fuzz_target!(|data: &[u8]| {
    let mut agg = Aggregator::new();
    agg.record_paths(PathLimits {
        max_depth: 6,
        max_nodes: 64,
        max_spans: 32,
    });
    let funcs: Vec<_> = (0..8)
        .map(|i| {
            if i % 3 == 0 {
                agg.intern(Function::builtin(format!("<built-in method f{i}>")))
            } else {
                agg.intern(Function::python("w.py", i, format!("f{i}")))
            }
        })
        .collect();
    let mut t: u64 = 0;
    for pair in data.chunks(2) {
        let op = pair[0];
        let dt = u64::from(*pair.get(1).unwrap_or(&0));
        // Mostly forward, sometimes backwards.
        t = if op & 0x80 != 0 { t.saturating_sub(dt) } else { t + dt };
        let f = funcs[(op & 7) as usize];
        match (op >> 3) & 3 {
            0 | 1 => agg.enter(f, t),
            2 => agg.leave(f, t),
            _ => agg.switch_thread(u64::from(op & 3)),
        }
    }
    let (profile, paths) = agg.finish_with_paths(t + 1);
    assert!(paths.is_some());
    for f in &profile.functions {
        assert!(f.totals.primitive <= f.totals.ncalls);
    }
});
