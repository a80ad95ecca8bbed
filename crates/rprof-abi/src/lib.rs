//! The shared-memory ring that rprof's injected shim writes and its reader
//! drains: the only vocabulary the two sides share.
//!
//! The ring lives in a file that the reader creates and both sides map with
//! `MAP_SHARED`. It starts with a [`Header`] (one page) followed by the data
//! area, `capacity_words` 64-bit words, a power of two. The shim is the only
//! producer (every write happens while it holds the GIL), the reader the
//! only consumer. Cursors ([`Header::head`], [`Header::tail`]) count words
//! since the start and never wrap; the slot of a word is `pos & (capacity -
//! 1)`. The producer publishes with a `Release` store of `head` after writing
//! the words, the consumer frees space with a `Release` store of `tail`
//! after copying them out, as perf's `data_head`/`data_tail` do.
//!
//! A record is a header word ([`RecordHeader`]) followed by payload words,
//! or, for most events, a single [`compact`] word: kind, function id and
//! the time since the producer's previous event. A record that would
//! straddle the end of the data area is preceded by a [`Kind::Pad`] record
//! (one word or more) that fills the rest of the area.
//!
//! After the data area come [`Header::segments`] per-thread *segments*
//! (see [`segment`]): on free-threaded builds several threads run Python at
//! once, so each thread claims a segment of its own and is its single
//! producer; the shared data area then carries only the capture's start,
//! end and thread names. GIL builds never touch the segments (the file is
//! sparse, so they cost no memory).
//!
//! The layout is versioned by [`MAGIC`] and [`LAYOUT_VERSION`]: a reader
//! rejects a ring written by another release instead of misreading it.
#![no_std]
#![deny(missing_docs)]

use core::mem::size_of;
use core::sync::atomic::{AtomicU32, AtomicU64};

/// First eight bytes of every ring file.
pub const MAGIC: [u8; 8] = *b"rprofrg\n";
/// Bumped whenever anything in this crate changes meaning.
pub const LAYOUT_VERSION: u32 = 4;
/// Size of the header area in bytes; the data area starts here.
pub const HEADER_BYTES: usize = 4096;
/// Longest string (in bytes) a definition record carries; longer strings
/// are cut at a character boundary by the shim.
pub const MAX_STRING_BYTES: usize = 4096;
/// Longest record in words: a Python definition with two maximal strings.
pub const MAX_RECORD_WORDS: usize = 4 + 2 * MAX_STRING_BYTES / 8 + 2;
/// Smallest data area the shim accepts, in words.
pub const MIN_CAPACITY_WORDS: u64 = 1 << 12;
/// Length of [`Header::error`].
pub const ERROR_BYTES: usize = 256;

/// Which clock the timestamps come from.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// `CLOCK_MONOTONIC`, in nanoseconds.
    Monotonic = 1,
    /// The invariant time-stamp counter (`rdtsc`), in ticks; the reader
    /// calibrates ticks against `CLOCK_MONOTONIC`.
    Tsc = 2,
}

impl Clock {
    /// Decodes a header value.
    pub fn from_u32(v: u32) -> Option<Clock> {
        match v {
            1 => Some(Clock::Monotonic),
            2 => Some(Clock::Tsc),
            _ => None,
        }
    }
}

/// Which CPython hook the shim installs.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// Let the shim choose: `sys.monitoring` on 3.12+, `setprofile` before.
    Auto = 0,
    /// `PyEval_SetProfile`, the C side of `sys.setprofile`, on every thread.
    SetProfile = 1,
    /// A native `sys.monitoring` tool (3.12+).
    Monitoring = 2,
}

impl Hook {
    /// Decodes a header value.
    pub fn from_u32(v: u32) -> Option<Hook> {
        match v {
            0 => Some(Hook::Auto),
            1 => Some(Hook::SetProfile),
            2 => Some(Hook::Monitoring),
            _ => None,
        }
    }
}

/// What the shim does when the ring is full.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullPolicy {
    /// Wait for the reader to make room (results stay exact). If the reader
    /// stops answering for [`READER_TIMEOUT_NS`], the shim gives up.
    Wait = 0,
    /// Drop the event and count it in [`Header::dropped`].
    Drop = 1,
}

