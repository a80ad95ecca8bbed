//! Children of a profiled process (issue 11): `rprof run --subprocesses`,
//! the fork safety of a capture without it, and the controller's
//! follow-children API under `attach`.
//!
//! `tests/targets/subprocs.py` makes children in every way the issue names
//! (os.fork, multiprocessing with fork, forkserver and spawn,
//! ProcessPoolExecutor, subprocess.run of sys.executable); every process
//! calls `counted` a known number of times and writes that number to
//! OUTDIR/PID.count, which is the reference the profiles must match
//! exactly.

use crate::util::{self, describe, Python};
use rprof_abi::{state, FullPolicy, Hook, Mode};
use rprof_controller::follow::Announcements;
use rprof_reader::{clock, Ring, RingConfig, Session};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn script() -> PathBuf {
    util::root().join("tests/targets/subprocs.py")
}

/// `pid -> calls of counted` as the processes wrote them.
fn reference(dir: &Path) -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let Some(pid) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".count"))
            .and_then(|n| n.parse().ok())
        else {
            continue;
        };
        let n: u64 = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| l.trim().parse::<u64>().unwrap())
            .sum();
        out.insert(pid, n);
    }
    out
}

/// Calls of `counted` in a `.prof`, read by the interpreter's pstats.
fn counted_in(py: &Python, prof: &Path) -> u64 {
    util::pstats(py, prof)
        .iter()
        .filter(|((_, _, name), _)| name == "counted")
        .map(|(_, (_, nc, _, _))| *nc)
        .sum()
}

fn rprof_run(
    py: &Python,
    hook: &str,
    follow: bool,
    prof: &Path,
    args: &[&str],
) -> std::process::Output {
    let mut cmd = util::rprof();
    cmd.arg("run").args(["--hook", hook]);
    if follow {
        cmd.arg("--subprocesses");
    }
    cmd.arg("--python")
        .arg(&py.path)
        .arg("-o")
        .arg(prof)
        .arg(script())
        .args(args);
    util::run_for(&mut cmd, util::time_limit())
}

fn hook_of(py: &Python) -> &'static str {
    if py.at_least(3, 12) {
        "monitoring"
    } else {
        "setprofile"
    }
}

/// Without --subprocesses, forked children write nothing into their
/// parent's ring (its counts are exactly its own) and run with every hook
/// removed (they check that themselves, from C: exit 3 otherwise); with
/// it, every child is profiled into a ring of its own and the merged
/// profile adds them up exactly.
#[test]
fn forked_children_never_write_into_the_parents_ring() {
    for py in util::one_per_hook() {
        let hooks: &[&str] = if py.at_least(3, 12) {
            &["monitoring", "setprofile"]
        } else {
            &["setprofile"]
        };
        for hook in hooks {
            let ctx = format!("{} --hook {hook}", py.label());
            let tmp = tempfile::tempdir().unwrap();
            let out_dir = tmp.path().join("counts");
            std::fs::create_dir(&out_dir).unwrap();
            let prof = tmp.path().join("p.prof");
            let out = rprof_run(
                py,
                hook,
                false,
                &prof,
                &["fork", out_dir.to_str().unwrap(), "--check-clean"],
            );
            assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
            let truth = reference(&out_dir);
            assert_eq!(truth.len(), 4, "{ctx}: {truth:?}");
            let parent = truth.values().copied().find(|&n| n == 100);
            assert_eq!(parent, Some(100), "{ctx}: {truth:?}");
            assert_eq!(
                counted_in(py, &prof),
                100,
                "{ctx}: the parent's own calls only"
            );

            std::fs::remove_dir_all(&out_dir).unwrap();
            std::fs::create_dir(&out_dir).unwrap();
            let out = rprof_run(py, hook, true, &prof, &["fork", out_dir.to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("merged the profiles of 4 processes"),
                "{ctx}: {}",
                describe(&out)
            );
            let truth = reference(&out_dir);
            assert_eq!(truth.values().sum::<u64>(), 6100, "{ctx}: {truth:?}");
            assert_eq!(counted_in(py, &prof), 6100, "{ctx}: {}", describe(&out));
        }
    }
}

/// Every way of starting a child the issue names, merged counts exact.
#[test]
fn run_subprocesses_follows_multiprocessing_executors_and_subprocess() {
    for py in util::one_per_hook() {
        let hook = hook_of(py);
        for mode in [
            "mp-fork",
            "mp-forkserver",
            "mp-spawn",
            "executor",
            "subprocess",
        ] {
            let ctx = format!("{} {mode}", py.label());
            let tmp = tempfile::tempdir().unwrap();
            let out_dir = tmp.path().join("counts");
            std::fs::create_dir(&out_dir).unwrap();
            let prof = tmp.path().join("p.prof");
            // `subprocess` also starts a `python -I`, which cannot be
            // profiled: rprof must name it.
            let out = rprof_run(
                py,
                hook,
                true,
                &prof,
                &[mode, out_dir.to_str().unwrap(), "--isolated-too"],
            );
            assert_eq!(out.status.code(), Some(0), "{ctx}: {}", describe(&out));
            if mode == "subprocess" {
                assert!(
                    String::from_utf8_lossy(&out.stderr).contains(
                        "-I -c import time; time.sleep(2)) was not profiled: it runs in isolated mode (-I)"
                    ),
                    "{ctx}: the python -I child is not reported: {}",
                    describe(&out)
                );
            }
            let truth = reference(&out_dir);
            let want: u64 = truth.values().sum();
            let expected = match mode {
                "executor" => 105,
                "subprocess" => 787,
                _ => 1050,
            };
            assert_eq!(want, expected, "{ctx}: the workload's own counts {truth:?}");
            assert_eq!(
                counted_in(py, &prof),
                want,
                "{ctx}: merged ncalls of counted (per process {truth:?}): {}",
                describe(&out)
            );
            // Every process but the main one has its own line.
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.matches("rprof: PID ").count() + 1 >= truth.len(),
                "{ctx}: not every process is reported: {}",
                describe(&out)
            );
        }
    }
}

