//! The reader: drains rprof's shared-memory ring into exact statistics.
//!
//! [`Ring`] creates and maps the ring file, [`decode`] turns its words into
//! records (treating them as untrusted), and [`Session`] runs the two
//! against an [`Aggregator`](rprof_stats::Aggregator), keeping count of
//! everything that did not go as it should: dropped events, events for
//! unknown functions, time the target spent waiting for room.
//!
//! ```no_run
//! use rprof_reader::{Ring, RingConfig, Session};
//! # fn main() -> Result<(), rprof_reader::ReaderError> {
//! let ring = Ring::create("/dev/shm/rprof-demo".as_ref(), RingConfig {
//!     bytes: 32 << 20,
//!     clock: rprof_reader::clock::preferred(),
//!     hook: rprof_abi::Hook::Auto,
//!     full_policy: rprof_abi::FullPolicy::Wait,
//!     mode: rprof_abi::Mode::Record,
//!     flags: 0,
//! })?;
//! let mut session = Session::new(ring);
//! // ... the target loads the shim and records ...
//! while !session.stopped() {
//!     session.drain()?;
//! }
//! let capture = session.finish();
//! println!("{} events", capture.summary.events);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod clock;
pub mod decode;
mod shm;
pub mod stream;

pub use shm::{Ring, RingConfig};
pub use stream::Stream;

use rprof_abi::{state, Clock, Hook};
use rprof_stats::{CallPaths, PathLimits, Profile};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};

/// Errors of the reader.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReaderError {
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The ring holds something no honest shim writes. The capture cannot
    /// be trusted; rprof stops reading.
    #[error("the shared-memory ring is corrupt ({0}); the capture was abandoned")]
    Corrupt(String),
}

impl ReaderError {
    pub(crate) fn io(what: String, source: std::io::Error) -> Self {
        ReaderError::Io { what, source }
    }
}

/// What happened during a capture, besides the statistics.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// The target's `(major, minor, micro)`.
    pub python_version: Option<(u8, u8, u8)>,
    /// The hook the shim installed.
    pub hook: Option<Hook>,
    /// The clock the shim used.
    pub clock: Option<Clock>,
    /// Thread states that existed when the capture started.
    pub threads_at_start: u32,
    /// Events recorded.
    pub events: u64,
    /// Events the shim could not record (ring full with the drop policy).
    pub dropped: u64,
    /// Events naming a function id that was never defined (corruption).
    pub invalid_events: u64,
    /// How many times the target waited for ring space.
    pub waits: u64,
    /// How long, in total, the target waited for ring space.
    pub wait_seconds: f64,
    /// From the first to the last recorded moment.
    pub duration_seconds: f64,
    /// Whether the shim wrote its end-of-capture record.
    pub stopped_cleanly: bool,
    /// Whether the shim gave up because the reader went silent.
    pub abandoned: bool,
    /// Why the shim failed to start, if it did.
    pub shim_error: Option<String>,
    /// Why reading stopped early, if it did.
    pub corrupt: Option<String>,
    /// What the reader refused to keep because a bound was reached (a
    /// hostile or broken ring); see [`rprof_stats::limits`].
    pub refused: rprof_stats::Refused,
    /// Events dropped because their thread was refused.
    pub refused_events: u64,
}

impl Summary {
    /// True when the statistics are complete: nothing dropped, nothing
    /// corrupt, nothing abandoned.
    pub fn is_exact(&self) -> bool {
        self.dropped == 0
            && self.invalid_events == 0
            && self.corrupt.is_none()
            && !self.abandoned
            && !self.refused.any()
            && self.refused_events == 0
    }
}

/// A capture's result.
#[derive(Clone, Debug)]
pub struct Capture {
    /// The statistics.
    pub profile: Profile,
    /// The exact call paths, if [`Session::record_paths`] asked for them.
    pub paths: Option<CallPaths>,
    /// What happened.
    pub summary: Summary,
}

