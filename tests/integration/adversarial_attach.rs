//! `rprof attach` under adversity (issue 9): a slow `dlopen` holding the
//! loader's lock, uninterruptible waits, rprof killed at every phase, a
//! tiny `noexec` `/dev/shm`, attach right after detach, a target killed
//! during the capture.
//!
//! Each scenario checks the target's exit status and that it finished its
//! own work correctly (`tests/targets/adversary.py` verifies its results
//! and exits 0 only if all were right), that no thread is left traced or
//! stopped, that nothing of rprof's is left open or mapped where it should
//! not be, and rprof's exit status and message. By default each runs on
//! the oldest and the newest interpreter found (one per hook: setprofile
//! before 3.12, sys.monitoring from 3.12); `scripts/stress.sh` runs the
//! 200-cycle stress loop.

use crate::attach::{
    assert_attached_ok, mapped_rings, oldest_and_newest, proc_report, proc_state, rprof_attach,
    shim_files, signal, start_with, targets_dir, Outcome, Proc, FINISH, READY, RPROF_LIMIT,
};
use crate::util::{self, Python};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Builds `tests/targets/adversary.c` into `dir`: `(slow, vfork)`, the
/// library whose constructor sleeps, and the one with `spin_then_vfork`.
fn native_libs(dir: &Path) -> (PathBuf, PathBuf) {
    let src = targets_dir().join("adversary.c");
    let build = |out: &Path, extra: &[&str]| {
        let o = Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-o"])
            .arg(out)
            .args(extra)
            .arg(&src)
            .output()
            .expect("these tests need a C compiler (cc)");
        assert!(o.status.success(), "cc failed: {}", util::describe(&o));
    };
    let slow = dir.join("libslowctor.so");
    let vfork = dir.join("libvfork.so");
    build(&slow, &["-DSLOW_CTOR"]);
    build(&vfork, &[]);
    (slow, vfork)
}

fn start_target(py: &Python, args: &[&str]) -> Proc {
    start_with(&py.path, &py.label(), "adversary.py", args, false)
}

/// `rprof attach PID ARGS` with `RPROF_TEST_PAUSE_AT=pause`.
fn rprof_paused(pid: i32, pause: &str, args: &[&str]) -> Proc {
    Proc::spawn(
        format!("rprof attach {pid} {} (paused at {pause})", args.join(" ")),
        util::rprof()
            .env("RPROF_TEST_PAUSE_AT", pause)
            .arg("attach")
            .arg(pid.to_string())
            .args(args),
        false,
    )
}

/// Threads of `pid` with a tracer, or stopped.
fn held_threads(pid: i32) -> Vec<String> {
    let mut held = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return held;
    };
    for e in dir.flatten() {
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let get = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let (tracer, state) = (get("TracerPid:"), get("State:"));
        if tracer != "0" || state.starts_with('t') || state.starts_with('T') {
            held.push(format!(
                "task {}: TracerPid {tracer}, {state}",
                e.file_name().to_string_lossy()
            ));
        }
    }
    held
}

/// No thread of `pid` is traced or stopped (the kernel lets go of the
/// threads of a killed tracer within moments).
fn assert_all_threads_free(pid: i32, ctx: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let held = held_threads(pid);
        if held.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ctx}: threads of PID {pid} left traced or stopped: {held:?}\n{}",
            proc_report(pid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// rprof memfds open in `pid`.
fn rprof_fds(pid: i32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|l| l.to_string_lossy().into_owned())
                .filter(|l| l.starts_with("/memfd:rprof-"))
                .collect()
        })
        .unwrap_or_default()
}

/// After a finished attach: no rprof fd open and no ring mapped.
fn assert_nothing_left(pid: i32, ctx: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !mapped_rings(pid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        mapped_rings(pid),
        Vec::<String>::new(),
        "{ctx}: ring mapped"
    );
    assert_eq!(
        rprof_fds(pid),
        Vec::<String>::new(),
        "{ctx}: rprof fds open"
    );
}

