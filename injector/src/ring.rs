//! The producer side of the shared-memory ring (layout in `rprof-abi`).
//!
//! Every method runs with the GIL held, which is what makes the shim a
//! single producer. The fast path for an event is: read the clock, read
//! the thread pointer (one instruction, no call), one comparison that
//! covers "same thread, nothing lost, room left", write two words, note
//! the new `head`. The thread switch, a Lost record owed, waiting for the
//! reader, padding at the end of the area and definitions are out of line.
//!
//! **When the ring is full.** With `--on-full drop` nothing ever waits: an
//! event that does not fit is counted as lost, and so is an event whose
//! function definition or thread switch does not fit (the definition is
//! retried on the function's next event). With `--on-full wait` one write
//! waits at most [`MAX_WAIT_NS`] (the GIL is held meanwhile, so the other
//! threads wait as long); then the event is dropped and counted, and if the
//! reader's heartbeat counter did not move during the wait the capture is
//! abandoned. The one exception is the final Stop record, which waits (as
//! long, at most) for the reader that asked for it, whatever the policy.

use core::ffi::CStr;
use core::ptr;
use core::sync::atomic::AtomicPtr;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use rprof_abi::{
    command, compact, record_words, state, string_words, Clock, FullPolicy, Header, Kind,
    RecordHeader, HEADER_BYTES, MAX_STRING_BYTES, MAX_WAIT_NS, READER_TIMEOUT_NS,
};
use std::cell::Cell;

thread_local! {
    /// The native id of the current thread, 0 until first asked.
    static TID: Cell<u64> = const { Cell::new(0) };
}

#[inline(always)]
pub(crate) fn current_tid() -> u64 {
    TID.with(|t| {
        let v = t.get();
        if v != 0 {
            return v;
        }
        // SAFETY: gettid has no preconditions.
        let v = unsafe { libc::syscall(libc::SYS_gettid) } as u64;
        t.set(v);
        v
    })
}

/// An identity of the calling thread that no other live thread shares:
/// the thread pointer, read from `%fs:0` where the x86_64 TCB keeps its
/// own address (glibc and musl alike). One instruction, where
/// `pthread_self()` is a call through the PLT.
#[inline(always)]
pub(crate) fn thread_pointer() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        let tp: u64;
        // SAFETY: reads the first word of the thread control block, which
        // the x86_64 TLS ABI guarantees to hold the TCB's own address.
        unsafe {
            core::arch::asm!("mov {}, fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags))
        };
        tp
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: pthread_self has no preconditions.
        unsafe { libc::pthread_self() as u64 }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[inline(always)]
pub(crate) fn timestamp(clock: Clock) -> u64 {
    match clock {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: rdtsc is available on every x86_64 CPU.
        Clock::Tsc => unsafe { core::arch::x86_64::_rdtsc() },
        _ => monotonic_out_of_line(),
    }
}

/// [`monotonic_ns`] as a call, so that the callbacks' fast path (with the
/// TSC) needs no stack frame for the `timespec`.
#[cold]
#[inline(never)]
fn monotonic_out_of_line() -> u64 {
    monotonic_ns()
}

/// The shared `head` is updated once per this many words (64 events), not
/// per event: the reader polls it from another core, and a store to a
/// cache line another core keeps reading costs a cross-core transfer each
/// time. Markers, a full ring and the end of the capture publish at once.
const PUBLISH_WORDS: u64 = 128;

/// Why the writer stopped accepting events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The reader went silent; the capture is over.
    Abandoned,
    /// No room appeared within [`MAX_WAIT_NS`]; this record is dropped.
    TimedOut,
}

/// The mapped ring and the producer's private cursors.
pub struct Writer {
    header: *mut Header,
    data: *mut u64,
    map_len: usize,
    cap: u64,
    mask: u64,
    head: u64,
    cached_tail: u64,
    /// `head` may grow up to this before the reader must be asked for
    /// room: `cached_tail + cap`, or 0 (which stops the fast path) while a
    /// Lost record is owed or the capture is abandoned.
    limit: u64,
    clock: Clock,
    policy: FullPolicy,
    /// [`thread_pointer`] of the thread the last events belong to.
    last_thread: u64,
    /// Timestamp of the last event written: the base of the next one's
    /// delta (see [`rprof_abi::compact`]).
    last_ts: u64,
    /// `head` as last published to the reader.
    published: u64,
    pending_lost: u64,
    abandoned: bool,
}

