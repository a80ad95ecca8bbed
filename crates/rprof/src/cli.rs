//! The command line, parsed with clap and turned straight into plain
//! settings, so nothing past this module sees clap.

use anyhow::{bail, Result};
use clap::{Parser, Subcommand, ValueEnum};
use rprof_format::{Metric, OutputFormat, OutputOptions, SortKey, TableOptions};
use rprof_stats::PathLimits;
use std::ffi::OsString;
use std::path::PathBuf;

/// `rprof -V`: the version and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RPROF_GIT_COMMIT"),
    ")"
);

/// `rprof --version`: the same, and what it supports.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RPROF_GIT_COMMIT"),
    ")\nsupports CPython 3.8-3.15 on Linux x86_64 (targets with glibc 2.17 or newer)"
);

/// Exact, cProfile-compatible profiles of CPython processes.
#[derive(Parser, Debug)]
#[command(name = "rprof", version = VERSION, long_version = LONG_VERSION, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a Python script or module under the profiler, like `python -m cProfile`.
    #[command(arg_required_else_help = true)]
    Run(RunArgs),

    /// Profile a running CPython process until Ctrl-C, --duration, or its exit.
    #[command(arg_required_else_help = true)]
    Attach(AttachArgs),

    /// Check whether this machine (and, given a PID, that process) can be
    /// profiled, without touching the process.
    Doctor(DoctorArgs),

    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(arg_required_else_help = true)]
    Completions(CompletionsArgs),

    /// Print rprof's man page (roff), e.g. `rprof man > rprof.1`.
    Man,
}

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// Also check everything `rprof attach PID` would check.
    #[arg(value_name = "PID")]
    pub pid: Option<i32>,
}

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell, e.g. `rprof completions bash > /etc/bash_completion.d/rprof`.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// The process to profile.
    #[arg(value_name = "PID")]
    pub pid: i32,

    /// Stop after SECS seconds (default: until Ctrl-C, SIGTERM, or the target exits).
    #[arg(short = 'd', long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// Also profile every CPython process below PID (gunicorn, uWSGI and
    /// Celery workers, multiprocessing pools), attached concurrently, and
    /// those that appear while attached. One merged profile, or one file
    /// per process with `{pid}` in an -o name.
    #[arg(long)]
    pub subprocesses: bool,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// Options every capture shares.
#[derive(clap::Args, Debug, Clone)]
pub struct OutputArgs {
    /// Write the profile to FILE instead of printing a table; the extension
    /// picks the format (.txt table, .collapsed/.folded, .svg flame graph,
    /// .speedscope.json, .trace.json Chrome/Perfetto, .pb.gz pprof; any
    /// other name gets pstats, as with cProfile). Repeat to write several
    /// files from one capture.
    #[arg(short = 'o', long = "outfile", value_name = "FILE")]
    pub outfile: Vec<PathBuf>,

    /// Write every -o file in this format, whatever its extension
    /// (pstats, text, collapsed, flamegraph, speedscope, chrome, pprof).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,

    /// What collapsed stacks and flame graphs measure: self `time` in
    /// microseconds, or `calls`.
    #[arg(long, value_enum, default_value_t = MetricArg::Time)]
    pub metric: MetricArg,

    /// Draw the flame graph upside down (an icicle graph).
    #[arg(long)]
    pub icicle: bool,

    /// Most calls kept for timeline formats (.speedscope.json, .trace.json);
    /// the rest are counted and reported.
    #[arg(long, value_name = "N", default_value_t = 1_000_000)]
    pub max_trace_events: usize,

    /// Deepest call path kept; deeper calls are folded into their ancestor
    /// (and counted).
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub max_depth: u32,

    /// Sort the printed table by KEY (any pstats sort key; repeat for ties).
    #[arg(short = 's', long = "sort", value_name = "KEY")]
    pub sort: Vec<String>,

    /// Which CPython hook to use: `monitoring` (3.12+) or `setprofile`; `auto`
    /// picks `monitoring` where it exists.
    #[arg(long, value_enum, default_value_t = HookArg::Auto)]
    pub hook: HookArg,

    /// Size of the shared-memory ring in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 32)]
    pub ring_size: usize,

    /// What the target does when the ring is full: `wait` for rprof (exact),
    /// or `drop` events (counted and reported; the profile is then incomplete).
    #[arg(long, value_enum, default_value_t = FullArg::Wait)]
    pub on_full: FullArg,

    /// Leave builtins (C functions and methods) out, like cProfile's
    /// `Profile(builtins=False)`: their time counts as their caller's own.
    /// The hook does not even ask for C calls, so they cost nothing.
    #[arg(long)]
    pub no_builtins: bool,

    /// Keep no caller edges, like cProfile's `Profile(subcalls=False)`: the
    /// callers of every function are empty in pstats (and in the table).
    #[arg(long)]
    pub no_subcalls: bool,

    /// Benchmarking only: install the hook but record nothing, to measure
    /// the hook's own cost (the profile is empty).
    #[arg(long, hide = true)]
    pub floor: bool,

    /// Benchmarking only: as `--floor`, but the callbacks of recorded
    /// events also read the clock and store one word: the least any exact
    /// recorder does per event (the profile is empty).
    #[arg(long, hide = true, conflicts_with = "floor")]
    pub floor_clock: bool,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub output: OutputArgs,

