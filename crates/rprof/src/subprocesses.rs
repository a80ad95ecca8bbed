//! `rprof attach --subprocesses PID`: profile a process tree (a gunicorn
//! master and its workers, a multiprocessing pool) as one capture.
//!
//! This module owns the *tree*: finding the CPython processes below PID
//! (`/proc/PID/task/*/children`, recursively), attaching to each on a
//! thread of its own (the attach code is per process: it traces one
//! thread of one target at a time, from the rprof thread that seized it,
//! so 16 workers take about as long as one), noticing processes that
//! appear while attached (polled every [`POLL`]), and detaching from all
//! at the end. Each process's capture is its own exact profile; `procs`
//! writes and reports them.
//!
//! Which processes join, and how:
//! * at the start: PID and every CPython process below it;
//! * later, announced: a child forked by a profiled process that gets a
//!   ring of its own from its first event (the shim's follow mechanism):
//!   exact from its start;
//! * later, attached by ptrace ("late"): a process that appears otherwise
//!   (forked by an unprofiled process, or a program `exec`'d); its calls
//!   before the attach are not counted, and it is reported as such.
//!
//! A non-Python process is skipped silently (and looked at again if it
//! `exec`s); a process that cannot be attached is named in one warning
//! line. A process that still maps its parent's live ring (just forked by
//! a profiled process) is tried again on later polls. The capture ends
//! on Ctrl-C (or SIGTERM, SIGHUP, SIGQUIT), `--duration`, or when PID
//! itself ends; processes that end before keep what they recorded.

use crate::attach;
use crate::cli::{AttachArgs, CaptureConfig, OutputConfig};
use crate::procs::{self, Ending, Joined, ProcessCapture};
use anyhow::Result;
use rprof_controller::attach::{self as ctl, AttachError};
use rprof_controller::{follow, signals};
use rprof_reader::{Ring, Session};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the tree is looked at for new processes.
const POLL: Duration = Duration::from_millis(150);
/// How long a process that maps a live ring it did not get from rprof
/// (a child just forked by a profiled process), or whose interpreter is
/// still starting, is tried again before a warning.
const INHERITED_RING_GRACE: Duration = Duration::from_secs(5);
/// How long a new child of a profiled process is given to announce its own
/// ring before it is attached by ptrace instead.
const FOLLOW_GRACE: Duration = Duration::from_millis(500);
/// Longest sleep of a process's reader between looks at an empty ring (a
/// ring of the default 32 MiB takes ~100 ms to fill at the fastest rate
/// measured).
const MAX_IDLE: Duration = Duration::from_millis(4);
/// Most processes profiled at once (each has a ring and a thread).
const MAX_PROCESSES: usize = 256;

/// What a process thread tells the main loop.
enum Msg {
    Attached {
        pid: i32,
        latency: Duration,
        joined: Joined,
        /// The announce channel of the children it forks.
        channel: Option<std::os::fd::OwnedFd>,
    },
    Failed {
        pid: i32,
        error: anyhow::Error,
    },
    Ended {
        pid: i32,
    },
}

/// What the main loop knows of a PID below the root.
enum Known {
    /// Being attached, or profiled (its thread runs).
    Profiled,
    /// Not CPython; looked at again if its executable changes (`exec`).
    NotPython { exe: Option<std::path::PathBuf> },
    /// Maps a live ring it did not get from rprof, or its interpreter was
    /// still starting: tried again on the next polls.
    Inherited,
    /// Could not be attached (warned once), or gone.
    Done,
}

struct Tree {
    config: CaptureConfig,
    output: OutputConfig,
    stop: Arc<AtomicBool>,
    tx: mpsc::Sender<Msg>,
    threads: Vec<(i32, JoinHandle<Option<ProcessCapture>>)>,
}

impl Tree {
    /// Attaches to `pid` on a thread of its own.
    fn spawn(&mut self, pid: i32, joined: Joined) {
        let (config, output) = (self.config, self.output.clone());
        let (stop, tx) = (self.stop.clone(), self.tx.clone());
        let handle = std::thread::spawn(move || {
            let title = procs::process_title(pid as u32);
            let interrupted = || stop.load(Ordering::Relaxed) || signals::pending();
            let mut live = match attach::start(pid, &config, &output, &interrupted, true) {
                Ok(live) => live,
                Err(error) => {
                    let _ = tx.send(Msg::Failed { pid, error });
                    return None;
                }
            };
            let _ = tx.send(Msg::Attached {
                pid,
                latency: live.latency,
                joined,
                channel: live.channel.take(),
            });
            let exited = live.record_until(&|| stop.load(Ordering::Relaxed), MAX_IDLE);
            if exited {
                let _ = tx.send(Msg::Ended { pid });
            }
            let (capture, ending, _) = live.detach(exited, true);
            Some(ProcessCapture {
                pid: pid as u32,
                title,
                joined,
                ending,
                capture,
            })
        });
        self.threads.push((pid, handle));
    }

