//! Adversarial scenarios for the shim, the reader and the launcher (issue
//! 9): a capture that stops while a callback is suspended in Python code, a
//! reader that dies with the ring full (in time namespaces both ways), a
//! fork while recording, sub-interpreters, a hostile ring, and the
//! fidelity of `rprof run` against plain `python`.
//!
//! Each test runs on every interpreter found (and both hooks where they
//! differ), starts its own processes and ends them by PID.

use crate::util::{self, Python};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn script(name: &str) -> PathBuf {
    util::root().join("tests/adversarial").join(name)
}

/// The hooks worth testing on `py`.
fn hooks(py: &Python) -> Vec<&'static str> {
    if py.at_least(3, 12) {
        vec!["monitoring", "setprofile"]
    } else {
        vec!["setprofile"]
    }
}

/// Runs `cmd` to completion, killing it (by PID) after `limit`.
fn run_limited(cmd: &mut Command, limit: Duration, ctx: &str) -> Output {
    let marker = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{ctx}: cannot start {cmd:?}: {e}"));
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    let watchdog = std::thread::spawn(move || {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if d.load(std::sync::atomic::Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        util::signal(pid, "KILL");
        true
    });
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let killed = watchdog.join().unwrap();
    let _ = marker;
    assert!(
        !killed,
        "{ctx}: did not finish within {limit:?}\n{}",
        util::describe(&out)
    );
    out
}

fn rprof_run(py: &Python, hook: &str, args: &[&str]) -> Command {
    let mut c = util::rprof();
    c.arg("run")
        .arg("--python")
        .arg(&py.path)
        .args(["--hook", hook])
        .args(args);
    c
}

// ---------------------------------------------------------------------------
// Item 4: stop while a callback is suspended in Python code.

#[test]
fn stop_while_a_callback_is_suspended_in_python() {
    for py in util::interpreters() {
        for hook in hooks(py) {
            let ctx = format!("{} --hook {hook}", py.label());
            let s = script("suspended_label.py");
            let out = run_limited(
                rprof_run(py, hook, &[]).arg(&s),
                Duration::from_secs(60),
                &ctx,
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{ctx}: the target must survive a stop during a suspended callback\n{}",
                util::describe(&out)
            );
            assert!(stdout.contains("done"), "{ctx}\n{}", util::describe(&out));
        }
    }
}

// ---------------------------------------------------------------------------
// Item 5: reader liveness across time namespaces; item 15: drop never waits.

/// A temporary directory of the test's own.
fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rprof-adv-")
        .tempdir()
        .unwrap()
}

