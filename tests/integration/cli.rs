//! `rprof run` as a user meets it: the table, the `.prof` file, arguments
//! and exit status passed through, `-m`, clear errors, and what happens when
//! the reader falls behind or dies.

use crate::util::{self, describe, run, KillOnDrop};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the reader-fault tests' rprof runs may take.
const LIMIT: Duration = Duration::from_secs(120);

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn prints_a_sorted_table_with_the_scripts_functions() {
    let dir = tempfile::tempdir().unwrap();
    let s = script(
        dir.path(),
        "t.py",
        "def leaf(x):\n    return len(str(x))\n\ndef main():\n    return sum(leaf(i) for i in range(50))\n\nprint(main())\n",
    );
    for py in util::interpreters() {
        let out = run(util::rprof()
            .args(["run", "-s", "calls", "--python"])
            .arg(&py.path)
            .arg(&s));
        assert!(out.status.success(), "{}: {}", py.label(), describe(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("90\n"),
            "{}: script output first:\n{text}",
            py.label()
        );
        assert!(text.contains("function calls"), "{text}");
        assert!(text.contains("Ordered by: call count"), "{text}");
        // The rows of leaf and len: ncalls is the first column.
        let ncalls = |func: &str| -> Vec<String> {
            text.lines()
                .filter(|l| l.ends_with(func))
                .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
                .collect()
        };
        assert_eq!(ncalls("t.py:1(leaf)"), ["50"], "{text}");
        assert_eq!(ncalls("{built-in method builtins.len}"), ["50"], "{text}");
        assert_eq!(ncalls("{built-in method builtins.sum}"), ["1"], "{text}");
        // The summary goes to stderr, never into the table.
        assert!(stderr(&out).contains("events"), "{}", stderr(&out));
    }
}

#[test]
fn default_order_is_cumulative_time() {
    let dir = tempfile::tempdir().unwrap();
    let s = script(dir.path(), "t.py", "def f():\n    pass\nf()\n");
    for py in util::one_per_hook() {
        let out = run(util::rprof()
            .args(["run", "--python"])
            .arg(&py.path)
            .arg(&s));
        assert!(out.status.success(), "{}", describe(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Ordered by: cumulative time"));
    }
}

#[test]
fn prof_file_loads_in_pstats_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let s = script(
        dir.path(),
        "t.py",
        "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n\nfor _ in range(3):\n    fact(20)\n",
    );
    for py in util::interpreters() {
        let prof = dir.path().join(format!("{}.prof", py.version.1));
        let out = run(util::rprof()
            .args(["run", "--python"])
            .arg(&py.path)
            .arg("-o")
            .arg(&prof)
            .arg(&s));
        assert!(out.status.success(), "{}", describe(&out));
        assert!(out.stdout.is_empty(), "no table with -o");
        let check = run(py
            .command()
            .arg("-c")
            .arg(
                "import pstats, sys\n\
             st = pstats.Stats(sys.argv[1]).stats\n\
             (k, v), = [(k, v) for k, v in st.items() if k[2] == 'fact']\n\
             cc, nc, tt, ct, callers = v\n\
             assert (cc, nc) == (3, 60), (cc, nc)\n\
             assert callers[k][:2] == (57, 3), callers[k]\n\
             print('ok')\n",
            )
            .arg(&prof));
        assert_eq!(
            String::from_utf8_lossy(&check.stdout),
            "ok\n",
            "{}: {}",
            py.label(),
            describe(&check)
        );
    }
}

#[test]
fn argv_path_name_and_exit_status_are_as_python_sets_them() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let s = script(
        &sub,
        "s.py",
        "import sys, os\nprint(sys.argv, sys.path[0], __name__, __file__, sys.modules['__main__'].__name__ == __name__)\nsys.exit(7)\n",
    );
    for py in util::interpreters() {
        let plain = run(py
            .command()
            .current_dir(dir.path())
            .args(["sub/s.py", "a", "-x", "--y"]));
        let ours = run(util::rprof()
            .current_dir(dir.path())
            .args(["run", "-o", "/dev/null", "--python"])
            .arg(&py.path)
            .args(["sub/s.py", "a", "-x", "--y"]));
        assert_eq!(plain.status.code(), Some(7));
        assert_eq!(
            ours.status.code(),
            Some(7),
            "{}: {}",
            py.label(),
            describe(&ours)
        );
        assert_eq!(plain.stdout, ours.stdout, "{}", py.label());
    }
    let _ = s;
}

#[test]
fn killed_by_a_signal_is_reported_as_128_plus_signal() {
    let dir = tempfile::tempdir().unwrap();
    let s = script(
        dir.path(),
        "k.py",
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    );
    for py in util::one_per_hook() {
        let out = run(util::rprof()
            .args(["run", "--python"])
            .arg(&py.path)
            .arg(&s));
        assert_eq!(
            out.status.code(),
            Some(137),
            "{}: {}",
            py.label(),
            describe(&out)
        );
    }
}

#[test]
fn module_mode_matches_cprofile() {
    let workloads = util::root().join("tests/workloads");
    let dir = tempfile::tempdir().unwrap();
    for py in util::interpreters() {
        let plain = run(py.command().current_dir(&workloads).args(["-m", "modpkg"]));
        assert!(plain.status.success(), "{}", describe(&plain));
        let ours = dir.path().join("ours.prof");
        let theirs = dir.path().join("theirs.prof");
        let out = run(util::rprof()
            .current_dir(&workloads)
            .args(["run", "--python"])
            .arg(&py.path)
            .arg("-o")
            .arg(&ours)
            .args(["-m", "modpkg"]));
        assert!(out.status.success(), "{}: {}", py.label(), describe(&out));
        assert_eq!(out.stdout, plain.stdout, "{}", py.label());
        // `python -m cProfile -m` runs the module without `alter_sys`, unlike
        // `python -m`; rprof does what `python -m` does, so the reference is
        // cProfile running the same statement rprof runs.
        let reference = run(py.command().current_dir(&workloads).arg("-c").arg(
            "import cProfile, os, runpy, sys\n\
             sys.argv[:] = ['modpkg']\n\
             sys.path[0] = os.getcwd()\n\
             cProfile.runctx(\"run_module(modname, run_name='__main__', alter_sys=True)\", \
             {'run_module': runpy.run_module, 'modname': 'modpkg'}, None, filename=os.environ['OUT'])\n",
        ).env("OUT", &theirs));
        assert!(reference.status.success(), "{}", describe(&reference));
        let cmp = run(py
            .command()
            .arg(util::root().join("tests/differential/compare.py"))
            .arg("--workload")
            .arg(workloads.join("modpkg"))
            .arg(&ours)
            .arg(&theirs));
        assert!(cmp.status.success(), "{}: {}", py.label(), describe(&cmp));
    }
}

#[test]
fn bad_sort_key_is_one_clear_line_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let s = script(
        dir.path(),
        "t.py",
        &format!("open({:?}, 'w').close()\n", marker.display().to_string()),
    );
    let out = run(util::rprof()
        .args(["run", "-s", "bogus", "--python"])
        .arg(&util::interpreters().last().unwrap().path)
        .arg(&s));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("bogus") && err.contains("cumulative") && err.contains("tottime"),
        "{err}"
    );
    assert!(!marker.exists(), "the script must not run");
}

