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
}

/// A mapped ring file.
pub struct Ring {
    map: MmapMut,
    path: PathBuf,
    capacity: u64,
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

    /// The size in bytes of a ring made with `config`.
    pub fn file_len(config: &RingConfig) -> u64 {
        let words = (config.bytes / 8)
            .max(MIN_CAPACITY_WORDS as usize)
            .next_power_of_two();
        (HEADER_BYTES + words * 8) as u64
    }

    /// Makes a ring in `file` (a new memfd, already sized to
    /// [`file_len`](Self::file_len) and reserved, or an empty file), named
    /// `path` in messages.
    pub fn create_in(file: File, path: &Path, config: RingConfig) -> Result<Ring, ReaderError> {
        let len = Self::file_len(&config) as usize;
        let words = (len - HEADER_BYTES) / 8;
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
            words as u64,
            config.clock,
            config.hook,
            config.full_policy,
            std::process::id(),
        );
        header.mode = config.mode as u32;
        // SAFETY: the map is page aligned and at least HEADER_BYTES long, so
        // it can hold a Header; nothing else has the file open yet.
        unsafe { std::ptr::write(map.as_mut_ptr().cast::<Header>(), header) };
        let ring = Ring {
            map,
            path: path.to_path_buf(),
            capacity: words as u64,
            _file: file,
        };
        ring.heartbeat();
        Ok(ring)
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
        let avail = head.wrapping_sub(tail);
        if avail > self.capacity {
            return Err(ReaderError::Corrupt(format!(
                "producer cursor {head} is not within one ring of the consumer cursor {tail}"
            )));
        }
        let n = (avail as usize).min(max);
        let mask = self.capacity - 1;
        let start = (tail & mask) as usize;
        let first = n.min(self.capacity as usize - start);
        let data = self.data_ptr();
        out.reserve(n);
        // SAFETY: start + first <= capacity and n - first <= capacity, so
        // both ranges lie in the data area. The words may be written by the
        // other process concurrently only if it misbehaves (they are between
        // the cursors); we copy them as plain data and validate the copy.
        unsafe {
            let dst = out.as_mut_ptr().add(out.len());
            std::ptr::copy_nonoverlapping(data.add(start), dst, first);
            std::ptr::copy_nonoverlapping(data, dst.add(first), n - first);
            out.set_len(out.len() + n);
        }
        Ok(tail.wrapping_add(n as u64))
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
