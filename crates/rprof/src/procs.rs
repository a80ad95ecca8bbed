//! Output and report of a multi-process capture (`--subprocesses`), shared
//! by `rprof attach --subprocesses` and `rprof run --subprocesses`.
//!
//! A capture of several processes is a list of [`ProcessCapture`]s, one
//! per process, each with its own exact statistics. This module turns the
//! list into files and lines:
//!
//! * [`write_profiles`]: every `-o` whose file name contains `{pid}` gets
//!   one file per process (`{pid}` replaced by its PID); every other `-o`,
//!   and the table printed without `-o`, gets ONE profile merged with
//!   pstats' own semantics (`pstats.Stats.add`, see
//!   [`rprof_stats::merge_profiles`]). The table's header says how many
//!   processes were merged. Call-path formats (collapsed, flame graph,
//!   speedscope, Chrome, pprof) keep every process apart, under a top
//!   frame that names it ([`ProcessCapture::label`]), e.g.
//!   `gunicorn: worker [app:app] (pid 1234);MainThread (tid 1234);...`.
//! * [`summarize`]: one summary line for all processes, a line per process
//!   that ended during the capture or whose capture is incomplete, and the
//!   exit status ([`Outcome::exit_code`]).
//!
//! Exit status of a multi-process capture (documented in the README):
//! 0 when every process was detached from or exited during the capture
//! (workers come and go: an exit is normal); 4
//! ([`EXIT_TARGET_KILLED`](crate::attach::EXIT_TARGET_KILLED)) when a
//! process is known to have been killed by a signal or crashed, or when
//! the first process (the PID given, or the launched one) ended and how is
//! unknown; otherwise 3 ([`EXIT_INCOMPLETE`](report::EXIT_INCOMPLETE)) if
//! any capture is incomplete. A process killed mid-capture keeps what it
//! wrote, its unpublished last batch included (`Session::take_unpublished`
//! once it is gone); at most the record it was writing is lost, and every
//! other process's profile is complete.
//!
//! Usage (what `run --subprocesses` does once its processes are done):
//!
//! ```ignore
//! let captures: Vec<procs::ProcessCapture> = ...; // first = the root
//! procs::write_profiles(&captures, &output)?;
//! let outcome = procs::summarize(&captures);
//! return Ok(outcome.exit_code());
//! ```

use crate::cli::OutputConfig;
use crate::report;
use anyhow::{Context, Result};
use rprof_format::{OutputFormat, OutputOptions, ProfileData};
use rprof_reader::Capture;
use rprof_stats::{merge_paths, merge_profiles, ProcessTag};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The placeholder in an `-o` file name that asks for one file per process.
pub const PID_PLACEHOLDER: &str = "{pid}";

/// Longest process title kept, in characters (it comes from the target's
/// memory: `/proc/PID/cmdline`, which `setproctitle` rewrites).
const MAX_TITLE_CHARS: usize = 80;

/// How a process came to be profiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Joined {
    /// It was there when the capture started (attached by ptrace, or the
    /// process `rprof run` launched).
    AtStart,
    /// A profiled process forked it and it announced a ring of its own
    /// from its first event: its profile is exact from its start.
    Announced,
    /// It appeared during the capture without an announcement (forked by
    /// an unprofiled process, or a program `exec`'d) and was attached by
    /// ptrace once found: calls before that are not in its profile.
    Late,
}

/// How a process ended during the capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It was detached from (or is still running): no ending.
    Detached,
    /// It exited with this status.
    Exited(i32),
    /// It was killed by (or crashed with) this signal.
    Killed(i32),
    /// It ended, and its parent collected its status before rprof saw it.
    Unknown,
}

/// One process's finished capture.
pub struct ProcessCapture {
    /// Its PID.
    pub pid: u32,
    /// Its title ([`process_title`], taken when it joined: it may be gone
    /// by the end).
    pub title: String,
    /// How it came to be profiled.
    pub joined: Joined,
    /// How it ended.
    pub ending: Ending,
    /// Its statistics.
    pub capture: Capture,
}

/// The title of process `pid`, bounded and printable: its command line
/// (`/proc/PID/cmdline`, which shows a `setproctitle` title such as
/// `gunicorn: worker [app:app]`) with NULs as spaces, else its command
/// name, cut to 80 characters; control characters and anything outside
/// printable ASCII become `?`. The target controls these bytes.
pub fn process_title(pid: u32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .filter(|b| b.iter().any(|&c| c != 0))
        .map(|b| short_argv0(&b).to_vec())
        .or_else(|| std::fs::read(format!("/proc/{pid}/comm")).ok())
        .unwrap_or_default();
    clean_title(&raw)
}

