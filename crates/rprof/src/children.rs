//! `rprof run --subprocesses`: the captures of the processes the program
//! starts, each a [`Session`] on the ring the process announced (see
//! `rprof_controller::follow`), and their merge into one profile.

use crate::procs::{Ending, Joined, ProcessCapture};
use rprof_controller::follow;
use rprof_reader::{Ring, Session};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// One followed process.
pub struct Followed {
    /// Its pid.
    pub pid: i32,
    /// Its command line when it announced itself.
    pub label: String,
    session: Session,
    /// How it ended, once it did.
    pub ended: Option<Ending>,
}

/// Every followed process.
pub struct Children {
    /// The announce channels and the `sitecustomize` zip (kept open for
    /// as long as children may start).
    pub setup: follow::Children,
    pub procs: Vec<Followed>,
    want_paths: Option<rprof_stats::PathLimits>,
    /// Python descendants of the program's process seen so far and not
    /// announced: pid -> (first seen, last seen, command line, reason).
    unseen: HashMap<i32, Unseen>,
    last_scan: Option<Instant>,
    /// [`MAX_PROCESSES`] was reached (and said).
    full: bool,
}

/// The most processes followed at once.
const MAX_PROCESSES: usize = 1024;

/// A Python below the program that has not announced a ring (yet).
///
/// Only Pythons started with `exec` are reported: a forked child (which
/// shows its parent's command line until it runs `exec`) is followed by
/// the fork mechanism, or runs no Python code at all (`subprocess` between
/// its fork and its exec).
struct Unseen {
    /// A Python started with `exec` (not a fork of its parent).
    started: bool,
    label: String,
    why: String,
}

/// How often the process tree is walked for Pythons that cannot be
/// profiled.
const SCAN_EVERY: Duration = Duration::from_millis(100);

/// The children of `pid` (every thread's), from `/proc/PID/task/*/children`.
fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out
}

/// Why a Python started by the program would not load rprof's
/// `sitecustomize`, from its command line and credentials.
fn why_not_profiled(pid: i32) -> String {
    let args: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect()
        })
        .unwrap_or_default();
    // Interpreter options come before the script, -c or -m.
    for a in args.iter().skip(1) {
        if !a.starts_with('-') || a == "-c" || a == "-m" || a == "-" {
            break;
        }
        if a.starts_with("--") {
            continue;
        }
        for flag in a.chars().skip(1) {
            match flag {
                'I' => return "it runs in isolated mode (-I), which ignores PYTHONPATH".into(),
                'E' => return "it runs with -E, which ignores PYTHONPATH".into(),
                'S' => return "it runs with -S, which skips `site` and so sitecustomize".into(),
                'c' | 'm' | 'W' | 'X' => break,
                _ => {}
            }
        }
    }
    let uid = |p: &str| {
        std::fs::read_to_string(p).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
    };
    if uid(&format!("/proc/{pid}/status")) != uid("/proc/self/status") {
        return "it runs as another user, who cannot open rprof's files".into();
    }
    "it never loaded rprof's sitecustomize (its environment lost PYTHONPATH or RPROF_FOLLOW, or it was started with -I, -E or -S)".into()
}

fn is_python(pid: i32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("python"))
    })
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            let mut s: Vec<String> = b
                .split(|&c| c == 0)
                .filter(|p| !p.is_empty())
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            // A fork of the process `rprof run` started shows the
            // bootstrap (`python -c CODE SHIM RING MODE TARGET ARGS...`):
            // show `python TARGET ARGS...` instead.
            if s.len() >= 7 && s[1] == "-c" && s[2].contains("_rprof_main") {
                let module = s[5] == "module";
                let mut short = vec![s[0].clone()];
                if module {
                    short.push("-m".into());
                }
                short.extend(s.drain(6..));
                s = short;
            }
            // The target controls these bytes: printable ASCII only.
            let s: String = s
                .join(" ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
                .collect();
            if s.chars().count() > 80 {
                let cut: String = s.chars().take(77).collect();
                format!("{cut}...")
            } else {
                s
            }
        })
        .unwrap_or_default()
}

