//! `rprof run --subprocesses`: the captures of the processes the program
//! starts, each a [`Session`] on the ring the process announced (see
//! `rprof_controller::follow`), and their merge into one profile.

use rprof_controller::follow;
use rprof_reader::{Capture, Ring, Session};
use rprof_stats::{CallStats, FuncId, Function, FunctionStats, Profile};
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
    pub ended: Option<String>,
}

/// Every followed process.
pub struct Children {
    /// The announce channels and the `sitecustomize` zip (kept open for
    /// as long as children may start).
    pub setup: follow::Children,
    pub procs: Vec<Followed>,
    want_paths: Option<rprof_stats::PathLimits>,
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            let s: Vec<String> = b
                .split(|&c| c == 0)
                .filter(|p| !p.is_empty())
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            let s = s.join(" ").split_whitespace().collect::<Vec<_>>().join(" ");
            if s.chars().count() > 80 {
                let cut: String = s.chars().take(77).collect();
                format!("{cut}...")
            } else {
                s
            }
        })
        .unwrap_or_default()
}

fn signal_name(sig: i32) -> String {
    match sig {
        1 => "SIGHUP".into(),
        2 => "SIGINT".into(),
        6 => "SIGABRT".into(),
        9 => "SIGKILL".into(),
        11 => "SIGSEGV".into(),
        15 => "SIGTERM".into(),
        _ => format!("signal {sig}"),
    }
}

impl Children {
    pub fn new(setup: follow::Children, want_paths: Option<rprof_stats::PathLimits>) -> Self {
        Children {
            setup,
            procs: Vec::new(),
            want_paths,
        }
    }

    /// Takes the new announcements, drains every ring, notes which
    /// processes ended. Returns the words read.
    pub fn poll(&mut self) -> usize {
        while let Ok(Some(a)) = self.setup.announcements.try_recv() {
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
        let mut read = 0;
        for p in &mut self.procs {
            if p.ended.is_some() {
                continue;
            }
            read += p.session.drain().unwrap_or(0);
            if !rprof_controller::attach::alive(p.pid) {
                p.ended = Some(match rprof_controller::attach::exit_status(p.pid) {
                    Some(ws) if ws & 0x7f != 0 => {
                        format!("was killed by {}", signal_name(ws & 0x7f))
                    }
                    Some(ws) => format!("exited with status {}", (ws >> 8) & 0xff),
                    None => "exited".into(),
                });
                // It can write no more: what it wrote and had not
                // published yet is read too.
                p.session.take_unpublished();
            } else if p.session.stopped() {
                p.ended = Some("stopped".into());
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

    /// Ends every capture: `(pid, label, how it ended, capture)`.
    pub fn finish(self) -> Vec<(i32, String, Option<String>, Capture)> {
        self.procs
            .into_iter()
            .map(|mut p| {
                while p.session.drain().unwrap_or(0) > 0 {}
                (p.pid, p.label, p.ended, p.session.finish())
            })
            .collect()
    }
}

/// Adds profiles as pstats' `Stats.add` does: per function key, and per
/// caller edge, every count and time is added.
pub fn merge<'a>(profiles: impl IntoIterator<Item = &'a Profile>) -> Profile {
    let mut out = Profile::default();
    let mut index: HashMap<Function, FuncId> = HashMap::new();
    let mut id_of = |out: &mut Profile, f: &Function| -> FuncId {
        *index.entry(f.clone()).or_insert_with(|| {
            out.functions.push(FunctionStats {
                func: f.clone(),
                totals: CallStats::default(),
                callers: Vec::new(),
            });
            (out.functions.len() - 1) as FuncId
        })
    };
    let add = |a: &mut CallStats, b: &CallStats| {
        a.ncalls += b.ncalls;
        a.primitive += b.primitive;
        a.tottime += b.tottime;
        a.cumtime += b.cumtime;
    };
    for p in profiles {
        for f in &p.functions {
            let me = id_of(&mut out, &f.func) as usize;
            add(&mut out.functions[me].totals, &f.totals);
            for (caller, stats) in &f.callers {
                let Some(cf) = p.functions.get(*caller as usize) else {
                    continue;
                };
                let c = id_of(&mut out, &cf.func);
                let edges = &mut out.functions[me].callers;
                match edges.iter_mut().find(|(id, _)| *id == c) {
                    Some((_, s)) => add(s, stats),
                    None => edges.push((c, *stats)),
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_per_key_and_edge() {
        let f = Function::python("a.py", 1, "f");
        let g = Function::python("a.py", 5, "g");
        let stats = |n| CallStats {
            ncalls: n,
            primitive: n,
            tottime: 1.0,
            cumtime: 2.0,
        };
        let p1 = Profile {
            functions: vec![
                FunctionStats {
                    func: f.clone(),
                    totals: stats(3),
                    callers: vec![(1, stats(3))],
                },
                FunctionStats {
                    func: g.clone(),
                    totals: stats(1),
                    callers: vec![],
                },
            ],
        };
        let p2 = Profile {
            functions: vec![
                FunctionStats {
                    func: g.clone(),
                    totals: stats(2),
                    callers: vec![],
                },
                FunctionStats {
                    func: f.clone(),
                    totals: stats(4),
                    callers: vec![(0, stats(4))],
                },
            ],
        };
        let m = merge([&p1, &p2]);
        let mf = m.get(&f).unwrap();
        assert_eq!(mf.totals.ncalls, 7);
        assert_eq!(mf.totals.tottime, 2.0);
        assert_eq!(mf.callers.len(), 1);
        assert_eq!(m.functions[mf.callers[0].0 as usize].func, g);
        assert_eq!(mf.callers[0].1.ncalls, 7);
        assert_eq!(m.get(&g).unwrap().totals.ncalls, 3);
    }
}