/// A `--python` wrapper that runs `py` in a new time namespace whose
/// `CLOCK_MONOTONIC` is `offset` seconds from the caller's.
fn python_in_time_ns(dir: &std::path::Path, py: &Python, offset: i64) -> PathBuf {
    let p = dir.join(format!("python-ns{offset}"));
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nexec unshare -T --monotonic={offset} {} \"$@\"\n",
            py.path.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn wait_for_file(p: &std::path::Path, limit: Duration) -> Option<String> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Ok(s) = std::fs::read_to_string(p) {
            if !s.is_empty() {
                return Some(s);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Ends a process we did not spawn directly (the target behind `unshare`)
/// by PID, if it still runs `busy.py`.
struct Target(u32);
impl Drop for Target {
    fn drop(&mut self) {
        let cmd = std::fs::read(format!("/proc/{}/cmdline", self.0)).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains("busy.py") {
            util::signal(self.0, "KILL");
        }
    }
}

/// rprof dies (SIGKILL) while the target fills the ring; the target lives
/// in a time namespace whose monotonic clock is 60 s *behind* rprof's (the
/// case where comparing the two clocks never declared the reader dead).
/// The target must notice and finish its own work.
#[test]
fn reader_killed_with_a_full_ring_target_behind_in_time() {
    let py = util::interpreters().last().unwrap();
    let oldest = util::interpreters().first().unwrap();
    for py in [oldest, py] {
        let dir = tempdir();
        let wrapper = python_in_time_ns(dir.path(), py, -60);
        let status = dir.path().join("status");
        let done = dir.path().join("done");
        let ctx = format!("{} (target 60 s behind)", py.label());
        let mut rprof = util::rprof();
        rprof
            .args(["run", "--ring-size", "1", "--python"])
            .arg(&wrapper)
            .arg(script("busy.py"))
            .arg(&status)
            .arg(&done)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = rprof.spawn().unwrap();
        let pid = wait_for_file(&status, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{ctx}: the target did not start"));
        let target = Target(pid.trim().parse().unwrap());
        std::thread::sleep(Duration::from_millis(300));
        util::signal(child.id(), "KILL");
        child.wait().unwrap();
        // The ring fills within milliseconds; the target must see that its
        // reader is gone and go on.
        std::thread::sleep(Duration::from_millis(500));
        std::fs::write(&done, "").unwrap();
        let ok = wait_for_file(&dir.path().join("status.ok"), Duration::from_secs(20));
        drop(target);
        let ok = ok.unwrap_or_else(|| {
            panic!(
                "{ctx}: the target hung after its reader died (a writer waiting for a dead reader)"
            )
        });
        assert!(ok.starts_with("finished"), "{ctx}: {ok}");
    }
}

/// The seconds a capture covered, from rprof's summary line.
fn captured_seconds(stderr: &str) -> f64 {
    stderr
        .split(" over ")
        .nth(1)
        .and_then(|r| r.split(" s ").next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// rprof attaches from a time namespace 60 s *behind* the target's (the
/// case where comparing clocks made the shim think its live reader was
/// silent and stop the capture at once): the capture must cover the whole
/// `-d 1` and be complete.
#[test]
fn attach_from_a_reader_behind_in_time() {
    let py = util::interpreters().last().unwrap();
    let dir = tempdir();
    let status = dir.path().join("status");
    let done = dir.path().join("done");
    let ctx = format!("{} (rprof 60 s behind the target)", py.label());
    let mut tgt = py.command();
    tgt.arg(script("busy.py"))
        .arg(&status)
        .arg(&done)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut tchild = tgt.spawn().unwrap();
    let pid = wait_for_file(&status, Duration::from_secs(30)).expect("target started");
    let target = Target(pid.trim().parse().unwrap());
    let prof = dir.path().join("p.prof");
    let out = run_limited(
        Command::new("unshare")
            .args(["-T", "--monotonic=-60"])
            .arg(env!("CARGO_BIN_EXE_rprof"))
            .args(["attach", pid.trim(), "-d", "1", "--ring-size", "1", "-o"])
            .arg(&prof),
        Duration::from_secs(60),
        &ctx,
    );
    std::fs::write(&done, "").unwrap();
    let st = tchild.wait();
    drop(target);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{ctx}: the capture must be complete\n{}",
        util::describe(&out)
    );
    assert!(
        captured_seconds(&err) > 0.5,
        "{ctx}: the capture ended early (the shim thought rprof was gone)\n{}",
        util::describe(&out)
    );
    assert!(st.unwrap().success(), "{ctx}");
}

/// The target runs 60 s *behind* rprof (the case where comparing clocks
/// never declared a dead reader dead); rprof attaches, then is killed
/// while the target fills the ring. The target must carry on and finish.
#[test]
fn attached_reader_killed_target_behind_in_time() {
    let py = util::interpreters().last().unwrap();
    let dir = tempdir();
    let status = dir.path().join("status");
    let done = dir.path().join("done");
    let ctx = format!("{} (target 60 s behind rprof)", py.label());
    let mut tgt = Command::new("unshare");
    tgt.args(["-T", "--monotonic=-60"])
        .arg(&py.path)
        .arg(script("busy.py"))
        .arg(&status)
        .arg(&done)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut tchild = tgt.spawn().unwrap();
    let pid = wait_for_file(&status, Duration::from_secs(30)).expect("target started");
    let target = Target(pid.trim().parse().unwrap());
    let err = dir.path().join("rprof.err");
    let mut rp = util::rprof();
    rp.args(["attach", pid.trim(), "--ring-size", "1", "-o"])
        .arg(dir.path().join("q.prof"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut rchild = rp.spawn().unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&err)
        .unwrap_or_default()
        .contains("attached to PID")
    {
        assert!(
            Instant::now() < until,
            "{ctx}: the attach did not start: {}",
            std::fs::read_to_string(&err).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    util::signal(rchild.id(), "KILL");
    rchild.wait().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&done, "").unwrap();
    let ok = wait_for_file(&dir.path().join("status.ok"), Duration::from_secs(20));
    let ok = ok.unwrap_or_else(|| panic!("{ctx}: the target hung after rprof was killed"));
    assert!(ok.starts_with("finished"), "{ctx}: {ok}");
    assert!(tchild.wait().unwrap().success(), "{ctx}");
    drop(target);
}

/// With `--on-full drop`, the target never waits, not even for the
/// definitions of new functions, while rprof is stopped (SIGSTOP) and the
/// ring full.
#[test]
fn drop_policy_never_waits() {
    for py in [
        util::interpreters().first().unwrap(),
        util::interpreters().last().unwrap(),
    ] {
        let ctx = py.label();
        let mut c = util::rprof();
        c.args(["run", "--on-full", "drop", "--ring-size", "1", "--python"])
            .arg(&py.path)
            .arg(script("new_functions.py"))
            .arg("6")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = c.spawn().unwrap();
        let pid = child.id();
        std::thread::sleep(Duration::from_millis(700));
        // Long enough for the 1 MiB ring to fill even on a loaded machine
        // (the assertion on exit status 3 checks that it did).
        util::signal(pid, "STOP");
        std::thread::sleep(Duration::from_millis(4000));
        util::signal(pid, "CONT");
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            err.contains("waited 0 times") && !err.contains("stopped recording"),
            "{ctx}: the target waited with --on-full drop (or gave up on rprof)\n{}",
            util::describe(&out)
        );
        // A write that waited for the stopped reader would stall one
        // iteration for a second or more.
        let longest: f64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("longest_iteration "))
            .unwrap_or_else(|| panic!("{ctx}: no report\n{}", util::describe(&out)))
            .trim()
            .parse()
            .unwrap();
        assert!(
            longest < 0.9,
            "{ctx}: one iteration took {longest} s: the target waited for the ring"
        );
        assert_eq!(
            out.status.code(),
            Some(3),
            "{ctx}: events were dropped: the profile is incomplete\n{}",
            util::describe(&out)
        );
    }
}

// ---------------------------------------------------------------------------
// Item 6: fork while recording.

fn ncalls(py: &Python, prof: &std::path::Path, func: &str) -> u64 {
    let out = util::run(py.command().arg("-c").arg(format!(
        "import pstats,sys; s=pstats.Stats(sys.argv[1]).stats; print(sum(v[1] for k,v in s.items() if k[2]=={func:?}))"
    )).arg(prof));
    assert!(out.status.success(), "{}", util::describe(&out));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn forked_child_drops_the_capture() {
    for py in util::interpreters() {
        for hook in hooks(py) {
            let ctx = format!("{} --hook {hook}", py.label());
            let dir = tempdir();
            let prof = dir.path().join("p.prof");
            let out = run_limited(
                rprof_run(py, hook, &["-o"])
                    .arg(&prof)
                    .arg(script("fork_child.py"))
                    .args(["100000", "100000"]),
                Duration::from_secs(120),
                &ctx,
            );
            assert_eq!(
                out.status.code(),
                Some(0),
                "{ctx}\n{}",
                util::describe(&out)
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            let child = stdout
                .lines()
                .find_map(|l| l.strip_prefix("CHILD "))
                .unwrap_or_else(|| panic!("{ctx}: no child report\n{}", util::describe(&out)));
            let parent = stdout
                .lines()
                .find_map(|l| l.strip_prefix("PARENT "))
                .unwrap();
            let child: serde_json::Value = serde_json::from_str(child).unwrap();
            let parent: serde_json::Value = serde_json::from_str(parent).unwrap();
            assert_eq!(
                child["maps"].as_array().unwrap().len(),
                0,
                "{ctx}: the child still maps rprof's ring: {child}"
            );
            assert!(
                child["tools"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|t| t.as_str() != Some("rprof")),
                "{ctx}: the child still has rprof's monitoring tool: {child}"
            );
            assert!(
                !child["threading_hook"].as_str().unwrap().contains("rprof"),
                "{ctx}: the child still has rprof's threading hook: {child}"
            );
            // Only the parent's calls are counted.
            assert_eq!(ncalls(py, &prof, "f"), 100_000, "{ctx}");
            // Where even an empty hook is costly (3.11+), the child runs at
            // unprofiled speed: well below the profiled parent's time.
            if py.at_least(3, 11) {
                let (c, p) = (
                    child["time"].as_f64().unwrap(),
                    parent["time"].as_f64().unwrap(),
                );
                assert!(
                    c < 0.7 * p,
                    "{ctx}: the child is as slow as the profiled parent ({c:.3} s vs {p:.3} s)"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Item 14 (part): `__main__` as plain python makes it.

#[test]
fn run_main_globals_match_plain_python() {
    for py in util::interpreters() {
        let s = script("main_globals.py");
        let mut plain = Command::new(&py.path);
        plain.arg(&s);
        let want = util::run(&mut plain);
        let got = run_limited(
            rprof_run(
                py,
                if py.at_least(3, 12) {
                    "monitoring"
                } else {
                    "setprofile"
                },
                &["-o", "/dev/null", "--format", "pstats"],
            )
            .arg(&s),
            Duration::from_secs(60),
            &py.label(),
        );
        let pick = |o: &Output| -> Vec<String> {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("BUILTINS") || l.starts_with("LOADER"))
                .map(String::from)
                .collect()
        };
        assert_eq!(
            pick(&got),
            pick(&want),
            "{}\n{}",
            py.label(),
            util::describe(&got)
        );
    }
}
