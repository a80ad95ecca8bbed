//! Catching SIGINT, SIGTERM, SIGHUP and SIGQUIT, so that rprof can end a
//! capture cleanly and still write what it captured, and so that none of
//! them can end rprof while a borrowed thread is inside an injected call:
//! the attach code looks at them only between calls.
//!
//! The handler only stores the signal number; the code polls it.
//! Handlers (unlike ignored signals) are reset by `exec`, so a child started
//! afterwards gets the default behaviour.

use std::sync::atomic::{AtomicI32, Ordering};

static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    RECEIVED.store(sig, Ordering::Relaxed);
}

/// Installs the handler for SIGINT, SIGTERM, SIGHUP and SIGQUIT.
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: the handler is async-signal-safe (one atomic store), and
        // sigaction is given a fully initialised struct.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Whether a signal arrived and was not taken yet.
pub fn pending() -> bool {
    RECEIVED.load(Ordering::Relaxed) != 0
}

/// The last signal received since the previous call, if any.
pub fn take() -> Option<i32> {
    match RECEIVED.swap(0, Ordering::Relaxed) {
        0 => None,
        s => Some(s),
    }
}

/// Sends `sig` to process `pid`.
pub fn send(pid: u32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}
