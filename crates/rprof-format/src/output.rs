//! Choosing an output format, and the one interface every format's writer
//! implements.
//!
//! A command line needs three things from this crate: which format the
//! user asked for (by `--format NAME` or by the output file's extension,
//! [`OutputFormat`]), what to record for it ([`OutputFormat::needs_paths`],
//! [`OutputFormat::needs_timeline`]), and a way to write it
//! ([`OutputFormat::write`], or any [`ProfileWriter`] directly).

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use rprof_stats::{CallPaths, Profile};

use crate::chrome::ChromeTrace;
use crate::collapsed::{Collapsed, Metric};
use crate::flamegraph::Flamegraph;
use crate::pprof::Pprof;
use crate::speedscope::Speedscope;
use crate::{write_pstats, write_table, FormatError, TableOptions};

/// What a capture produced, as the writers take it: the pstats numbers
/// and, if they were recorded, the call paths.
#[derive(Clone, Copy, Debug)]
pub struct ProfileData<'a> {
    /// Per-function statistics (pstats, the table).
    pub profile: &'a Profile,
    /// Call paths and timeline (every other format).
    pub paths: Option<&'a CallPaths>,
}

impl<'a> ProfileData<'a> {
    /// Bundles a profile with its call paths, if any.
    pub fn new(profile: &'a Profile, paths: Option<&'a CallPaths>) -> Self {
        ProfileData { profile, paths }
    }

    /// The call paths, or [`FormatError::MissingPaths`] naming `format`.
    pub fn require_paths(&self, format: &'static str) -> Result<&'a CallPaths, FormatError> {
        self.paths.ok_or(FormatError::MissingPaths { format })
    }
}

/// A format together with its options, ready to write a capture.
///
/// Every format has one: [`Pstats`], [`Text`], [`Collapsed`],
/// [`Flamegraph`], [`Speedscope`], [`ChromeTrace`] and [`Pprof`].
pub trait ProfileWriter {
    /// Writes `data` to `out`. Formats made from call paths fail with
    /// [`FormatError::MissingPaths`] if `data` has none.
    fn write(&self, data: ProfileData<'_>, out: &mut dyn Write) -> Result<(), FormatError>;
}

/// The pstats writer (`.prof`): see [`write_pstats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pstats;

impl ProfileWriter for Pstats {
    fn write(&self, data: ProfileData<'_>, out: &mut dyn Write) -> Result<(), FormatError> {
        write_pstats(data.profile, out)
    }
}

/// The table writer (`.txt`): see [`write_table`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text(pub TableOptions);

impl ProfileWriter for Text {
    fn write(&self, data: ProfileData<'_>, out: &mut dyn Write) -> Result<(), FormatError> {
        write_table(data.profile, &self.0, out)
    }
}

/// The options of every format in one place, for [`OutputFormat::write`];
/// each format reads the ones that concern it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutputOptions {
    /// [`OutputFormat::Text`]: sorting, `strip_dirs` and row limit.
    pub table: TableOptions,
    /// [`OutputFormat::Collapsed`] and [`OutputFormat::Flamegraph`]: what
    /// the values measure.
    pub metric: Metric,
    /// [`OutputFormat::Flamegraph`]: draw an icicle graph (growing down).
    pub icicle: bool,
    /// A title: the flame graph's title, the speedscope file's name, the
    /// Chrome trace's process name.
    pub title: Option<String>,
    /// [`OutputFormat::ChromeTrace`]: the profiled process's id (1 if
    /// unknown).
    pub pid: Option<u32>,
}

/// Every format rprof writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// cProfile's `.prof` file, for `pstats`, snakeviz, gprof2dot.
    Pstats,
    /// pstats' text table.
    Text,
    /// Collapsed stacks (`.collapsed`, `.folded`).
    Collapsed,
    /// An interactive SVG flame graph.
    Flamegraph,
    /// speedscope's JSON format.
    Speedscope,
    /// Chrome's Trace Event Format, for Perfetto and `chrome://tracing`.
    ChromeTrace,
    /// pprof's gzipped protobuf.
    Pprof,
}