impl Children {
    pub fn new(setup: follow::Children, want_paths: Option<rprof_stats::PathLimits>) -> Self {
        Children {
            setup,
            procs: Vec::new(),
            want_paths,
            unseen: HashMap::new(),
            last_scan: None,
            full: false,
        }
    }

    /// Walks the process tree below `root` (rate-limited) for Pythons that
    /// have not announced a ring.
    pub fn scan(&mut self, root: i32) {
        let now = Instant::now();
        if self
            .last_scan
            .is_some_and(|t| now.duration_since(t) < SCAN_EVERY)
        {
            return;
        }
        self.last_scan = Some(now);
        let mut stack: Vec<(i32, i32)> = children_of(root).into_iter().map(|c| (c, root)).collect();
        let mut seen = 0;
        while let Some((pid, parent)) = stack.pop() {
            seen += 1;
            if seen > 10_000 {
                break;
            }
            stack.extend(children_of(pid).into_iter().map(|c| (c, pid)));
            if self.procs.iter().any(|p| p.pid == pid) {
                self.unseen.remove(&pid);
                continue;
            }
            if !is_python(pid) {
                // A fork that ran `exec` of another program never was a
                // Python. A Python started by `exec` stays reported after
                // it ends: as a zombie (its parent has not reaped it yet)
                // it has no executable to read.
                if self.unseen.get(&pid).is_some_and(|u| !u.started) {
                    self.unseen.remove(&pid);
                }
                continue;
            }
            match self.unseen.get_mut(&pid) {
                Some(u) if u.started => {}
                Some(u) => {
                    // Seen first between its fork and its exec.
                    let label = cmdline(pid);
                    if label != cmdline(parent) {
                        u.started = true;
                        u.label = label;
                        u.why = why_not_profiled(pid);
                    }
                }
                None => {
                    let label = cmdline(pid);
                    self.unseen.insert(
                        pid,
                        Unseen {
                            // A forked child shows its parent's command
                            // line until it runs `exec`.
                            started: label != cmdline(parent),
                            label,
                            why: why_not_profiled(pid),
                        },
                    );
                }
            }
        }
    }

    /// The Pythons below the program that were never profiled, with why:
    /// `(pid, command line, reason)`.
    pub fn not_profiled(&self) -> Vec<(i32, String, String)> {
        let mut v: Vec<_> = self
            .unseen
            .iter()
            .filter(|(pid, u)| u.started && !self.procs.iter().any(|p| p.pid == **pid))
            .map(|(pid, u)| (*pid, u.label.clone(), u.why.clone()))
            .collect();
        v.sort();
        v
    }

    /// Takes the new announcements, drains every ring, notes which
    /// processes ended. Returns the words read.
    pub fn poll(&mut self) -> usize {
        while let Ok(Some(a)) = self.setup.announcements.try_recv() {
            if self.procs.len() >= MAX_PROCESSES {
                if !self.full {
                    self.full = true;
                    eprintln!("rprof: warning: more than {MAX_PROCESSES} processes to profile; the others are not profiled (they run on unhooked once rprof exits)");
                }
                continue;
            }
            {
                {
                    let label = cmdline(a.pid);
                    let what = format!("the ring of PID {}", a.pid);
                    match Ring::open_announced(a.ring, Path::new(&what)) {
                        Ok(ring) => {
                            let mut session = Session::new(ring);
                            if let Some(limits) = self.want_paths {
                                session.record_paths(limits);
                            }
                            self.procs.push(Followed {
                                pid: a.pid,
                                label,
                                session,
                                ended: None,
                            });
                        }
                        Err(e) => eprintln!(
                            "rprof: warning: PID {} ({label}) announced a ring rprof cannot use: {e}",
                            a.pid
                        ),
                    }
                }
            }
        }
        for (pid, why) in self.setup.announcements.take_failures() {
            eprintln!("rprof: warning: PID {pid} was not profiled: {why}");
        }
        let mut read = 0;
        for p in &mut self.procs {
            if p.ended.is_some() {
                continue;
            }
            read += p.session.drain().unwrap_or(0);
            if !rprof_controller::attach::alive(p.pid) {
                p.ended = Some(match rprof_controller::attach::exit_status(p.pid) {
                    Some(ws) if ws & 0x7f != 0 => Ending::Killed(ws & 0x7f),
                    Some(ws) => Ending::Exited((ws >> 8) & 0xff),
                    None => Ending::Unknown,
                });
                // It can write no more: what it wrote and had not
                // published yet is read too.
                p.session.take_unpublished();
            } else if p.session.stopped() {
                p.ended = Some(Ending::Detached);
            }
        }
        read
    }

