//! Attach mode: the shim's own thread.
//!
//! `rprof attach` makes a thread of the target call [`rprof_attach`]
//! (crate::rprof_attach) at a safe point. That call only starts this agent
//! thread and returns, so the hijacked thread is given back at once. The
//! agent then does everything that touches Python from a context of its
//! own: it takes the GIL with `PyGILState_Ensure` (the documented way for a
//! foreign thread), starts the capture, and releases the GIL.
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
    fn open(path: &CStr) -> Option<Watch> {
        // SAFETY: path is a valid C string; fd is closed right after mmap.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: mapping the first page of a file we opened read-only.
        let map = unsafe {
            libc::mmap(
                ptr::null_mut(),
                HEADER_BYTES,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        // SAFETY: fd is open.
        unsafe { libc::close(fd) };
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
}

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

/// Tells rprof the agent runs and now waits for the GIL (state
/// [`state::WAITING_FOR_GIL`]), so that a start that never comes is blamed
/// on the GIL only when that is where the agent is.
fn report_waiting_for_gil(path: &CStr) {
    // SAFETY: path is a valid C string; fd is closed right after mmap.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return;
    }
    // SAFETY: mapping the first page of the ring file read-write.
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
    // SAFETY: fd is open.
    unsafe { libc::close(fd) };
    if map == libc::MAP_FAILED {
        return;
    }
    // SAFETY: the map holds the Header; compare-exchange on its state atomic.
    unsafe {
        let h = &*map.cast::<Header>();
        let _ = h
            .shim_state
            .compare_exchange(state::NEW, state::WAITING_FOR_GIL, Release, Relaxed);
        libc::munmap(map, HEADER_BYTES);
    }
}

/// Starts the agent for the ring at `path`.
pub fn spawn(path: CString) -> Result<(), &'static str> {
    std::thread::Builder::new()
        .name("rprof-agent".into())
        .spawn(move || run(path))
        .map(|_| ())
        .map_err(|_| "cannot start the agent thread")
}

/// Tells rprof why the agent gives up, through the ring header (state
/// FAILED and the message), so that it reports the real reason at once
/// instead of waiting for a start that will not come. Leaves a failure the
/// capture itself already reported alone.
fn report_failure(path: &CStr, msg: &str) {
    // SAFETY: path is a valid C string; fd is closed right after mmap.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return;
    }
    // SAFETY: mapping the first page of the ring file read-write.
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
    // SAFETY: fd is open.
    unsafe { libc::close(fd) };
    if map == libc::MAP_FAILED {
        return;
    }
    let h = map.cast::<Header>();
    // SAFETY: the map holds the Header; the error field is written only by
    // the shim, and only before the state says FAILED.
    unsafe {
        let st = (*h).shim_state.load(Acquire);
        if st != state::FAILED && st != state::RECORDING {
            let n = msg.len().min(rprof_abi::ERROR_BYTES - 1);
            let dst = ptr::addr_of_mut!((*h).error).cast::<u8>();
            ptr::copy_nonoverlapping(msg.as_ptr(), dst, n);
            *dst.add(n) = 0;
            (*h).shim_state.store(state::FAILED, Release);
        }
        libc::munmap(map, HEADER_BYTES);
    }
}

fn run(path: CString) {
    let Some(watch) = Watch::open(&path) else {
        return;
    };
    let (Some(ensure), Some(release), Some(initialized)) = (
        sym::<GilEnsure>(c"PyGILState_Ensure"),
        sym::<GilRelease>(c"PyGILState_Release"),
        sym::<IsInitialized>(c"Py_IsInitialized"),
    ) else {
        report_failure(
            &path,
            "the target does not export PyGILState_Ensure/Release or Py_IsInitialized: is it CPython?",
        );
        return;
    };
    // SAFETY: Py_IsInitialized may be called without the GIL.
    if unsafe { initialized() } == 0 {
        report_failure(
            &path,
            "the target's interpreter is not initialized (starting up or shutting down); try again",
        );
        return;
    }
    report_waiting_for_gil(&path);
    // SAFETY: PyGILState_Ensure/Release bracket the GIL for this foreign
    // thread; start() requires the GIL.
    let started = unsafe {
        let g = ensure();
        let r = hooks::start(&path, true);
        release(g);
        r
    };
    if let Err(e) = started {
        report_failure(&path, e);
        return;
    }
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
    // SAFETY: as above; stop() requires the GIL.
    unsafe {
        let g = ensure();
        hooks::stop();
        release(g);
    }
}
