//! The record stream, without the ring: decoded words go in, the
//! aggregator and the counters of what went wrong come out. Kept free of
//! I/O so that tests and the fuzzer can drive it with any words at all.

use crate::decode::{decode, Record};
use crate::ReaderError;
use rprof_abi::Kind;
use rprof_stats::Refused;
use rprof_stats::{Aggregator, CallPaths, FuncId, Function, PathLimits, Profile};

/// Highest function id the reader accepts; more would mean a runaway or
/// hostile shim.
const MAX_FUNCTION_ID: u32 = 1 << 24;
const UNDEFINED: FuncId = FuncId::MAX;

/// Bytes of function names and files the reader keeps at most; further
/// definitions are refused (counted in [`Refused::functions`]).
const MAX_DEFINITION_BYTES: usize = 256 << 20;

/// Decodes records and feeds their events to an [`Aggregator`].
///
/// Everything it keeps is bounded (see [`rprof_stats::aggregate::limits`]
/// and `MAX_DEFINITION_BYTES`): a hostile ring cannot make it allocate
/// without limit; what it refuses is counted in [`refused`](Self::refused).
#[derive(Debug, Default)]
pub struct Stream {
    funcs: Vec<FuncId>,
    definition_bytes: usize,
    /// Events of a thread the aggregator refused, dropped until the next
    /// thread switch.
    discarding: bool,
    /// Events dropped because their thread was refused.
    pub refused_events: u64,
    /// Definitions refused because of [`MAX_DEFINITION_BYTES`].
    refused_definitions: u64,
    agg: Aggregator,
    /// First timestamp seen.
    pub first_ts: Option<u64>,
    /// Latest timestamp seen.
    pub last_ts: u64,
    /// Timestamp of the Stop record, once seen.
    pub stop_ts: Option<u64>,
    /// Events decoded.
    pub events: u64,
    /// Events naming an undefined function id.
    pub invalid_events: u64,
    /// Events the shim reported lost (Lost records).
    pub lost: u64,
    /// The thread of the last Thread record.
    thread: Option<u64>,
    /// Timestamp of the main data area's last event: the base of the next
    /// one-word event's delta (`rprof_abi::compact`).
    base: u64,
}

impl Stream {
    /// A stream with no functions yet.
    pub fn new() -> Stream {
        Stream::default()
    }

    /// Applies every complete record in `words`; returns how many words
    /// were used (an incomplete record at the end is left for later).
    /// Anything after a Stop record is ignored.
    pub fn process(&mut self, words: &[u64]) -> Result<usize, ReaderError> {
        self.process_records(words, true)
    }

    /// Applies the records of one per-thread segment (see
    /// `rprof_abi::segment`): like [`process`](Self::process), but on the
    /// segment's own thread, `thread` (which its Thread records update),
    /// and also after the Stop record: segments are drained one last time
    /// once it is seen.
    /// `base` is the segment's own delta base (see `rprof_abi::compact`):
    /// 0 when a new owner claims the segment.
    pub fn process_segment(
        &mut self,
        words: &[u64],
        thread: &mut Option<u64>,
        base: &mut u64,
    ) -> Result<usize, ReaderError> {
        if let Some(t) = *thread {
            self.discarding = !self.agg.switch_thread(t);
            self.thread = Some(t);
        }
        core::mem::swap(&mut self.base, base);
        let r = self.process_records(words, false);
        core::mem::swap(&mut self.base, base);
        *thread = self.thread;
        r
    }