#[test]
fn missing_script_and_missing_python_are_clear_errors() {
    let out = run(util::rprof().args(["run", "/nonexistent/script.py"]));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("rprof: cannot read the script /nonexistent/script.py"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let dir = tempfile::tempdir().unwrap();
    let s = script(dir.path(), "t.py", "pass\n");
    let out = run(util::rprof()
        .args(["run", "--python", "/nonexistent/python9"])
        .arg(&s));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("--python"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn monitoring_hook_before_312_is_refused_clearly() {
    let Some(old) = util::interpreters().iter().find(|p| !p.at_least(3, 12)) else {
        return util::skip(
            "no Python older than 3.12: the --hook monitoring refusal is not tested",
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let s = script(dir.path(), "t.py", "print('ran')\n");
    let out = run(util::rprof()
        .args(["run", "--hook", "monitoring", "--python"])
        .arg(&old.path)
        .arg(&s));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("3.12") && err.contains("--hook setprofile"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "the script must not run unprofiled");
}

/// A script that makes events for `secs` seconds, writing its PID first
/// and a marker when it ends.
fn busy_script(dir: &Path, secs: f64) -> (PathBuf, PathBuf, PathBuf) {
    let pid = dir.join("pid");
    let done = dir.join("done");
    let s = script(
        dir,
        "busy.py",
        &format!(
            "import os, time\n\
             open({pid:?}, 'w').write(str(os.getpid()))\n\
             def f(x):\n    return x + 1\n\
             n = 0\n\
             gap = 0.0\n\
             last = time.monotonic()\n\
             end = last + {secs}\n\
             while last < end:\n    for i in range(1000):\n        n = f(n)\n    now = time.monotonic()\n    gap = max(gap, now - last)\n    last = now\n\
             open({done:?}, 'w').write('%d %.6f' % (n, gap))\n",
            pid = pid.display().to_string(),
            done = done.display().to_string(),
        ),
    );
    (s, pid, done)
}

fn wait_for(path: &Path, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if path.exists()
            && std::fs::metadata(path)
                .map(|m| m.len() > 0)
                .unwrap_or(false)
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn a_stalled_reader_makes_the_target_wait_and_the_profile_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let s = script(
        dir.path(),
        "calls.py",
        "import os, sys, time\n\
         open(sys.argv[1], 'w').write('go')\n\
         time.sleep(0.3)\n\
         def f(x):\n    return x + 1\n\
         n = 0\n\
         for i in range(300000):\n    n = f(n)\n\
         print(n)\n",
    );
    for py in util::one_per_hook() {
        let sub = dir
            .path()
            .join(format!("{}.{}", py.version.0, py.version.1));
        std::fs::create_dir(&sub).unwrap();
        let go = sub.join("go");
        let prof = sub.join("out.prof");
        let child = util::rprof()
            .args(["run", "--ring-size", "1", "-o"])
            .arg(&prof)
            .arg("--python")
            .arg(&py.path)
            .arg(&s)
            .arg(&go)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut guard = KillOnDrop::new(child.id(), "rprof");
        assert!(wait_for(&go, Duration::from_secs(20)));
        // Freeze the reader while the target fills the 1 MiB ring.
        let pid = child.id().to_string();
        Command::new("kill").args(["-STOP", &pid]).status().unwrap();
        std::thread::sleep(Duration::from_millis(700));
        Command::new("kill").args(["-CONT", &pid]).status().unwrap();
        let out = util::wait_output(child, LIMIT, "rprof run with a stalled reader");
        guard.disarm();
        assert!(out.status.success(), "{}: {}", py.label(), describe(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "300000\n");
        let err = stderr(&out);
        assert!(!err.contains("dropped"), "{err}");
        let waited: u64 = err
            .split("target waited ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no wait count in {err}"));
        assert!(waited > 0, "the target should have waited for room: {err}");
        let stats = util::pstats(py, &prof);
        let f: Vec<_> = stats.iter().filter(|(k, _)| k.2 == "f").collect();
        assert_eq!(f.len(), 1, "{}: {f:?}", py.label());
        assert_eq!(f[0].1 .1, 300_000, "{}", py.label());
    }
}

#[test]
fn dropped_events_are_counted_reported_and_fail_the_run() {
    for py in util::one_per_hook() {
        let dir = tempfile::tempdir().unwrap();
        let (s, pid_file, done) = busy_script(dir.path(), 1.5);
        let child = util::rprof()
            .args(["run", "--ring-size", "1", "--on-full", "drop", "-o"])
            .arg(dir.path().join("out.prof"))
            .arg("--python")
            .arg(&py.path)
            .arg(&s)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut guard = KillOnDrop::new(child.id(), "rprof");
        assert!(wait_for(&pid_file, Duration::from_secs(20)));
        let pid = child.id().to_string();
        Command::new("kill").args(["-STOP", &pid]).status().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        Command::new("kill").args(["-CONT", &pid]).status().unwrap();
        let out = util::wait_output(child, LIMIT, "rprof run --on-full drop");
        guard.disarm();
        assert!(
            done.exists(),
            "{}: the target must finish on its own",
            py.label()
        );
        assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
        let err = stderr(&out);
        let line = err
            .lines()
            .find(|l| l.contains("dropped"))
            .unwrap_or_else(|| panic!("{err}"));
        let n: u64 = line
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(n > 0, "{line}");
    }
}

#[test]
fn the_target_carries_on_when_rprof_is_killed() {
    for py in util::one_per_hook() {
        let dir = tempfile::tempdir().unwrap();
        let (s, pid_file, done) = busy_script(dir.path(), 1.0);
        let mut child = util::rprof()
            .args(["run", "--ring-size", "1", "-o"])
            .arg(dir.path().join("out.prof"))
            .arg("--python")
            .arg(&py.path)
            .arg(&s)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(wait_for(&pid_file, Duration::from_secs(20)));
        let target: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let _guard = KillOnDrop::new(target as u32, s.display().to_string());
        child.kill().unwrap();
        child.wait().unwrap();
        // With the reader gone the ring fills and the target waits for
        // room; the shim gives up after READER_TIMEOUT_NS (1 s) without a
        // heartbeat and lets the target finish its work.
        assert!(
            wait_for(&done, Duration::from_secs(30)),
            "{}: the target hung after rprof was killed",
            py.label()
        );
        let text = std::fs::read_to_string(&done).unwrap();
        let gap: f64 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        // 1 s of silence, plus 0.5 s for the agent's 10 ms polls, taking the
        // GIL and a loaded 2-core machine.
        let timeout = rprof_abi::READER_TIMEOUT_NS as f64 * 1e-9;
        assert!(
            gap <= timeout + 0.5,
            "{}: the target stood still for {gap:.3} s after rprof was killed (the shim should give up after {timeout} s)",
            py.label()
        );
    }
}