/// rprof SIGKILLed: a child it was profiling stops recording by itself
/// (its agent sees rprof silent) and runs on unhooked; a child forked
/// afterwards cannot announce itself and runs unhooked from its first
/// event. Both check it from inside.
#[test]
fn children_outlive_a_killed_rprof_unhooked() {
    for py in util::one_per_hook() {
        let ctx = py.label();
        let tmp = tempfile::tempdir().unwrap();
        let out_dir = tmp.path().join("counts");
        std::fs::create_dir(&out_dir).unwrap();
        let mut cmd = util::rprof();
        cmd.args(["run", "--subprocesses", "--python"])
            .arg(&py.path)
            .arg("-o")
            .arg(tmp.path().join("p.prof"))
            .arg(script())
            .args(["orphan", out_dir.to_str().unwrap()]);
        let mut rprof = util::Spawned::spawn("rprof run --subprocesses", &mut cmd);
        let marker = out_dir.to_str().unwrap().to_string();
        let wait = |name: &str, rprof: &util::Spawned| {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !out_dir.join(name).exists() {
                assert!(
                    Instant::now() < deadline,
                    "{ctx}: {name} never appeared: {}",
                    rprof.describe()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        wait("a-ready", &rprof);
        let main_pid: u32 = std::fs::read_to_string(out_dir.join("main.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _main = util::KillOnDrop::new(main_pid, marker);
        util::signal(rprof.pid(), "KILL");
        rprof.wait(Duration::from_secs(10));
        std::fs::write(out_dir.join("go"), "").unwrap();
        wait("result", &rprof);
        let result = std::fs::read_to_string(out_dir.join("result")).unwrap();
        assert_eq!(result, "ok", "{ctx}: {}", rprof.describe());
    }
}

/// The API `attach --subprocesses` builds on: `Target::inject_following`
/// and `Announcements`. Children forked after the attach announce rings of
/// their own; their counts are exact, and the parent's ring has only the
/// parent's calls.
#[test]
fn attach_following_profiles_children_forked_after_the_attach() {
    for py in util::one_per_hook() {
        let ctx = py.label();
        let tmp = tempfile::tempdir().unwrap();
        let out_dir = tmp.path().join("counts");
        std::fs::create_dir(&out_dir).unwrap();
        let mut target = util::Spawned::spawn(
            "subprocs.py forklater",
            py.command()
                .arg(script())
                .args(["forklater", out_dir.to_str().unwrap()]),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while !out_dir.join("ready").exists() {
            assert!(Instant::now() < deadline, "{ctx}: {}", target.describe());
            std::thread::sleep(Duration::from_millis(10));
        }
        let config = RingConfig {
            bytes: 1 << 20,
            clock: clock::preferred(),
            hook: Hook::Auto,
            full_policy: FullPolicy::Wait,
            mode: Mode::Record,
            flags: 0,
        };
        let t = rprof_controller::attach::inspect(target.pid() as i32).unwrap();
        let (ring, _, channel) = t
            .inject_following(
                rprof_controller::shim::RingBytes {
                    total: Ring::file_len(&config),
                    reserved: Ring::reserved_len(&config),
                },
                |f| Ring::create_in(f, Path::new("ring"), config).map_err(|e| e.to_string()),
                Duration::from_secs(10),
            )
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let mut main = Session::new(ring);
        let deadline = Instant::now() + Duration::from_secs(30);
        while main.shim_state() != state::RECORDING {
            main.drain().unwrap();
            assert!(Instant::now() < deadline, "{ctx}: the agent never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut ann = Announcements::new();
        ann.add_channel(channel);
        std::fs::write(out_dir.join("go"), "").unwrap();
        let mut kids: Vec<(i32, Session)> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            main.drain().unwrap();
            while let Some(a) = ann.try_recv().unwrap() {
                let ring = Ring::open_announced(a.ring, Path::new("child ring"))
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                kids.push((a.pid, Session::new(ring)));
            }
            for (_, s) in &mut kids {
                s.drain().unwrap();
            }
            if let Some(st) = target.child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "{ctx}: {}", target.describe());
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(status.success(), "{ctx}: {}", target.describe());
        while let Some(a) = ann.try_recv().unwrap() {
            let ring = Ring::open_announced(a.ring, Path::new("child ring")).unwrap();
            kids.push((a.pid, Session::new(ring)));
        }
        let truth = reference(&out_dir);
        let calls = |c: &rprof_reader::Capture| -> u64 {
            c.profile
                .functions
                .iter()
                .filter(|f| f.func.name == "counted")
                .map(|f| f.totals.ncalls)
                .sum()
        };
        main.take_unpublished();
        assert_eq!(calls(&main.finish()), 7, "{ctx}: the parent's calls only");
        assert_eq!(
            kids.len(),
            2,
            "{ctx}: announced {:?}",
            kids.iter().map(|k| k.0).collect::<Vec<_>>()
        );
        for (pid, mut s) in kids {
            s.take_unpublished();
            let want = truth.get(&(pid as u32)).copied();
            assert_eq!(
                Some(calls(&s.finish())),
                want,
                "{ctx}: child {pid} ({truth:?})"
            );
        }
    }
}
