//! `rprof attach --subprocesses`: a process tree profiled as one capture.
//!
//! * The merge is pstats' own: rprof's merge of synthetic profiles equals,
//!   float for float, what `pstats.Stats.add` makes of the same `.prof`
//!   files.
//! * A tree of forked idle workers with a non-Python child (skipped
//!   silently), on every interpreter: `{pid}` files, one per process, add
//!   up to the merged `.prof` (read by the interpreter's own pstats), and
//!   collapsed stacks keep one top frame per process.
//! * A gunicorn service (sync and gthread workers, 3 workers, workers
//!   replaced after 15 requests) under a bounded load on a Unix socket:
//!   the view function's merged ncalls equals the number of responses
//!   received while attached, exactly, and so does each worker's own file;
//!   every request is answered, before, during and after, and no worker
//!   crashes. On one interpreter per hook (`RPROF_TEST_GUNICORN_ALL=1`:
//!   every interpreter). gunicorn comes from `scripts/test-tools.sh`.
//!
//! The load protocol: the load starts after rprof's `attached to N
//! processes` line and every response is received before rprof is asked
//! to stop, so every request counted was served while attached.

use crate::util::{self, describe, run, Python, Spawned};
use rprof_stats::{CallStats, Function, FunctionStats, Profile};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(60);

fn tree_script() -> PathBuf {
    util::root().join("tests/subprocesses/forktree.py")
}

/// Starts `forktree.py` with 3 workers on `py`, quitting when `dir/quit`
/// appears, and waits until it is ready.
fn start_tree(py: &Python, dir: &tempfile::TempDir) -> Spawned {
    let mut target = Spawned::spawn(
        format!("forktree.py on {}", py.label()),
        py.command()
            .arg(tree_script())
            .arg("3")
            .arg("0.005")
            .arg(dir.path().join("quit")),
    );
    target.expect_out("ready", LIMIT);
    target
}

/// Direct children of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(s) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    out
}

/// A `.prof` as the interpreter's own pstats reads it; an empty profile
/// (a process that made no call while attached), which pstats refuses to
/// load, is an empty map.
fn read_prof(py: &Python, path: &Path) -> util::PstatsMap {
    let out = run(py
        .command()
        .arg("-c")
        .arg("import marshal, sys\nsys.exit(0 if marshal.load(open(sys.argv[1], 'rb')) else 3)")
        .arg(path));
    match out.status.code() {
        Some(0) => util::pstats(py, path),
        Some(3) => util::PstatsMap::new(),
        _ => panic!(
            "{}: cannot read {}: {}",
            py.label(),
            path.display(),
            describe(&out)
        ),
    }
}

/// Per-key sum of several pstats maps.
fn sum(maps: &[util::PstatsMap]) -> util::PstatsMap {
    let mut total = util::PstatsMap::new();
    for m in maps {
        for (k, v) in m {
            let e = total.entry(k.clone()).or_insert((0, 0, 0.0, 0.0));
            e.0 += v.0;
            e.1 += v.1;
            e.2 += v.2;
            e.3 += v.3;
        }
    }
    total
}

fn assert_same_stats(merged: &util::PstatsMap, summed: &util::PstatsMap, ctx: &str) {
    assert_eq!(
        merged.keys().collect::<std::collections::BTreeSet<_>>(),
        summed.keys().collect::<std::collections::BTreeSet<_>>(),
        "{ctx}: merged and per-process files name different functions"
    );
    for (k, m) in merged {
        let s = &summed[k];
        assert_eq!((m.0, m.1), (s.0, s.1), "{ctx}: {k:?} calls");
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 + 1e-9 * a.abs().max(b.abs());
        assert!(
            close(m.2, s.2) && close(m.3, s.3),
            "{ctx}: {k:?} times {m:?} vs {s:?}"
        );
    }
}

fn pid_files(dir: &Path, prefix: &str) -> Vec<(u32, PathBuf)> {
    let mut v: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let pid = name
                .strip_prefix(prefix)?
                .strip_suffix(".prof")?
                .parse()
                .ok()?;
            Some((pid, e.path()))
        })
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------
// The merge against pstats.Stats.add.

type Canon = BTreeMap<
    Function,
    (
        (u64, u64, u64, u64),
        BTreeMap<Function, (u64, u64, u64, u64)>,
    ),
>;

