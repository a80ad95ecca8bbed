//! The reader's side of the shared memory: creating the ring file, and the
//! only code in this crate that touches the mapping directly.
//!
//! The target process writes to the same pages concurrently, and may be
//! hostile. So nothing here hands out references into the data area: words
//! are *copied out* between the cursors and decoded from the copy, and the
//! cursors themselves are treated as suggestions that are checked against
//! the capacity before use.

use crate::ReaderError;
use memmap2::MmapMut;
use rprof_abi::segment::{SegmentHeader, DEFAULT_SEGMENTS, SEGMENT_HEADER_BYTES};
use rprof_abi::{Clock, FullPolicy, Header, Hook, Mode, HEADER_BYTES, MIN_CAPACITY_WORDS};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

/// Settings for a new ring.
#[derive(Clone, Copy, Debug)]
pub struct RingConfig {
    /// Data area size in bytes; rounded up to a power of two words.
    pub bytes: usize,
    /// Clock the shim should use.
    pub clock: Clock,
    /// Hook the shim should install.
    pub hook: Hook,
    /// What the shim does when the ring is full.
    pub full_policy: FullPolicy,
    /// Record, or only install do-nothing hooks (benchmarks).
    pub mode: Mode,
    /// [`rprof_abi::flags`]: what is left out (builtins, caller edges).
    pub flags: u32,
}

/// The largest ring a child may announce (16 GiB).
pub const MAX_ANNOUNCED_BYTES: u64 = 16 << 30;

/// A mapped ring file.
pub struct Ring {
    map: MmapMut,
    path: PathBuf,
    capacity: u64,
    segments: u32,
    segment_words: u64,
    _file: File,
}

