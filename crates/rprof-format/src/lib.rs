//! Output formats for rprof profiles, over `std::io::Write` and byte
//! slices only: this crate never opens a file or looks at the OS.
//!
//! * [`pstats`]: cProfile's `.prof` files — [`write_pstats`] writes what
//!   `pstats.Stats(path)` loads on every Python 3, [`read_pstats`] reads
//!   those and cProfile's own dumps.
//! * [`table`]: the text report `pstats` prints, byte for byte, with
//!   `strip_dirs`, [`SortKey`]s and a row limit; by default what
//!   `python -m cProfile script.py` prints.
//!
//! The numbers themselves come from `rprof-stats`; this crate only lays
//! them out.
//!
//! ```
//! use rprof_format::{read_pstats, render_table, write_pstats, SortKey, TableOptions};
//! use rprof_stats::{CallStats, Function, FunctionStats, Profile};
//!
//! let once = |tottime, cumtime| CallStats { ncalls: 1, primitive: 1, tottime, cumtime };
//! let profile = Profile {
//!     functions: vec![
//!         FunctionStats {
//!             func: Function::python("/srv/app.py", 1, "main"),
//!             totals: once(0.25, 0.5),
//!             callers: vec![],
//!         },
//!         FunctionStats {
//!             func: Function::builtin("<built-in method builtins.len>"),
//!             totals: once(0.25, 0.25),
//!             callers: vec![(0, once(0.25, 0.25))],
//!         },
//!     ],
//! };
//!
//! let mut prof = Vec::new();
//! write_pstats(&profile, &mut prof)?;
//! assert_eq!(read_pstats(&prof)?, profile);
//!
//! let options = TableOptions::sorted_by([SortKey::parse("cumtime")?]);
//! let table = render_table(&profile, &options);
//! assert!(table.starts_with("         2 function calls in 0.500 seconds\n"));
//! assert!(table.contains("    0.250    0.250    0.250    0.250 {built-in method builtins.len}\n"));
//! # Ok::<(), rprof_format::FormatError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod marshal;
pub mod pstats;
mod sort;
pub mod table;

pub use error::FormatError;
pub use pstats::{read_pstats, write_pstats};
pub use sort::SortKey;
pub use table::{render_table, write_table, TableOptions};