/// What the installed hook does.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Record every event.
    Record = 0,
    /// Install the hook, but make every callback return at once: the floor
    /// a benchmark compares the recording hook with.
    Floor = 1,
    /// The floor plus the least any exact recorder does per event: the
    /// callbacks of the events cProfile records (every setprofile event;
    /// PY_START/PY_RETURN and the C events of exact builtin functions and
    /// method descriptors on 3.12+) read the clock and store one 8-byte
    /// word into memory of the shim's own, nothing else. A benchmark's
    /// lower bound for a recorder on this hook; the profile is empty.
    FloorClock = 2,
}

/// Bits of [`Header::flags`]: cProfile's `Profile(builtins=..., subcalls=...)`
/// switches, applied where they cost least.
pub mod flags {
    /// `builtins=False`: no builtin is recorded. The shim does not even
    /// register the C events on 3.12+ (call sites keep their
    /// specialisation), and ignores them first thing with setprofile.
    pub const NO_BUILTINS: u32 = 1;
    /// `subcalls=False`: no caller edges. The events are the same; the
    /// reader keeps no caller→callee counters (`_lsprof.c` keeps no
    /// sub-entries), so every caller dict in pstats is empty.
    pub const NO_SUBCALLS: u32 = 2;
}

/// How long the shim waits for a silent reader before it stops recording,
/// measured on the shim's own clock while [`Header::heartbeat`] does not
/// move.
pub const READER_TIMEOUT_NS: u64 = 1_000_000_000;
/// The longest one write waits for ring space with [`FullPolicy::Wait`]
/// (other threads wait as long, for the GIL). After that, the event is
/// dropped and counted in [`Header::dropped`]; if the reader also showed no
/// sign of life meanwhile, the capture is abandoned.
pub const MAX_WAIT_NS: u64 = READER_TIMEOUT_NS;

/// Shim life cycle, in [`Header::shim_state`].
pub mod state {
    /// The shim has not looked at the ring yet.
    pub const NEW: u32 = 0;
    /// Hooks are installed and events flow.
    pub const RECORDING: u32 = 1;
    /// The capture ended normally; a [`Stop`](super::Kind::Stop) record was
    /// written and nothing more will be.
    pub const STOPPED: u32 = 2;
    /// The shim stopped recording because the reader went silent.
    pub const ABANDONED: u32 = 3;
    /// The shim could not start; [`Header::error`](super::Header::error)
    /// says why.
    pub const FAILED: u32 = 4;
    /// The attach agent runs and waits for the GIL to start the capture.
    pub const WAITING_FOR_GIL: u32 = 5;
}

/// Reader → shim requests, in [`Header::command`].
pub mod command {
    /// Keep recording.
    pub const RUN: u32 = 0;
    /// Stop recording, remove the hooks and write a Stop record.
    pub const STOP: u32 = 1;
}

/// The first [`HEADER_BYTES`] of the ring file.
///
/// Fields in the first block are written by the reader before the shim maps
/// the file and never change. The producer block is written only by the
/// shim, the consumer block only by the reader; each sits on its own cache
/// line.
#[repr(C, align(64))]
pub struct Header {
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// [`LAYOUT_VERSION`].
    pub version: u32,
    /// [`HEADER_BYTES`].
    pub header_bytes: u32,
    /// Size of the data area in words; a power of two.
    pub capacity_words: u64,
    /// Requested [`Clock`].
    pub clock: u32,
    /// Requested [`Hook`].
    pub hook: u32,
    /// [`FullPolicy`].
    pub full_policy: u32,
    /// Process id of the reader, for diagnostics.
    pub reader_pid: u32,
    /// [`Mode`]: record, or only measure the hook's own cost.
    pub mode: u32,
    /// Number of per-thread segments after the data area (see [`segment`]).
    pub segments: u32,
    /// Size of each segment's data area in words; a power of two.
    pub segment_words: u64,
    /// What is recorded: a combination of [`flags`] bits.
    pub flags: u32,
    _pad0: [u8; 4],