/// Waits until an abandoned capture's ring is gone (the shim notices
/// that its reader died within a second or so). A thread that rprof left
/// inside `rprof_attach` finishes it (mapping the ring and starting an
/// agent that will find no reader) moments after rprof died: give it those
/// moments first.
fn wait_rings_gone(pid: i32, ctx: &str) {
    std::thread::sleep(Duration::from_millis(100));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !mapped_rings(pid).is_empty() {
        assert!(
            Instant::now() < deadline,
            "{ctx}: the shim kept the ring of a dead rprof mapped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The target still works: its main thread answers and its work count
/// goes up.
fn assert_working(t: &mut Proc, ctx: &str) {
    crate::attach::assert_progressing(t, ctx);
}

/// One ordinary attach for `secs`, checked.
fn attach_ok(py: &Python, t: &Proc, secs: &str, ctx: &str) -> Outcome {
    let out = rprof_attach(t.pid, &["--duration", secs, "-s", "calls"]).outcome();
    assert_attached_ok(&out, t, py, ctx);
    assert!(
        out.stdout.contains("(fib)"),
        "{ctx}: no fib in the table\n{}",
        out.describe()
    );
    out
}

#[test]
fn slow_dlopen_in_another_thread_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let (slow, _) = native_libs(dir.path());
    for py in oldest_and_newest() {
        let ctx = format!("slow dlopen on {}", py.label());
        let mut t = start_target(py, &["--slow-dlopen", slow.to_str().unwrap()]);
        t.expect_out("dlopen-started", READY);
        t.expect_out("in-constructor", READY);
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let out = attach_ok(py, &t, "0.5", &ctx);
        // Our dlopen waited for the loader's lock, and said so.
        assert!(
            out.stderr.contains("is still inside the injected call"),
            "{ctx}: rprof did not wait for the slow dlopen ({:?})\n{}",
            started.elapsed(),
            out.describe()
        );
        assert_all_threads_free(t.pid, &ctx);
        assert_nothing_left(t.pid, &ctx);
        assert_working(&mut t, &ctx);
        t.finish_ok(&ctx);
    }
}

/// A thread inside a library constructor holds the loader's lock. The
/// safe-point search must see that, and not take the thread's return
/// address into the loader for a stale one: it passes the thread over for
/// the first second and takes it only as a second choice. The main thread
/// spins in native code meanwhile, so that thread is the only candidate.
#[test]
fn a_thread_inside_a_constructor_is_seen_holding_the_loader_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (slow, vfork) = native_libs(dir.path());
    for py in oldest_and_newest() {
        let ctx = format!("constructor thread on {}", py.label());
        let mut t = start_target(
            py,
            &[
                "--slow-dlopen",
                slow.to_str().unwrap(),
                "--spin-main",
                vfork.to_str().unwrap(),
            ],
        );
        t.expect_out("spinning", READY);
        let started = t.expect_out("dlopen-started", READY);
        let tid = started
            .strip_prefix("dlopen-started tid=")
            .unwrap_or_else(|| panic!("{ctx}: {started:?}"))
            .trim()
            .to_string();
        t.expect_out("in-constructor", READY);
        // The main thread gets the GIL back and enters its spin.
        std::thread::sleep(Duration::from_millis(500));
        let out = Proc::spawn(
            format!("RPROF_DEBUG=1 rprof attach {}", t.pid),
            util::rprof()
                .env("RPROF_DEBUG", "1")
                .arg("attach")
                .arg(t.pid.to_string())
                .args(["--duration", "2.5", "-s", "calls"]),
            false,
        )
        .outcome();
        assert_attached_ok(&out, &t, py, &ctx);
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| l.contains(&format!("thread {tid} (")))
            .collect();
        assert!(
            out.stderr.contains("the loader's locks: ")
                && !out.stderr.contains("the loader's locks: not found"),
            "{ctx}: the loader's locks were not found in this glibc\n{}",
            out.describe()
        );
        assert!(
            lines.iter().any(|l| l.contains("passed over for now")),
            "{ctx}: the constructor's thread {tid} was not passed over\n{}",
            out.describe()
        );
        assert!(
            !lines
                .iter()
                .any(|l| l.contains("holds none of the loader's locks")),
            "{ctx}: the constructor's thread {tid} was taken for one that holds no loader lock\n{}",
            out.describe()
        );
        assert_all_threads_free(t.pid, &ctx);
        assert_nothing_left(t.pid, &ctx);
        assert_working(&mut t, &ctx);
        t.finish_ok(&ctx);
    }
}