/// `(format, name for --format, other accepted names, extensions)`;
/// the first extension is the canonical one.
const FORMATS: [(OutputFormat, &str, &[&str], &[&str]); 7] = [
    (OutputFormat::Pstats, "pstats", &["prof"], &[".prof"]),
    (OutputFormat::Text, "text", &["table", "txt"], &[".txt"]),
    (
        OutputFormat::Collapsed,
        "collapsed",
        &["folded"],
        &[".collapsed", ".folded"],
    ),
    (
        OutputFormat::Flamegraph,
        "flamegraph",
        &["svg", "flame"],
        &[".svg"],
    ),
    (
        OutputFormat::Speedscope,
        "speedscope",
        &[],
        &[".speedscope.json"],
    ),
    (
        OutputFormat::ChromeTrace,
        "chrome",
        &["chrome-trace", "trace", "perfetto"],
        &[".trace.json"],
    ),
    (OutputFormat::Pprof, "pprof", &[], &[".pb.gz"]),
];

impl OutputFormat {
    /// Every format, in the order `--help` should list them.
    pub const ALL: [OutputFormat; 7] = [
        OutputFormat::Pstats,
        OutputFormat::Text,
        OutputFormat::Collapsed,
        OutputFormat::Flamegraph,
        OutputFormat::Speedscope,
        OutputFormat::ChromeTrace,
        OutputFormat::Pprof,
    ];