/// A command line with its program's directory left out
/// (`/usr/bin/python3 app.py` → `python3 app.py`), unless its first word
/// is a title (`setproctitle` writes one string with spaces).
fn short_argv0(cmdline: &[u8]) -> &[u8] {
    let end = cmdline
        .iter()
        .position(|&c| c == 0)
        .unwrap_or(cmdline.len());
    let argv0 = &cmdline[..end];
    if argv0.contains(&b' ') {
        return cmdline;
    }
    match argv0.iter().rposition(|&c| c == b'/') {
        Some(slash) => &cmdline[slash + 1..],
        None => cmdline,
    }
}

fn clean_title(raw: &[u8]) -> String {
    let mut s: String = raw
        .iter()
        .take(4096)
        .map(|&c| match c {
            0 => ' ',
            b' '..=b'~' => c as char,
            _ => '?',
        })
        .collect();
    s = s.trim().to_string();
    if s.chars().count() > MAX_TITLE_CHARS {
        s = s.chars().take(MAX_TITLE_CHARS - 3).collect::<String>() + "...";
    }
    if s.is_empty() {
        s = "?".to_string();
    }
    s
}

/// Whether `path` asks for one file per process.
pub fn is_per_process(path: &Path) -> bool {
    path.to_string_lossy().contains(PID_PLACEHOLDER)
}

/// `path` with `{pid}` replaced by `pid`.
pub fn per_process_path(path: &Path, pid: u32) -> PathBuf {
    PathBuf::from(
        path.to_string_lossy()
            .replace(PID_PLACEHOLDER, &pid.to_string()),
    )
}

/// The line above a merged table's totals.
pub fn merged_header(captures: &[ProcessCapture]) -> String {
    const SHOWN: usize = 16;
    let mut pids: Vec<String> = captures
        .iter()
        .take(SHOWN)
        .map(|c| c.pid.to_string())
        .collect();
    if captures.len() > SHOWN {
        pids.push("...".into());
    }
    let n = captures.len();
    format!(
        "Merged profile of {n} process{} (PID{} {})",
        if n == 1 { "" } else { "es" },
        if n == 1 { "" } else { "s" },
        pids.join(", ")
    )
}

fn write_one(
    data: ProfileData<'_>,
    options: &OutputOptions,
    path: &Path,
    format: OutputFormat,
) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    format
        .write(data, options, &mut w)
        .map_err(anyhow::Error::from)
        .and_then(|_| w.flush().map_err(Into::into))
        .with_context(|| format!("cannot write {} ({format})", path.display()))
}

/// Writes the outputs of a multi-process capture as `config` asks (see
/// the [module docs](self)): `{pid}` files per process, the rest merged,
/// the merged table on stdout without `-o`. `captures[0]` is the root.
pub fn write_profiles(captures: &[ProcessCapture], config: &OutputConfig) -> Result<()> {
    let per_process: Vec<&(PathBuf, OutputFormat)> = config
        .outputs
        .iter()
        .filter(|(p, _)| is_per_process(p))
        .collect();
    for c in captures {
        let data = ProfileData::new(&c.capture.profile, c.capture.paths.as_ref());
        let mut options = config.options.clone();
        options.pid = Some(c.pid);
        options.title = Some(c.label());
        for (path, format) in &per_process {
            write_one(data, &options, &per_process_path(path, c.pid), *format)?;
        }
    }
    let merged_outputs: Vec<&(PathBuf, OutputFormat)> = config
        .outputs
        .iter()
        .filter(|(p, _)| !is_per_process(p))
        .collect();
    if !merged_outputs.is_empty() || config.outputs.is_empty() {
        let profile = merge_profiles(captures.iter().map(|c| &c.capture.profile));
        let paths = captures.iter().all(|c| c.capture.paths.is_some()).then(|| {
            merge_paths(captures.iter().filter_map(|c| {
                let tag = ProcessTag {
                    pid: c.pid,
                    label: c.label(),
                };
                c.capture.paths.as_ref().map(|p| (tag, p))
            }))
        });
        let data = ProfileData::new(&profile, paths.as_ref());
        let mut options = config.options.clone();
        options.pid = captures.first().map(|c| c.pid);
        options.table.header = Some(merged_header(captures));
        if config.outputs.is_empty() {
            OutputFormat::Text
                .write(data, &options, std::io::stdout().lock())
                .context("cannot print the table")?;
        }
        for (path, format) in merged_outputs {
            write_one(data, &options, path, *format)?;
        }
    }
    Ok(())
}

impl ProcessCapture {
    /// Its name in call-path outputs: `TITLE (pid PID)`.
    pub fn label(&self) -> String {
        format!("{} (pid {})", self.title, self.pid)
    }
}

/// What a multi-process capture amounted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Every capture is complete.
    pub exact: bool,
    /// A process was killed or crashed (or the root ended, how unknown).
    pub killed: bool,
}