    /// Producer cursor, in words (shim).
    pub head: AtomicU64,
    /// Events the shim could not record (shim).
    pub dropped: AtomicU64,
    /// Nanoseconds the shim spent waiting for ring space (shim).
    pub wait_ns: AtomicU64,
    /// Number of times the shim had to wait for ring space (shim).
    pub waits: AtomicU64,
    /// One of [`state`] (shim).
    pub shim_state: AtomicU32,
    /// The [`Hook`] the shim actually installed (shim).
    pub hook_used: AtomicU32,
    /// The [`Clock`] the shim actually uses (shim).
    pub clock_used: AtomicU32,
    /// `PY_VERSION_HEX` of the target (shim).
    pub python_version: AtomicU32,
    /// Number of threads hooked at start (shim).
    pub threads_hooked: AtomicU32,
    _pad1: [u8; 12],

    /// Consumer cursor, in words (reader).
    pub tail: AtomicU64,
    /// The reader's sign of life: a counter it advances every time it
    /// drains the ring (at least every few milliseconds). The shim decides
    /// the reader is gone when this stops moving for [`READER_TIMEOUT_NS`]
    /// by its *own* clock: no timestamp crosses the process boundary, so
    /// readers and targets in different time namespaces agree.
    pub heartbeat: AtomicU64,
    /// One of [`command`] (reader).
    pub command: AtomicU32,
    _pad2: [u8; 44],

    /// NUL-terminated UTF-8 reason when `shim_state` is [`state::FAILED`].
    pub error: [u8; ERROR_BYTES],

    /// Everything below this cursor is written, published or not (shim).
    /// The shim publishes [`head`](Self::head) in batches; this copy, on a
    /// cache line the reader leaves alone while the writer lives, lets the
    /// reader take the last batch of a process that exited without
    /// publishing it (`os._exit` in a `multiprocessing` worker). Only read
    /// once the writing process is gone; untrusted like `head`.
    pub written: AtomicU64,
    _pad3: [u8; 56],
}

const _: () = assert!(size_of::<Header>() == 512);
const _: () = assert!(core::mem::offset_of!(Header, written) == 448);
const _: () = assert!(size_of::<Header>() <= HEADER_BYTES);
const _: () = assert!(core::mem::offset_of!(Header, head) == 64);
const _: () = assert!(core::mem::offset_of!(Header, tail) == 128);
const _: () = assert!(core::mem::offset_of!(Header, error) == 192);
const _: () = assert!(core::mem::offset_of!(Header, segment_words) == 48);
const _: () = assert!(core::mem::offset_of!(Header, flags) == 56);

impl Header {
    /// A header for a data area of `capacity_words` words.
    pub fn new(
        capacity_words: u64,
        clock: Clock,
        hook: Hook,
        full_policy: FullPolicy,
        reader_pid: u32,
    ) -> Header {
        Header {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            header_bytes: HEADER_BYTES as u32,
            capacity_words,
            clock: clock as u32,
            hook: hook as u32,
            full_policy: full_policy as u32,
            reader_pid,
            mode: Mode::Record as u32,
            segments: 0,
            segment_words: 0,
            flags: 0,
            _pad0: [0; 4],
            head: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            wait_ns: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            shim_state: AtomicU32::new(state::NEW),
            hook_used: AtomicU32::new(0),
            clock_used: AtomicU32::new(0),
            python_version: AtomicU32::new(0),
            threads_hooked: AtomicU32::new(0),
            _pad1: [0; 12],
            tail: AtomicU64::new(0),
            heartbeat: AtomicU64::new(0),
            command: AtomicU32::new(command::RUN),
            _pad2: [0; 44],
            error: [0; ERROR_BYTES],
            written: AtomicU64::new(0),
            _pad3: [0; 56],
        }
    }

