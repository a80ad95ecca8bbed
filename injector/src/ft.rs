//! Recording on free-threaded builds (`Py_GIL_DISABLED`, `python3.14t`),
//! where several threads run Python — and the hooks — at the same time.
//!
//! This module owns everything a hook touches there, so that nothing on the
//! hot path is shared between threads:
//!
//! * each thread claims a *segment* of the ring file (`rprof_abi::segment`)
//!   with one compare-and-swap the first time it records, and is its only
//!   producer from then on: the fast path is the GIL build's (clock, two
//!   words, a `Release` store of the segment's `head`) on a cache line no
//!   other thread writes;
//! * each thread interns functions in a table of its own and defines every
//!   id it uses in its own segment before using it; ids come from one
//!   atomic counter, so they are unique across segments and the reader can
//!   replay segments in any interleaving, one stack per thread;
//! * the references that keep code objects and descriptors alive (so an
//!   address is never reused within a capture) go to one list behind a
//!   mutex, taken only when a thread meets a function for the first time.
//!
//! A thread that ends gives its segment back (a thread-local destructor
//! marks it retired; the reader frees it once drained). A capture that
//! stops bumps [`GEN`]: per-thread state from an older capture is dropped
//! on next use, and the destructor never writes into an unmapped ring (it
//! announces itself in [`USERS`], which [`end`] waits to see at zero).
//!
//! Objects are only ever read through the C API or at probed offsets
//! (`Api::type_of`, `Api::m_ml`), never at GIL-build offsets: the object
//! header is 32 bytes here, not 16.

use crate::api::{self, Api, PyMethodDef, PyObj};
use crate::hooks::{ACTIVE, API};
use crate::intern;
use crate::ring::{clip, current_tid, monotonic_ns, timestamp, Writer};
use core::cell::UnsafeCell;
use core::ffi::c_int;
use core::ptr;
use core::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64};
use rprof_abi::segment::{SegmentHeader, FREE, OWNED, RETIRED, SEGMENT_HEADER_BYTES};
use rprof_abi::{
    compact, record_words, state, string_words, Clock, FullPolicy, Header, Kind, RecordHeader,
    READER_TIMEOUT_NS,
};
use std::sync::Mutex;

/// Whether the running capture records through this module.
pub static ENABLED: AtomicBool = AtomicBool::new(false);
/// Capture generation; per-thread state of another generation is stale.
static GEN: AtomicU64 = AtomicU64::new(0);
/// Thread-exit destructors currently touching the ring.
static USERS: AtomicU32 = AtomicU32::new(0);
/// Next function id (shared by every thread).
static NEXT_ID: AtomicU32 = AtomicU32::new(0);
/// `sys.monitoring.MISSING`.
static MISSING: AtomicPtr<core::ffi::c_void> = AtomicPtr::new(ptr::null_mut());

/// How the running capture's segment writers record.
struct Shared {
    clock: Clock,
    policy: FullPolicy,
}

static SHARED: Mutex<Option<Shared>> = Mutex::new(None);
/// The running capture's mapping (null when none runs), valid from
/// `begin` to `end`.
static BASE: AtomicPtr<u8> = AtomicPtr::new(ptr::null_mut());
/// References to release when the capture ends.
static OWNED_REFS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// Starts free-threaded recording into `writer`'s ring file. Called with
/// the thread attached, before any hook is installed.
pub fn begin(writer: &Writer) {
    let (base, _len, clock, policy) = writer.mapping();
    NEXT_ID.store(0, Relaxed);
    GEN.fetch_add(1, SeqCst);
    if let Ok(mut s) = SHARED.lock() {
        *s = Some(Shared { clock, policy });
    }
    BASE.store(base, Release);
    ENABLED.store(true, Release);
}

