//! The crate's one error type.
//!
//! Every message names the problem *and* what to do about it, because these
//! errors end up in front of a user of the `rprof` binary, not a Rust
//! programmer.

/// Everything that can go wrong while reading, writing or formatting a
/// profile.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The destination refused the bytes.
    #[error(
        "could not write the profile output: {0}; check that the destination is writable \
         and that the disk is not full"
    )]
    Io(#[from] std::io::Error),

    /// The input is not valid `marshal` data (truncated, corrupt, or not a
    /// marshal stream at all).
    #[error(
        "not a readable pstats file: bad marshal data at byte {offset}: {reason}; pass a file \
         written by cProfile's `dump_stats` (Python 3) or by rprof, and check that it was \
         copied completely"
    )]
    Marshal {
        /// Byte offset of the object that could not be decoded.
        offset: usize,
        /// What was wrong with it.
        reason: String,
    },

    /// The input is valid `marshal` data but not the dictionary cProfile
    /// writes.
    #[error(
        "not a cProfile stats file: {reason}; pass a file written by cProfile's `dump_stats` \
         (Python 3) or by rprof (files from the pure-Python `profile` module are not supported)"
    )]
    NotPstats {
        /// Which part of the expected layout was missing or malformed.
        reason: String,
    },

    /// The [`Profile`](rprof_stats::Profile) handed to a writer breaks its
    /// own invariants, so the output would not mean what it says.
    #[error(
        "refusing to write an inconsistent profile: {reason}; this is a bug in the code that \
         built the profile, please report it"
    )]
    InvalidProfile {
        /// Which invariant was broken.
        reason: String,
    },

    /// A sort key that pstats does not know.
    #[error("unknown sort key {key:?}; use one of {valid} (or any unambiguous prefix of one)")]
    UnknownSortKey {
        /// The key as given.
        key: String,
        /// The accepted keys, comma-separated.
        valid: String,
    },

    /// A prefix that pstats rejects because it starts more than one key.
    #[error("ambiguous sort key {key:?}: it starts {candidates}; type more of the key")]
    AmbiguousSortKey {
        /// The key as given.
        key: String,
        /// The keys it is a prefix of, comma-separated.
        candidates: String,
    },

    /// An output format name that rprof does not know.
    #[error("unknown output format {name:?}; use one of {valid}")]
    UnknownFormat {
        /// The name as given.
        name: String,
        /// The accepted names, comma-separated.
        valid: String,
    },

    /// A call-path format was asked for, but the capture recorded no call
    /// paths.
    #[error(
        "the {format} output needs the call paths of the capture, and none were recorded; \
         this is a bug in the program that asked for it (it must record call paths when \
         `OutputFormat::needs_paths` says so), please report it, and meanwhile write a \
         pstats file (`-o profile.prof`) instead"
    )]
    MissingPaths {
        /// The format's name.
        format: &'static str,
    },

    /// A flame graph of a capture in which nothing has a nonzero width.
    #[error(
        "nothing to draw in the flame graph: no call path has a nonzero {metric}; profile \
         for longer or while the program is busy, or write another format (for example \
         `-o profile.prof`)"
    )]
    EmptyFlamegraph {
        /// What the widths would have measured ("self time", "call count").
        metric: &'static str,
    },
}