impl Writer {
    /// Maps the ring file at `path` and checks its header.
    ///
    /// # Safety
    /// `path` names a ring file created by the rprof reader, which stays
    /// mapped for as long as the writer lives.
    pub unsafe fn open(path: &CStr) -> Result<Writer, &'static str> {
        // SAFETY: `path` is a valid C string; the fd is closed below.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err("cannot open the ring file");
        }
        // SAFETY: `st` is a valid out-pointer for fstat.
        let mut st: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: fd is open; st is writable.
        if unsafe { libc::fstat(fd, &mut st) } != 0 || (st.st_size as usize) < HEADER_BYTES {
            // SAFETY: fd is open.
            unsafe { libc::close(fd) };
            return Err("the ring file is too small");
        }
        let len = st.st_size as usize;
        // SAFETY: mapping a regular file we opened read-write; the result is
        // checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        // SAFETY: fd is open; the mapping keeps its own reference.
        unsafe { libc::close(fd) };
        if p == libc::MAP_FAILED {
            return Err("cannot map the ring file");
        }
        let header = p.cast::<Header>();
        // SAFETY: the mapping is at least HEADER_BYTES long and page
        // aligned, so it holds a Header.
        let h = unsafe { &*header };
        if h.validate(len).is_err() {
            // SAFETY: unmapping what we mapped.
            unsafe { libc::munmap(p, len) };
            return Err(
                "the ring file has an unknown layout (rprof and its shim differ in version)",
            );
        }
        let cap = h.capacity_words;
        let clock = match Clock::from_u32(h.clock) {
            Some(Clock::Tsc) if cfg!(target_arch = "x86_64") => Clock::Tsc,
            _ => Clock::Monotonic,
        };
        let policy = if h.full_policy == FullPolicy::Drop as u32 {
            FullPolicy::Drop
        } else {
            FullPolicy::Wait
        };
        h.clock_used.store(clock as u32, Relaxed);
        let head = h.head.load(Relaxed);
        HEADER.store(header, Release);
        let tail = h.tail.load(Acquire);
        Ok(Writer {
            header,
            // SAFETY: validate() checked the data area lies inside the map.
            data: unsafe { p.cast::<u8>().add(HEADER_BYTES) }.cast::<u64>(),
            map_len: len,
            cap,
            mask: cap - 1,
            head,
            cached_tail: tail,
            limit: tail.wrapping_add(cap),
            clock,
            policy,
            last_thread: 0,
            last_ts: 0,
            published: head,
            pending_lost: 0,
            abandoned: false,
        })
    }

    /// Makes this writer the one [`publish_written`] publishes for (after
    /// the writer it replaced, in a forked child, was dropped).
    pub fn register(&self) {
        HEADER.store(self.header, Release);
    }

    /// The whole mapping (header, data area, segments) and the clock and
    /// full-ring policy in use, for the per-thread segment writers.
    pub fn mapping(&self) -> (*mut u8, usize, Clock, FullPolicy) {
        (self.header.cast(), self.map_len, self.clock, self.policy)
    }

    /// The shared header.
    pub fn header(&self) -> &Header {
        // SAFETY: mapped for the writer's whole life.
        unsafe { &*self.header }
    }

    /// Whether the capture has ended for lack of a reader.
    pub fn is_abandoned(&self) -> bool {
        self.abandoned
    }

    /// Whether the reader asked the shim to stop.
    pub fn stop_requested(&self) -> bool {
        self.header().command.load(Relaxed) == command::STOP
    }

    /// Records a failure message in the header.
    pub fn fail(&self, msg: &str) {
        let h = self.header;
        let n = msg.len().min(rprof_abi::ERROR_BYTES - 1);
        // SAFETY: the error field is ERROR_BYTES long and only the shim
        // writes it; we write n < ERROR_BYTES bytes and a NUL.
        unsafe {
            let dst = ptr::addr_of_mut!((*h).error).cast::<u8>();
            ptr::copy_nonoverlapping(msg.as_ptr(), dst, n);
            *dst.add(n) = 0;
        }
        self.header().shim_state.store(state::FAILED, Release);
    }

    /// Writes one event: the thread switch if needed, then `kind(id)` at
    /// the current time.
    #[inline(always)]
    pub fn event(&mut self, kind: Kind, id: u32) {
        let ts = timestamp(self.clock);
        let me = thread_pointer();
        let word = compact::encode_known_id(kind, id, ts.wrapping_sub(self.last_ts));
        match word {
            Some(w) if me == self.last_thread && self.head < self.limit => {
                self.last_ts = ts;
                self.put(w);
            }
            _ => self.event_slow(kind, id, ts, me, word),
        }
    }

    /// Writes a one-word event at `head`, room being there.
    #[inline(always)]
    fn put(&mut self, word: u64) {
        let slot = self.head & self.mask;
        // SAFETY: the caller checked that a word is free at `slot` (which
        // is below the capacity, being masked).
        unsafe { *self.data.add(slot as usize) = word };
        self.publish(1);
    }

    /// An event off the fast path: a Lost record owed, another thread, or
    /// no room known.
    #[cold]
    #[inline(never)]
    fn event_slow(&mut self, kind: Kind, id: u32, ts: u64, me: u64, word: Option<u64>) {
        if self.abandoned {
            return;
        }
        if self.pending_lost != 0 {
            self.flush_lost();
        }
        // The kernel's thread id is only looked up when the thread changes.
        if me != self.last_thread && !self.thread_switch(me) {
            // Without its thread switch the event would be charged to
            // another thread: drop it.
            self.lose();
            return;
        }
        match word {
            Some(w) => {
                if !self.reserve(1) {
                    return;
                }
                self.put(w);
            }
            // Too far from the previous event (or an id too large for one
            // word): the full timestamp, which is the next event's base.
            None => {
                if !self.write_record(kind, id, &[ts], &[], self.policy) {
                    self.lose();
                    return;
                }
            }
        }
        self.last_ts = ts;
    }

    /// Takes the reader's `tail` as the new bound on `head`.
    #[inline(always)]
    fn set_tail(&mut self, tail: u64) {
        self.cached_tail = tail;
        self.limit = if self.pending_lost != 0 || self.abandoned {
            0
        } else {
            tail.wrapping_add(self.cap)
        };
    }

    #[cold]
    fn thread_switch(&mut self, me: u64) -> bool {
        let ok = self.write_record(Kind::Thread, 0, &[current_tid()], &[], self.policy);
        if ok {
            self.last_thread = me;
        }
        ok
    }

    /// Counts one event as lost (a Lost record follows when room allows).
    #[cold]
    pub fn lose(&mut self) {
        if self.abandoned {
            return;
        }
        self.pending_lost += 1;
        self.limit = 0;
        self.header().dropped.fetch_add(1, Relaxed);
    }

    /// Writes a record that carries only a timestamp (Start, Stop). These
    /// wait for room (boundedly) whatever the policy: the reader is
    /// draining when they are written.
    pub fn marker(&mut self, kind: Kind) -> bool {
        let ts = timestamp(self.clock);
        let ok = self.write_record(kind, 0, &[ts], &[], FullPolicy::Wait);
        self.flush();
        ok
    }

    /// Defines a Python function id. If it does not fit, the event that
    /// needed it is counted as lost and false is returned: the caller must
    /// not use the id (it is defined again on the function's next event).
    #[cold]
    pub fn def_python(&mut self, id: u32, file: &[u8], line: u64, name: &[u8]) -> bool {
        if id >= compact::MAX_ID {
            // Events carry ids below MAX_ID (the reader refuses others).
            self.lose();
            return false;
        }
        let file = clip(file);
        let name = clip(name);
        let lens = file.len() as u64 | ((name.len() as u64) << 32);
        let ok = self.write_record(
            Kind::DefPython,
            id,
            &[line, lens],
            &[file, name],
            self.policy,
        );
        if !ok {
            self.lose();
        }
        ok
    }

    /// Names a thread (at the end of a capture).
    #[cold]
    pub fn thread_name(&mut self, tid: u64, name: &[u8]) -> bool {
        let name = clip(name);
        self.write_record(
            Kind::ThreadName,
            0,
            &[tid, name.len() as u64],
            &[name],
            self.policy,
        )
    }

    /// Defines a builtin id; see [`def_python`](Self::def_python).
    #[cold]
    pub fn def_builtin(&mut self, id: u32, label: &[u8]) -> bool {
        if id >= compact::MAX_ID {
            self.lose();
            return false;
        }
        let label = clip(label);
        let ok = self.write_record(
            Kind::DefBuiltin,
            id,
            &[label.len() as u64],
            &[label],
            self.policy,
        );
        if !ok {
            self.lose();
        }
        ok
    }

    /// Writes a whole record: header, `words`, then `strings` packed back to
    /// back and zero-padded. With `policy` Drop it never waits for room.
    fn write_record(
        &mut self,
        kind: Kind,
        arg: u32,
        words: &[u64],
        strings: &[&[u8]],
        policy: FullPolicy,
    ) -> bool {
        if self.pending_lost != 0 {
            self.flush_lost();
        }
        let string_bytes: usize = strings.iter().map(|s| s.len()).sum();
        let total = record_words(words.len() + string_words(string_bytes)) as u64;
        let slot = self.head & self.mask;
        let pad = if slot + total > self.cap {
            self.cap - slot
        } else {
            0
        };
        if self.free() < pad + total && !self.reserve_record(pad + total, policy) {
            return false;
        }
        if pad > 0 {
            // SAFETY: the pad occupies [slot, cap), reserved above.
            unsafe {
                *self.data.add(slot as usize) = RecordHeader::new(Kind::Pad, pad as u32, 0).0
            };
            self.publish(pad);
        }
        let slot = (self.head & self.mask) as usize;
        // SAFETY: `total` words from `slot` are reserved and, after the pad,
        // contiguous (slot + total <= cap).
        unsafe {
            let base = self.data.add(slot);
            ptr::write_bytes(base, 0, total as usize);
            *base = RecordHeader::new(kind, total as u32, arg).0;
            for (i, w) in words.iter().enumerate() {
                *base.add(1 + i) = *w;
            }
            let mut bytes = base.add(1 + words.len()).cast::<u8>();
            for s in strings {
                ptr::copy_nonoverlapping(s.as_ptr(), bytes, s.len());
                bytes = bytes.add(s.len());
            }
        }
        self.publish(total);
        true
    }

    /// Makes sure `words` words are free; false if the event must be
    /// skipped (dropped, or the capture was abandoned).
    #[inline(always)]
    fn reserve(&mut self, words: u64) -> bool {
        if self.free() >= words {
            return true;
        }
        self.reserve_slow(words)
    }

    #[inline(always)]
    fn free(&self) -> u64 {
        self.cap
            .saturating_sub(self.head.wrapping_sub(self.cached_tail))
    }

    #[cold]
    #[inline(never)]
    fn reserve_slow(&mut self, words: u64) -> bool {
        if self.abandoned {
            return false;
        }
        self.set_tail(self.header().tail.load(Acquire));
        if self.free() >= words {
            return true;
        }
        let ok = match self.policy {
            FullPolicy::Drop => false,
            FullPolicy::Wait => self.wait_for(words).is_ok(),
        };
        if !ok {
            self.lose();
        }
        ok
    }

    /// Room for a non-event record: never waits with `Drop`.
    #[cold]
    fn reserve_record(&mut self, words: u64, policy: FullPolicy) -> bool {
        if self.abandoned || words > self.cap {
            return false;
        }
        self.set_tail(self.header().tail.load(Acquire));
        if self.free() >= words {
            return true;
        }
        match policy {
            FullPolicy::Drop => false,
            FullPolicy::Wait => self.wait_for(words).is_ok(),
        }
    }

    /// Writes the Lost record owed for events dropped since the last one
    /// that got through. Only called when `pending_lost > 0`.
    #[cold]
    fn flush_lost(&mut self) {
        let n = core::mem::take(&mut self.pending_lost);
        // Never waits: the Lost record is written when there is room.
        if !self.write_record(Kind::Lost, 0, &[n], &[], FullPolicy::Drop) {
            self.pending_lost = n;
        }
        self.set_tail(self.cached_tail);
    }

    /// Waits until `need` words are free, for at most [`MAX_WAIT_NS`] of
    /// this process's own clock. Gives up earlier, abandoning the capture,
    /// if the reader's heartbeat counter does not move for
    /// [`READER_TIMEOUT_NS`]; at the limit, the record is refused (and the
    /// capture abandoned if the reader never moved meanwhile).
    fn wait_for(&mut self, need: u64) -> Result<(), Refusal> {
        // The reader can only free what it can see.
        self.flush();
        let start = monotonic_ns();
        let mut beat = self.header().heartbeat.load(Relaxed);
        let mut beat_at = start;
        let mut spins = 0u32;
        loop {
            self.set_tail(self.header().tail.load(Acquire));
            let now = monotonic_ns();
            if self.free() >= need {
                let h = self.header();
                h.waits.fetch_add(1, Relaxed);
                h.wait_ns.fetch_add(now.saturating_sub(start), Relaxed);
                return Ok(());
            }
            let b = self.header().heartbeat.load(Relaxed);
            if b != beat {
                beat = b;
                beat_at = now;
            }
            if now.saturating_sub(beat_at) > READER_TIMEOUT_NS {
                self.abandon();
                return Err(Refusal::Abandoned);
            }
            if now.saturating_sub(start) > MAX_WAIT_NS {
                let h = self.header();
                h.waits.fetch_add(1, Relaxed);
                h.wait_ns.fetch_add(now.saturating_sub(start), Relaxed);
                return Err(Refusal::TimedOut);
            }
            spins += 1;
            if spins < 64 {
                core::hint::spin_loop();
            } else {
                let ts = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 20_000,
                };
                // SAFETY: plain sleep; EINTR just shortens it.
                unsafe { libc::nanosleep(&ts, ptr::null_mut()) };
            }
        }
    }

    /// Stops writing for good because the reader is gone.
    pub fn abandon(&mut self) {
        self.abandoned = true;
        self.limit = 0;
        // No callback records any more (it would only find the writer
        // refusing).
        crate::hooks::ACTIVE.store(false, Release);
        self.header().shim_state.store(state::ABANDONED, Release);
    }

    #[inline(always)]
    fn publish(&mut self, words: u64) {
        self.head = self.head.wrapping_add(words);
        self.header().written.store(self.head, Release);
        if self.head.wrapping_sub(self.published) >= PUBLISH_WORDS {
            self.flush();
        }
    }

    /// Makes every record written so far visible to the reader.
    #[inline]
    pub fn flush(&mut self) {
        self.published = self.head;
        // fetch_max: publish_written() may publish from another thread, and
        // the head must never move back.
        self.header().head.fetch_max(self.head, Release);
    }
}