impl Ring {
    /// Creates the ring file at `path` (which must not exist), readable and
    /// writable by its owner only, and writes its header.
    pub fn create(path: &Path, config: RingConfig) -> Result<Ring, ReaderError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| ReaderError::io(format!("cannot create {}", path.display()), e))?;
        Self::create_in(file, path, config)
    }

    /// The main area's size in words and the per-thread segments' layout
    /// (free-threaded builds; see rprof_abi::segment) for `config`.
    fn layout(config: &RingConfig) -> (u64, u32, u64) {
        let words = (config.bytes / 8)
            .max(MIN_CAPACITY_WORDS as usize)
            .next_power_of_two() as u64;
        let segment_words = (words / 16).max(MIN_CAPACITY_WORDS);
        (words, DEFAULT_SEGMENTS, segment_words)
    }

    /// The size in bytes of a ring made with `config`, header, main area
    /// and per-thread segments.
    pub fn file_len(config: &RingConfig) -> u64 {
        let (words, segments, segment_words) = Self::layout(config);
        rprof_abi::file_bytes(words, segments, segment_words).unwrap_or(usize::MAX) as u64
    }

    /// The bytes every capture writes into (header and main area), which
    /// are reserved before the shim may write. The per-thread segments
    /// after them stay sparse: only free-threaded builds touch them.
    pub fn reserved_len(config: &RingConfig) -> u64 {
        let (words, _, _) = Self::layout(config);
        (HEADER_BYTES as u64).saturating_add(words.saturating_mul(8))
    }

    /// Makes a ring in `file` (a new memfd, already sized to
    /// [`file_len`](Self::file_len) and reserved, or an empty file), named
    /// `path` in messages.
    pub fn create_in(file: File, path: &Path, config: RingConfig) -> Result<Ring, ReaderError> {
        let (words, segments, segment_words) = Self::layout(&config);
        let len = rprof_abi::file_bytes(words, segments, segment_words).ok_or_else(|| {
            ReaderError::io(
                format!("cannot size {}", path.display()),
                std::io::Error::other("ring too large"),
            )
        })?;
        let have = file
            .metadata()
            .map_err(|e| ReaderError::io(format!("cannot size {}", path.display()), e))?
            .len();
        if have != len as u64 {
            file.set_len(len as u64)
                .map_err(|e| ReaderError::io(format!("cannot size {}", path.display()), e))?;
        }
        // SAFETY: the file is ours, freshly created and sized; the shim that
        // maps it too only ever writes through atomics in the header and
        // into the data area, which we never reference, only copy from.
        let mut map = unsafe { MmapMut::map_mut(&file) }
            .map_err(|e| ReaderError::io(format!("cannot map {}", path.display()), e))?;
        let mut header = Header::new(
            words,
            config.clock,
            config.hook,
            config.full_policy,
            std::process::id(),
        );
        header.mode = config.mode as u32;
        header.flags = config.flags;
        header.segments = segments;
        header.segment_words = segment_words;
        // SAFETY: the map is page aligned and at least HEADER_BYTES long, so
        // it can hold a Header; nothing else has the file open yet.
        unsafe { std::ptr::write(map.as_mut_ptr().cast::<Header>(), header) };
        let ring = Ring {
            map,
            path: path.to_path_buf(),
            capacity: words,
            segments,
            segment_words,
            _file: file,
        };
        ring.heartbeat();
        Ok(ring)
    }

    /// Takes over a ring a profiled child made itself and announced
    /// (`--subprocesses`; see `rprof_controller::follow`). Its header was
    /// written by the child, so nothing in it is trusted: the file must be
    /// sealed against shrinking and growing (so the mapping cannot fault),
    /// exactly as large as its header says, at most [`MAX_ANNOUNCED_BYTES`],
    /// and the layout is read once here and never again from the header.
    pub fn open_announced(file: File, path: &Path) -> Result<Ring, ReaderError> {
        let bad = |why: &str| {
            ReaderError::io(
                format!("refusing {}", path.display()),
                std::io::Error::other(why.to_string()),
            )
        };
        // SAFETY: fcntl on an fd we own.
        let seals =
            unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_GET_SEALS) };
        let need = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        if seals < 0 || seals & need != need {
            return Err(bad("the ring is not sealed against resizing"));
        }
        let len = file
            .metadata()
            .map_err(|e| ReaderError::io(format!("cannot size {}", path.display()), e))?
            .len();
        if len < HEADER_BYTES as u64 || len > MAX_ANNOUNCED_BYTES {
            return Err(bad("the ring has an impossible size"));
        }
        // SAFETY: the file cannot change size (sealed); the child writes
        // into it concurrently, but we only copy words out and read the
        // header's plain fields once, below.
        let map = unsafe { MmapMut::map_mut(&file) }
            .map_err(|e| ReaderError::io(format!("cannot map {}", path.display()), e))?;
        // SAFETY: the map is page aligned and at least HEADER_BYTES long.
        let h = unsafe { &*map.as_ptr().cast::<Header>() };
        let (words, segments, segment_words) = (h.capacity_words, h.segments, h.segment_words);
        if h.validate(len as usize).is_err()
            || rprof_abi::file_bytes(words, segments, segment_words) != Some(len as usize)
            || h.capacity_words != words
            || h.segments != segments
            || h.segment_words != segment_words
        {
            return Err(bad("the ring's header does not describe it"));
        }
        let ring = Ring {
            map,
            path: path.to_path_buf(),
            capacity: words,
            segments,
            segment_words,
            _file: file,
        };
        ring.heartbeat();
        Ok(ring)
    }

    /// Byte offset of segment `i`, from the layout read once (never from
    /// the shared header, which the other side could rewrite).
    fn segment_offset(&self, i: u32) -> usize {
        HEADER_BYTES
            + self.capacity as usize * 8
            + i as usize * (SEGMENT_HEADER_BYTES + self.segment_words as usize * 8)
    }

    /// Where the ring file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header. Its plain fields were written by us; its atomics may
    /// change at any time.
    pub fn header(&self) -> &Header {
        // SAFETY: the mapping starts with the Header we wrote in `create`,
        // lives as long as `self`, and the shim only changes its atomics.
        unsafe { &*self.map.as_ptr().cast::<Header>() }
    }

    /// Capacity of the data area in words.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Signals the shim that the reader is alive: advances the counter the
    /// shim watches (see [`Header::heartbeat`]).
    pub fn heartbeat(&self) {
        self.header().heartbeat.fetch_add(1, Relaxed);
    }

    /// Asks the shim to stop.
    pub fn request_stop(&self) {
        self.header()
            .command
            .store(rprof_abi::command::STOP, Release);
    }

    /// Copies the words published since `tail` (at most `max` of them) to
    /// the end of `out` and returns the new tail, which the caller passes
    /// to [`release`](Self::release) once it has decoded them. A `head`
    /// that is behind `tail` or more than a capacity ahead is reported as
    /// corruption.
    pub fn copy_out(&self, tail: u64, max: usize, out: &mut Vec<u64>) -> Result<u64, ReaderError> {
        let head = self.header().head.load(Acquire);
        copy_between(self.data_ptr(), self.capacity, head, tail, max, out)
    }

    /// Number of per-thread segments.
    pub fn segments(&self) -> u32 {
        self.segments
    }

    /// Capacity of each segment in words.
    pub fn segment_capacity(&self) -> u64 {
        self.segment_words
    }

    /// The header of segment `i` (`i < segments()`). Its atomics may change
    /// at any time.
    pub fn segment(&self, i: u32) -> &SegmentHeader {
        assert!(i < self.segments);
        let off = self.segment_offset(i);
        // SAFETY: `create` sized the file for `segments` segments, each a
        // 64-byte aligned SegmentHeader (offsets are multiples of 64: the
        // header area, the data area and each segment are) followed by its
        // data; the shim only changes the atomics.
        unsafe { &*self.map.as_ptr().add(off).cast::<SegmentHeader>() }
    }

    /// [`copy_out`](Self::copy_out) for segment `i`.
    pub fn segment_copy_out(
        &self,
        i: u32,
        tail: u64,
        max: usize,
        out: &mut Vec<u64>,
    ) -> Result<u64, ReaderError> {
        let head = self.segment(i).head.load(Acquire);
        let off = self.segment_offset(i) + SEGMENT_HEADER_BYTES;
        // SAFETY: the segment's data area, segment_words words, starts at
        // `off` inside the mapping (see `segment`).
        let data = unsafe { self.map.as_ptr().add(off).cast::<u64>() };
        copy_between(data, self.segment_words, head, tail, max, out)
    }

    /// Frees everything before `tail` in segment `i` for its producer.
    pub fn segment_release(&self, i: u32, tail: u64) {
        self.segment(i).tail.store(tail, Release);
    }

    /// Frees everything before `tail` for the producer.
    pub fn release(&self, tail: u64) {
        self.header().tail.store(tail, Release);
    }

    fn data_ptr(&self) -> *const u64 {
        // SAFETY: the data area starts HEADER_BYTES into the mapping, which
        // is HEADER_BYTES + capacity * 8 long.
        unsafe { self.map.as_ptr().add(HEADER_BYTES).cast::<u64>() }
    }
}

