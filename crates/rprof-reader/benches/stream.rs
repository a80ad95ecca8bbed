//! Throughput of the reader's hot path: decoding a synthetic event stream
//! and aggregating it (the work rprof does for every event the target
//! produces). Prints millions of events per second on one core; run with
//! `cargo bench -p rprof-reader`.
//!
//! The stream imitates a call-heavy Python loop: a few dozen functions, a
//! loop calling small functions that call builtins, and some recursion, on
//! two threads.

use rprof_abi::Kind;
use rprof_reader::decode::encode;
use rprof_reader::Stream;
use std::time::Instant;

fn synthetic(events: usize) -> Vec<u64> {
    let mut w = Vec::with_capacity(events * 2 + 1024);
    for id in 0..40u32 {
        if id % 4 == 3 {
            encode::def_builtin(&mut w, id, &format!("<built-in method builtins.f{id}>"));
        } else {
            encode::def_python(
                &mut w,
                id,
                "/srv/app/handlers.py",
                u64::from(id) * 10,
                &format!("f{id}"),
            );
        }
    }
    let mut n = 0;
    let mut thread = 0;
    while n < events {
        if n % 100_000 == 0 {
            thread ^= 1;
            encode::word(&mut w, Kind::Thread, 100 + thread);
        }
        // main loop body: f0 -> f1 -> builtin f3, f1 -> f2 (recursive x3)
        let seq: [(Kind, u32); 14] = [
            (Kind::Call, 0),
            (Kind::Call, 1),
            (Kind::CCall, 3),
            (Kind::CReturn, 3),
            (Kind::Call, 2),
            (Kind::Call, 2),
            (Kind::Call, 2),
            (Kind::Return, 2),
            (Kind::Return, 2),
            (Kind::Return, 2),
            (Kind::Return, 1),
            (Kind::CCall, 7),
            (Kind::CReturn, 7),
            (Kind::Return, 0),
        ];
        for (k, id) in seq {
            // One-word events, as the shim writes them (37 ticks apart).
            encode::compact(&mut w, k, id + (n as u32 / 14 % 8) * 4 % 32, 37);
        }
        n += 14;
    }
    w
}

fn main() {
    let events = 20_000_000;
    let words = synthetic(events);
    for (label, paths) in [("pstats only", false), ("pstats + call paths", true)] {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let mut stream = Stream::new();
            if paths {
                stream.record_paths(rprof_stats::PathLimits::default());
            }
            let t = Instant::now();
            // The ring hands the reader chunks; 1 MiB is typical.
            let mut at = 0;
            while at < words.len() {
                let end = (at + (1 << 17)).min(words.len());
                at += stream.process(&words[at..end]).unwrap();
                if end == words.len() && at < end {
                    at = end;
                }
            }
            let profile = stream.finish(1e-9);
            let secs = t.elapsed().as_secs_f64();
            assert!(!profile.functions.is_empty());
            best = best.min(secs);
        }
        println!(
            "{label}: {events} events in {:.3} s = {:.1} M events/s",
            best,
            events as f64 / best / 1e6
        );
    }
}
