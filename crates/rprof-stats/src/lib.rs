//! Exact cProfile statistics from a stream of enter/leave events.
//!
//! This crate owns the *semantics* of rprof's numbers: it replays what
//! CPython's `Modules/_lsprof.c` does on every profile event, so that the
//! counts, primitive counts and caller edges it produces are the ones
//! `cProfile` would have produced for the same events. It never performs
//! I/O: the reader decodes the shared-memory ring and feeds events in, the
//! formats crate writes the resulting [`Profile`] out. That keeps it easy to
//! test with synthetic event streams.
//!
//! The one deliberate difference from cProfile: stacks are kept **per
//! thread**. cProfile before 3.12 only sees the thread that enabled it, and
//! from 3.12 on pushes every thread onto a single stack (CPython PR
//! #138229), which corrupts recursion and caller counts in threaded code.
//!
//! ```
//! use rprof_stats::{Aggregator, Function};
//!
//! let mut agg = Aggregator::new();
//! let f = agg.intern(Function::python("app.py", 3, "f"));
//! let len = agg.intern(Function::builtin("<built-in method builtins.len>"));
//! agg.switch_thread(1);
//! agg.enter(f, 0);
//! agg.enter(len, 10);
//! agg.leave(len, 15);
//! agg.leave(f, 40);
//! let profile = agg.finish(40);
//! let stats = profile.get(&Function::python("app.py", 3, "f")).unwrap();
//! assert_eq!(stats.totals.ncalls, 1);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod aggregate;
mod merge;
pub mod paths;

pub use aggregate::{limits, Aggregator, Refused};
pub use merge::{merge_paths, merge_profiles};
pub use paths::{CallPaths, PathLimits, PathNode, ProcessTag, Span, ThreadPaths, Truncation};

/// A profiled function, keyed exactly as cProfile keys it in a `.prof` file:
/// `(filename, firstlineno, funcname)` for Python code and
/// `('~', 0, label)` for builtins.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Function {
    /// `co_filename`, or `~` for a builtin.
    pub file: String,
    /// `co_firstlineno`, or 0 for a builtin.
    pub line: u32,
    /// `co_name`, or cProfile's label for a builtin
    /// (`<built-in method builtins.len>`, `<method 'append' of 'list' objects>`).
    pub name: String,
}

impl Function {
    /// A Python function.
    pub fn python(file: impl Into<String>, line: u32, name: impl Into<String>) -> Self {
        Function {
            file: file.into(),
            line,
            name: name.into(),
        }
    }

    /// A builtin, with cProfile's label.
    pub fn builtin(label: impl Into<String>) -> Self {
        Function {
            file: "~".to_string(),
            line: 0,
            name: label.into(),
        }
    }

    /// True for builtins (`('~', 0, label)`).
    pub fn is_builtin(&self) -> bool {
        self.file == "~" && self.line == 0
    }
}

/// Index of a function in an [`Aggregator`] or a [`Profile`].
pub type FuncId = u32;

/// The four numbers cProfile keeps per function and per caller edge.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CallStats {
    /// Total number of calls (`nc`).
    pub ncalls: u64,
    /// Calls that were not recursive (`cc`, "primitive calls").
    pub primitive: u64,
    /// Time spent in the function itself, excluding callees, in seconds.
    pub tottime: f64,
    /// Time spent in the function and its callees, counted once per
    /// outermost recursion level, in seconds.
    pub cumtime: f64,
}

/// Everything known about one function after a capture.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionStats {
    /// Which function.
    pub func: Function,
    /// Its totals.
    pub totals: CallStats,
    /// Per caller: the calls this function received from that caller.
    /// Indices refer to [`Profile::functions`].
    pub callers: Vec<(FuncId, CallStats)>,
}

/// The result of a capture: every function that was called at least once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    /// Functions, indexed by [`FuncId`]. Functions with no completed call are
    /// omitted, as cProfile omits them.
    pub functions: Vec<FunctionStats>,
}

impl Profile {
    /// Looks up a function's statistics by key.
    pub fn get(&self, func: &Function) -> Option<&FunctionStats> {
        self.functions.iter().find(|f| &f.func == func)
    }

    /// Total number of calls over all functions.
    pub fn total_calls(&self) -> u64 {
        self.functions.iter().map(|f| f.totals.ncalls).sum()
    }

    /// Total number of primitive calls over all functions.
    pub fn primitive_calls(&self) -> u64 {
        self.functions.iter().map(|f| f.totals.primitive).sum()
    }

    /// Sum of all functions' tottime: pstats' "in N seconds".
    pub fn total_time(&self) -> f64 {
        self.functions.iter().map(|f| f.totals.tottime).sum()
    }
}