/// Copies the words between `tail` and `head` (at most `max`) of the ring
/// of `capacity` words at `data` to the end of `out`; returns the new tail.
fn copy_between(
    data: *const u64,
    capacity: u64,
    head: u64,
    tail: u64,
    max: usize,
    out: &mut Vec<u64>,
) -> Result<u64, ReaderError> {
    let avail = head.wrapping_sub(tail);
    if avail > capacity {
        return Err(ReaderError::Corrupt(format!(
            "producer cursor {head} is not within one ring of the consumer cursor {tail}"
        )));
    }
    let n = (avail as usize).min(max);
    let mask = capacity - 1;
    let start = (tail & mask) as usize;
    let first = n.min(capacity as usize - start);
    out.reserve(n);
    // SAFETY: `data` is a ring of `capacity` words (callers); start + first
    // <= capacity and n - first <= capacity, so both ranges lie in it. The
    // words may be written by the other process concurrently only if it
    // misbehaves (they are between the cursors); we copy them as plain
    // data and validate the copy.
    unsafe {
        let dst = out.as_mut_ptr().add(out.len());
        std::ptr::copy_nonoverlapping(data.add(start), dst, first);
        std::ptr::copy_nonoverlapping(data, dst.add(first), n - first);
        out.set_len(out.len() + n);
    }
    Ok(tail.wrapping_add(n as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_copy_release() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Ring::create(
            &dir.path().join("ring"),
            RingConfig {
                bytes: 1,
                clock: Clock::Monotonic,
                hook: Hook::Auto,
                full_policy: FullPolicy::Wait,
                mode: Mode::Record,
                flags: 0,
            },
        )
        .unwrap();
        assert_eq!(ring.capacity(), MIN_CAPACITY_WORDS);
        let len = std::fs::metadata(ring.path()).unwrap().len();
        assert_eq!(ring.header().validate(len as usize), Ok(()));
        // Nothing published yet.
        let mut out = Vec::new();
        assert_eq!(ring.copy_out(0, usize::MAX, &mut out).unwrap(), 0);
        assert!(out.is_empty());
        // A producer cursor beyond one ring is corruption.
        ring.header().head.store(MIN_CAPACITY_WORDS + 2, Release);
        assert!(ring.copy_out(0, usize::MAX, &mut out).is_err());
        ring.header().head.store(6, Release);
        assert_eq!(ring.copy_out(0, 4, &mut out).unwrap(), 4);
        assert_eq!(out.len(), 4);
        ring.release(4);
        assert_eq!(ring.header().tail.load(Acquire), 4);
    }
}
