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
