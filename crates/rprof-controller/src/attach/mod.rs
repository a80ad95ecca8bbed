//! `rprof attach`: loading the shim into a running CPython process.
//!
//! 1. [`inspect`] checks the target without touching it (`/proc` and the
//!    ELF files it maps): that it exists and is alive, is not traced by
//!    somebody else, is CPython 3.8 or newer, is not already profiled by
//!    another rprof, and where `dlopen` and a few CPython functions are.
//! 2. [`Target::inject`] traces every thread, waits for one of them to be at
//!    a *safe point* — a place where it holds no allocator or loader lock —
//!    and borrows it to call `dlopen` on the shim and then the shim's
//!    `rprof_attach`, which only starts the shim's own agent thread. The
//!    borrowed thread's registers and `errno` are restored exactly (a system
//!    call it was blocked in restarts), and every thread is detached.
//!
//! Safe points, in order of preference:
//! * a thread blocked in a waiting system call (`accept`, `read`, `poll`,
//!   `futex`, `clock_nanosleep`, ...) that stays blocked across two looks at
//!   `/proc/PID/task/TID/syscall`: a service idling, a sleeping script, a
//!   thread waiting for the GIL;
//! * otherwise, the entry of `PyEval_SaveThread`, `PyEval_RestoreThread`,
//!   `PyObject_Malloc` or `PyObject_Free`, caught with a breakpoint: a
//!   thread running Python reaches one within microseconds, and at their
//!   entry it is inside neither `malloc` nor the dynamic loader.
//!
//! The shim is never unloaded. Its file name carries a hash of its bytes,
//! so a later attach finds the same build already mapped and calls it
//! instead of loading a second copy.

mod elf;
mod inject;
pub mod libc;
mod proc;
mod ptrace;

pub use inject::InjectReport;
pub use proc::Status;

use std::time::Duration;

/// Why attaching failed. Each message says what to do; [`exit_code`]
/// gives each kind its own exit status.
///
/// [`exit_code`]: AttachError::exit_code
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    /// No such process.
    #[error("no process with PID {0}")]
    NoSuchProcess(i32),
    /// The process is a zombie or exiting.
    #[error("PID {0} is exiting (state {1}); there is nothing left to profile")]
    Exiting(i32, char),
    /// The process is stopped by job control.
    #[error("PID {0} is stopped (Ctrl-Z or SIGSTOP); resume it first with `kill -CONT {0}`")]
    Stopped(i32),
    /// The process is not a CPython interpreter.
    #[error("PID {pid} ({name}) is not a CPython process: it maps no libpython and exports no Python C API")]
    NotPython {
        /// The PID.
        pid: i32,
        /// Its command name.
        name: String,
    },
    /// An unsupported CPython.
    #[error("PID {pid} runs Python {major}.{minor}; rprof supports CPython 3.8 and newer")]
    Unsupported {
        /// The PID.
        pid: i32,
        /// Major version.
        major: u32,
        /// Minor version.
        minor: u32,
    },
    /// ptrace was refused.
    #[error("permission denied to trace PID {pid}: {hint}")]
    PermissionDenied {
        /// The PID.
        pid: i32,
        /// What to do about it.
        hint: String,
    },
    /// Another tracer (a debugger, strace) is attached.
    #[error("PID {pid} is already traced by PID {tracer} ({tracer_name}); detach that debugger or strace first")]
    AlreadyTraced {
        /// The PID.
        pid: i32,
        /// The tracer.
        tracer: u32,
        /// The tracer's command name.
        tracer_name: String,
    },
    /// Another rprof is attached.
    #[error("another rprof is already attached to PID {0}; wait for it to finish")]
    AlreadyAttached(i32),
    /// No thread reached a safe point in time.
    #[error("no thread of PID {0} reached a safe point to load the profiler (all busy in native code?); try again")]
    NoSafePoint(i32),
    /// The target died during the attach.
    #[error("PID {0} exited while rprof was attaching")]
    Gone(i32),
    /// The target's C library cannot load the shim (musl, or glibc < 2.17).
    #[error("PID {pid} runs on {libc}; rprof's shim needs glibc 2.17 or newer (musl-based images such as Alpine are not supported)")]
    UnsupportedLibc {
        /// The PID.
        pid: i32,
        /// The C library found.
        libc: String,
    },
    /// The injected calls failed.
    #[error("loading the profiler into PID {pid} failed: {why}")]
    Inject {
        /// The PID.
        pid: i32,
        /// Why.
        why: String,
    },
}

impl AttachError {
    /// A distinct exit status per kind of failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            AttachError::NoSuchProcess(_) => 10,
            AttachError::Exiting(..) => 11,
            AttachError::Stopped(_) => 12,
            AttachError::NotPython { .. } => 13,
            AttachError::Unsupported { .. } => 14,
            AttachError::PermissionDenied { .. } => 15,
            AttachError::AlreadyTraced { .. } => 16,
            AttachError::AlreadyAttached(_) => 17,
            AttachError::NoSafePoint(_) => 18,
            AttachError::Gone(_) => 19,
            AttachError::Inject { .. } => 20,
            AttachError::UnsupportedLibc { .. } => 21,
        }
    }
}

/// A checked target, ready for [`Target::inject`].
#[derive(Debug)]
pub struct Target {
    /// The PID.
    pub pid: i32,
    /// Its `/proc` status.
    pub status: Status,
    /// `(major, minor)` if it could be told before injecting.
    pub version: Option<(u32, u32)>,
    pub(crate) plan: inject::Plan,
}

/// Checks a target without touching it.
pub fn inspect(pid: i32, shim_file_name: &str) -> Result<Target, AttachError> {
    inject::inspect(pid, shim_file_name)
}

impl Target {
    /// Loads the shim at `shim` (a path inside the target's filesystem) if
    /// it is not loaded yet, and starts a capture into the ring at `ring`.
    pub fn inject(
        &self,
        shim: &str,
        ring: &str,
        timeout: Duration,
    ) -> Result<InjectReport, AttachError> {
        inject::inject(self, shim, ring, timeout)
    }

    /// Where a file the target must open should go, as we can reach it:
    /// the target's `/dev/shm` (or `/tmp`) through `/proc/PID/root`.
    ///
    /// When the target shares rprof's mount namespace, the plain path is
    /// used: `/proc/PID/root` vanishes with the target, and rprof must still
    /// be able to remove its files if the target exits first.
    pub fn shared_dir(&self) -> (String, std::path::PathBuf) {
        let same_ns = {
            let ours = std::fs::read_link("/proc/self/ns/mnt");
            let theirs = std::fs::read_link(format!("/proc/{}/ns/mnt", self.pid));
            matches!((ours, theirs), (Ok(a), Ok(b)) if a == b)
        };
        for dir in ["/dev/shm", "/tmp"] {
            let local = if same_ns {
                std::path::PathBuf::from(dir)
            } else {
                proc::in_target_root(self.pid, dir)
            };
            if local.is_dir() {
                return (dir.to_string(), local);
            }
        }
        ("/tmp".into(), proc::in_target_root(self.pid, "/tmp"))
    }

    /// Whether the target process still exists (and is not a zombie).
    pub fn alive(&self) -> bool {
        alive(self.pid)
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    proc::status(pid).is_ok_and(|s| s.state != 'Z' && s.state != 'X')
}