impl Outcome {
    /// The exit status (see the [module docs](self)).
    pub fn exit_code(self) -> ExitCode {
        if self.killed {
            ExitCode::from(crate::attach::EXIT_TARGET_KILLED)
        } else if !self.exact {
            ExitCode::from(report::EXIT_INCOMPLETE)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// The name of a signal, `SIGKILL`, or `signal N`.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "HUP",
        2 => "INT",
        3 => "QUIT",
        4 => "ILL",
        5 => "TRAP",
        6 => "ABRT",
        7 => "BUS",
        8 => "FPE",
        9 => "KILL",
        10 => "USR1",
        11 => "SEGV",
        12 => "USR2",
        13 => "PIPE",
        14 => "ALRM",
        15 => "TERM",
        _ => return format!("signal {sig}"),
    };
    format!("SIG{name}")
}

/// Prints the summary of a multi-process capture on stderr: a line per
/// process that ended during the capture, warnings for incomplete ones,
/// and one total line. `captures[0]` is the root.
pub fn summarize(captures: &[ProcessCapture]) -> Outcome {
    let mut outcome = Outcome {
        exact: true,
        killed: false,
    };
    let exited: Vec<String> = captures
        .iter()
        .filter(|c| c.ending == Ending::Exited(0))
        .map(|c| c.pid.to_string())
        .collect();
    if !exited.is_empty() {
        eprintln!(
            "rprof: {} process{} exited normally during the capture (PID{} {}); kept what {} recorded",
            exited.len(),
            if exited.len() == 1 { "" } else { "es" },
            if exited.len() == 1 { "" } else { "s" },
            exited.join(", "),
            if exited.len() == 1 { "it" } else { "they" },
        );
    }
    for (i, c) in captures.iter().enumerate() {
        let who = format!("PID {} ({})", c.pid, c.title);
        match c.ending {
            Ending::Detached | Ending::Exited(0) => {}
            Ending::Exited(s) => {
                eprintln!(
                    "rprof: {who} exited with status {s} during the capture; kept what it recorded"
                )
            }
            Ending::Killed(sig) => {
                outcome.killed = true;
                let how = if matches!(sig, 4 | 6 | 7 | 8 | 11) {
                    "crashed with"
                } else {
                    "was killed by"
                };
                eprintln!(
                    "rprof: {who} {how} {} during the capture; kept what it recorded (at most the call it was recording is missing)",
                    signal_name(sig)
                );
            }
            Ending::Unknown => {
                outcome.killed |= i == 0;
                eprintln!("rprof: {who} ended during the capture (its parent collected its status, so how is unknown); kept what it recorded (if it was killed, its last events may be missing)");
            }
        }
        if !c.capture.summary.is_exact() {
            outcome.exact = false;
        }
        report::warn_incomplete(&c.capture, &format!("{who}: "));
    }
    let events: u64 = captures.iter().map(|c| c.capture.summary.events).sum();
    let waits: u64 = captures.iter().map(|c| c.capture.summary.waits).sum();
    let wait_s: f64 = captures
        .iter()
        .map(|c| c.capture.summary.wait_seconds)
        .sum();
    let late = captures.iter().filter(|c| c.joined == Joined::Late).count();
    let announced = captures
        .iter()
        .filter(|c| c.joined == Joined::Announced)
        .count();
    eprintln!(
        "rprof: {} events from {} process{} ({announced} followed from their fork, {late} attached while running); targets waited {waits} times for {wait_s:.3} s",
        events,
        captures.len(),
        if captures.len() == 1 { "" } else { "es" },
    );
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_bounded_and_printable() {
        assert_eq!(
            clean_title(b"gunicorn: worker [app]\0\0"),
            "gunicorn: worker [app]"
        );
        assert_eq!(clean_title(b"python\0-c\0x;\x1b[31m"), "python -c x;?[31m");
        assert_eq!(clean_title(b""), "?");
        assert_eq!(
            short_argv0(b"/usr/bin/python3\0/srv/app.py\0"),
            b"python3\0/srv/app.py\0"
        );
        assert_eq!(
            short_argv0(b"gunicorn: worker [a/b]\0\0"),
            b"gunicorn: worker [a/b]\0\0"
        );
        let long = clean_title(&[b'a'; 10_000]);
        assert_eq!(long.chars().count(), MAX_TITLE_CHARS);
        assert!(long.ends_with("..."));
        assert_eq!(clean_title("é".as_bytes()), "??");
        assert!(process_title(std::process::id()).len() <= MAX_TITLE_CHARS);
    }

    #[test]
    fn pid_placeholder() {
        let p = Path::new("/tmp/w-{pid}.prof");
        assert!(is_per_process(p));
        assert!(!is_per_process(Path::new("/tmp/all.prof")));
        assert_eq!(per_process_path(p, 42), Path::new("/tmp/w-42.prof"));
    }
}
