//! Attach mode: the shim's own thread.
//!
//! `rprof attach` makes a thread of the target call [`rprof_attach`]
//! (crate::rprof_attach) at a safe point, with the ring as a memfd the
//! target owns. That call maps the ring's header and starts this agent
//! thread and returns, so the borrowed thread is given back at once. The
//! agent then does everything that touches Python from a context of its
//! own: it takes the GIL with `PyGILState_Ensure` (the documented way for a
//! foreign thread), starts the capture (mapping the ring through
//! `/proc/self/fd/N`), closes the ring's fd, and releases the GIL. When it
//! ends, it unmaps its view of the header, so that once the capture is
//! over no rprof mapping is left in the target: rprof waits for that.
//!
//! It then watches the ring header, without the GIL, every 10 ms: when the
//! reader asks to stop, when the reader has gone silent for
//! [`READER_TIMEOUT_NS`] (rprof was killed), or when the writer gave up on
//! a full ring, it takes the GIL again, removes every hook, writes the end of
//! the stream and exits. The library itself stays loaded and dormant; a
//! later attach starts a new agent.

use crate::hooks;
use crate::ring::monotonic_ns;
use core::ffi::{c_int, c_void, CStr};
use core::ptr;
use core::sync::atomic::AtomicPtr;
use core::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use rprof_abi::{command, state, Header, HEADER_BYTES, READER_TIMEOUT_NS};
use std::ffi::CString;
use std::time::Duration;

type GilEnsure = unsafe extern "C" fn() -> c_int;
type GilRelease = unsafe extern "C" fn(c_int);
type IsInitialized = unsafe extern "C" fn() -> c_int;

/// A read-only view of the ring header, mapped by the agent itself so that
/// it can poll without the GIL and independently of the capture's mapping.
struct Watch {
    map: *mut c_void,
}

impl Watch {
    fn open(fd: c_int) -> Option<Watch> {
        // SAFETY: mapping the first page of the ring memfd (caller's fd),
        // read-write so that a failure can be reported in the header.
        let map = unsafe {
            libc::mmap(
                ptr::null_mut(),
                HEADER_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return None;
        }
        WATCH.store(map, Release);
        Some(Watch { map })
    }

    fn header(&self) -> &Header {
        // SAFETY: the map is HEADER_BYTES long, page aligned, and starts with
        // the Header the reader wrote; we only read its atomics.
        unsafe { &*self.map.cast::<Header>() }
    }

    /// Reports a failure to start in the header, for rprof to print.
    fn fail(&self, msg: &str) {
        let h = self.map.cast::<Header>();
        let n = msg.len().min(rprof_abi::ERROR_BYTES - 1);
        // SAFETY: the error field is ERROR_BYTES long; nobody else writes it
        // before the capture started (and it did not).
        unsafe {
            let dst = ptr::addr_of_mut!((*h).error).cast::<u8>();
            ptr::copy_nonoverlapping(msg.as_ptr(), dst, n);
            *dst.add(n) = 0;
        }
        self.header().shim_state.store(state::FAILED, Release);
    }

    /// Tells rprof the agent runs and now waits for the GIL (state
    /// [`state::WAITING_FOR_GIL`]), so that a start that never comes is
    /// blamed on the GIL only when that is where the agent is.
    fn waiting_for_gil(&self) {
        let _ = self.header().shim_state.compare_exchange(
            state::NEW,
            state::WAITING_FOR_GIL,
            Release,
            Relaxed,
        );
    }
}

// SAFETY: the mapping is shared memory accessed only through atomics (and
// the error field, written before the capture starts); any thread may
// hold it.
unsafe impl Send for Watch {}

impl Drop for Watch {
    fn drop(&mut self) {
        if WATCH.swap(ptr::null_mut(), AcqRel).is_null() {
            // Already unmapped by forget_in_child (cannot happen in the
            // process that runs the agent; kept for symmetry).
            return;
        }
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.map, HEADER_BYTES) };
    }
}

/// The agent's mapping of the ring header, while an agent runs.
static WATCH: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

/// In a forked child, which has no agent thread: unmaps the view of the
/// ring header the parent's agent had, so that nothing of the parent's
/// capture stays mapped in the child.
pub fn forget_in_child() {
    let map = WATCH.swap(ptr::null_mut(), AcqRel);
    if !map.is_null() {
        // SAFETY: the mapping was made by Watch::open in the parent; in the
        // child no thread uses it (the agent thread was not forked).
        unsafe { libc::munmap(map, HEADER_BYTES) };
    }
}

fn sym<T: Copy>(name: &CStr) -> Option<T> {
    // SAFETY: dlsym only reads the name.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    debug_assert_eq!(
        core::mem::size_of::<T>(),
        core::mem::size_of::<*mut c_void>()
    );
    // SAFETY: T is the function pointer type of the named CPython function.
    Some(unsafe { core::mem::transmute_copy::<*mut c_void, T>(&p) })
}

/// Starts the agent for the ring in memfd `fd` (which it then owns).
pub fn spawn(fd: c_int) -> Result<(), &'static str> {
    let close = || {
        // SAFETY: the fd is ours.
        unsafe { libc::close(fd) };
    };
    let Some(watch) = Watch::open(fd) else {
        close();
        return Err("cannot map the ring");
    };
    let spawned = std::thread::Builder::new()
        .name("rprof-agent".into())
        .spawn(move || run(fd, watch));
    spawned.map(|_| ()).map_err(|_| {
        // The closure (and the watch in it) is gone; report through a new
        // view, then close.
        if let Some(w) = Watch::open(fd) {
            w.fail("cannot start the agent thread");
        }
        close();
        "cannot start the agent thread"
    })
}