/// The mapped header of the current writer, or null.
static HEADER: AtomicPtr<Header> = AtomicPtr::new(ptr::null_mut());

/// Makes [`publish_written`] a no-op (in a forked child, which must not
/// touch its parent's ring).
pub fn forget_header() {
    HEADER.store(ptr::null_mut(), Release);
}

/// Publishes every complete record written so far, from any thread and
/// without the GIL: the agent calls it while the target idles, and an
/// `atexit` handler when the process exits normally, so that the last
/// batch (fewer than 64 events) is not left unseen.
pub fn publish_written() {
    let h = HEADER.load(Acquire);
    if h.is_null() {
        return;
    }
    // SAFETY: HEADER is set while the mapping exists and cleared (by the
    // writer's Drop, under the GIL) before it is unmapped; the callers run
    // either on the only thread that can drop the writer (the agent) or
    // after the interpreter has stopped running Python (atexit). `written`
    // is the producer's head, stored after each record is complete.
    unsafe { (*h).head.fetch_max((*h).written.load(Acquire), Release) };
}

impl Drop for Writer {
    fn drop(&mut self) {
        HEADER.store(ptr::null_mut(), Release);
        // SAFETY: unmapping the mapping made in `open`; nothing refers to it
        // once the writer is gone.
        unsafe { libc::munmap(self.header.cast(), self.map_len) };
    }
}

/// Cuts a string to [`MAX_STRING_BYTES`] at a UTF-8 character boundary.
pub(crate) fn clip(s: &[u8]) -> &[u8] {
    if s.len() <= MAX_STRING_BYTES {
        return s;
    }
    let mut end = MAX_STRING_BYTES;
    while end > 0 && (s[end] & 0xc0) == 0x80 {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_char_boundaries() {
        let s = "é".repeat(MAX_STRING_BYTES);
        let c = clip(s.as_bytes());
        assert!(c.len() <= MAX_STRING_BYTES);
        assert!(core::str::from_utf8(c).is_ok());
        assert_eq!(clip(b"abc"), b"abc");
    }
}