    /// Checks what a reader or shim must check before trusting the rest:
    /// magic, version and a sane capacity. `file_bytes` is the mapped size.
    pub fn validate(&self, file_bytes: usize) -> Result<(), LayoutError> {
        if self.magic != MAGIC {
            return Err(LayoutError::BadMagic);
        }
        if self.version != LAYOUT_VERSION || self.header_bytes as usize != HEADER_BYTES {
            return Err(LayoutError::Version(self.version));
        }
        let cap = self.capacity_words;
        if !cap.is_power_of_two() || cap < MIN_CAPACITY_WORDS {
            return Err(LayoutError::Capacity(cap));
        }
        let seg = self.segment_words;
        if self.segments > segment::MAX_SEGMENTS
            || (self.segments > 0 && (!seg.is_power_of_two() || seg < MIN_CAPACITY_WORDS))
        {
            return Err(LayoutError::Capacity(seg));
        }
        match crate::file_bytes(cap, self.segments, seg) {
            Some(n) if n <= file_bytes => Ok(()),
            _ => Err(LayoutError::Capacity(cap)),
        }
    }

    /// Byte offset of segment `i` (its [`segment::SegmentHeader`]) in the
    /// file; its data area follows the header.
    pub fn segment_offset(&self, i: u32) -> usize {
        HEADER_BYTES
            + self.capacity_words as usize * 8
            + i as usize * (segment::SEGMENT_HEADER_BYTES + self.segment_words as usize * 8)
    }

    /// The shim's failure message, if any.
    pub fn error_message(&self) -> &[u8] {
        let end = self
            .error
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(ERROR_BYTES);
        &self.error[..end]
    }
}

/// Size of a ring file: header, data area, segments. None on overflow.
pub fn file_bytes(capacity_words: u64, segments: u32, segment_words: u64) -> Option<usize> {
    let data = (capacity_words as usize).checked_mul(8)?;
    let one = (segment_words as usize)
        .checked_mul(8)?
        .checked_add(segment::SEGMENT_HEADER_BYTES)?;
    let segs = one.checked_mul(segments as usize)?;
    HEADER_BYTES.checked_add(data)?.checked_add(segs)
}

/// Per-thread segments, for builds where several threads run Python at once.
///
/// A segment is a ring of its own with the same record format as the main
/// data area, and exactly one producer at a time: the thread that claimed
/// it. A thread claims a segment the first time it records, by moving its
/// [`SegmentHeader::state`] from [`FREE`] to [`OWNED`] with a
/// compare-and-swap (no lock), and starts with a [`Kind::Thread`] record
/// naming itself. It defines every function id it uses in its own segment
/// before using it; ids are unique across segments (one atomic counter in
/// the shim), so a reader can replay segments in any interleaving, one
/// stack per thread. A thread that ends publishes everything and moves the
/// state to [`RETIRED`]; the reader, once it has read everything up to
/// `head`, moves it back to [`FREE`] for another thread (cursors keep
/// counting; a new owner starts with its Thread record).
pub mod segment {
    use core::sync::atomic::{AtomicU32, AtomicU64};

    /// Bytes of a [`SegmentHeader`]; the segment's data follows.
    pub const SEGMENT_HEADER_BYTES: usize = 128;
    /// Upper bound on [`Header::segments`](super::Header::segments).
    pub const MAX_SEGMENTS: u32 = 4096;
    /// Segments a reader creates by default: more threads than this
    /// recording at once lose the events of the extra ones (counted).
    pub const DEFAULT_SEGMENTS: u32 = 128;

    /// Nobody owns the segment.
    pub const FREE: u32 = 0;
    /// A thread writes to it.
    pub const OWNED: u32 = 1;
    /// Its thread ended; the reader frees it once drained.
    pub const RETIRED: u32 = 2;

    /// The head of one segment. The first cache line is the producer's,
    /// the second the consumer's.
    #[repr(C, align(64))]
    pub struct SegmentHeader {
        /// [`FREE`], [`OWNED`] or [`RETIRED`].
        pub state: AtomicU32,
        _pad0: u32,
        /// Producer cursor in words (owner), published with `Release`.
        pub head: AtomicU64,
        /// Native thread id of the owner, for diagnostics.
        pub owner: AtomicU64,
        _pad1: [u8; 40],
        /// Consumer cursor in words (reader).
        pub tail: AtomicU64,
        _pad2: [u8; 56],
    }

    const _: () = assert!(core::mem::size_of::<SegmentHeader>() == SEGMENT_HEADER_BYTES);
    const _: () = assert!(core::mem::offset_of!(SegmentHeader, tail) == 64);
}

