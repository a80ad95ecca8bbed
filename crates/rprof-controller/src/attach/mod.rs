//! `rprof attach`: loading the shim into a running CPython process, in
//! rooms that each own one kind of foreign state:
//!
//! 1. [`inspect`](inspect()) (`inspect.rs`) looks without touching: `/proc` and
//!    the ELF files the target maps. Every refusal leaves it untouched.
//! 2. `safepoint.rs` finds a thread to borrow — blocked in a waiting system
//!    call, or running the interpreter — tracing one thread at a time
//!    (the `Seized` guard of `ptrace.rs`, whose `Drop` detaches, waiting
//!    for a thread that has not stopped yet rather than abandoning it).
//! 3. `remote.rs` makes calls on it that return through a signal frame
//!    (`__restore_rt`), so the thread puts itself back exactly whatever
//!    happens to rprof.
//! 4. `handover.rs` runs the calls: memfds for the ring and the shim,
//!    created in the target, `dlopen`, `rprof_attach`; then detaches and
//!    checks that no thread is left traced.
//!
//! The shim is never unloaded; its memfd name carries a hash of its
//! bytes, so a later attach finds the same build already mapped and calls
//! it instead of loading a second copy.

mod elf;
mod handover;
mod inspect;
pub mod libc;
mod loaderlock;
mod proc;
mod ptrace;
mod remote;
mod safepoint;

pub use inspect::InjectReport;
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
    /// rprof was asked to stop (SIGINT, SIGTERM, SIGHUP, SIGQUIT) while
    /// attaching; what it had done was undone.
    #[error("interrupted while attaching to PID {0}; the target was left as it was")]
    Interrupted(i32),
    /// The ring's memory could not be reserved in the target.
    #[error("cannot reserve {mib} MiB for the ring in PID {pid}: {why}; nothing was loaded (try a smaller --ring-size)")]
    NoMemory {
        /// The PID.
        pid: i32,
        /// The ring's size.
        mib: u64,
        /// Why.
        why: String,
    },
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
            AttachError::Inject { .. } | AttachError::NoMemory { .. } => 20,
            AttachError::UnsupportedLibc { .. } => 21,
            AttachError::Interrupted(_) => 130,
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
    pub(crate) plan: inspect::Plan,
}

/// Checks a target without touching it.
pub fn inspect(pid: i32) -> Result<Target, AttachError> {
    inspect::inspect(pid)
}

impl Target {
    /// Borrows a thread at a safe point (giving up after `timeout`), has
    /// the target create the ring (`ring_bytes`, reserved) and load the
    /// shim if it is not loaded yet, and starts a capture. `make_ring`
    /// gets rprof's handle on the ring memfd, before the shim sees it.
    pub fn inject<R>(
        &self,
        ring_bytes: crate::shim::RingBytes,
        make_ring: impl FnOnce(std::fs::File) -> Result<R, String>,
        timeout: Duration,
    ) -> Result<(R, InjectReport), AttachError> {
        handover::inject(self, ring_bytes, make_ring, timeout, false)
            .map(|(r, report, _)| (r, report))
    }

    /// [`inject`](Self::inject), and children the target forks from now on
    /// are profiled into rings of their own: the returned socket is rprof's
    /// end of their announce channel, for
    /// [`Announcements::add_channel`](crate::follow::Announcements::add_channel).
    pub fn inject_following<R>(
        &self,
        ring_bytes: crate::shim::RingBytes,
        make_ring: impl FnOnce(std::fs::File) -> Result<R, String>,
        timeout: Duration,
    ) -> Result<(R, InjectReport, std::os::fd::OwnedFd), AttachError> {
        let (r, report, fd) = handover::inject(self, ring_bytes, make_ring, timeout, true)?;
        let fd = fd.ok_or_else(|| AttachError::Inject {
            pid: self.pid,
            why: "no announce channel".into(),
        })?;
        Ok((r, report, fd))
    }

    /// Whether the target process still exists (and is not a zombie).
    pub fn alive(&self) -> bool {
        alive(self.pid)
    }

    /// Whether the memfd `link` (as [`InjectReport::ring_link`]) is still
    /// mapped in the target.
    pub fn maps_memfd(&self, link: &str) -> bool {
        proc::maps(self.pid).is_ok_and(|m| m.iter().any(|m| m.label == link))
    }

    /// How the target ended, if it is a zombie not yet collected by its
    /// parent: its wait status.
    pub fn exit_status(&self) -> Option<i32> {
        proc::zombie_exit_code(self.pid)
    }
}

/// How process `pid` ended, if it is a zombie not yet collected by its
/// parent: its wait status.
pub fn exit_status(pid: i32) -> Option<i32> {
    proc::zombie_exit_code(pid)
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    proc::status(pid).is_ok_and(|s| s.state != 'Z' && s.state != 'X')
}