    fn process_records(&mut self, words: &[u64], stop_ends: bool) -> Result<usize, ReaderError> {
        let mut i = 0;
        while i < words.len() {
            if stop_ends && self.stop_ts.is_some() {
                return Ok(words.len());
            }
            let h = words[i];
            let kind = h as u8;
            // Hot path: a one-word event, or a two-word one.
            let (kind, id, ts, n) = if let Some((k, id, delta)) = rprof_abi::compact::decode(h) {
                (k, id as usize, self.base.wrapping_add(delta), 1)
            } else if (1..=5).contains(&kind) && (h >> 8) & 0xff_ffff == 2 {
                let Some(&ts) = words.get(i + 1) else {
                    break;
                };
                (kind, (h >> 32) as usize, ts, 2)
            } else {
                match decode(&words[i..]) {
                    Ok(None) => break,
                    Ok(Some((record, n))) => {
                        self.apply(record)?;
                        i += n;
                        continue;
                    }
                    Err(e) => return Err(ReaderError::Corrupt(e.to_string())),
                }
            };
            self.base = ts;
            if self.discarding {
                self.refused_events += 1;
                i += n;
                continue;
            }
            match self.funcs.get(id) {
                Some(&f) if f != UNDEFINED => {
                    if kind == Kind::Call as u8 || kind == Kind::CCall as u8 {
                        self.agg.enter(f, ts);
                    } else {
                        self.agg.leave(f, ts);
                    }
                }
                _ => self.invalid_events += 1,
            }
            self.events += 1;
            if ts > self.last_ts {
                self.last_ts = ts;
            }
            if self.first_ts.is_none() {
                self.first_ts = Some(ts);
            }
            i += n;
        }
        Ok(i)
    }

    fn apply(&mut self, record: Record) -> Result<(), ReaderError> {
        match record {
            Record::Event { .. } | Record::CompactEvent { .. } | Record::Pad => {}
            Record::DefPython {
                id,
                file,
                line,
                name,
            } => {
                self.define(id, Function::python(file, line, name))?;
            }
            Record::DefBuiltin { id, label } => self.define(id, Function::builtin(label))?,
            Record::Thread { tid } => {
                self.discarding = !self.agg.switch_thread(tid);
                self.thread = Some(tid);
            }
            Record::ThreadName { tid, name } => self.agg.name_thread(tid, name),
            Record::Lost { count } => self.lost = self.lost.saturating_add(count),
            Record::Start { ts } => {
                self.first_ts.get_or_insert(ts);
                self.last_ts = self.last_ts.max(ts);
            }
            Record::Stop { ts } => {
                self.last_ts = self.last_ts.max(ts);
                self.stop_ts = Some(self.last_ts);
            }
        }
        Ok(())
    }

    fn define(&mut self, id: u32, func: Function) -> Result<(), ReaderError> {
        if id >= MAX_FUNCTION_ID {
            return Err(ReaderError::Corrupt(format!(
                "function id {id} out of range"
            )));
        }
        let bytes = func.file.len() + func.name.len();
        if self.definition_bytes.saturating_add(bytes) > MAX_DEFINITION_BYTES {
            self.refused_definitions += 1;
            return Ok(());
        }
        let Some(f) = self.agg.try_intern(func) else {
            return Ok(());
        };
        self.definition_bytes += bytes;
        let i = id as usize;
        if i >= self.funcs.len() {
            self.funcs.resize(i + 1, UNDEFINED);
        }
        self.funcs[i] = f;
        Ok(())
    }

    /// What was refused because a bound was reached: function definitions
    /// (beyond the count or byte bound), threads, calls (depth and
    /// per-thread state) and thread names, plus events of refused threads.
    pub fn refused(&self) -> (Refused, u64) {
        let mut r = self.agg.refused();
        r.functions += self.refused_definitions;
        (r, self.refused_events)
    }

    /// When the capture ended: the Stop record's time, else the last
    /// timestamp seen.
    pub fn end(&self) -> u64 {
        self.stop_ts.unwrap_or(self.last_ts)
    }

    /// Whether caller→callee edges are kept (cProfile's `subcalls`).
    pub fn set_subcalls(&mut self, on: bool) {
        self.agg.set_subcalls(on);
    }

    /// Also records exact call paths (see [`rprof_stats::paths`]).
    pub fn record_paths(&mut self, limits: PathLimits) {
        self.agg.record_paths(limits);
    }

    /// Closes open frames at [`end`](Self::end) and builds the statistics,
    /// with ticks of `seconds_per_tick`.
    pub fn finish(self, seconds_per_tick: f64) -> Profile {
        self.finish_with_paths(seconds_per_tick).0
    }