    /// Whether every followed process has ended.
    pub fn all_ended(&self) -> bool {
        self.procs.iter().all(|p| p.ended.is_some())
    }

    /// After the program's own process ended: gives the others `grace` to
    /// end by themselves, then asks those left to stop (waiting at most
    /// `stop` for them).
    pub fn wind_down(&mut self, grace: Duration, stop: Duration) {
        let until = Instant::now() + grace;
        while !self.all_ended() && Instant::now() < until {
            if self.poll() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for p in &self.procs {
            if p.ended.is_none() {
                p.session.ring().request_stop();
            }
        }
        let until = Instant::now() + stop;
        while !self.all_ended() && Instant::now() < until {
            if self.poll() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.poll();
    }

    /// Ends every capture; says which Pythons below the program could not
    /// be profiled, and why.
    pub fn finish(self) -> Vec<ProcessCapture> {
        for (pid, label, why) in self.not_profiled() {
            eprintln!("rprof: warning: PID {pid} ({label}) was not profiled: {why}");
        }
        self.procs
            .into_iter()
            .map(|mut p| {
                while p.session.drain().unwrap_or(0) > 0 {}
                ProcessCapture {
                    pid: p.pid as u32,
                    title: p.label,
                    joined: Joined::Announced,
                    ending: p.ended.unwrap_or(Ending::Detached),
                    capture: p.session.finish(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Python that cannot be profiled is reported even if a scan sees it
    /// only after it ended and before its parent reaped it (a zombie, whose
    /// `/proc/PID/exe` cannot be read): under load the parent may take a
    /// while.
    #[test]
    fn an_unprofiled_python_stays_reported_as_a_zombie() {
        let me = std::process::id() as i32;
        let mut c = Children::new(follow::Children::new().unwrap(), None);
        let mut py = std::process::Command::new("python3")
            .args(["-I", "-c", "import time; time.sleep(0.3)"])
            .spawn()
            .expect("python3 on PATH");
        let pid = py.id() as i32;
        let reported = |c: &Children| {
            c.not_profiled()
                .iter()
                .any(|(p, _, why)| *p == pid && why.contains("isolated mode"))
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !reported(&c) {
            assert!(Instant::now() < deadline, "python -I never reported");
            c.last_scan = None;
            c.scan(me);
            std::thread::sleep(Duration::from_millis(10));
        }
        // Ended, not reaped: a zombie.
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                !s.rsplit(')')
                    .next()
                    .unwrap_or("")
                    .trim_start()
                    .starts_with('Z')
            })
            .unwrap_or(false)
        {
            assert!(Instant::now() < deadline, "python -I did not end");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!is_python(pid), "a zombie's executable is unreadable");
        c.last_scan = None;
        c.scan(me);
        assert!(
            reported(&c),
            "forgotten once a zombie: {:?}",
            c.not_profiled()
        );
        py.wait().unwrap();
    }
}