    /// The Python interpreter to run.
    #[arg(long, value_name = "PATH", default_value = "python3")]
    pub python: OsString,

    /// Also profile the processes the program starts: children it forks
    /// (`os.fork`, `multiprocessing` with fork), and Pythons it starts
    /// (`subprocess`, `multiprocessing` with spawn or forkserver,
    /// `ProcessPoolExecutor`). The profiles are merged.
    #[arg(long)]
    pub subprocesses: bool,

    /// Run a library module as a script, like `python -m`.
    #[arg(short = 'm', value_name = "MODULE")]
    pub module: Option<String>,

    /// The script to run (unless -m is given), then its arguments.
    #[arg(
        value_name = "SCRIPT [ARGS]",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub argv: Vec<OsString>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookArg {
    Auto,
    Setprofile,
    Monitoring,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricArg {
    Time,
    Calls,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FullArg {
    Wait,
    Drop,
}

/// Where and how to write the result.
#[derive(Debug, Clone)]
pub struct OutputConfig {
    /// Files to write, with their formats; empty: the table on stdout.
    pub outputs: Vec<(PathBuf, OutputFormat)>,
    pub options: OutputOptions,
    pub limits: PathLimits,
}

impl OutputConfig {
    /// Whether any output needs call paths.
    pub fn needs_paths(&self) -> bool {
        self.outputs.iter().any(|(_, f)| f.needs_paths())
    }
}

/// Ring and hook settings.
#[derive(Debug, Clone, Copy)]
pub struct CaptureConfig {
    pub hook: rprof_abi::Hook,
    pub ring_bytes: usize,
    pub full_policy: rprof_abi::FullPolicy,
    pub mode: rprof_abi::Mode,
    /// [`rprof_abi::flags`] bits.
    pub flags: u32,
}

impl OutputArgs {
    pub fn output_config(&self) -> Result<OutputConfig> {
        let sort = self
            .sort
            .iter()
            .map(|s| SortKey::parse(s).map_err(anyhow::Error::from))
            .collect::<Result<Vec<_>>>()?;
        let forced = match &self.format {
            Some(f) => Some(f.parse::<OutputFormat>()?),
            None => None,
        };
        let mut outputs = Vec::new();
        let mut timeline = false;
        for path in &self.outfile {
            // Like `python -m cProfile -o FILE`, a file whose extension
            // names no other format gets pstats.
            let format = forced
                .or_else(|| OutputFormat::from_path(path))
                .unwrap_or(OutputFormat::Pstats);
            timeline |= format.needs_timeline();
            outputs.push((path.clone(), format));
        }
        // Like `python -m cProfile` since 3.11: cumulative time first.
        let sort = if sort.is_empty() {
            vec![SortKey::Cumulative]
        } else {
            sort
        };
        let mut options = OutputOptions::default();
        options.table = TableOptions::sorted_by(sort);
        options.metric = match self.metric {
            MetricArg::Time => Metric::SelfTime,
            MetricArg::Calls => Metric::Calls,
        };
        options.icicle = self.icicle;
        if self.max_depth == 0 {
            bail!("--max-depth must be at least 1");
        }
        let limits = PathLimits {
            max_depth: self.max_depth,
            max_spans: if timeline {
                self.max_trace_events.max(1)
            } else {
                0
            },
            ..PathLimits::default()
        };
        Ok(OutputConfig {
            outputs,
            options,
            limits,
        })
    }

    pub fn capture_config(&self) -> Result<CaptureConfig> {
        if self.ring_size == 0 || self.ring_size > 4096 {
            bail!("--ring-size must be between 1 and 4096 MiB");
        }
        Ok(CaptureConfig {
            hook: match self.hook {
                HookArg::Auto => rprof_abi::Hook::Auto,
                HookArg::Setprofile => rprof_abi::Hook::SetProfile,
                HookArg::Monitoring => rprof_abi::Hook::Monitoring,
            },
            ring_bytes: self.ring_size << 20,
            full_policy: match self.on_full {
                FullArg::Wait => rprof_abi::FullPolicy::Wait,
                FullArg::Drop => rprof_abi::FullPolicy::Drop,
            },
            mode: if self.floor {
                rprof_abi::Mode::Floor
            } else if self.floor_clock {
                rprof_abi::Mode::FloorClock
            } else {
                rprof_abi::Mode::Record
            },
            flags: if self.no_builtins {
                rprof_abi::flags::NO_BUILTINS
            } else {
                0
            } | if self.no_subcalls {
                rprof_abi::flags::NO_SUBCALLS
            } else {
                0
            },
        })
    }
}

impl RunArgs {
    pub fn launch(&self) -> Result<rprof_controller::Launch> {
        let (target, args) = match &self.module {
            Some(m) => (
                rprof_controller::Target::Module(m.clone()),
                self.argv.clone(),
            ),
            None => match self.argv.split_first() {
                Some((script, rest)) => (
                    rprof_controller::Target::Script(PathBuf::from(script)),
                    rest.to_vec(),
                ),
                None => bail!("give a script to run, or -m MODULE"),
            },
        };
        Ok(rprof_controller::Launch {
            python: self.python.clone(),
            target,
            args,
            follow_env: Vec::new(),
        })
    }
}