/// Why a ring could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Not a ring file.
    BadMagic,
    /// A ring from another rprof release.
    Version(u32),
    /// A data area that is not a power of two, too small, or larger than
    /// the file.
    Capacity(u64),
}

/// The kinds of record.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A Python function starts or resumes (`PyTrace_CALL`, `PY_START`,
    /// `PY_RESUME`, `PY_THROW`). Arg: function id. Payload: timestamp.
    Call = 1,
    /// A Python function returns or yields (`PyTrace_RETURN`, `PY_RETURN`,
    /// `PY_YIELD`, `PY_UNWIND`). Arg: function id. Payload: timestamp.
    Return = 2,
    /// A builtin is called (`PyTrace_C_CALL`, `CALL`). Arg: function id.
    CCall = 3,
    /// A builtin returns (`PyTrace_C_RETURN`, `C_RETURN`).
    CReturn = 4,
    /// A builtin raises (`PyTrace_C_EXCEPTION`, `C_RAISE`).
    CException = 5,
    /// Filler up to the end of the data area; `len` words to skip.
    Pad = 16,
    /// Defines a Python function id. Payload: `firstlineno`, then
    /// `filename_len | name_len << 32`, then the two UTF-8 strings
    /// back to back, zero-padded to whole words.
    DefPython = 17,
    /// Defines a builtin id. Payload: `label_len`, then the UTF-8 label,
    /// zero-padded.
    DefBuiltin = 18,
    /// The following events happen on thread `payload[0]` (its native id).
    Thread = 19,
    /// `payload[0]` events were dropped here.
    Lost = 20,
    /// The capture starts: payload `[timestamp]`.
    Start = 21,
    /// The capture ends: payload `[timestamp]`; nothing follows.
    Stop = 22,
    /// Names a thread: payload native thread id, name length, then the
    /// UTF-8 name, zero-padded.
    ThreadName = 23,
}

impl Kind {
    /// Decodes a kind byte.
    pub fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Call,
            2 => Kind::Return,
            3 => Kind::CCall,
            4 => Kind::CReturn,
            5 => Kind::CException,
            16 => Kind::Pad,
            17 => Kind::DefPython,
            18 => Kind::DefBuiltin,
            19 => Kind::Thread,
            20 => Kind::Lost,
            21 => Kind::Start,
            22 => Kind::Stop,
            23 => Kind::ThreadName,
            _ => return None,
        })
    }
}

/// One-word events: `(0x80 | kind) | id << 8 | delta << 32`.
///
/// `kind` is an event kind ([`Kind::Call`] to [`Kind::CException`]), `id`
/// the function id (below [`compact::MAX_ID`]), `delta` the timestamp minus
/// the timestamp of the previous event *of the same producer* (the main
/// data area, or one segment) in clock ticks, below 2^32. An event that does
/// not fit (a larger id, a longer gap, a clock that went back) is written
/// as a two-word event record with its full timestamp. Both forms set the
/// base the next delta is added to; a producer's first base is 0 (the
/// main area at the start of a capture, a segment when a new thread
/// claims it).
pub mod compact {
    use super::Kind;

    /// Set in the kind byte of a one-word event.
    pub const FLAG: u8 = 0x80;
    /// Function ids a one-word event can carry are below this.
    pub const MAX_ID: u32 = 1 << 24;

    /// The word for `kind(id)` `delta` ticks after the previous event, if
    /// it fits in one word.
    #[inline(always)]
    pub const fn encode(kind: Kind, id: u32, delta: u64) -> Option<u64> {
        if id >= MAX_ID || delta > u32::MAX as u64 {
            return None;
        }
        Some((FLAG | kind as u8) as u64 | (id as u64) << 8 | delta << 32)
    }

    /// [`encode`] for a producer that never defines an id of
    /// [`MAX_ID`] or more (so only the delta is checked); a larger id would
    /// corrupt the word, which the reader treats as untrusted anyway.
    #[inline(always)]
    pub const fn encode_known_id(kind: Kind, id: u32, delta: u64) -> Option<u64> {
        if delta > u32::MAX as u64 {
            return None;
        }
        Some((FLAG | kind as u8) as u64 | (id as u64) << 8 | delta << 32)
    }

