//! A hostile or broken target owns the ring's data area and its producer
//! cursor: arbitrary cursors must be refused by `Ring::copy_out` (never a
//! read outside the data area), and arbitrary words must go through
//! `Session::drain` and `finish` without a panic, a hang or unbounded
//! memory. Input: 8 bytes of head cursor, 8 of consumer tail, 2 of copy
//! limit, then the data area's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rprof_abi::{Clock, FullPolicy, Hook, Mode, HEADER_BYTES};
use rprof_reader::{Ring, RingConfig, Session};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering::Release;

fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
    u64::from_le_bytes(w)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 18 {
        return;
    }
    let (head, tail, max, body) = (
        word(&data[..8]),
        word(&data[8..16]),
        u16::from_le_bytes([data[16], data[17]]) as usize,
        &data[18..],
    );
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let path = dir.path().join("ring");
    let ring = Ring::create(
        &path,
        RingConfig {
            bytes: 1 << 12,
            clock: Clock::Monotonic,
            hook: Hook::Auto,
            full_policy: FullPolicy::Wait,
            mode: Mode::Record,
            flags: 0,
        },
    )
    .unwrap();
    let cap = ring.capacity() as usize;
    let n = body.len().min(cap * 8);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&body[..n], HEADER_BYTES as u64).unwrap();

    // copy_out with arbitrary cursors.
    ring.header().head.store(head, Release);
    let mut out = Vec::new();
    if let Ok(t) = ring.copy_out(tail, max, &mut out) {
        assert!(out.len() <= max.min(cap));
        assert_eq!(t.wrapping_sub(tail), out.len() as u64);
    }

    // A session reading what was written, twice (the second read is empty).
    ring.header().head.store((n / 8) as u64, Release);
    let mut session = Session::new(ring);
    let _ = session.drain();
    let _ = session.drain();
    let capture = session.finish();
    for f in &capture.profile.functions {
        assert!(f.totals.primitive <= f.totals.ncalls);
    }
});
