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
pub mod callback;
pub mod follow;
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
    register_handlers();
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
/// `announce_fd`, if not -1, is the announce channel (a `SOCK_SEQPACKET`
/// socket whose peer is rprof): children forked from now on are profiled
/// into rings of their own (see [`follow`]). The shim owns it.
///
/// This runs on a thread of the target that `rprof attach` borrowed at a
/// safe point; it touches neither Python nor the GIL, and returns at once.
/// errno is left as it was.
///
/// # Safety
/// `ring_fd` is an open memfd holding a ring created by rprof; the shim
/// takes ownership of the three fds.
#[no_mangle]
pub unsafe extern "C" fn rprof_attach(ring_fd: c_int, shim_fd: c_int, announce_fd: c_int) -> c_int {
    // SAFETY: __errno_location returns this thread's errno.
    let saved_errno = unsafe { *libc::__errno_location() };
    if shim_fd >= 0 {
        // SAFETY: the fd is ours (caller); the mapping keeps the library.
        unsafe { libc::close(shim_fd) };
    }
    register_handlers();
    follow::set_channel(announce_fd);
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

fn register_handlers() {
    ATFORK.call_once(|| {
        // SAFETY: registering a handler that only stores to atomics.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        // SAFETY: registering a handler that only does an atomic publish.
        unsafe { libc::atexit(at_exit) };
    });
}

/// `rprof run --subprocesses`: connects to rprof's announce socket named
/// in `spec` (see [`follow::RingSpec::parse`]), so that children this
/// process forks are profiled. Returns 0, or -1 (not followed).
///
/// # Safety
/// `spec` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn rprof_follow(spec: *const c_char) -> c_int {
    if spec.is_null() {
        return -1;
    }
    // SAFETY: NUL-terminated (caller).
    let spec = unsafe { CStr::from_ptr(spec) }.to_bytes();
    match follow::RingSpec::parse(spec) {
        Some((name, _)) if follow::connect(name) => 0,
        _ => {
            set_error("cannot reach rprof's announce socket");
            -1
        }
    }
}

/// A Python started by a profiled process (`exec`): connects to rprof as
/// [`rprof_follow`] does, makes a ring of its own with the settings in
/// `spec`, announces it, starts the capture and an agent that watches it.
/// Returns 0, or -1 with the reason in `rprof_last_error()` (nothing is
/// left installed then).
///
/// # Safety
/// `spec` is a NUL-terminated string; the caller holds the GIL.
#[no_mangle]
pub unsafe extern "C" fn rprof_start_child(spec: *const c_char) -> c_int {
    if spec.is_null() {
        return -1;
    }
    register_handlers();
    // SAFETY: NUL-terminated (caller).
    let spec = unsafe { CStr::from_ptr(spec) }.to_bytes();
    let Some((name, ring)) = follow::RingSpec::parse(spec) else {
        set_error("malformed RPROF_FOLLOW");
        return -1;
    };
    if !follow::connect(name) {
        set_error("cannot reach rprof's announce socket (rprof has exited?)");
        return -1;
    }
    let fd = match follow::create_ring(&ring) {
        Ok(fd) => fd,
        Err(e) => {
            set_error(e);
            return -1;
        }
    };
    if !follow::announce(fd) {
        // SAFETY: the fd is ours.
        unsafe { libc::close(fd) };
        set_error("cannot announce the ring to rprof");
        return -1;
    }
    let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).unwrap_or_default();
    // SAFETY: GIL held (caller); the path names our ring.
    match unsafe { hooks::start(&path, false) } {
        Ok(()) => {
            agent::spawn_watching(fd);
            0
        }
        Err(e) => {
            agent::report_failure(fd, e);
            // SAFETY: the fd is ours.
            unsafe { libc::close(fd) };
            set_error(e);
            -1
        }
    }
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