#[test]
fn rprof_killed_inside_a_slow_injected_call() {
    let dir = tempfile::tempdir().unwrap();
    let (slow, _) = native_libs(dir.path());
    for py in oldest_and_newest() {
        let ctx = format!("SIGKILL inside a slow dlopen on {}", py.label());
        let mut t = start_target(py, &["--slow-dlopen", slow.to_str().unwrap()]);
        t.expect_out("dlopen-started", READY);
        t.expect_out("in-constructor", READY);
        std::thread::sleep(Duration::from_millis(100));
        // Call 3 is the dlopen of the shim (after the two memfds).
        let mut r = rprof_paused(t.pid, "call#3", &["--duration", "5"]);
        r.expect_err("rprof: test: paused at call#3", READY);
        std::thread::sleep(Duration::from_millis(200));
        signal(r.pid, "KILL");
        let st = r.finish(RPROF_LIMIT);
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&st),
            Some(9),
            "{ctx}"
        );
        // The thread finishes the call by itself (once the slow
        // constructor lets go of the lock) and carries on.
        assert_all_threads_free(t.pid, &ctx);
        assert_working(&mut t, &ctx);
        // A later attach cleans up what the killed one left open.
        attach_ok(py, &t, "0.3", &format!("{ctx}, then attach again"));
        assert_nothing_left(t.pid, &ctx);
        t.finish_ok(&ctx);
    }
}

#[test]
fn rprof_killed_or_interrupted_at_every_phase() {
    let phases = [
        "seized",
        "caught",
        "call#1",
        "call#2",
        "call#3",
        "call#4",
        "recording",
        "stopping",
    ];
    for py in oldest_and_newest() {
        let mut t = start_target(py, &[]);
        t.expect_out("ready", READY);
        for phase in phases {
            for sig in ["KILL", "HUP", "INT", "TERM"] {
                let ctx = format!("SIG{sig} at {phase} on {}", py.label());
                let mut r = rprof_paused(t.pid, phase, &["--duration", "5", "-s", "calls"]);
                let paused = format!("rprof: test: paused at {phase}");
                // Calls beyond the ones this attach makes are never reached.
                let optional = phase == "call#3" || phase == "call#4";
                let reached = if optional {
                    wait_line_or_exit(&mut r, &paused)
                } else {
                    r.expect_err(&paused, READY);
                    true
                };
                if reached {
                    signal(r.pid, sig);
                }
                let out = r.outcome();
                let code = out.status.code();
                if !reached {
                    assert_eq!(code, Some(0), "{ctx}: {}", out.describe());
                } else if sig == "KILL" {
                    assert_eq!(
                        std::os::unix::process::ExitStatusExt::signal(&out.status),
                        Some(9),
                        "{ctx}: {}",
                        out.describe()
                    );
                } else if phase == "recording" || phase == "stopping" {
                    // The capture ends cleanly and is reported.
                    assert_attached_ok(&out, &t, py, &ctx);
                } else {
                    assert_eq!(code, Some(130), "{ctx}: {}", out.describe());
                    let msg = format!(
                        "rprof: interrupted while attaching to PID {}; the target was left as it was",
                        t.pid
                    );
                    assert!(
                        out.stderr.lines().any(|l| l == msg),
                        "{ctx}: {}",
                        out.describe()
                    );
                }
                assert_all_threads_free(t.pid, &ctx);
                assert!(
                    matches!(proc_state(t.pid), Some('R' | 'S')),
                    "{ctx}: {}",
                    proc_report(t.pid)
                );
                if sig == "KILL" {
                    wait_rings_gone(t.pid, &ctx);
                } else {
                    assert_nothing_left(t.pid, &ctx);
                }
                assert_working(&mut t, &ctx);
            }
        }
        let ctx = format!("after every phase on {}", py.label());
        attach_ok(py, &t, "0.3", &ctx);
        assert_nothing_left(t.pid, &ctx);
        assert_eq!(shim_files(t.pid).len(), 1, "{ctx}: one shim, reused");
        t.finish_ok(&ctx);
    }
}