/// Ends free-threaded recording: called after every hook was removed
/// (which stops the world, so no hook runs any more) and before the ring
/// is unmapped. Releases the references the tables took.
///
/// # Safety
/// The calling thread is attached to the interpreter.
pub unsafe fn end(api: &Api) {
    if !ENABLED.swap(false, SeqCst) {
        return;
    }
    GEN.fetch_add(1, SeqCst);
    BASE.store(ptr::null_mut(), SeqCst);
    // A thread-exit destructor that saw the old generation finishes first.
    while USERS.load(SeqCst) != 0 {
        core::hint::spin_loop();
    }
    if let Ok(mut s) = SHARED.lock() {
        *s = None;
    }
    let refs = OWNED_REFS
        .lock()
        .map(|mut v| core::mem::take(&mut *v))
        .unwrap_or_default();
    for r in refs {
        // SAFETY: each was a reference we took in `own` (thread attached).
        unsafe { (api.py_decref)(r as PyObj) };
    }
}

/// In a forked child of a recording process (called by
/// `hooks::forget_in_child`, thread attached, before the ring is
/// unmapped): forgets the parent's capture without writing to its ring.
/// Locks another thread may have held at the fork are only tried.
///
/// # Safety
/// The calling thread is attached to the interpreter.
pub unsafe fn forget_in_child(api: &Api) {
    if !ENABLED.swap(false, SeqCst) {
        return;
    }
    GEN.fetch_add(1, SeqCst);
    BASE.store(ptr::null_mut(), SeqCst);
    if let Ok(mut s) = SHARED.try_lock() {
        *s = None;
    }
    let refs = OWNED_REFS
        .try_lock()
        .map(|mut v| core::mem::take(&mut *v))
        .unwrap_or_default();
    for r in refs {
        // SAFETY: each was a reference taken in `own` (thread attached).
        unsafe { (api.py_decref)(r as PyObj) };
    }
}

/// Keeps `o` alive until the capture ends (we own one reference).
fn own(o: PyObj) {
    if let Ok(mut v) = OWNED_REFS.lock() {
        v.push(o as usize);
    }
}

/// `sys.monitoring.MISSING` (NULL before the monitoring hook is installed).
#[inline(always)]
pub(crate) fn missing() -> PyObj {
    MISSING.load(Relaxed)
}

/// Records `sys.monitoring.MISSING` for the call callbacks.
pub fn set_missing(m: PyObj) {
    MISSING.store(m, Release);
}

/// One thread's segment.
struct Segment {
    header: *const SegmentHeader,
    main: *const Header,
    data: *mut u64,
    cap: u64,
    mask: u64,
    head: u64,
    cached_tail: u64,
    clock: Clock,
    policy: FullPolicy,
    pending_lost: u64,
    abandoned: bool,
    /// Timestamp of this owner's last event: the base of the next delta.
    last_ts: u64,
}

impl Segment {
    /// Claims a free segment of the ring at `base`; None if all are taken.
    ///
    /// # Safety
    /// `base` is the mapping of the running capture (see [`begin`]).
    unsafe fn claim(base: *mut u8, clock: Clock, policy: FullPolicy) -> Option<Segment> {
        let main = base.cast::<Header>();
        // SAFETY: the mapping starts with a validated Header.
        let h = unsafe { &*main };
        for i in 0..h.segments {
            let off = h.segment_offset(i);
            // SAFETY: validate() checked the file holds every segment; each
            // header is 64-byte aligned (see rprof_abi::segment).
            let sh = unsafe { &*base.add(off).cast::<SegmentHeader>() };
            if sh.state.load(Relaxed) != FREE
                || sh
                    .state
                    .compare_exchange(FREE, OWNED, Acquire, Relaxed)
                    .is_err()
            {
                continue;
            }
            let head = sh.head.load(Relaxed);
            sh.owner.store(current_tid(), Relaxed);
            let mut seg = Segment {
                header: sh,
                main,
                // SAFETY: the data area follows the segment header.
                data: unsafe { base.add(off + SEGMENT_HEADER_BYTES) }.cast::<u64>(),
                cap: h.segment_words,
                mask: h.segment_words - 1,
                head,
                cached_tail: sh.tail.load(Acquire),
                clock,
                policy,
                pending_lost: 0,
                abandoned: false,
                last_ts: 0,
            };
            // A new owner starts by naming itself.
            if !seg.write_record(Kind::Thread, 0, &[current_tid()], &[]) {
                seg.retire();
                return None;
            }
            return Some(seg);
        }
        None
    }