    fn entry(
        self,
    ) -> &'static (
        OutputFormat,
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    ) {
        FORMATS
            .iter()
            .find(|e| e.0 == self)
            .expect("every format has an entry")
    }

    /// The name `--format` takes (`pstats`, `text`, `collapsed`,
    /// `flamegraph`, `speedscope`, `chrome`, `pprof`).
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// The file name extension, with its dot (`.prof`, `.speedscope.json`).
    pub fn extension(self) -> &'static str {
        self.entry().3[0]
    }

    /// The format a file name's extension asks for (ignoring case):
    /// `.prof`, `.txt`, `.collapsed`, `.folded`, `.svg`,
    /// `.speedscope.json`, `.trace.json` or `.pb.gz`. `None` for anything
    /// else, including a bare `.json` (which of the two JSON formats?).
    ///
    /// ```
    /// use rprof_format::OutputFormat;
    /// use std::path::Path;
    ///
    /// assert_eq!(OutputFormat::from_path(Path::new("out/app.speedscope.json")), Some(OutputFormat::Speedscope));
    /// assert_eq!(OutputFormat::from_path(Path::new("cpu.PB.GZ")), Some(OutputFormat::Pprof));
    /// assert_eq!(OutputFormat::from_path(Path::new("data.json")), None);
    /// ```
    pub fn from_path(path: &Path) -> Option<OutputFormat> {
        let name = path.file_name()?.to_string_lossy().to_lowercase();
        FORMATS.iter().find_map(|(format, _, _, extensions)| {
            extensions
                .iter()
                .any(|ext| name.len() > ext.len() && name.ends_with(ext))
                .then_some(*format)
        })
    }

    /// True if the format is made from call paths, so the capture must
    /// record them (`Aggregator::record_paths`).
    pub fn needs_paths(self) -> bool {
        !matches!(self, OutputFormat::Pstats | OutputFormat::Text)
    }

    /// True if the format shows calls on a timeline, so the capture should
    /// record spans (`PathLimits::max_spans > 0`). speedscope falls back to
    /// the call tree without them; a Chrome trace is empty without them.
    pub fn needs_timeline(self) -> bool {
        matches!(self, OutputFormat::Speedscope | OutputFormat::ChromeTrace)
    }

    /// True for binary formats (pstats, pprof), which should not be written
    /// to a terminal.
    pub fn is_binary(self) -> bool {
        matches!(self, OutputFormat::Pstats | OutputFormat::Pprof)
    }

    /// The writer for this format, with the options that concern it.
    pub fn writer(self, options: &OutputOptions) -> Box<dyn ProfileWriter> {
        match self {
            OutputFormat::Pstats => Box::new(Pstats),
            OutputFormat::Text => Box::new(Text(options.table.clone())),
            OutputFormat::Collapsed => Box::new(Collapsed::new(options.metric)),
            OutputFormat::Flamegraph => {
                let mut f = Flamegraph::new(options.metric, options.icicle);
                f.title.clone_from(&options.title);
                Box::new(f)
            }
            OutputFormat::Speedscope => Box::new(Speedscope {
                name: options.title.clone(),
            }),
            OutputFormat::ChromeTrace => Box::new(ChromeTrace {
                pid: options.pid.unwrap_or(1),
                process_name: options.title.clone(),
            }),
            OutputFormat::Pprof => Box::new(Pprof {}),
        }
    }

    /// Writes `data` in this format.
    pub fn write(
        self,
        data: ProfileData<'_>,
        options: &OutputOptions,
        mut out: impl Write,
    ) -> Result<(), FormatError> {
        self.writer(options).write(data, &mut out)
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OutputFormat {
    type Err = FormatError;

    /// A `--format` name, ignoring case: `pstats`, `text`, `collapsed`,
    /// `flamegraph`, `speedscope`, `chrome` or `pprof` (also `prof`,
    /// `table`, `txt`, `folded`, `svg`, `flame`, `chrome-trace`, `trace`,
    /// `perfetto`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_lowercase();
        FORMATS
            .iter()
            .find(|(_, name, aliases, _)| *name == wanted || aliases.contains(&wanted.as_str()))
            .map(|e| e.0)
            .ok_or_else(|| FormatError::UnknownFormat {
                name: s.to_string(),
                valid: FORMATS
                    .iter()
                    .map(|e| format!("{} ({})", e.1, e.3.join(", ")))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_extensions_round_trip() {
        for format in OutputFormat::ALL {
            assert_eq!(format.name().parse::<OutputFormat>().unwrap(), format);
            assert_eq!(format.to_string().parse::<OutputFormat>().unwrap(), format);
            let file = format!("out/profile{}", format.extension());
            assert_eq!(OutputFormat::from_path(Path::new(&file)), Some(format));
        }
    }

    #[test]
    fn extensions() {
        let cases = [
            ("a.prof", Some(OutputFormat::Pstats)),
            ("a.txt", Some(OutputFormat::Text)),
            ("a.collapsed", Some(OutputFormat::Collapsed)),
            ("a.folded", Some(OutputFormat::Collapsed)),
            ("A.SVG", Some(OutputFormat::Flamegraph)),
            ("a.speedscope.json", Some(OutputFormat::Speedscope)),
            ("a.trace.json", Some(OutputFormat::ChromeTrace)),
            ("a.pb.gz", Some(OutputFormat::Pprof)),
            ("a.json", None),
            ("a.gz", None),
            ("prof", None),
            (".prof", None),
            ("dir.prof/", Some(OutputFormat::Pstats)),
            ("", None),
        ];
        for (path, format) in cases {
            assert_eq!(OutputFormat::from_path(Path::new(path)), format, "{path}");
        }
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        assert_eq!(
            "Chrome-Trace".parse::<OutputFormat>().unwrap(),
            OutputFormat::ChromeTrace
        );
        let err = "html".parse::<OutputFormat>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown output format \"html\"; use one of pstats (.prof), text (.txt), \
             collapsed (.collapsed, .folded), flamegraph (.svg), speedscope (.speedscope.json), \
             chrome (.trace.json), pprof (.pb.gz)"
        );
    }

    #[test]
    fn what_to_record() {
        use OutputFormat::*;
        let paths: Vec<_> = OutputFormat::ALL
            .into_iter()
            .filter(|f| f.needs_paths())
            .collect();
        assert_eq!(
            paths,
            [Collapsed, Flamegraph, Speedscope, ChromeTrace, Pprof]
        );
        let timeline: Vec<_> = OutputFormat::ALL
            .into_iter()
            .filter(|f| f.needs_timeline())
            .collect();
        assert_eq!(timeline, [Speedscope, ChromeTrace]);
    }

    #[test]
    fn path_formats_need_paths() {
        let profile = Profile::default();
        let data = ProfileData::new(&profile, None);
        for format in OutputFormat::ALL {
            let result = format.write(data, &OutputOptions::default(), Vec::new());
            if format.needs_paths() {
                let err = result.unwrap_err();
                assert!(
                    matches!(err, FormatError::MissingPaths { format: name } if name == format.name()),
                    "{err}"
                );
            } else {
                result.unwrap();
            }
        }
    }
}
