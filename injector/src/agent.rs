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
use core::sync::atomic::Ordering::{Acquire, Relaxed};
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
        (map != libc::MAP_FAILED).then_some(Watch { map })
    }

    fn header(&self) -> &Header {
        // SAFETY: the map is HEADER_BYTES long, page aligned, and starts with
        // the Header the reader wrote; we only read its atomics.
        unsafe { &*self.map.cast::<Header>() }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping.
        unsafe { libc::munmap(self.map, HEADER_BYTES) };
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

/// Starts the agent for the ring at `path`.
pub fn spawn(path: CString) -> Result<(), &'static str> {
    std::thread::Builder::new()
        .name("rprof-agent".into())
        .spawn(move || run(path))
        .map(|_| ())
        .map_err(|_| "cannot start the agent thread")
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
        return;
    };
    // SAFETY: Py_IsInitialized may be called without the GIL.
    if unsafe { initialized() } == 0 {
        return;
    }
    // SAFETY: PyGILState_Ensure/Release bracket the GIL for this foreign
    // thread; start() requires the GIL.
    let started = unsafe {
        let g = ensure();
        let r = hooks::start(&path, true);
        release(g);
        r
    };
    if started.is_err() {
        return;
    }
    loop {
        std::thread::sleep(Duration::from_millis(10));
        // Events of a target that went idle mid-batch become visible.
        crate::ring::publish_written();
        let h = watch.header();
        let stop = h.command.load(Acquire) == command::STOP;
        let st = h.shim_state.load(Acquire);
        let heartbeat = h.heartbeat_ns.load(Relaxed);
        let silent = monotonic_ns().saturating_sub(heartbeat) > READER_TIMEOUT_NS;
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