/// Waits for a stderr line starting with `prefix`; false if rprof exits
/// first.
fn wait_line_or_exit(r: &mut Proc, prefix: &str) -> bool {
    let deadline = Instant::now() + READY;
    while Instant::now() < deadline {
        if r.has_err_line(prefix) {
            return true;
        }
        if r.exited() {
            return r.has_err_line(prefix);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("{}: neither paused nor exited", r.describe());
}

#[test]
fn uninterruptible_waits_during_attach() {
    let dir = tempfile::tempdir().unwrap();
    let (_, vfork) = native_libs(dir.path());
    for py in oldest_and_newest() {
        let ctx = format!("vfork (state D) on {}", py.label());
        let mut t = start_target(py, &["--vfork", vfork.to_str().unwrap()]);
        t.expect_out("ready", READY);
        for i in 0..3 {
            let ctx = format!("{ctx}, attach {i}");
            attach_ok(py, &t, "0.3", &ctx);
            assert_all_threads_free(t.pid, &ctx);
            assert_nothing_left(t.pid, &ctx);
        }
        assert_working(&mut t, &ctx);
        t.finish_ok(&ctx);
    }
}

#[test]
fn attach_right_after_detach_ten_times() {
    for py in oldest_and_newest() {
        let mut t = start_target(py, &[]);
        t.expect_out("ready", READY);
        for i in 0..10 {
            let ctx = format!(
                "attach {i} right after the previous detach on {}",
                py.label()
            );
            attach_ok(py, &t, "0.1", &ctx);
            assert_nothing_left(t.pid, &ctx);
        }
        assert_all_threads_free(t.pid, "after ten attaches");
        t.finish_ok(&format!("ten attaches on {}", py.label()));
    }
}

#[test]
fn target_killed_during_the_capture_is_exit_4() {
    for py in oldest_and_newest() {
        for (sig, how) in [
            ("KILL", "was killed by SIGKILL"),
            ("SEGV", "crashed with SIGSEGV"),
        ] {
            let ctx = format!("target sent SIG{sig} during the capture on {}", py.label());
            let mut t = start_target(py, &["--attached-at-exit"]);
            t.expect_out("ready", READY);
            let mut r = rprof_attach(t.pid, &["-s", "calls"]);
            r.expect_err("rprof: attached to PID", READY);
            std::thread::sleep(Duration::from_millis(200));
            signal(t.pid, sig);
            // The target is our child: it stays a zombie until we wait, so
            // rprof can read how it ended.
            let out = r.outcome();
            let st = t.finish(FINISH);
            assert!(!st.success(), "{ctx}");
            assert_eq!(out.status.code(), Some(4), "{ctx}: {}", out.describe());
            let want = format!(
                "rprof: PID {} {how} during the capture; writing what was captured",
                t.pid
            );
            assert!(
                out.stderr.lines().any(|l| l == want),
                "{ctx}: expected {want:?}\n{}",
                out.describe()
            );
        }
    }
}

#[test]
fn no_file_anywhere_with_a_tiny_noexec_dev_shm() {
    // A container's /dev/shm: small and noexec; /tmp noexec too.
    let setup = "mount -t tmpfs -o size=4M,noexec,nosuid,nodev tmpfs /dev/shm \
                 && mount -t tmpfs -o noexec,nosuid,nodev tmpfs /tmp";
    let probe = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", setup])
        .output()
        .expect("this test needs unshare (util-linux)");
    assert!(
        probe.status.success(),
        "this test needs to mount tmpfs in a new mount namespace (root): {}",
        util::describe(&probe)
    );
    for py in oldest_and_newest() {
        let ctx = format!("4 MiB noexec /dev/shm on {}", py.label());
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c"])
            .arg(format!("{setup} && exec \"$0\" \"$@\""))
            .arg(&py.path)
            .arg(targets_dir().join("adversary.py"))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("PYTHONPATH");
        let mut t = Proc::spawn(ctx.clone(), &mut cmd, false);
        t.expect_out("ready", READY);
        // The default ring (32 MiB) is far larger than that /dev/shm.
        let mut r = rprof_attach(t.pid, &["-s", "calls"]);
        r.expect_err("rprof: attached to PID", READY);
        let listing = |d: &str| -> Vec<String> {
            std::fs::read_dir(format!("/proc/{}/root{d}", t.pid))
                .map(|e| {
                    e.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_else(|e| vec![format!("unreadable: {e}")])
        };
        assert_eq!(listing("/dev/shm"), Vec::<String>::new(), "{ctx}");
        assert_eq!(listing("/tmp"), Vec::<String>::new(), "{ctx}");
        std::thread::sleep(Duration::from_millis(300));
        signal(r.pid, "INT");
        let out = r.outcome();
        assert_attached_ok(&out, &t, py, &ctx);
        assert!(out.stdout.contains("(fib)"), "{ctx}: {}", out.describe());
        assert_eq!(listing("/dev/shm"), Vec::<String>::new(), "{ctx}");
        assert_eq!(listing("/tmp"), Vec::<String>::new(), "{ctx}");
        assert_all_threads_free(t.pid, &ctx);
        assert_nothing_left(t.pid, &ctx);
        t.finish_ok(&ctx);
    }
}

/// 200 attach/detach cycles against each target state, with random detach
/// points (a duration, SIGINT or SIGKILL of rprof at a random moment).
/// Run by `scripts/stress.sh` (`RPROF_STRESS=1`).
#[test]
#[ignore = "stress loop: run scripts/stress.sh"]
fn stress_attach_detach_cycles() {
    let cycles: u32 = std::env::var("RPROF_STRESS_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().unwrap();
    let (_, vfork) = native_libs(dir.path());
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id());
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for py in oldest_and_newest() {
        for args in [vec![], vec!["--vfork", vfork.to_str().unwrap()]] {
            let label = format!("{} {}", py.label(), args.join(" "));
            let mut t = start_target(py, &args);
            t.expect_out("ready", READY);
            for i in 0..cycles {
                let ctx = format!("cycle {i} on {label}");
                let ms = 1 + rand(300);
                match rand(3) {
                    0 => {
                        let secs = format!("{:.3}", ms as f64 / 1000.0);
                        attach_ok(py, &t, &secs, &ctx);
                    }
                    how => {
                        let mut r = rprof_attach(t.pid, &["-s", "calls"]);
                        std::thread::sleep(Duration::from_millis(ms));
                        signal(r.pid, if how == 1 { "INT" } else { "KILL" });
                        let out = r.outcome();
                        assert!(
                            matches!(out.status.code(), Some(0 | 130 | 18) | None),
                            "{ctx}: {}",
                            out.describe()
                        );
                        if how == 2 {
                            wait_rings_gone(t.pid, &ctx);
                        }
                    }
                }
                assert_all_threads_free(t.pid, &ctx);
                assert!(
                    matches!(proc_state(t.pid), Some('R' | 'S' | 'D')),
                    "{ctx}: {}",
                    proc_report(t.pid)
                );
            }
            assert_working(&mut t, &label);
            attach_ok(py, &t, "0.2", &label);
            assert_nothing_left(t.pid, &label);
            t.finish_ok(&label);
        }
    }
}