/// Drains one ring into one [`Stream`].
pub struct Session {
    ring: Ring,
    tail: u64,
    buf: Vec<u64>,
    stream: Stream,
    calibration: clock::Sample,
    corrupt: Option<String>,
    segments: Vec<SegmentRead>,
}

/// At most this many words are taken from one area (the main one or a
/// segment) per [`Session::drain`], which bumps the heartbeat on every
/// call: a reader that fell behind by a whole ring (a debug build, a
/// loaded machine) works through it in steps of a few milliseconds and is
/// never taken for dead by the shim while it does.
const DRAIN_CHUNK_WORDS: usize = 1 << 15;

/// The reader's side of one per-thread segment.
#[derive(Default)]
struct SegmentRead {
    tail: u64,
    buf: Vec<u64>,
    /// The owner's thread, once its Thread record was read.
    thread: Option<u64>,
    /// The owner's delta base (`rprof_abi::compact`).
    base: u64,
}

impl Session {
    /// Starts reading `ring`; call this before the shim starts, so that the
    /// clock calibration spans the whole capture.
    pub fn new(ring: Ring) -> Session {
        let mut stream = Stream::new();
        // cProfile's subcalls=False: no caller edges are kept at all.
        stream.set_subcalls(ring.header().flags & rprof_abi::flags::NO_SUBCALLS == 0);
        Session {
            ring,
            tail: 0,
            buf: Vec::new(),
            stream,
            calibration: clock::Sample::now(),
            corrupt: None,
            segments: Vec::new(),
        }
    }

    /// Also records exact call paths and, with `limits.max_spans > 0`, the
    /// timeline of calls.
    pub fn record_paths(&mut self, limits: PathLimits) {
        self.stream.record_paths(limits);
    }

    /// The ring.
    pub fn ring(&self) -> &Ring {
        &self.ring
    }

    /// Whether the shim has ended the capture (normally or not) and every
    /// record it wrote has been read.
    pub fn stopped(&self) -> bool {
        if self.stream.stop_ts.is_some() || self.corrupt.is_some() {
            return true;
        }
        let h = self.ring.header();
        let st = h.shim_state.load(Acquire);
        (st == state::ABANDONED || st == state::FAILED) && h.head.load(Acquire) == self.tail
    }

    /// The shim's state (see [`rprof_abi::state`]).
    pub fn shim_state(&self) -> u32 {
        self.ring.header().shim_state.load(Acquire)
    }

    /// Reads and aggregates everything the shim has published. Returns the
    /// number of words read.
    pub fn drain(&mut self) -> Result<usize, ReaderError> {
        self.ring.heartbeat();
        if self.stream.stop_ts.is_some() || self.corrupt.is_some() {
            return Ok(0);
        }
        let mut read = self.drain_segments()?;
        read += self.drain_main()?;
        if self.stream.stop_ts.is_some() {
            // The shim wrote Stop after every hook was gone and every
            // segment published: this is the last of them (read in
            // chunks, so until nothing is left).
            loop {
                let n = self.drain_segments()?;
                if n == 0 {
                    break;
                }
                read += n;
            }
        }
        Ok(read)
    }

