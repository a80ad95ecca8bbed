//! Catching SIGINT, SIGTERM, SIGHUP and SIGQUIT, so that rprof can end a
//! capture cleanly and still write what it captured, and so that none of
//! them can end rprof while a borrowed thread is inside an injected call:
//! the attach code looks at them only between calls.
//!
//! The handler only stores the signal number; the code polls it.
//! Handlers (unlike ignored signals) are reset by `exec`, so a child started
//! afterwards gets the default behaviour. A signal that rprof's own caller
//! ignores (`nohup` ignores SIGHUP; a shell's background job starts with
//! SIGINT and SIGQUIT ignored) is left ignored, for rprof and for the
//! program `rprof run` starts, exactly as plain `python` would inherit it:
//! catching it would hand the program a default disposition it never had
//! (asyncio, for one, then installs its own SIGINT handler).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static RECEIVED: AtomicI32 = AtomicI32::new(0);
/// Whether the last signal came from the kernel itself (a terminal's
/// Ctrl-C or Ctrl-\\), not from a process calling `kill`.
static FROM_KERNEL: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    let code = if info.is_null() {
        0
    } else {
        // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO
        // handler, and it is not null here.
        unsafe { (*info).si_code }
    };
    FROM_KERNEL.store(code == libc::SI_KERNEL, Ordering::Relaxed);
    RECEIVED.store(sig, Ordering::Relaxed);
}

/// Installs the handler for SIGINT, SIGTERM, SIGHUP and SIGQUIT, except
/// for those that are ignored now (see the module's doc).
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: the handler is async-signal-safe (one atomic store), and
        // sigaction is given fully initialised structs.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                continue;
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
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

/// Like [`take`], and says whether the signal came from the terminal
/// (`SI_KERNEL`: the line discipline signals the whole foreground process
/// group, so a child in rprof's group got it too and must not get it
/// twice).
pub fn take_with_origin() -> Option<(i32, bool)> {
    let sig = take()?;
    Some((sig, FROM_KERNEL.load(Ordering::Relaxed)))
}

/// Sends `sig` to process `pid`.
pub fn send(pid: u32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}