    /// Captures a child that announced its own ring (`session` on it), on
    /// a thread of its own.
    fn follow(&mut self, pid: i32, mut session: Session) {
        let (stop, tx) = (self.stop.clone(), self.tx.clone());
        let handle = std::thread::spawn(move || {
            let title = procs::process_title(pid as u32);
            let _ = tx.send(Msg::Attached {
                pid,
                latency: Duration::ZERO,
                joined: Joined::Announced,
                channel: None,
            });
            let exited = attach::record_until(
                &mut session,
                pid,
                &|| stop.load(Ordering::Relaxed),
                MAX_IDLE,
            );
            if exited {
                let _ = tx.send(Msg::Ended { pid });
            }
            let exited = attach::stop_session(&mut session, pid, exited);
            let ending = if exited {
                // It can write no more: its last, unpublished batch too.
                session.take_unpublished();
                attach::ending(pid)
            } else {
                Ending::Detached
            };
            Some(ProcessCapture {
                pid: pid as u32,
                title,
                joined: Joined::Announced,
                ending,
                capture: session.finish(),
            })
        });
        self.threads.push((pid, handle));
    }
}

/// Every process below `root` from `/proc/PID/task/TID/children`, except
/// rprof itself.
pub fn descendants(root: i32) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let path = task.path().join("children");
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            for child in text
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                if child != root
                    && child != me
                    && !out.contains(&child)
                    && out.len() < 4 * MAX_PROCESSES
                {
                    out.push(child);
                    queue.push(child);
                }
            }
        }
    }
    out
}

/// The parent of `pid` (`/proc/PID/stat`, after the command name, which
/// may itself hold spaces and parentheses).
fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn exe(pid: i32) -> Option<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe")).ok()
}

/// The status line, rewritten in place on a terminal.
struct Status {
    tty: bool,
    shown: Option<usize>,
}