    /// Reads every per-thread segment (free-threaded builds; see
    /// `rprof_abi::segment`), and frees the drained ones whose thread ended.
    fn drain_segments(&mut self) -> Result<usize, ReaderError> {
        let n = self.ring.segments();
        if self.segments.len() < n as usize {
            self.segments.resize_with(n as usize, SegmentRead::default);
        }
        let cap = self.ring.segment_capacity() as usize;
        let mut read = 0;
        for i in 0..n {
            // Alive, for the shim: a pass over many full segments may take
            // longer than the shim's patience (READER_TIMEOUT_NS).
            self.ring.heartbeat();
            let sh = self.ring.segment(i);
            let st = sh.state.load(Acquire);
            let seg = &mut self.segments[i as usize];
            if st == rprof_abi::segment::FREE && sh.head.load(Acquire) == seg.tail {
                continue;
            }
            let before = seg.buf.len();
            let tail = match self.ring.segment_copy_out(
                i,
                seg.tail,
                cap.min(DRAIN_CHUNK_WORDS),
                &mut seg.buf,
            ) {
                Ok(t) => t,
                Err(e) => {
                    self.corrupt = Some(format!("segment {i}: {e}"));
                    return Err(e);
                }
            };
            self.ring.segment_release(i, tail);
            seg.tail = tail;
            read += seg.buf.len() - before;
            let buf = std::mem::take(&mut seg.buf);
            let result = self
                .stream
                .process_segment(&buf, &mut seg.thread, &mut seg.base);
            seg.buf = buf;
            match result {
                Ok(used) => {
                    seg.buf.drain(..used);
                    if seg.buf.len() > cap {
                        let e = ReaderError::Corrupt("a record longer than a segment".into());
                        self.corrupt = Some(e.to_string());
                        return Err(e);
                    }
                }
                Err(e) => {
                    self.corrupt = Some(e.to_string());
                    seg.buf.clear();
                    return Err(e);
                }
            }
            // A retired segment read to its end goes back to the pool; its
            // next owner starts with a Thread record of its own.
            if st == rprof_abi::segment::RETIRED
                && seg.buf.is_empty()
                && sh.head.load(Acquire) == seg.tail
            {
                seg.thread = None;
                // The next owner's events count from 0 again.
                seg.base = 0;
                sh.state
                    .compare_exchange(
                        rprof_abi::segment::RETIRED,
                        rprof_abi::segment::FREE,
                        AcqRel,
                        Relaxed,
                    )
                    .ok();
            }
        }
        Ok(read)
    }

    /// Reads the main data area.
    fn drain_main(&mut self) -> Result<usize, ReaderError> {
        let before = self.buf.len();
        let cap = self.ring.capacity() as usize;
        let tail = match self
            .ring
            .copy_out(self.tail, cap.min(DRAIN_CHUNK_WORDS), &mut self.buf)
        {
            Ok(t) => t,
            Err(e) => {
                self.corrupt = Some(e.to_string());
                return Err(e);
            }
        };
        // Everything is copied: the producer may reuse the space at once.
        self.ring.release(tail);
        self.tail = tail;
        let read = self.buf.len() - before;
        let buf = std::mem::take(&mut self.buf);
        let result = self.stream.process(&buf);
        self.buf = buf;
        match result {
            Ok(used) => {
                self.buf.drain(..used);
                if self.buf.len() > cap {
                    let e = ReaderError::Corrupt("a record longer than the ring".into());
                    self.corrupt = Some(e.to_string());
                    return Err(e);
                }
                Ok(read)
            }
            Err(e) => {
                self.corrupt = Some(e.to_string());
                self.buf.clear();
                Err(e)
            }
        }
    }

    /// For a process that is gone: makes the records it wrote but had not
    /// published yet (its last batch, see `Header::written`) readable, and
    /// reads them. Call only once the writer cannot write any more.
    pub fn take_unpublished(&mut self) {
        let h = self.ring.header();
        let written = h.written.load(Acquire);
        let head = h.head.load(Acquire);
        if written > head && written.wrapping_sub(self.tail) <= self.ring.capacity() {
            h.head.store(written, Release);
        }
        while self.drain().unwrap_or(0) > 0 {}
    }

