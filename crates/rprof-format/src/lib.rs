//! Output formats for rprof profiles, over `std::io::Write` and byte
//! slices only: this crate never opens a file or looks at the OS.
//!
//! From the per-function statistics ([`Profile`](rprof_stats::Profile)):
//!
//! * [`pstats`]: cProfile's `.prof` files — [`write_pstats`] writes what
//!   `pstats.Stats(path)` loads on every Python 3, [`read_pstats`] reads
//!   those and cProfile's own dumps.
//! * [`table`]: the text report `pstats` prints, byte for byte, with
//!   `strip_dirs`, [`SortKey`]s and a row limit; by default what
//!   `python -m cProfile script.py` prints.
//!
//! From the exact call paths and timeline
//! ([`CallPaths`](rprof_stats::CallPaths)), with frames named as
//! [`labels`] explains (`function (file:line)`, builtins as cProfile names
//! them):
//!
//! * [`collapsed`]: collapsed ("folded") stacks, one line per call path,
//!   valued in microseconds of self time or in calls.
//! * [`flamegraph`]: an interactive SVG flame (or icicle) graph, drawn by
//!   inferno.
//! * [`speedscope`]: speedscope's JSON, one evented profile per thread from
//!   the timeline (or a sampled one from the call tree without it).
//! * [`chrome`]: Chrome's Trace Event Format, one complete event per call,
//!   for Perfetto and `chrome://tracing`.
//! * [`pprof`]: pprof's gzipped `profile.proto`, `[calls, wall ns]` per
//!   call path.
//!
//! Every format has a writer implementing [`ProfileWriter`];
//! [`OutputFormat`] picks one by `--format` name or file extension and
//! tells what the capture must record for it. The numbers themselves come
//! from `rprof-stats`; this crate only lays them out.
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
//!
//! The call-path formats take what the aggregator recorded; the CLI picks
//! the format from `--format` or the output's extension:
//!
//! ```
//! use std::path::Path;
//! use rprof_format::{OutputFormat, OutputOptions, ProfileData};
//! use rprof_stats::{Aggregator, Function, PathLimits};
//!
//! let format = OutputFormat::from_path(Path::new("app.speedscope.json")).unwrap();
//! assert_eq!(format, "speedscope".parse()?);
//! assert!(format.needs_paths() && format.needs_timeline());
//!
//! let mut agg = Aggregator::new(); // nanosecond timestamps
//! agg.record_paths(PathLimits { max_spans: 1_000, ..PathLimits::default() });
//! agg.name_thread(1, "MainThread".to_string());
//! let main = agg.intern(Function::python("/srv/app.py", 1, "main"));
//! let len = agg.intern(Function::builtin("<built-in method builtins.len>"));
//! agg.switch_thread(1);
//! agg.enter(main, 0);
//! agg.enter(len, 1_000);
//! agg.leave(len, 3_500);
//! agg.leave(main, 10_000);
//! let (profile, paths) = agg.finish_with_paths(10_000);
//! let data = ProfileData::new(&profile, paths.as_ref());
//!
//! // Self times of 7.5 µs and 2.5 µs: rounded together, so that they still
//! // add up to the 10 µs the capture took.
//! let mut out = Vec::new();
//! OutputFormat::Collapsed.write(data, &OutputOptions::default(), &mut out)?;
//! assert_eq!(
//!     String::from_utf8(out).unwrap(),
//!     "MainThread (tid 1);main (/srv/app.py:1) 8\n\
//!      MainThread (tid 1);main (/srv/app.py:1);<built-in method builtins.len> 2\n"
//! );
//!
//! let mut json = Vec::new();
//! format.write(data, &OutputOptions::default(), &mut json)?;
//! assert!(json.starts_with(b"{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\""));
//! # Ok::<(), rprof_format::FormatError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod chrome;
pub mod collapsed;
mod error;
pub mod flamegraph;
mod json;
pub mod labels;
mod marshal;
mod output;
pub mod pprof;
pub mod pstats;
mod round;
mod sort;
pub mod speedscope;
pub mod table;
mod timeline;
mod validate;

pub use chrome::{write_chrome_trace, ChromeTrace};
pub use collapsed::{collapsed_lines, write_collapsed, Collapsed, Metric};
pub use error::FormatError;
pub use flamegraph::{write_flamegraph, Flamegraph};
pub use output::{OutputFormat, OutputOptions, ProfileData, ProfileWriter, Pstats, Text};
pub use pprof::{write_pprof, Pprof};
pub use pstats::{read_pstats, write_pstats};
pub use sort::SortKey;
pub use speedscope::{write_speedscope, Speedscope};
pub use table::{render_table, write_table, TableOptions};
