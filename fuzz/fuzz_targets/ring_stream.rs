//! Feeds arbitrary words to the reader's record stream, as a hostile or
//! broken target could write them into the shared-memory ring. Nothing may
//! panic, hang or allocate without bound; errors are fine.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rprof_reader::Stream;

fuzz_target!(|data: &[u8]| {
    let words: Vec<u64> = data
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect();
    let mut stream = Stream::new();
    // Split the input in two deliveries, as the ring delivers it in pieces.
    let cut = words.len() / 2;
    let mut pending: Vec<u64> = words[..cut].to_vec();
    if let Ok(used) = stream.process(&pending) {
        pending.drain(..used);
        pending.extend_from_slice(&words[cut..]);
        let _ = stream.process(&pending);
    }
    let profile = stream.finish(1e-9);
    for f in &profile.functions {
        assert!(f.totals.primitive <= f.totals.ncalls);
    }
});