    fn seg(&self) -> &SegmentHeader {
        // SAFETY: valid while the capture's mapping is (callers check GEN).
        unsafe { &*self.header }
    }

    fn main(&self) -> &Header {
        // SAFETY: as above.
        unsafe { &*self.main }
    }

    #[inline(always)]
    fn free(&self) -> u64 {
        self.cap
            .saturating_sub(self.head.wrapping_sub(self.cached_tail))
    }

    /// Writes one event and publishes it: one word with the time since
    /// this segment's previous event, or a two-word record with the full
    /// timestamp when that does not fit (see `rprof_abi::compact`).
    #[inline(always)]
    fn event(&mut self, kind: Kind, id: u32) {
        if self.pending_lost != 0 {
            self.flush_lost();
        }
        let ts = timestamp(self.clock);
        match compact::encode_known_id(kind, id, ts.wrapping_sub(self.last_ts)) {
            Some(w) => {
                if self.free() < 1 && !self.reserve_slow(1, true) {
                    return;
                }
                let slot = (self.head & self.mask) as usize;
                // SAFETY: a word is free at `slot`, which is masked below
                // the capacity.
                unsafe { *self.data.add(slot) = w };
                self.publish(1);
            }
            None => return self.event_full(kind, id, ts),
        }
        self.last_ts = ts;
    }

    /// An event too far from the previous one for one word: a two-word
    /// record with the full timestamp, the next event's base.
    #[cold]
    #[inline(never)]
    fn event_full(&mut self, kind: Kind, id: u32, ts: u64) {
        if !self.write_record(kind, id, &[ts], &[]) {
            self.lose_one();
            return;
        }
        self.last_ts = ts;
    }

    #[inline(always)]
    fn publish(&mut self, words: u64) {
        self.head = self.head.wrapping_add(words);
        // The owner is the only writer of this line: a plain store.
        self.seg().head.store(self.head, Release);
    }