    /// Ends the capture: frames still open are closed at the last recorded
    /// moment, as cProfile's `disable()` closes them.
    pub fn finish(self) -> Capture {
        let h = self.ring.header();
        let clock = Clock::from_u32(h.clock_used.load(Relaxed));
        let spt = clock::seconds_per_tick(clock.unwrap_or(Clock::Monotonic), self.calibration);
        let s = &self.stream;
        let end = s.end();
        let v = h.python_version.load(Relaxed);
        let st = h.shim_state.load(Acquire);
        let error = String::from_utf8_lossy(h.error_message()).into_owned();
        let (refused, refused_events) = self.stream.refused();
        let summary = Summary {
            python_version: (v != 0).then_some(((v >> 24) as u8, (v >> 16) as u8, (v >> 8) as u8)),
            hook: Hook::from_u32(h.hook_used.load(Relaxed)).filter(|_| v != 0),
            clock,
            threads_at_start: h.threads_hooked.load(Relaxed),
            events: s.events,
            dropped: h.dropped.load(Relaxed).max(s.lost),
            invalid_events: s.invalid_events,
            waits: h.waits.load(Relaxed),
            wait_seconds: h.wait_ns.load(Relaxed) as f64 * 1e-9,
            duration_seconds: end.saturating_sub(s.first_ts.unwrap_or(end)) as f64 * spt,
            stopped_cleanly: s.stop_ts.is_some(),
            abandoned: st == state::ABANDONED,
            shim_error: (st == state::FAILED).then_some(error),
            corrupt: self.corrupt,
            refused,
            refused_events,
        };
        let (profile, paths) = self.stream.finish_with_paths(spt);
        Capture {
            profile,
            paths,
            summary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use decode::encode;
    use rprof_abi::{FullPolicy, Kind};
    use rprof_stats::Function;
    use std::sync::atomic::Ordering::Release;

    fn ring(dir: &tempfile::TempDir) -> Ring {
        Ring::create(
            &dir.path().join("ring"),
            RingConfig {
                bytes: 1 << 15,
                clock: Clock::Monotonic,
                hook: Hook::Auto,
                full_policy: FullPolicy::Wait,
                mode: rprof_abi::Mode::Record,
                flags: 0,
            },
        )
        .unwrap()
    }

    /// Plays the shim: writes `words` into the ring at `head` (no wrap).
    fn publish(s: &Session, at: u64, words: &[u64]) -> u64 {
        let mut file = std::fs::read(s.ring().path()).unwrap();
        for (i, w) in words.iter().enumerate() {
            let off =
                rprof_abi::HEADER_BYTES + ((at as usize + i) % s.ring().capacity() as usize) * 8;
            file[off..off + 8].copy_from_slice(&w.to_le_bytes());
        }
        // Write through the shared mapping rather than the file, as the
        // shim does: reopen and map.
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(s.ring().path())
            .unwrap();
        let mut m = unsafe_map(&f);
        m[rprof_abi::HEADER_BYTES..].copy_from_slice(&file[rprof_abi::HEADER_BYTES..]);
        let head = at + words.len() as u64;
        s.ring().header().head.store(head, Release);
        head
    }

    fn unsafe_map(f: &std::fs::File) -> memmap2::MmapMut {
        // SAFETY: a test-private file; the session's own mapping only copies.
        unsafe { memmap2::MmapMut::map_mut(f) }.unwrap()
    }

    /// Plays one thread of a free-threaded shim: writes `words` at the
    /// start of segment `i` and publishes them.
    fn publish_segment(s: &Session, i: u32, words: &[u64]) {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(s.ring().path())
            .unwrap();
        let mut m = unsafe_map(&f);
        let off = s.ring().header().segment_offset(i) + rprof_abi::segment::SEGMENT_HEADER_BYTES;
        for (k, w) in words.iter().enumerate() {
            m[off + k * 8..off + k * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        let seg = s.ring().segment(i);
        seg.state.store(rprof_abi::segment::OWNED, Release);
        seg.head.store(words.len() as u64, Release);
    }

    #[test]
    fn segments_replay_one_stack_per_thread_in_any_interleaving() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Session::new(ring(&dir));
        assert!(s.ring().segments() >= 2);
        // Two threads in the same recursive function at the same time:
        // each segment defines the ids it uses (unique across segments).
        let mut a = Vec::new();
        encode::word(&mut a, Kind::Thread, 1);
        encode::def_python(&mut a, 0, "app.py", 3, "f");
        encode::event(&mut a, Kind::Call, 0, 100);
        encode::event(&mut a, Kind::Call, 0, 110);
        let mut b = Vec::new();
        encode::word(&mut b, Kind::Thread, 2);
        encode::def_python(&mut b, 1, "app.py", 3, "f");
        encode::event(&mut b, Kind::Call, 1, 105);
        encode::event(&mut b, Kind::Return, 1, 205);
        publish_segment(&s, 3, &b);
        publish_segment(&s, 0, &a);
        s.drain().unwrap();
        let mut a2 = a.clone();
        encode::event(&mut a2, Kind::Return, 0, 120);
        encode::event(&mut a2, Kind::Return, 0, 130);
        publish_segment(&s, 0, &a2);
        let mut m = Vec::new();
        encode::word(&mut m, Kind::Start, 100);
        encode::word(&mut m, Kind::Stop, 300);
        publish(&s, 0, &m);
        s.drain().unwrap();
        assert!(s.stopped());
        let c = s.finish();
        assert_eq!(c.summary.events, 6);
        let f = c.profile.get(&Function::python("app.py", 3, "f")).unwrap();
        // Thread 1: f → f (one primitive call); thread 2: f.
        assert_eq!(f.totals.ncalls, 3);
        assert_eq!(f.totals.primitive, 2);
        // Cumulative: 30 ticks on thread 1 (outermost level only), 100 on 2.
        assert!(
            (f.totals.cumtime - 130e-9).abs() < 1e-15,
            "{}",
            f.totals.cumtime
        );
    }

    #[test]
    fn session_aggregates_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Session::new(ring(&dir));
        let mut w = Vec::new();
        encode::word(&mut w, Kind::Start, 100);
        encode::word(&mut w, Kind::Thread, 7);
        encode::def_python(&mut w, 0, "app.py", 3, "main");
        encode::event(&mut w, Kind::Call, 0, 100);
        encode::def_builtin(&mut w, 1, "<built-in method builtins.len>");
        encode::event(&mut w, Kind::CCall, 1, 110);
        encode::event(&mut w, Kind::CReturn, 1, 120);
        encode::event(&mut w, Kind::Return, 0, 200);
        encode::event(&mut w, Kind::Call, 0, 300); // left open: flushed
        encode::word(&mut w, Kind::Stop, 400);
        publish(&s, 0, &w);
        assert_eq!(s.drain().unwrap(), w.len());
        assert!(s.stopped());
        let c = s.finish();
        assert!(c.summary.stopped_cleanly);
        assert_eq!(c.summary.events, 5);
        let main = c
            .profile
            .get(&Function::python("app.py", 3, "main"))
            .unwrap();
        assert_eq!(main.totals.ncalls, 2);
        assert!((main.totals.cumtime - 200e-9).abs() < 1e-15);
        let len = c
            .profile
            .get(&Function::builtin("<built-in method builtins.len>"))
            .unwrap();
        assert_eq!(len.totals.ncalls, 1);
        assert_eq!(len.callers.len(), 1);
    }

    #[test]
    fn partial_records_wait_for_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Session::new(ring(&dir));
        let mut w = Vec::new();
        encode::def_python(&mut w, 0, "a_long_file_name.py", 3, "a_long_function_name");
        encode::event(&mut w, Kind::Call, 0, 1);
        let cut = 3;
        let head = publish(&s, 0, &w[..cut]);
        s.drain().unwrap();
        publish(&s, head, &w[cut..]);
        s.drain().unwrap();
        assert_eq!(s.stream.events, 1);
        assert_eq!(s.stream.invalid_events, 0);
    }

    #[test]
    fn garbage_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Session::new(ring(&dir));
        let mut w = Vec::new();
        encode::event(&mut w, Kind::Call, 99, 1); // never defined
        w.extend_from_slice(&[0xee, 0]); // unknown kind
        publish(&s, 0, &w);
        assert!(matches!(s.drain(), Err(ReaderError::Corrupt(_))));
        assert!(s.stopped());
        let c = s.finish();
        assert_eq!(c.summary.invalid_events, 1);
        assert!(c.summary.corrupt.is_some());
        assert!(!c.summary.is_exact());
    }
}
