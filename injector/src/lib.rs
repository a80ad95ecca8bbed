//! rprof's shim: the small library rprof loads into a CPython process.
//!
//! It installs a native profile hook (see [`hooks`]) that writes every
//! call, return, builtin call and builtin return, with a timestamp, into a
//! shared-memory ring (see [`ring`] and the `rprof-abi` crate) that the
//! rprof process drains. It resolves CPython's C API at run time (see
//! [`api`]), so one build serves every interpreter from 3.8 on.
//!
//! The exported entry points must be called with the GIL held: by the
//! `rprof run` bootstrap through `ctypes.PyDLL`, or by a thread of the
//! shim's own that takes the GIL with `PyGILState_Ensure`. The library is
//! never unloaded; after a capture it stays dormant, and a later capture
//! reuses it.

pub mod agent;
pub mod api;
pub mod ft;
pub mod hooks;
pub mod intern;
pub mod ring;
pub mod threads;

use core::ffi::{c_char, c_int, CStr};
use std::sync::Once;

static ATFORK: Once = Once::new();

extern "C" fn at_exit() {
    // The interpreter has finished; make the last events visible.
    ring::publish_written();
}

extern "C" fn after_fork_in_child() {
    // The child shares the ring with its parent but must not write to it:
    // the parent is its only producer. Its first event removes the hooks
    // it inherited and unmaps the ring (hooks::forget_in_child).
    hooks::after_fork_in_child();
    ring::forget_header();
}

/// Starts a capture into the ring file at `path`. Returns 0 on success,
/// -1 on failure (the reason is in the ring header when the ring could be
/// mapped, and in `rprof_last_error()` always).
///
/// # Safety
/// `path` is a NUL-terminated string; the caller holds the GIL.
#[no_mangle]
pub unsafe extern "C" fn rprof_start(path: *const c_char) -> c_int {
    if path.is_null() {
        set_error("no ring path given");
        return -1;
    }
    ATFORK.call_once(|| {
        // SAFETY: registering a handler that only stores to an atomic.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        // SAFETY: registering a handler that only does an atomic publish.
        unsafe { libc::atexit(at_exit) };
    });
    // SAFETY: path is a valid C string (caller); GIL held (caller).
    match unsafe { hooks::start(CStr::from_ptr(path), false) } {
        Ok(()) => 0,
        Err(e) => {
            set_error(e);
            -1
        }
    }
}

/// Stops the capture, if one runs: removes the hooks, writes the end of
/// the stream and unmaps the ring. Returns 0.
///
/// # Safety
/// The caller holds the GIL.
#[no_mangle]
pub unsafe extern "C" fn rprof_stop() -> c_int {
    // SAFETY: GIL held (caller).
    unsafe { hooks::stop() };
    0
}

/// Attach mode: maps the header of the ring in memfd `ring_fd`, closes
/// `shim_fd` (the memfd the shim was loaded from, or -1 when it was already
/// loaded) and starts the shim's agent thread, which takes the GIL itself,
/// starts a capture into the ring, closes `ring_fd`, and watches for the
/// end of the capture. Returns 0 once the thread is started, -1 if it
/// could not be (the ring header then says why, when it could be mapped).
///
/// This runs on a thread of the target that `rprof attach` borrowed at a
/// safe point; it touches neither Python nor the GIL, and returns at once.
/// errno is left as it was.
///
/// # Safety
/// `ring_fd` is an open memfd holding a ring created by rprof; the shim
/// takes ownership of both fds.
#[no_mangle]
pub unsafe extern "C" fn rprof_attach(ring_fd: c_int, shim_fd: c_int) -> c_int {
    // SAFETY: __errno_location returns this thread's errno.
    let saved_errno = unsafe { *libc::__errno_location() };
    if shim_fd >= 0 {
        // SAFETY: the fd is ours (caller); the mapping keeps the library.
        unsafe { libc::close(shim_fd) };
    }
    ATFORK.call_once(|| {
        // SAFETY: registering a handler that only stores to an atomic.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        // SAFETY: registering a handler that only does an atomic publish.
        unsafe { libc::atexit(at_exit) };
    });
    let r = match agent::spawn(ring_fd) {
        Ok(()) => 0,
        Err(e) => {
            set_error(e);
            -1
        }
    };
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved_errno };
    r
}

static LAST_ERROR: std::sync::Mutex<[u8; 256]> = std::sync::Mutex::new([0; 256]);

fn set_error(msg: &str) {
    if let Ok(mut buf) = LAST_ERROR.lock() {
        let n = msg.len().min(buf.len() - 1);
        buf[..n].copy_from_slice(&msg.as_bytes()[..n]);
        buf[n] = 0;
    }
}

/// Copies the last start failure's message (NUL-terminated) into `buf`.
///
/// # Safety
/// `buf` points to `len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn rprof_last_error(buf: *mut c_char, len: usize) {
    if buf.is_null() || len == 0 {
        return;
    }
    if let Ok(msg) = LAST_ERROR.lock() {
        let n = msg.iter().position(|&b| b == 0).unwrap_or(0).min(len - 1);
        // SAFETY: buf has len > n bytes (caller).
        unsafe {
            core::ptr::copy_nonoverlapping(msg.as_ptr().cast::<c_char>(), buf, n);
            *buf.add(n) = 0;
        }
    }
}