    /// Writes a whole record (definitions, Thread, Lost).
    fn write_record(&mut self, kind: Kind, arg: u32, words: &[u64], strings: &[&[u8]]) -> bool {
        let string_bytes: usize = strings.iter().map(|s| s.len()).sum();
        let total = record_words(words.len() + string_words(string_bytes)) as u64;
        let slot = self.head & self.mask;
        let pad = if slot + total > self.cap {
            self.cap - slot
        } else {
            0
        };
        // With Wait, definitions wait like events; with Drop, a definition
        // that does not fit is not written, and its function is not
        // interned, so no event ever names an undefined id.
        if self.free() < pad + total && !self.reserve_slow(pad + total, false) {
            return false;
        }
        if pad > 0 {
            // SAFETY: [slot, cap) is reserved.
            unsafe {
                *self.data.add(slot as usize) = RecordHeader::new(Kind::Pad, pad as u32, 0).0
            };
            self.publish(pad);
        }
        let slot = (self.head & self.mask) as usize;
        // SAFETY: `total` words from `slot` are reserved and contiguous.
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

    #[cold]
    #[inline(never)]
    fn reserve_slow(&mut self, words: u64, is_event: bool) -> bool {
        if self.abandoned {
            return false;
        }
        self.cached_tail = self.seg().tail.load(Acquire);
        if self.free() >= words {
            return true;
        }
        if self.policy == FullPolicy::Drop {
            // Never wait with Drop: an event is counted lost here, a
            // record by its caller (with the event that needed it).
            if is_event {
                self.lose_one();
            }
            return false;
        }
        let start = monotonic_ns();
        // The reader is alive while its heartbeat counter moves; how long
        // it has not moved is measured on this process's own clock.
        let mut beat = self.main().heartbeat.load(Relaxed);
        let mut beat_at = start;
        let mut spins = 0u32;
        loop {
            self.cached_tail = self.seg().tail.load(Acquire);
            if self.free() >= words {
                let h = self.main();
                h.waits.fetch_add(1, Relaxed);
                h.wait_ns
                    .fetch_add(monotonic_ns().saturating_sub(start), Relaxed);
                return true;
            }
            let now = monotonic_ns();
            let b = self.main().heartbeat.load(Relaxed);
            if b != beat {
                beat = b;
                beat_at = now;
            }
            let alive = beat_at;
            // While the capture stops, the reader keeps draining until it
            // sees the Stop record, which comes after this thread is done:
            // waiting on stays exact and cannot deadlock.
            if now.saturating_sub(alive) > READER_TIMEOUT_NS {
                self.abandoned = true;
                if ACTIVE.swap(false, Relaxed) {
                    self.main().shim_state.store(state::ABANDONED, Release);
                }
                return false;
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

    /// Counts one event as lost (reported in a Lost record once there is
    /// room, and in the header).
    #[cold]
    fn lose_one(&mut self) {
        self.pending_lost += 1;
        self.main().dropped.fetch_add(1, Relaxed);
    }

    #[cold]
    fn flush_lost(&mut self) {
        self.cached_tail = self.seg().tail.load(Acquire);
        if self.free() < 2 {
            return;
        }
        let n = self.pending_lost;
        self.pending_lost = 0;
        if !self.write_record(Kind::Lost, 0, &[n], &[]) {
            self.pending_lost = n;
        }
    }

    /// Gives the segment back (the thread ends).
    fn retire(&mut self) {
        self.seg().state.store(RETIRED, Release);
    }
}

/// A function a thread has interned.
#[derive(Clone, Copy)]
struct Entry {
    key: usize,
    id: u32,
    /// For a method descriptor: `__objclass__` (kept alive by OWNED_REFS).
    objclass: PyObj,
}

const EMPTY: Entry = Entry {
    key: 0,
    id: 0,
    objclass: ptr::null_mut(),
};

/// One thread's recording state.
struct Local {
    gen: u64,
    seg: Option<Segment>,
    /// Open addressing, key → entry.
    slots: Vec<Entry>,
    len: usize,
    last_key: usize,
    last_id: u32,
    /// No free segment was left for this thread in this capture.
    refused: bool,
    /// This callback called into Python (to label a function), which may
    /// have let the capture stop meanwhile: its writes are then guarded.
    py_called: bool,
}

impl Local {
    const fn new() -> Local {
        Local {
            gen: 0,
            seg: None,
            slots: Vec::new(),
            len: 0,
            last_key: 0,
            last_id: 0,
            refused: false,
            py_called: false,
        }
    }

    #[inline(always)]
    fn get(&self, key: usize) -> Option<Entry> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = hash(key, mask);
        loop {
            let e = self.slots[i];
            if e.key == key {
                return Some(e);
            }
            if e.key == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `key` with `id`, once its definition is in the segment.
    fn insert(&mut self, key: usize, id: u32, objclass: PyObj) {
        if (self.len + 1) * 2 > self.slots.len() {
            let n = (self.slots.len() * 2).max(256);
            let old = core::mem::replace(&mut self.slots, vec![EMPTY; n]);
            for e in old.into_iter().filter(|e| e.key != 0) {
                self.place(e);
            }
        }
        self.place(Entry { key, id, objclass });
        self.len += 1;
    }

    /// Runs a write of this callback: directly, or, if the callback called
    /// into Python, only if its capture still records, with [`end`] kept
    /// from unmapping the ring until the write is done.
    #[inline(always)]
    fn write<R>(&mut self, f: impl FnOnce(&mut Local) -> R) -> Option<R> {
        if !self.py_called {
            return Some(f(self));
        }
        USERS.fetch_add(1, SeqCst);
        let r = (GEN.load(SeqCst) == self.gen && ENABLED.load(SeqCst)).then(|| f(self));
        USERS.fetch_sub(1, SeqCst);
        r
    }

    fn place(&mut self, e: Entry) {
        let mask = self.slots.len() - 1;
        let mut i = hash(e.key, mask);
        while self.slots[i].key != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = e;
    }

    /// Makes the state current for generation `gen`; false if this thread
    /// cannot record (no segment left, or the capture is over).
    #[inline(always)]
    fn ready(&mut self) -> bool {
        let gen = GEN.load(Acquire);
        if self.gen == gen && self.seg.is_some() {
            return true;
        }
        self.renew(gen)
    }

    #[cold]
    fn renew(&mut self, gen: u64) -> bool {
        if self.gen != gen {
            // Another capture's state: its segment and ids mean nothing now.
            self.seg = None;
            self.slots = Vec::new();
            self.len = 0;
            self.last_key = 0;
            self.refused = false;
            self.gen = gen;
        }
        if self.refused {
            return false;
        }
        let base = BASE.load(Acquire);
        let Some((clock, policy)) = SHARED
            .lock()
            .ok()
            .and_then(|s| s.as_ref().map(|s| (s.clock, s.policy)))
        else {
            return false;
        };
        if base.is_null() || GEN.load(Acquire) != gen {
            return false;
        }
        // SAFETY: base is the running capture's mapping (same generation).
        self.seg = unsafe { Segment::claim(base, clock, policy) };
        if self.seg.is_none() {
            self.refused = true;
            // SAFETY: as above.
            let h = unsafe { &*base.cast::<Header>() };
            h.dropped.fetch_add(1, Relaxed);
        }
        self.seg.is_some()
    }

    #[inline(always)]
    fn emit(&mut self, kind: Kind, id: u32) {
        // The common case, written out so that it inlines: no call into
        // Python happened in this callback.
        if !self.py_called {
            if let Some(s) = &mut self.seg {
                s.event(kind, id);
            }
            return;
        }
        self.emit_guarded(kind, id);
    }

    #[cold]
    #[inline(never)]
    fn emit_guarded(&mut self, kind: Kind, id: u32) {
        self.write(|l| {
            if let Some(s) = &mut l.seg {
                s.event(kind, id);
            }
        });
    }

    /// Id of a code object, defined in this thread's segment on first use.
    #[inline(always)]
    unsafe fn code_id(&mut self, api: &Api, code: PyObj) -> Option<u32> {
        let key = code as usize;
        if key == self.last_key {
            return Some(self.last_id);
        }
        let id = match self.get(key) {
            Some(e) => e.id,
            // SAFETY: thread attached, code live (caller).
            None => unsafe { self.intern_code(api, code) }?,
        };
        self.last_key = key;
        self.last_id = id;
        Some(id)
    }

    #[cold]
    unsafe fn intern_code(&mut self, api: &Api, code: PyObj) -> Option<u32> {
        // SAFETY: thread attached, code live (caller); the reference taken
        // is released by `end`.
        unsafe {
            self.py_called = true;
            let (file, line, name) = intern::code_label(api, code);
            let id = NEXT_ID.fetch_add(1, Relaxed);
            if !self.define_python(id, &file, line, &name) {
                return None;
            }
            (api.py_incref)(code);
            own(code);
            self.insert(code as usize, id, ptr::null_mut());
            Some(id)
        }
    }

    /// Writes a definition; false (the event that needed it counted
    /// lost) if it could not be.
    fn define_python(&mut self, id: u32, file: &[u8], line: u64, name: &[u8]) -> bool {
        let (file, name) = (clip(file), clip(name));
        let lens = file.len() as u64 | ((name.len() as u64) << 32);
        self.define(Kind::DefPython, id, &[line, lens], &[file, name])
    }

    fn define_builtin(&mut self, id: u32, label: &[u8]) -> bool {
        let label = clip(label);
        self.define(Kind::DefBuiltin, id, &[label.len() as u64], &[label])
    }

    fn define(&mut self, kind: Kind, id: u32, words: &[u64], strings: &[&[u8]]) -> bool {
        let written = self.write(|l| {
            l.seg.as_mut().is_some_and(|s| {
                // Events carry ids below MAX_ID (the reader refuses others).
                let ok = id < compact::MAX_ID && s.write_record(kind, id, words, strings);
                if !ok {
                    s.lose_one();
                }
                ok
            })
        });
        written == Some(true)
    }

    /// Id of a builtin function object, keyed by its `PyMethodDef`.
    #[inline(always)]
    unsafe fn cfunc_id(&mut self, api: &Api, f: PyObj) -> Option<u32> {
        // SAFETY: f is a live PyCFunction (caller).
        let key = unsafe { api.m_ml(f) } as usize;
        if key == self.last_key {
            return Some(self.last_id);
        }
        let id = match self.get(key) {
            Some(e) => e.id,
            None => {
                self.py_called = true;
                // SAFETY: thread attached, f live.
                let label = unsafe { intern::builtin_label(api, f) };
                let id = NEXT_ID.fetch_add(1, Relaxed);
                if !self.define_builtin(id, &label) {
                    return None;
                }
                self.insert(key, id, ptr::null_mut());
                id
            }
        };
        self.last_key = key;
        self.last_id = id;
        Some(id)
    }

    /// cProfile 3.12+'s choice of what a CALL event records (see
    /// `hooks::Capture::callable_id`).
    #[inline(always)]
    unsafe fn callable_id(&mut self, api: &Api, callable: PyObj, arg0: PyObj) -> Option<u32> {
        // SAFETY: callable and arg0 are live (CPython passes them).
        unsafe {
            let t = api.type_of(callable);
            if api.call_never_recorded(t) {
                return None;
            }
            if t == api.cfunction_type || (api.type_is_subtype)(t, api.cfunction_type) != 0 {
                return self.cfunc_id(api, callable);
            }
            if t != api.method_descr_type || arg0 == MISSING.load(Relaxed) {
                return None;
            }
            if let Some(e) = self.get(callable as usize) {
                if !e.objclass.is_null() {
                    let at = api.type_of(arg0);
                    if at != e.objclass && (api.type_is_subtype)(at, e.objclass) == 0 {
                        return None;
                    }
                }
                return Some(e.id);
            }
            self.intern_descriptor(api, callable, arg0)
        }
    }

    #[cold]
    unsafe fn intern_descriptor(&mut self, api: &Api, descr: PyObj, arg0: PyObj) -> Option<u32> {
        // SAFETY: thread attached, objects live (caller); the current
        // exception is saved; references taken are released by `end`.
        unsafe {
            self.py_called = true;
            let _saved = api::SavedError::save(api);
            let objclass = (api.getattr_string)(descr, c"__objclass__".as_ptr());
            if objclass.is_null() {
                (api.err_clear)();
                return None;
            }
            let at = api.type_of(arg0);
            if at != objclass && (api.type_is_subtype)(at, objclass) == 0 {
                (api.py_decref)(objclass);
                return None;
            }
            let get = (api.getattr_string)(descr, c"__get__".as_ptr());
            if get.is_null() {
                (api.err_clear)();
                (api.py_decref)(objclass);
                return None;
            }
            let bound = api.call(get, &[arg0, at]);
            (api.py_decref)(get);
            if bound.is_null() || !api.is_cfunction(bound) {
                if !bound.is_null() {
                    (api.py_decref)(bound);
                }
                (api.py_decref)(objclass);
                return None;
            }
            let label = intern::builtin_label(api, bound);
            (api.py_decref)(bound);
            let id = NEXT_ID.fetch_add(1, Relaxed);
            if !self.define_builtin(id, &label) {
                (api.py_decref)(objclass);
                return None;
            }
            (api.py_incref)(descr);
            own(descr);
            own(objclass);
            self.insert(descr as usize, id, objclass);
            Some(id)
        }
    }
}

#[inline(always)]
fn hash(key: usize, mask: usize) -> usize {
    ((key as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & mask
}

/// A thread's state; its destructor gives the segment back.
struct LocalCell(UnsafeCell<Local>);

impl Drop for LocalCell {
    fn drop(&mut self) {
        let l = self.0.get_mut();
        if l.seg.is_none() {
            return;
        }
        USERS.fetch_add(1, SeqCst);
        if GEN.load(SeqCst) == l.gen {
            if let Some(s) = &mut l.seg {
                s.retire();
            }
        }
        USERS.fetch_sub(1, SeqCst);
    }
}

thread_local! {
    static LOCAL: LocalCell = const { LocalCell(UnsafeCell::new(Local::new())) };
}

/// Runs `f` on this thread's state if it records.
#[inline(always)]
fn with_local(f: impl FnOnce(&'static Api, &mut Local)) {
    if !ACTIVE.load(Relaxed) {
        // In a forked child of a recording process, the first event
        // removes the inherited hooks.
        // SAFETY: hooks run on an attached thread.
        unsafe { crate::hooks::forget_in_child() };
        // A followed child records from this very event on.
        if !ACTIVE.load(Relaxed) {
            return;
        }
    }
    // SAFETY: API is written only by `hooks::start` before any hook is
    // installed, and read-only while hooks run.
    let Some(api) = (unsafe { API.get_ref() }).as_ref() else {
        return;
    };
    let _ = LOCAL.try_with(|cell| {
        // SAFETY: the state is this thread's own, and the hooks do not
        // re-enter one another (CPython suspends them while one runs), so
        // this is the only borrow.
        let l = unsafe { &mut *cell.0.get() };
        if l.ready() {
            f(api, l);
            l.py_called = false;
        }
    });
}

/// The setprofile hook (`Py_tracefunc`) on free-threaded builds.
///
/// # Safety
/// Called by CPython on an attached thread with live `frame`/`arg`.
pub unsafe extern "C" fn profile_cb<const BUILTINS: bool>(
    _obj: PyObj,
    frame: PyObj,
    what: c_int,
    arg: PyObj,
) -> c_int {
    // builtins=False: C events are ignored before anything else.
    if !BUILTINS && what >= api::PY_TRACE_C_CALL {
        return 0;
    }
    with_local(|api, l| {
        // SAFETY: CPython passes a live frame, and for C events a live
        // callable.
        unsafe {
            let (kind, id) = match what {
                api::PY_TRACE_CALL => (Kind::Call, l.code_id(api, api.frame_code(frame))),
                api::PY_TRACE_RETURN => (Kind::Return, l.code_id(api, api.frame_code(frame))),
                api::PY_TRACE_C_CALL if api.is_cfunction(arg) => {
                    (Kind::CCall, l.cfunc_id(api, arg))
                }
                api::PY_TRACE_C_RETURN if api.is_cfunction(arg) => {
                    (Kind::CReturn, l.cfunc_id(api, arg))
                }
                api::PY_TRACE_C_EXCEPTION if api.is_cfunction(arg) => {
                    (Kind::CException, l.cfunc_id(api, arg))
                }
                _ => return,
            };
            if let Some(id) = id {
                l.emit(kind, id);
            }
        }
    });
    0
}

/// `None`, returned by the monitoring callbacks (immortal: no incref).
#[inline(always)]
fn none() -> PyObj {
    // SAFETY: API is read-only while hooks run (see with_local).
    unsafe { API.get_ref() }
        .as_ref()
        .map_or(ptr::null_mut(), |a| a.none)
}

unsafe extern "C" fn mon_start(_m: PyObj, args: *const PyObj, nargs: isize) -> PyObj {
    if nargs >= 1 {
        with_local(|api, l| {
            // SAFETY: args[0] is the live code object.
            if let Some(id) = unsafe { l.code_id(api, *args) } {
                l.emit(Kind::Call, id);
            }
        });
    }
    none()
}

unsafe extern "C" fn mon_return(_m: PyObj, args: *const PyObj, nargs: isize) -> PyObj {
    if nargs >= 1 {
        with_local(|api, l| {
            // SAFETY: args[0] is the live code object.
            if let Some(id) = unsafe { l.code_id(api, *args) } {
                l.emit(Kind::Return, id);
            }
        });
    }
    none()
}

#[inline(always)]
fn mon_c_event(args: *const PyObj, nargs: isize, kind: Kind) {
    if nargs >= 4 {
        // A callable that is never recorded (a Python callee, whose
        // PY_START follows; a class; a bound method) is answered before any
        // thread-local state.
        // SAFETY: API is read-only while hooks run; args[2] (the callable)
        // is live for the whole callback.
        let never = unsafe {
            API.get_ref()
                .as_ref()
                .is_some_and(|api| api.call_never_recorded(api.type_of(*args.add(2))))
        };
        if never {
            return;
        }
        with_local(|api, l| {
            // SAFETY: args are (code, offset, callable, arg0), all live.
            if let Some(id) = unsafe { l.callable_id(api, *args.add(2), *args.add(3)) } {
                l.emit(kind, id);
            }
        });
    }
}

unsafe extern "C" fn mon_call(_m: PyObj, args: *const PyObj, nargs: isize) -> PyObj {
    mon_c_event(args, nargs, Kind::CCall);
    none()
}

unsafe extern "C" fn mon_c_return(_m: PyObj, args: *const PyObj, nargs: isize) -> PyObj {
    mon_c_event(args, nargs, Kind::CReturn);
    none()
}

unsafe extern "C" fn mon_c_raise(_m: PyObj, args: *const PyObj, nargs: isize) -> PyObj {
    mon_c_event(args, nargs, Kind::CException);
    none()
}

crate::callback::vectorcall!(vc_start => mon_start);
crate::callback::vectorcall!(vc_return => mon_return);
crate::callback::vectorcall!(vc_call => mon_call);
crate::callback::vectorcall!(vc_c_return => mon_c_return);
crate::callback::vectorcall!(vc_c_raise => mon_c_raise);

/// The monitoring callbacks as vectorcall functions, in `hooks::Callback`
/// order.
pub const VECTORCALLS: [crate::callback::Vectorcall; 5] =
    [vc_start, vc_return, vc_call, vc_c_return, vc_c_raise];

struct Defs([PyMethodDef; 5]);
// SAFETY: immutable after construction; CPython only reads them.
unsafe impl Sync for Defs {}

const fn def(name: &'static core::ffi::CStr, f: *const ()) -> PyMethodDef {
    PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: f.cast(),
        ml_flags: api::METH_FASTCALL,
        ml_doc: ptr::null(),
    }
}

/// The monitoring callbacks, in `hooks::Callback` order.
static DEFS: Defs = Defs([
    def(c"rprof_py_start", mon_start as *const ()),
    def(c"rprof_py_return", mon_return as *const ()),
    def(c"rprof_call", mon_call as *const ()),
    def(c"rprof_c_return", mon_c_return as *const ()),
    def(c"rprof_c_raise", mon_c_raise as *const ()),
]);

/// The definition of monitoring callback `i` (`hooks::Callback` order).
pub fn def_ptr(i: usize) -> *mut PyMethodDef {
    // CPython takes `PyMethodDef *` but never writes through it.
    ptr::addr_of!(DEFS.0[i]).cast_mut()
}