    /// `(kind byte, id, delta)` of a one-word event, if `word` is one:
    /// the kind byte is that of [`Kind::Call`] to [`Kind::CException`].
    #[inline(always)]
    pub const fn decode(word: u64) -> Option<(u8, u32, u64)> {
        let k = word as u8;
        if k & FLAG == 0 || (k & !FLAG) < Kind::Call as u8 || (k & !FLAG) > Kind::CException as u8 {
            return None;
        }
        Some((k & !FLAG, ((word >> 8) & 0xff_ffff) as u32, word >> 32))
    }
}

/// The first word of every record: `kind | len << 8 | arg << 32`, where
/// `len` is the record's length in words including this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader(pub u64);

impl RecordHeader {
    /// Builds a header word. `len` must fit in 24 bits.
    #[inline(always)]
    pub const fn new(kind: Kind, len: u32, arg: u32) -> RecordHeader {
        RecordHeader(kind as u64 | ((len as u64 & 0xff_ffff) << 8) | ((arg as u64) << 32))
    }

    /// The raw kind byte (may not be a known [`Kind`]).
    #[inline(always)]
    pub const fn kind_byte(self) -> u8 {
        self.0 as u8
    }

    /// Length in words, header included.
    #[inline(always)]
    pub const fn words(self) -> u32 {
        ((self.0 >> 8) & 0xff_ffff) as u32
    }

    /// The argument (a function id for events).
    #[inline(always)]
    pub const fn arg(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// Words needed for a record with `payload_words` words of payload, rounded
/// up to an even number.
pub const fn record_words(payload_words: usize) -> usize {
    (1 + payload_words + 1) & !1
}

/// Words needed to carry `bytes` bytes of string data.
pub const fn string_words(bytes: usize) -> usize {
    bytes.div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_word_round_trips() {
        let h = RecordHeader::new(Kind::DefPython, 123_456, 0xdead_beef);
        assert_eq!(Kind::from_u8(h.kind_byte()), Some(Kind::DefPython));
        assert_eq!(h.words(), 123_456);
        assert_eq!(h.arg(), 0xdead_beef);
    }

    #[test]
    fn compact_events_round_trip() {
        let w = compact::encode(Kind::CReturn, 0xab_cdef, 0xffff_fffe).unwrap();
        assert_eq!(
            compact::decode(w),
            Some((Kind::CReturn as u8, 0xab_cdef, 0xffff_fffe))
        );
        assert_eq!(compact::encode(Kind::Call, compact::MAX_ID, 0), None);
        assert_eq!(compact::encode(Kind::Call, 0, 1 << 32), None);
        // Record headers are never mistaken for compact events.
        assert_eq!(compact::decode(RecordHeader::new(Kind::Call, 2, 5).0), None);
        assert_eq!(compact::decode(0x80), None);
        assert_eq!(compact::decode(0x86), None);
    }

    #[test]
    fn records_are_even() {
        for p in 0..10 {
            assert_eq!(record_words(p) % 2, 0);
            assert!(record_words(p) > p);
        }
        assert_eq!(record_words(1), 2);
    }

    #[test]
    fn validate_rejects_bad_headers() {
        let h = Header::new(1 << 12, Clock::Tsc, Hook::Auto, FullPolicy::Wait, 1);
        let size = HEADER_BYTES + (1 << 12) * 8;
        assert_eq!(h.validate(size), Ok(()));
        assert_eq!(h.validate(size - 1), Err(LayoutError::Capacity(1 << 12)));
        let mut bad = Header::new(3000, Clock::Tsc, Hook::Auto, FullPolicy::Wait, 1);
        assert_eq!(bad.validate(usize::MAX), Err(LayoutError::Capacity(3000)));
        bad.magic = *b"notaring";
        assert_eq!(bad.validate(usize::MAX), Err(LayoutError::BadMagic));
    }

    #[test]
    fn max_record_fits_in_min_capacity() {
        assert!(record_words(3 + 2 * string_words(MAX_STRING_BYTES)) <= MAX_RECORD_WORDS);
        assert!((MAX_RECORD_WORDS as u64) < MIN_CAPACITY_WORDS / 2);
    }
}