fn canon(p: &Profile) -> Canon {
    let bits = |c: &CallStats| {
        (
            c.ncalls,
            c.primitive,
            c.tottime.to_bits(),
            c.cumtime.to_bits(),
        )
    };
    p.functions
        .iter()
        .map(|f| {
            let callers = f
                .callers
                .iter()
                .map(|(id, c)| (p.functions[*id as usize].func.clone(), bits(c)))
                .collect();
            (f.func.clone(), (bits(&f.totals), callers))
        })
        .collect()
}

#[test]
fn merge_is_pstats_stats_add() {
    let py = util::interpreters().last().unwrap();
    let cs = |n, p, t, c| CallStats {
        ncalls: n,
        primitive: p,
        tottime: t,
        cumtime: c,
    };
    let main = Function::python("/srv/app.py", 1, "main");
    let view = Function::python("/srv/app.py", 7, "view");
    let fib = Function::python("/srv/app.py", 12, "fib");
    let len = Function::builtin("<built-in method builtins.len>");
    let f = |func: &Function, totals, callers| FunctionStats {
        func: func.clone(),
        totals,
        callers,
    };
    // Overlapping keys, keys in different orders, recursive edges, times
    // whose sums round differently in different orders.
    let parts = vec![
        Profile {
            functions: vec![
                f(&main, cs(1, 1, 0.1, 0.7), vec![]),
                f(&view, cs(3, 3, 0.2, 0.6), vec![(0, cs(3, 3, 0.2, 0.6))]),
                f(&len, cs(6, 6, 0.3, 0.3), vec![(1, cs(6, 6, 0.3, 0.3))]),
            ],
        },
        Profile {
            functions: vec![
                f(
                    &fib,
                    cs(15, 1, 0.7, 0.9),
                    vec![(1, cs(1, 1, 0.1, 0.9)), (0, cs(14, 0, 0.6, 1.1))],
                ),
                f(&view, cs(1, 1, 1e-7, 0.9), vec![(2, cs(1, 1, 1e-7, 0.9))]),
                f(&main, cs(1, 1, 0.3, 1.3), vec![]),
            ],
        },
        Profile {
            functions: vec![
                f(&len, cs(2, 2, 0.01, 0.01), vec![(1, cs(2, 2, 0.01, 0.01))]),
                f(&view, cs(2, 2, 0.2, 0.3), vec![(2, cs(2, 2, 0.2, 0.3))]),
                f(&main, cs(1, 1, 0.1, 0.4), vec![]),
            ],
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let path = dir.path().join(format!("p{i}.prof"));
        let mut bytes = Vec::new();
        rprof_format::write_pstats(p, &mut bytes).unwrap();
        std::fs::write(&path, bytes).unwrap();
        files.push(path);
    }
    let out_path = dir.path().join("added.prof");
    let out = run(py
        .command()
        .arg("-c")
        .arg(
            "import pstats, sys\n\
             s = pstats.Stats(sys.argv[2])\n\
             s.add(*sys.argv[3:])\n\
             s.dump_stats(sys.argv[1])\n",
        )
        .arg(&out_path)
        .args(&files));
    assert!(out.status.success(), "{}", describe(&out));
    let added = rprof_format::read_pstats(&std::fs::read(&out_path).unwrap()).unwrap();
    let merged = rprof_stats::merge_profiles(&parts);
    assert_eq!(canon(&merged), canon(&added), "{}", py.label());
    // And pstats' order of keys (first seen first).
    let keys = |p: &Profile| {
        p.functions
            .iter()
            .map(|f| f.func.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&merged), vec![main, view, len, fib]);
    assert!(keys(&added).len() == 4);
}

// ---------------------------------------------------------------------
// A tree of forked idle workers.

#[test]
fn tree_of_workers_gives_pid_files_that_add_up_to_the_merged_profile() {
    for py in util::interpreters() {
        tree_of_workers(py);
    }
}

fn tree_of_workers(py: &Python) {
    let ctx = format!("forktree on {}", py.label());
    let dir = tempfile::tempdir().unwrap();
    let mut target = start_tree(py, &dir);
    let pid = target.pid();
    let mut kids = children(pid);
    kids.sort();
    assert_eq!(kids.len(), 4, "{ctx}: 3 workers and sleep");
    let mut rprof = Spawned::spawn(
        "rprof attach --subprocesses",
        util::rprof()
            .args(["attach", "--subprocesses", "-o"])
            .arg(dir.path().join("all.prof"))
            .arg("-o")
            .arg(dir.path().join("p-{pid}.prof"))
            .arg("-o")
            .arg(dir.path().join("all.collapsed"))
            .arg(pid.to_string()),
    );
    rprof.others.push(target.describe());
    rprof.expect_err(
        &format!("rprof: attached to 4 processes (PID {pid} and 3 below it)"),
        LIMIT,
    );
    std::thread::sleep(Duration::from_millis(300));
    util::signal(rprof.pid(), "INT");
    rprof.expect_exit(0, LIMIT);
    let err = rprof.describe();
    assert!(err.contains("rprof: profiling 4 processes"), "{ctx}: {err}");
    assert!(
        err.contains("rprof: detached from 4 processes"),
        "{ctx}: {err}"
    );
    // The non-Python child (sleep) is skipped silently.
    assert!(!err.contains("warning"), "{ctx}: {err}");
    std::fs::write(dir.path().join("quit"), b"").unwrap();
    target.expect_exit(0, LIMIT);

    let files = pid_files(dir.path(), "p-");
    let file_pids: Vec<u32> = files.iter().map(|f| f.0).collect();
    assert_eq!(
        file_pids.len(),
        4,
        "{ctx}: one file per Python process: {file_pids:?}"
    );
    assert!(file_pids.contains(&pid), "{ctx}: {file_pids:?}");
    let per: Vec<util::PstatsMap> = files.iter().map(|(_, f)| read_prof(py, f)).collect();
    let merged = util::pstats(py, &dir.path().join("all.prof"));
    assert_same_stats(&merged, &sum(&per), &ctx);
    let work = merged
        .iter()
        .find(|(k, _)| k.2 == "work")
        .unwrap_or_else(|| panic!("{ctx}: no work() in {merged:?}"));
    assert!(work.1 .1 >= 3, "{ctx}: {work:?}");
    // Every worker recorded its own calls.
    for ((p, _), m) in files.iter().zip(&per) {
        assert!(
            m.keys().any(|k| k.2 == "work"),
            "{ctx}: PID {p} has no work(): {m:?}"
        );
    }
    // Collapsed stacks: one top frame per process, naming it.
    let collapsed = std::fs::read_to_string(dir.path().join("all.collapsed")).unwrap();
    let mut tops: Vec<&str> = collapsed
        .lines()
        .map(|l| l.split(';').next().unwrap())
        .collect();
    tops.sort();
    tops.dedup();
    assert!(tops.len() >= 3, "{ctx}: {tops:?}");
    for t in &tops {
        assert!(t.contains("forktree") && t.contains("(pid "), "{ctx}: {t}");
        let p: u32 = t
            .rsplit("(pid ")
            .next()
            .unwrap()
            .trim_end_matches(')')
            .parse()
            .unwrap();
        assert!(file_pids.contains(&p), "{ctx}: {t}");
    }
}

#[test]
fn a_worker_killed_mid_capture_is_reported_and_the_others_are_complete() {
    let py = util::interpreters().last().unwrap();
    let ctx = format!("forktree on {}", py.label());
    let dir = tempfile::tempdir().unwrap();
    let mut target = start_tree(py, &dir);
    let pid = target.pid();
    let victim = children(pid)
        .into_iter()
        .find(|k| {
            std::fs::read_to_string(format!("/proc/{k}/comm")).is_ok_and(|c| c.trim() != "sleep")
        })
        .unwrap();
    let mut rprof = Spawned::spawn(
        "rprof attach --subprocesses",
        util::rprof()
            .args(["attach", "--subprocesses", "-o"])
            .arg(dir.path().join("all.prof"))
            .arg("-o")
            .arg(dir.path().join("p-{pid}.prof"))
            .arg(pid.to_string()),
    );
    rprof.others.push(target.describe());
    rprof.expect_err("rprof: attached to 4 processes", LIMIT);
    std::thread::sleep(Duration::from_millis(200));
    util::signal(victim, "KILL");
    // The parent does not reap it: rprof sees how it ended.
    rprof.expect_err("rprof: profiling 3 processes", LIMIT);
    util::signal(rprof.pid(), "INT");
    rprof.expect_exit(4, LIMIT);
    let err = rprof.describe();
    assert!(
        err.contains(&format!("rprof: PID {victim} ("))
            && err.contains("was killed by SIGKILL during the capture"),
        "{ctx}: {err}"
    );
    std::fs::write(dir.path().join("quit"), b"").unwrap();
    target.expect_exit(0, LIMIT);
    let files = pid_files(dir.path(), "p-");
    assert_eq!(files.len(), 4, "{ctx}: {files:?}\n{err}");
    let per: Vec<util::PstatsMap> = files.iter().map(|(_, f)| read_prof(py, f)).collect();
    let merged = util::pstats(py, &dir.path().join("all.prof"));
    assert_same_stats(&merged, &sum(&per), &ctx);
    for ((p, _), m) in files.iter().zip(&per) {
        if *p != victim {
            assert!(
                m.keys().any(|k| k.2 == "work"),
                "{ctx}: PID {p} has no work(): {m:?}"
            );
        }
    }
}

#[test]
fn a_root_that_is_not_python_has_its_python_children_profiled() {
    let py = util::interpreters().last().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A shell that waits for its Python child (no exec).
    let mut shell = Spawned::spawn(
        "sh -c forktree.py",
        std::process::Command::new("sh")
            .arg("-c")
            .arg("\"$@\"; echo done")
            .arg("sh")
            .arg(&py.path)
            .arg(tree_script())
            .arg("1")
            .arg("0.005")
            .arg(dir.path().join("quit")),
    );
    shell.expect_out("ready", LIMIT);
    let sh = shell.pid();
    let out = run(util::rprof()
        .args(["attach", "--subprocesses", "-d", "0.3", "-o"])
        .arg(dir.path().join("p-{pid}.prof"))
        .arg(sh.to_string()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        err.contains(&format!(
            "rprof: attached to 2 processes (below PID {sh}, which is not CPython)"
        )),
        "{err}"
    );
    assert_eq!(pid_files(dir.path(), "p-").len(), 2, "{err}");
    std::fs::write(dir.path().join("quit"), b"").unwrap();
    shell.expect_out("done", LIMIT);
    shell.wait(LIMIT);

    // A process with no CPython below it: the root's own error (13).
    let mut sleeper = Spawned::spawn("sleep", std::process::Command::new("sleep").arg("30"));
    let out = run(util::rprof()
        .args(["attach", "--subprocesses", "-d", "0.3"])
        .arg(sleeper.pid().to_string()));
    sleeper.end();
    assert_eq!(out.status.code(), Some(13), "{}", describe(&out));
}

#[test]
fn a_python_started_by_exec_is_attached_while_it_runs() {
    let py = util::interpreters().last().unwrap();
    let ctx = format!("spawner on {}", py.label());
    let dir = tempfile::tempdir().unwrap();
    let (go, quit) = (dir.path().join("go"), dir.path().join("quit"));
    let mut target = Spawned::spawn(
        ctx.clone(),
        py.command()
            .arg(util::root().join("tests/subprocesses/spawner.py"))
            .arg(&go)
            .arg(&quit),
    );
    target.expect_out("ready", LIMIT);
    let pid = target.pid();
    let mut rprof = Spawned::spawn(
        "rprof attach --subprocesses",
        util::rprof()
            .args(["attach", "--subprocesses", "-o"])
            .arg(dir.path().join("p-{pid}.prof"))
            .arg(pid.to_string()),
    );
    rprof.expect_err("rprof: attached to 1 process (PID", LIMIT);
    std::fs::write(&go, b"").unwrap();
    // Picked up by the tree walk (no announcement: it is a new program).
    rprof.expect_err("while it ran", LIMIT);
    rprof.expect_err("rprof: profiling 2 processes", LIMIT);
    std::thread::sleep(Duration::from_millis(200));
    util::signal(rprof.pid(), "INT");
    rprof.expect_exit(0, LIMIT);
    let err = rprof.describe();
    std::fs::write(&quit, b"").unwrap();
    target.expect_exit(0, LIMIT);
    let files = pid_files(dir.path(), "p-");
    assert_eq!(files.len(), 2, "{ctx}: {files:?}\n{err}");
    for (p, f) in &files {
        let m = read_prof(py, f);
        assert!(
            m.keys().any(|k| k.2 == "work"),
            "{ctx}: PID {p}: {m:?}\n{err}"
        );
    }
    assert!(err.contains("1 attached while running"), "{ctx}: {err}");
}

#[test]
fn rprof_killed_every_process_lets_go() {
    let py = util::interpreters().last().unwrap();
    let ctx = format!("forktree on {}", py.label());
    let dir = tempfile::tempdir().unwrap();
    let mut target = start_tree(py, &dir);
    let pid = target.pid();
    let mut rprof = Spawned::spawn(
        "rprof attach --subprocesses",
        util::rprof()
            .args(["attach", "--subprocesses"])
            .arg(pid.to_string()),
    );
    rprof.expect_err("rprof: attached to 4 processes", LIMIT);
    std::thread::sleep(Duration::from_millis(200));
    util::signal(rprof.pid(), "KILL");
    rprof.wait(LIMIT);
    let mut procs = children(pid);
    procs.push(pid);
    let maps_ring = |p: &u32| {
        std::fs::read_to_string(format!("/proc/{p}/maps")).is_ok_and(|m| m.contains("rprof-ring-"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while procs.iter().any(maps_ring) {
        assert!(
            std::time::Instant::now() < deadline,
            "{ctx}: a process still maps its ring 20 s after rprof was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every worker still runs.
    for p in &procs {
        assert!(
            std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| !s.contains(") Z")),
            "{ctx}: PID {p} is gone"
        );
    }
    std::fs::write(dir.path().join("quit"), b"").unwrap();
    target.expect_exit(0, LIMIT);
}

// ---------------------------------------------------------------------
// gunicorn.

/// gunicorn's install directory (`scripts/test-tools.sh`), or a skip.
fn gunicorn_path() -> Option<PathBuf> {
    let dir = std::env::var_os("RPROF_TEST_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| util::root().join("target/test-tools"))
        .join("gunicorn");
    if dir.join("gunicorn/__init__.py").exists() {
        Some(dir)
    } else {
        util::skip(format!(
            "gunicorn --subprocesses test: no gunicorn in {} (run scripts/test-tools.sh)",
            dir.display()
        ));
        None
    }
}

/// One HTTP/1.0 request on the Unix socket: the worker's PID, or why not.
fn request(sock: &Path) -> Result<u32, String> {
    let mut s =
        std::os::unix::net::UnixStream::connect(sock).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&resp);
    if !text.starts_with("HTTP/1.1 200") && !text.starts_with("HTTP/1.0 200") {
        return Err(format!("response {text:?}"));
    }
    text.split("\r\n\r\n")
        .nth(1)
        .and_then(|b| b.trim().parse().ok())
        .ok_or_else(|| format!("body of {text:?}"))
}

/// `clients` threads sending `each` requests one after the other: the
/// PID of every response, and why requests failed.
fn load(sock: &Path, clients: usize, each: usize) -> (Vec<u32>, Vec<String>) {
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let sock = sock.to_path_buf();
            std::thread::spawn(move || {
                let mut pids = Vec::new();
                let mut failed = Vec::new();
                for _ in 0..each {
                    match request(&sock) {
                        Ok(p) => pids.push(p),
                        Err(e) => failed.push(e),
                    }
                }
                (pids, failed)
            })
        })
        .collect();
    let mut pids = Vec::new();
    let mut failed = Vec::new();
    for t in threads {
        let (p, f) = t.join().unwrap();
        pids.extend(p);
        failed.extend(f);
    }
    (pids, failed)
}

/// The failed requests that say something about rprof. A gthread worker
/// that reaches max_requests closes the connections it accepted but had
/// not read yet (gunicorn 23 does so without rprof too: 8 of 160 requests
/// here); their requests never reach the app. The client sees a reset, or a
/// broken pipe if the close comes before its request is written.
fn real_failures(class: &str, mut failed: Vec<String>) -> Vec<String> {
    if class == "gthread" {
        failed.retain(|e| !e.contains("Connection reset by peer") && !e.contains("Broken pipe"));
    }
    failed
}

#[test]
fn gunicorn_workers_replaced_during_the_capture_are_counted_exactly() {
    let Some(gpath) = gunicorn_path() else {
        return;
    };
    let all = std::env::var_os("RPROF_TEST_GUNICORN_ALL").is_some();
    let pythons: Vec<&Python> = if all {
        util::interpreters().iter().collect()
    } else {
        util::one_per_hook()
    };
    for py in pythons {
        for class in ["sync", "gthread"] {
            gunicorn(py, &gpath, class);
        }
    }
}

fn gunicorn(py: &Python, gpath: &Path, class: &str) {
    let ctx = format!("gunicorn ({class} workers) on {}", py.label());
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("g.sock");
    let pythonpath = std::env::join_paths([
        gpath.to_path_buf(),
        util::root().join("tests/subprocesses"),
        util::root().join("tests/differential/preload"),
    ])
    .unwrap();
    let mut cmd = py.command();
    cmd.env("PYTHONPATH", pythonpath)
        .args(["-m", "gunicorn", "--workers", "3", "--worker-class", class])
        // (--threads above 1 turns sync workers into gthread ones.)
        .args(["--threads", if class == "gthread" { "2" } else { "1" }])
        .args(["--max-requests", "15", "--max-requests-jitter", "0"])
        .args(["--timeout", "60", "--graceful-timeout", "10", "--bind"])
        .arg(format!("unix:{}", sock.display()))
        .arg("app:app");
    let mut g = Spawned::spawn(ctx.clone(), &mut cmd);
    for _ in 0..3 {
        g.expect_err("Booting worker with pid", LIMIT);
    }
    let master = g.pid();
    // Served before the attach: not counted.
    let (_, failed) = load(&sock, 2, 5);
    let failed = real_failures(class, failed);
    assert_eq!(
        failed,
        Vec::<String>::new(),
        "{ctx}: requests failed before the attach\n{}",
        g.describe()
    );

    let mut rprof = Spawned::spawn(
        format!("rprof attach --subprocesses ({ctx})"),
        util::rprof()
            .args(["attach", "--subprocesses", "-o"])
            .arg(dir.path().join("all.prof"))
            .arg("-o")
            .arg(dir.path().join("w-{pid}.prof"))
            .arg(master.to_string()),
    );
    rprof.expect_err(
        &format!("rprof: attached to 4 processes (PID {master} and 3 below it)"),
        LIMIT,
    );
    // 4 clients x 40 requests: each worker is replaced after 15, so
    // about 10 workers are forked by the (profiled) master meanwhile.
    let (pids, failed) = load(&sock, 4, 40);
    let failed = real_failures(class, failed);
    assert_eq!(
        failed,
        Vec::<String>::new(),
        "{ctx}: requests failed while attached\n{}\n{}",
        rprof.describe(),
        g.describe()
    );
    util::signal(rprof.pid(), "INT");
    rprof.expect_exit(0, LIMIT);
    let err = rprof.describe();

    // The service goes on.
    let (_, failed) = load(&sock, 2, 5);
    let failed = real_failures(class, failed);
    assert_eq!(
        failed,
        Vec::<String>::new(),
        "{ctx}: requests failed after the detach\n{err}"
    );

    let mut served: HashMap<u32, u64> = HashMap::new();
    for p in &pids {
        *served.entry(*p).or_default() += 1;
    }
    assert!(
        served.len() > 3,
        "{ctx}: no worker was replaced during the capture: {served:?}"
    );
    let view_calls = |m: &util::PstatsMap| -> u64 {
        m.iter()
            .filter(|(k, _)| k.2 == "hello_view" && k.0.ends_with("app.py"))
            .map(|(_, v)| v.1)
            .sum()
    };
    let merged = util::pstats(py, &dir.path().join("all.prof"));
    assert_eq!(
        view_calls(&merged),
        pids.len() as u64,
        "{ctx}: hello_view calls in the merged profile vs responses\n{err}"
    );
    let files = pid_files(dir.path(), "w-");
    let per: Vec<util::PstatsMap> = files.iter().map(|(_, f)| read_prof(py, f)).collect();
    assert_same_stats(&merged, &sum(&per), &ctx);
    for (worker, n) in &served {
        let i = files
            .iter()
            .position(|(p, _)| p == worker)
            .unwrap_or_else(|| panic!("{ctx}: no file for worker {worker}\n{err}"));
        assert_eq!(view_calls(&per[i]), *n, "{ctx}: worker {worker}\n{err}");
    }

    // No worker crashed or was killed; the master ends cleanly.
    util::signal(master, "TERM");
    let st = g.wait(LIMIT);
    let log = g.describe();
    for bad in [
        "exited with code",
        "SIGKILL",
        "SIGSEGV",
        "Traceback",
        "WORKER TIMEOUT",
    ] {
        assert!(
            !log.contains(bad),
            "{ctx}: gunicorn says {bad:?}\n{log}\n{err}"
        );
    }
    assert_eq!(st.code(), Some(0), "{ctx}: gunicorn master: {st}\n{log}");
}