/// Writes `msg` as the reason the capture in the ring memfd `fd` failed
/// (for rprof to print), if its header can be mapped.
pub fn report_failure(fd: c_int, msg: &str) {
    if let Some(w) = Watch::open(fd) {
        w.fail(msg);
    }
}

/// Starts an agent that only watches the ring in memfd `fd` (which it then
/// owns) for a capture that is already recording: a followed child's (see
/// `crate::follow`). Without a thread, the capture still records; it then
/// ends with the process.
pub fn spawn_watching(fd: c_int) {
    let Some(watch) = Watch::open(fd) else {
        // SAFETY: the fd is ours.
        unsafe { libc::close(fd) };
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("rprof-agent".into())
        .spawn(move || {
            // SAFETY: the fd is ours; the mappings keep the ring.
            unsafe { libc::close(fd) };
            watch_until_stop(watch);
        });
    if spawned.is_err() {
        // SAFETY: the closure (and the watch) is gone; the fd is ours.
        unsafe { libc::close(fd) };
    }
}

fn run(fd: c_int, watch: Watch) {
    let path = CString::new(format!("/proc/self/fd/{fd}")).unwrap_or_default();
    let started = start(&path, &watch);
    // SAFETY: the fd is ours; the mappings keep the ring.
    unsafe { libc::close(fd) };
    if !started {
        return;
    }
    watch_until_stop(watch);
}

/// Polls the header until the capture must end, then ends it (GIL taken).
fn watch_until_stop(watch: Watch) {
    // The reader is alive while its heartbeat counter moves; how long it
    // has not moved is measured on this process's own clock.
    let mut seen = watch.header().heartbeat.load(Relaxed);
    let mut seen_at = monotonic_ns();
    loop {
        std::thread::sleep(Duration::from_millis(10));
        // Events of a target that went idle mid-batch become visible.
        crate::ring::publish_written();
        let h = watch.header();
        let stop = h.command.load(Acquire) == command::STOP;
        let st = h.shim_state.load(Acquire);
        let heartbeat = h.heartbeat.load(Relaxed);
        let now = monotonic_ns();
        if heartbeat != seen {
            seen = heartbeat;
            seen_at = now;
        }
        let silent = now.saturating_sub(seen_at) > READER_TIMEOUT_NS;
        if stop || silent || st != state::RECORDING {
            break;
        }
    }
    let (Some(ensure), Some(release)) = (
        sym::<GilEnsure>(c"PyGILState_Ensure"),
        sym::<GilRelease>(c"PyGILState_Release"),
    ) else {
        return;
    };
    // An interpreter that is shutting down (the target finished while
    // rprof went silent) must not be touched: stop() calls into Python,
    // which aborts then ("interpreter has no modules dictionary"). Its
    // hooks and mappings go with the process.
    if finalizing() {
        return;
    }
    // SAFETY: PyGILState_Ensure/Release bracket the GIL for this thread;
    // stop() requires the GIL.
    unsafe {
        let g = ensure();
        if !finalizing() {
            hooks::stop();
        }
        release(g);
    }
}

/// Whether the interpreter is finalizing (`Py_IsFinalizing`, 3.13+, or
/// `_Py_IsFinalizing` before); false if neither is exported.
fn finalizing() -> bool {
    let f = sym::<IsInitialized>(c"Py_IsFinalizing")
        .or_else(|| sym::<IsInitialized>(c"_Py_IsFinalizing"));
    // SAFETY: both take no argument, need no GIL and return an int.
    f.is_some_and(|f| unsafe { f() } != 0)
}

/// Takes the GIL and starts the capture; false (with the reason in the
/// header) if it could not.
fn start(path: &CStr, watch: &Watch) -> bool {
    let (Some(ensure), Some(release), Some(initialized)) = (
        sym::<GilEnsure>(c"PyGILState_Ensure"),
        sym::<GilRelease>(c"PyGILState_Release"),
        sym::<IsInitialized>(c"Py_IsInitialized"),
    ) else {
        watch.fail("the Python C API (PyGILState_Ensure) is not visible to the shim");
        return false;
    };
    // SAFETY: Py_IsInitialized may be called without the GIL.
    if unsafe { initialized() } == 0 {
        watch.fail("the interpreter is not initialised (starting up or shutting down)");
        return false;
    }
    watch.waiting_for_gil();
    // The previous capture may still be ending (its agent waits for the
    // GIL to remove its hooks, or a killed rprof's orphan agent has not
    // noticed yet): give it up to 3 s.
    let mut tries = 0;
    let started = loop {
        // SAFETY: PyGILState_Ensure/Release bracket the GIL for this
        // foreign thread; start() requires the GIL.
        let r = unsafe {
            let g = ensure();
            let r = hooks::start(path, true);
            release(g);
            r
        };
        match r {
            Err(e) if e == hooks::ALREADY_RUNNING && tries < 300 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            r => break r,
        }
    };
    if let Err(e) = started {
        if watch.header().shim_state.load(Acquire) != state::FAILED {
            watch.fail(e);
        }
        return false;
    }
    true
}
