//! The record stream, without the ring: decoded words go in, the
//! aggregator and the counters of what went wrong come out. Kept free of
//! I/O so that tests and the fuzzer can drive it with any words at all.

use crate::decode::{decode, Record};
use crate::ReaderError;
use rprof_abi::Kind;
use rprof_stats::{Aggregator, CallPaths, FuncId, Function, PathLimits, Profile};

/// Highest function id the reader accepts; more would mean a runaway or
/// hostile shim.
const MAX_FUNCTION_ID: u32 = 1 << 24;
const UNDEFINED: FuncId = FuncId::MAX;

/// Decodes records and feeds their events to an [`Aggregator`].
#[derive(Debug, Default)]
pub struct Stream {
    funcs: Vec<FuncId>,
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
    pub fn process_segment(
        &mut self,
        words: &[u64],
        thread: &mut Option<u64>,
    ) -> Result<usize, ReaderError> {
        if let Some(t) = *thread {
            self.agg.switch_thread(t);
            self.thread = Some(t);
        }
        let r = self.process_records(words, false);
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
            // Hot path: a two-word event.
            if (1..=5).contains(&kind) && (h >> 8) & 0xff_ffff == 2 {
                let Some(&ts) = words.get(i + 1) else {
                    break;
                };
                let id = (h >> 32) as usize;
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
                i += 2;
                continue;
            }
            match decode(&words[i..]) {
                Ok(None) => break,
                Ok(Some((record, n))) => {
                    self.apply(record)?;
                    i += n;
                }
                Err(e) => return Err(ReaderError::Corrupt(e.to_string())),
            }
        }
        Ok(i)
    }

    fn apply(&mut self, record: Record) -> Result<(), ReaderError> {
        match record {
            Record::Event { .. } | Record::Pad => {}
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
                self.agg.switch_thread(tid);
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
        let f = self.agg.intern(func);
        let i = id as usize;
        if i >= self.funcs.len() {
            self.funcs.resize(i + 1, UNDEFINED);
        }
        self.funcs[i] = f;
        Ok(())
    }

    /// When the capture ended: the Stop record's time, else the last
    /// timestamp seen.
    pub fn end(&self) -> u64 {
        self.stop_ts.unwrap_or(self.last_ts)
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
