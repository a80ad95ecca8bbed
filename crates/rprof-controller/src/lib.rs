//! The controller: everything about getting rprof's shim into a CPython
//! process and the capture started there.
//!
//! * [`shim`] carries the shim library (built from `injector/` by this
//!   crate's build script) and the memfds that hand it and the ring over.
//! * [`launch`] starts a script or module under the shim, as
//!   `python -m cProfile` would run it (`rprof run`).
//!
//! Attaching to a running process by PID builds on the same pieces.
#![deny(missing_docs)]

pub mod attach;
pub mod follow;
pub mod launch;
pub mod shim;
pub mod signals;
pub mod testing;

pub use launch::{Launch, Target};

/// The newest CPython `(major, minor)` rprof is tested with. Newer ones are
/// profiled (every layout the shim relies on is probed, never assumed), with
/// a warning.
pub const NEWEST_TESTED: (u32, u32) = (3, 15);

/// The one-line warning for an interpreter newer than [`NEWEST_TESTED`].
pub fn untested_version_warning(major: u32, minor: u32) -> Option<String> {
    let (a, b) = NEWEST_TESTED;
    ((major, minor) > NEWEST_TESTED).then(|| {
        format!(
            "rprof: warning: Python {major}.{minor} is newer than the newest rprof is tested with ({a}.{b}); check the profile against cProfile before trusting it"
        )
    })
}

/// Errors of the controller, each saying what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    /// The working directory or a file in it could not be made.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The script to run does not exist or cannot be read.
    #[error("cannot read the script {path}: {source}")]
    Script {
        /// The script as given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The interpreter could not be started.
    #[error("cannot start the Python interpreter {python:?}: {source} (pass --python PATH to choose another)")]
    Python {
        /// The interpreter as given.
        python: String,
        /// The OS error.
        source: std::io::Error,
    },
}