    /// Like [`finish`](Self::finish), with the call paths if they were
    /// recorded.
    pub fn finish_with_paths(mut self, seconds_per_tick: f64) -> (Profile, Option<CallPaths>) {
        self.agg.set_tick_seconds(seconds_per_tick);
        let end = self.end();
        self.agg.finish_with_paths(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::encode;
    use rprof_stats::limits;

    /// A hostile stream that grows every table past its bound: the stream
    /// keeps at most the bound, counts the rest, and does not fail.
    #[test]
    fn hostile_stream_is_bounded() {
        let mut s = Stream::new();
        let mut w = Vec::new();
        // More distinct functions than kept.
        for id in 0..(limits::FUNCTIONS as u32 + 10) {
            encode::def_builtin(&mut w, id, &format!("<f{id}>"));
        }
        s.process(&w).unwrap();
        w.clear();
        // More threads with open frames than kept.
        for tid in 0..(limits::THREADS as u64 + 5) {
            encode::word(&mut w, Kind::Thread, tid);
            encode::event(&mut w, Kind::Call, 0, 1);
            encode::strings(&mut w, Kind::ThreadName, 0, &[tid, 1], &[b"x"]);
        }
        s.process(&w).unwrap();
        w.clear();
        // A stack deeper than kept, on a thread that was kept.
        encode::word(&mut w, Kind::Thread, 0);
        for _ in 0..(limits::DEPTH + 7) {
            encode::event(&mut w, Kind::Call, 1, 2);
        }
        for _ in 0..(limits::DEPTH + 7) {
            encode::event(&mut w, Kind::Return, 1, 3);
        }
        s.process(&w).unwrap();
        let (r, events) = s.refused();
        assert_eq!(r.functions, 10);
        // Thread 0 (current) is kept besides the THREADS stored ones.
        assert!(r.threads >= 4, "{r:?}");
        assert!(r.names >= 5, "{r:?}");
        assert!(events >= 4, "{events}");
        // Thread 0 already had one open frame (f0): 8 calls over DEPTH.
        assert_eq!(r.frames, 8);
        assert!(s.agg.function_count() <= limits::FUNCTIONS);
        // The frames that were kept still balance: every kept call of f1
        // completed, and the refused ones did not pop kept frames.
        let p = s.finish(1e-9);
        let f1 = p.get(&Function::builtin("<f1>")).unwrap();
        assert_eq!(f1.totals.ncalls, limits::DEPTH as u64 - 1);
    }

    /// One-word events are timed from the previous event of the same
    /// producer, full ones reset that base, and a one-word Pad is skipped.
    #[test]
    fn compact_events_count_from_the_previous_event() {
        let mut s = Stream::new();
        let mut w = Vec::new();
        encode::word(&mut w, Kind::Thread, 1);
        encode::def_python(&mut w, 0, "a.py", 1, "f");
        encode::compact(&mut w, Kind::Call, 0, 1000); // t = 1000
        w.push(rprof_abi::RecordHeader::new(Kind::Pad, 1, 0).0);
        encode::compact(&mut w, Kind::Call, 0, 10); // t = 1010
        encode::event(&mut w, Kind::Return, 0, 5_000_000_000); // full
        encode::compact(&mut w, Kind::Return, 0, 30); // t = 5_000_000_030
        assert_eq!(s.process(&w).unwrap(), w.len());
        assert_eq!(s.events, 4);
        assert_eq!(s.invalid_events, 0);
        assert_eq!(s.last_ts, 5_000_000_030);
        let p = s.finish(1e-9);
        let f = p.get(&Function::python("a.py", 1, "f")).unwrap();
        assert_eq!((f.totals.ncalls, f.totals.primitive), (2, 1));
        // The outer call ran from 1000 to 5_000_000_030.
        assert!(
            (f.totals.cumtime - 4.99999903).abs() < 1e-9,
            "{}",
            f.totals.cumtime
        );
    }
}