impl Status {
    fn show(&mut self, profiling: usize) {
        if self.shown == Some(profiling) {
            return;
        }
        self.shown = Some(profiling);
        let line = format!(
            "rprof: profiling {profiling} process{}",
            if profiling == 1 { "" } else { "es" }
        );
        if self.tty {
            eprint!("\r\x1b[K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    /// Before any other line: ends the rewritten line.
    fn newline(&mut self) {
        if self.tty && self.shown.is_some() {
            eprintln!();
            self.shown = None;
        }
    }
}

pub fn attach_tree(args: &AttachArgs) -> Result<ExitCode> {
    let output = args.output.output_config()?;
    let config = args.output.capture_config()?;
    attach::check_duration(args.duration)?;
    signals::catch_interrupts();
    let started = Instant::now();
    let root = args.pid;
    // The root must be there and be CPython; its own errors are rprof's.
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tree = Tree {
        config,
        output: output.clone(),
        stop: stop.clone(),
        tx,
        threads: Vec::new(),
    };
    let mut known: HashMap<i32, Known> = HashMap::new();
    let mut announcements = follow::Announcements::new();
    // Children followed through their announcement: a ptrace attempt
    // still under way for one of them fails, and that is fine.
    let mut announced: std::collections::HashSet<i32> = Default::default();
    let mut inherited: HashMap<i32, Instant> = HashMap::new();
    let mut status = Status {
        tty: std::io::stderr().is_terminal(),
        shown: None,
    };
    tree.spawn(root, Joined::AtStart);
    for pid in descendants(root) {
        known.insert(pid, Known::Profiled);
        tree.spawn(pid, Joined::AtStart);
    }
    // The processes there at the start not yet attached (or failed).
    let mut starting: std::collections::HashSet<i32> =
        tree.threads.iter().map(|(p, _)| *p).collect();
    let mut profiling: usize = 0;
    let mut root_error: Option<anyhow::Error> = None;
    let mut root_skipped: Option<anyhow::Error> = None;
    let mut captures: Vec<ProcessCapture> = Vec::new();
    let mut warned_max = false;
    // Processes recording now, and when a child of one was first seen.
    let mut recording: std::collections::HashSet<i32> = Default::default();
    let mut first_seen: HashMap<i32, Instant> = HashMap::new();
    let mut stop_at: Option<Instant> = None;
    let mut next_poll = Instant::now() + POLL;
    loop {
        // Children of profiled processes with rings of their own.
        while let Ok(Some(a)) = announcements.try_recv() {
            let what = format!("the ring of PID {}", a.pid);
            match Ring::open_announced(a.ring, std::path::Path::new(&what)) {
                Ok(ring) if tree.threads.len() < MAX_PROCESSES => {
                    let mut session = Session::new(ring);
                    crate::report::prepare(&mut session, &output);
                    known.insert(a.pid, Known::Profiled);
                    announced.insert(a.pid);
                    tree.follow(a.pid, session);
                }
                // The ring is dropped: the child's writer finds no reader
                // and lets go (its heartbeat never moves).
                Ok(_) => {}
                Err(e) => {
                    status.newline();
                    eprintln!(
                        "rprof: warning: PID {} ({}) announced a ring rprof cannot use: {e}",
                        a.pid,
                        procs::process_title(a.pid as u32)
                    );
                }
            }
        }
        // Messages from the process threads.
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Attached {
                    pid,
                    latency,
                    joined,
                    channel,
                } => {
                    profiling += 1;
                    recording.insert(pid);
                    if let Some(fd) = channel {
                        announcements.add_channel(fd);
                    }
                    if !starting.remove(&pid) && joined == Joined::Late {
                        status.newline();
                        eprintln!(
                            "rprof: attached to PID {pid} ({}) while it ran, in {:.0} ms: its calls before that are not counted",
                            procs::process_title(pid as u32),
                            latency.as_secs_f64() * 1e3
                        );
                    }
                }
                Msg::Failed { pid, error } => {
                    starting.remove(&pid);
                    if pid == root {
                        // A root that is not CPython (a shell, a C
                        // supervisor) still has its CPython descendants
                        // profiled, if it has any.
                        let not_python = matches!(
                            error.downcast_ref::<AttachError>(),
                            Some(AttachError::NotPython { .. })
                        );
                        if not_python && !known.is_empty() {
                            root_skipped = Some(error);
                        } else {
                            root_error = Some(error);
                            stop.store(true, Ordering::Relaxed);
                        }
                        continue;
                    }
                    if announced.contains(&pid) {
                        continue;
                    }
                    let state = classify(pid, &error, &mut inherited);
                    if let Some(line) = state.1 {
                        status.newline();
                        eprintln!("{line}");
                    }
                    known.insert(pid, state.0);
                }
                Msg::Ended { pid } => {
                    profiling -= 1;
                    recording.remove(&pid);
                    if pid == root {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
        // Every process there at the start attached or failed: the
        // capture starts now, for --duration too.
        if starting.is_empty() && stop_at.is_none() && root_error.is_none() {
            if profiling == 0 {
                // Only possible with a root that is not CPython.
                root_error = root_skipped.take();
                break;
            }
            status.newline();
            let which = match root_skipped {
                None => format!("PID {root} and {} below it", profiling - 1),
                Some(_) => format!("below PID {root}, which is not CPython"),
            };
            eprintln!(
                "rprof: attached to {profiling} process{} ({which}) in {:.0} ms",
                if profiling == 1 { "" } else { "es" },
                started.elapsed().as_secs_f64() * 1e3
            );
            stop_at = Some(
                args.duration
                    .map(|d| Instant::now() + Duration::from_secs_f64(d))
                    .unwrap_or(Instant::now() + Duration::from_secs(u32::MAX.into())),
            );
        }
        if stop_at.is_some() && !stop.load(Ordering::Relaxed) {
            status.show(profiling);
        }
        if stop.load(Ordering::Relaxed)
            || signals::pending()
            || stop_at.is_some_and(|t| Instant::now() >= t)
            || (root_skipped.is_some() && !ctl::alive(root))
        {
            break;
        }
        // Threads whose process is done: their captures are kept.
        let (done, running): (Vec<_>, Vec<_>) =
            tree.threads.drain(..).partition(|(_, h)| h.is_finished());
        tree.threads = running;
        captures.extend(done.into_iter().filter_map(|(_, h)| join(h)));
        if Instant::now() >= next_poll && stop_at.is_some() {
            next_poll = Instant::now() + POLL;
            for pid in descendants(root) {
                let retry = match known.get(&pid) {
                    // A child of a profiled process announces its own ring
                    // from its first call: it is attached by ptrace only
                    // if no announcement came within FOLLOW_GRACE.
                    None if recording.contains(&ppid(pid).unwrap_or(0)) => {
                        let seen = *first_seen.entry(pid).or_insert_with(Instant::now);
                        seen.elapsed() >= FOLLOW_GRACE
                    }
                    None => true,
                    Some(Known::NotPython { exe: e }) => exe(pid) != *e,
                    Some(Known::Inherited) => true,
                    Some(Known::Profiled | Known::Done) => false,
                };
                if retry && tree.threads.len() >= MAX_PROCESSES {
                    if !warned_max {
                        warned_max = true;
                        status.newline();
                        eprintln!("rprof: warning: already profiling {MAX_PROCESSES} processes; new ones below PID {root} are not profiled");
                    }
                } else if retry {
                    known.insert(pid, Known::Profiled);
                    tree.spawn(pid, Joined::Late);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Detach from every process at once: each thread sees the flag.
    stop.store(true, Ordering::Relaxed);
    status.newline();
    let detach_started = Instant::now();
    for (_, handle) in tree.threads {
        captures.extend(join(handle));
    }
    // The root first (pstats' merge starts with it), then in the order
    // the processes ended.
    captures.sort_by_key(|c| c.pid as i32 != root);
    while let Ok(msg) = rx.try_recv() {
        if let Msg::Failed { pid, error } = msg {
            if pid == root && root_error.is_none() {
                root_error = Some(error);
            }
        }
    }
    if let Some(e) = root_error {
        // Every other process was detached from by now.
        return Err(e);
    }
    let _ = signals::take();
    eprintln!(
        "rprof: detached from {} process{} in {:.1} ms",
        captures
            .iter()
            .filter(|c| c.ending == Ending::Detached)
            .count(),
        if captures.len() == 1 { "" } else { "es" },
        detach_started.elapsed().as_secs_f64() * 1e3
    );
    procs::write_profiles(&captures, &output)?;
    let outcome = procs::summarize(&captures);
    Ok(outcome.exit_code())
}

/// The capture of a finished process thread.
fn join(handle: JoinHandle<Option<ProcessCapture>>) -> Option<ProcessCapture> {
    handle.join().unwrap_or_else(|_| {
        eprintln!("rprof: warning: a capture thread panicked; its process's profile is missing");
        None
    })
}

/// What a failed attach to `pid` (not the root) means: its new state, and
/// the warning line to print, if any.
fn classify(
    pid: i32,
    error: &anyhow::Error,
    inherited: &mut HashMap<i32, Instant>,
) -> (Known, Option<String>) {
    let title = procs::process_title(pid as u32);
    let skipped = || {
        Some(format!(
            "rprof: warning: not profiling PID {pid} ({title}): {error:#}"
        ))
    };
    // Tried again on the next polls for a while, then skipped with a warning.
    let mut retry = || {
        let until = *inherited
            .entry(pid)
            .or_insert_with(|| Instant::now() + INHERITED_RING_GRACE);
        if Instant::now() < until {
            (Known::Inherited, None)
        } else {
            (Known::Done, skipped())
        }
    };
    match error.downcast_ref::<AttachError>() {
        Some(AttachError::NotPython { .. }) => (Known::NotPython { exe: exe(pid) }, None),
        // Gone before or while attaching, or the capture is ending.
        Some(
            AttachError::NoSuchProcess(_)
            | AttachError::Exiting(..)
            | AttachError::Gone(_)
            | AttachError::Interrupted(_),
        ) => (Known::Done, None),
        // A child forked by a profiled process maps its parent's live
        // ring until it gets its own or drops it.
        Some(AttachError::AlreadyAttached(_)) => retry(),
        _ if !ctl::alive(pid) => (Known::Done, None),
        // A Python just started (`exec`) whose interpreter is not
        // initialised yet.
        _ if format!("{error:#}").contains("interpreter is not initialised") => retry(),
        _ => (Known::Done, skipped()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_children_and_their_parent() {
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let found = descendants(me);
        let parent = ppid(pid);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found.contains(&pid), "{found:?}");
        assert!(!found.contains(&me));
        assert_eq!(parent, Some(me));
        assert_eq!(ppid(i32::MAX), None);
    }
}
