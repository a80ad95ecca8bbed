//! Shared helpers: finding interpreters and workloads, running rprof and
//! Python with a time limit, a guard that ends a child process by PID, and
//! the skip registry.
//!
//! A test that cannot run what it claims to check calls [`skip`] with the
//! reason: under `CI=true` that is a failure; elsewhere the reason is kept
//! and the test binary prints one line at exit, `N skipped: reasons`
//! (`scripts/test.sh` adds it to its closing count).

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Whether this is a CI run (`CI=true`), where every prerequisite must be
/// present and a skip is a failure.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

static SKIPS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static NOT_YET: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Records that a check did not run, and why. Under `CI=true` this fails
/// the calling test instead.
pub fn skip(reason: impl Into<String>) {
    let reason = reason.into();
    assert!(
        !ci(),
        "CI=true and a check cannot run: {reason} (install what it needs in scripts/test.sh)"
    );
    eprintln!("SKIP: {reason}");
    let mut skips = SKIPS.lock().unwrap_or_else(|e| e.into_inner());
    // The same check skipped on several interpreters counts once.
    if !skips.contains(&reason) {
        skips.push(reason);
    }
    drop(skips);
    print_summary_at_exit();
}

/// Records something the suite knowingly does not test yet (not a skip:
/// it does not fail CI), named in the closing summary.
pub fn not_tested_yet(what: impl Into<String>) {
    NOT_YET
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(what.into());
    print_summary_at_exit();
}

extern "C" fn summary() {
    let skips = SKIPS.lock().unwrap_or_else(|e| e.into_inner());
    let not_yet = NOT_YET.lock().unwrap_or_else(|e| e.into_inner());
    if !not_yet.is_empty() {
        eprintln!("not tested yet: {}", not_yet.join("; "));
    }
    eprintln!(
        "{} skipped: {}",
        skips.len(),
        if skips.is_empty() {
            "none".to_string()
        } else {
            skips.join("; ")
        }
    );
}

/// Prints the skip summary when the test binary exits (libtest returns
/// from `main` or calls `exit`, both of which run `atexit` handlers; its
/// output capture does not reach them, so the line is always shown).
fn print_summary_at_exit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        extern "C" {
            fn atexit(f: extern "C" fn()) -> std::ffi::c_int;
        }
        // SAFETY: `summary` is a plain `extern "C" fn()` that lives for the
        // whole program; atexit only stores the pointer.
        unsafe { atexit(summary) };
    });
}

/// An interpreter under test.
#[derive(Clone, Debug)]
pub struct Python {
    pub path: PathBuf,
    pub version: (u32, u32, u32),
    /// A free-threaded build (`Py_GIL_DISABLED`, e.g. `python3.14t`).
    pub free_threaded: bool,
}

impl Python {
    pub fn label(&self) -> String {
        let (a, b, c) = self.version;
        let t = if self.free_threaded { "t" } else { "" };
        format!("{a}.{b}.{c}{t} ({})", self.path.display())
    }

    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.version.0, self.version.1) >= (major, minor)
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.path);
        deterministic(&mut c);
        c
    }
}

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The rprof binary under test.
pub fn rprof() -> Command {
    default_signals();
    let mut c = Command::new(env!("CARGO_BIN_EXE_rprof"));
    deterministic(&mut c);
    c
}

/// Makes every Python run of a comparison start from the same state: a
/// fixed hash seed, and `tests/differential/preload` on the path, whose
/// `sitecustomize` imports the same modules under every launcher (so a
/// workload's imports are cache hits everywhere) and turns off the cyclic
/// garbage collector (whose timing depends on the launcher's allocations).
fn deterministic(c: &mut Command) {
    c.env("PYTHONHASHSEED", "0")
        .env("PYTHONPATH", root().join("tests/differential/preload"))
        .env_remove("PYTHONSTARTUP")
        .env_remove("PYTHONPROFILEIMPORTTIME");
}

/// Whether the suite runs free-threaded builds yet. Until the shim
/// supports them, `rprof` refuses them (tested on its own) and the suite
/// names the build it left out.
pub const FREE_THREADED_SUPPORTED: bool = true;

fn version_of(path: &Path) -> Option<(u32, u32, u32, bool)> {
    let out = Command::new(path)
        .args([
            "-c",
            "import sys, sysconfig; print('%d %d %d %d' % (sys.version_info[:3] + (int(bool(sysconfig.get_config_var('Py_GIL_DISABLED'))),)))",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    let v: Vec<u32> = s
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    (v.len() == 4).then(|| (v[0], v[1], v[2], v[3] == 1))
}

fn candidates() -> Vec<PathBuf> {
    if let Ok(list) = std::env::var("RPROF_TEST_PYTHON") {
        return std::env::split_paths(&list).collect();
    }
    let mut out = Vec::new();
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")));
    if let Some(root) = pyenv {
        if let Ok(dir) = std::fs::read_dir(root.join("versions")) {
            let mut v: Vec<PathBuf> = dir
                .flatten()
                .map(|e| e.path().join("bin/python3"))
                .filter(|p| p.exists())
                .collect();
            v.sort();
            out.extend(v);
        }
    }
    if let Ok(dir) = std::fs::read_dir("/usr/bin") {
        let mut v: Vec<PathBuf> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().and_then(OsStr::to_str).is_some_and(|n| {
                    n.strip_prefix("python3.")
                        .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
                })
            })
            .collect();
        v.sort();
        out.extend(v);
    }
    // Unpacked from ../shared/pythons by scripts/pythons.sh.
    for p in [
        "/opt/cpython-3.14/bin/python3.14",
        "/opt/cpython-3.14t/bin/python3.14t",
        "/opt/debian-python3.15/usr/bin/python3.15",
    ] {
        if Path::new(p).exists() {
            out.push(PathBuf::from(p));
        }
    }
    out
}

/// Every supported interpreter on this machine, found once, oldest first.
/// Panics if there is none: a test suite that tests nothing must not pass.
/// Under `CI=true` it also panics when an interpreter family the suite is
/// meant to cover is missing; elsewhere each missing family is a skip.
/// Gives the test process (and so everything it starts) the default
/// disposition of SIGINT, SIGHUP, SIGQUIT and SIGTERM, once. A suite started
/// as a shell's background job (`.ci/run &`, `nohup`) inherits SIGINT and
/// SIGQUIT ignored; rprof keeps an inherited ignored signal ignored, as a
/// program must (`adversarial_shim::run_is_indistinguishable_from_plain_python`
/// tests that case on purpose), so the tests that press Ctrl-C need the
/// signals a terminal would give them.
pub fn default_signals() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for sig in [libc::SIGINT, libc::SIGHUP, libc::SIGQUIT, libc::SIGTERM] {
            // SAFETY: resetting a disposition to the default has no
            // memory-safety preconditions.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    });
}

pub fn interpreters() -> &'static [Python] {
    default_signals();
    static FOUND: OnceLock<Vec<Python>> = OnceLock::new();
    FOUND.get_or_init(|| {
        print_summary_at_exit();
        let mut seen = std::collections::HashSet::new();
        let mut found = Vec::new();
        let mut free_threaded = Vec::new();
        for path in candidates() {
            let Ok(real) = path.canonicalize() else {
                skip(format!("interpreter {} not found", path.display()));
                continue;
            };
            if !seen.insert(real) {
                continue;
            }
            match version_of(&path) {
                Some((a, b, c, true)) if !FREE_THREADED_SUPPORTED => {
                    eprintln!(
                        "not testing {}: free-threaded builds are not supported yet",
                        path.display()
                    );
                    free_threaded.push(path.clone());
                    not_tested_yet(format!(
                        "free-threaded Python {a}.{b}.{c}t ({}; FREE_THREADED_SUPPORTED is false)",
                        path.display()
                    ));
                }
                Some((a, b, c, ft)) if (a, b, c) >= (3, 8, 0) => found.push(Python {
                    path,
                    version: (a, b, c),
                    free_threaded: ft,
                }),
                // Older ones are candidates only for the too-old tests.
                Some((a, b, _, _)) => eprintln!(
                    "not testing {}: Python {a}.{b} is not supported (3.8 or newer)",
                    path.display()
                ),
                None => skip(format!("interpreter {} does not run", path.display())),
            }
        }
        // By version, oldest first; the same version keeps discovery order
        // (pyenv before the system's copy), so `last()` is the newest.
        found.sort_by_key(|p| p.version);
        assert!(
            !found.is_empty(),
            "no supported Python interpreter found (looked in $PYENV_ROOT/versions and /usr/bin/python3.N; set RPROF_TEST_PYTHON)"
        );
        let missing = missing_families(&found, &free_threaded);
        if !missing.is_empty() {
            let list = missing.join(", ");
            assert!(
                !ci(),
                "CI=true and expected interpreters are missing: {list} (run scripts/pythons.sh; install pyenv's 3.8-3.13 and Debian's python3.11)"
            );
            if std::env::var_os("RPROF_TEST_PYTHON").is_none() {
                skip(format!("interpreters not found: {list}"));
            }
        }
        found
    })
}

/// The interpreter families the suite is meant to cover that are not in
/// `found` (or, for the free-threaded build, not in `free_threaded`).
fn missing_families(found: &[Python], free_threaded: &[PathBuf]) -> Vec<String> {
    let has = |pred: &dyn Fn(&Python) -> bool| found.iter().any(pred);
    let mut missing = Vec::new();
    for minor in 8..=13 {
        if !has(&|p| {
            p.version.0 == 3 && p.version.1 == minor && p.path.to_string_lossy().contains("pyenv")
        }) {
            missing.push(format!("pyenv 3.{minor}"));
        }
    }
    let prefixed = |prefix: &str| has(&|p| p.path.starts_with(prefix));
    if !has(&|p| p.path == Path::new("/usr/bin/python3.11")) {
        missing.push("Debian /usr/bin/python3.11".into());
    }
    if !prefixed("/opt/cpython-3.14/") {
        missing.push("/opt/cpython-3.14".into());
    }
    if !prefixed("/opt/debian-python3.15/") {
        missing.push("/opt/debian-python3.15".into());
    }
    let ft = free_threaded
        .iter()
        .any(|p| p.starts_with("/opt/cpython-3.14t/"))
        || prefixed("/opt/cpython-3.14t/");
    if !ft {
        missing.push("/opt/cpython-3.14t".into());
    }
    missing
}

/// One interpreter per hook: the newest (whose default hook is
/// `sys.monitoring` from 3.12 on) and the newest older than 3.12 (the
/// setprofile hook), for tests that need not run on every version.
pub fn one_per_hook() -> Vec<&'static Python> {
    let all = interpreters();
    let mut v = Vec::new();
    if let Some(p) = all.iter().rev().find(|p| !p.at_least(3, 12)) {
        v.push(p);
    } else {
        skip("no Python older than 3.12: the setprofile-only path is not tested");
    }
    let newest = all.last().unwrap();
    if newest.at_least(3, 12) {
        v.push(newest);
    } else {
        skip("no Python 3.12+: the sys.monitoring hook is not tested");
    }
    v
}

/// The free-threaded builds among the candidates (whether or not the suite
/// runs them), for the tests of how rprof treats them. Panics if none is
/// found without `RPROF_TEST_PYTHON` (run `scripts/pythons.sh`); with it,
/// only the ones it names count, possibly none.
pub fn free_threaded_interpreters() -> Vec<Python> {
    let found: Vec<Python> = candidates()
        .into_iter()
        .filter_map(|path| match version_of(&path) {
            Some((a, b, c, true)) => Some(Python {
                path,
                version: (a, b, c),
                free_threaded: true,
            }),
            _ => None,
        })
        .collect();
    assert!(
        !found.is_empty() || std::env::var_os("RPROF_TEST_PYTHON").is_some(),
        "no free-threaded Python found: run `bash scripts/pythons.sh` to unpack /opt/cpython-3.14t"
    );
    found
}

/// A workload script and the directives in its header comments.
#[derive(Clone, Debug)]
pub struct Workload {
    pub path: PathBuf,
    pub threaded: bool,
    pub min_python: Option<(u32, u32)>,
    pub exit: i32,
    pub args: Vec<String>,
}

impl Workload {
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    pub fn runs_on(&self, py: &Python) -> bool {
        self.min_python.is_none_or(|(a, b)| py.at_least(a, b))
    }
}

/// Every `tests/workloads/*.py`.
pub fn workloads() -> Vec<Workload> {
    let dir = root().join("tests/workloads");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = e.path();
        if path.extension() != Some(OsStr::new("py")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut w = Workload {
            path,
            threaded: false,
            min_python: None,
            exit: 0,
            args: Vec::new(),
        };
        for line in text.lines().take_while(|l| l.starts_with('#')) {
            let Some(d) = line.strip_prefix("# rprof-test:") else {
                continue;
            };
            let mut words = d.split_whitespace();
            match words.next() {
                Some("threaded") => w.threaded = true,
                Some("min-python") => {
                    let v = words.next().unwrap();
                    let (a, b) = v.split_once('.').unwrap();
                    w.min_python = Some((a.parse().unwrap(), b.parse().unwrap()));
                }
                Some("exit") => w.exit = words.next().unwrap().parse().unwrap(),
                Some("args") => w.args = words.map(String::from).collect(),
                _ => {}
            }
        }
        out.push(w);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    assert!(
        out.len() >= 15,
        "the differential corpus has only {} workloads",
        out.len()
    );
    out
}

/// How long any one command of the suite may take before it counts as
/// hung (`RPROF_TEST_TIMEOUT` seconds, default 300).
pub fn time_limit() -> Duration {
    Duration::from_secs(
        std::env::var("RPROF_TEST_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(300),
    )
}

/// Output of a command that must have run, with its stderr on failure.
/// A command still running after [`time_limit`] is killed by its PID and
/// the test fails with what it printed so far.
pub fn run(cmd: &mut Command) -> Output {
    run_for(cmd, time_limit())
}

/// [`run`] with an explicit time limit.
pub fn run_for(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    wait_output(child, limit, &format!("{cmd:?}"))
}

/// Waits for `child` (spawned with piped stdout and stderr) for at most
/// `limit`; on timeout, kills it by PID and panics with its output.
pub fn wait_output(mut child: std::process::Child, limit: Duration, what: &str) -> Output {
    fn drain(s: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut s) = s {
                let _ = s.read_to_end(&mut v);
            }
            v
        })
    }
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                // Ends only this child, by its PID (ours, not yet reaped).
                let _ = child.kill();
                let st = child.wait().ok();
                let o = Output {
                    status: st.unwrap_or_default(),
                    stdout: out.join().unwrap_or_default(),
                    stderr: err.join().unwrap_or_default(),
                };
                panic!(
                    "hung: {what} still ran after {limit:?}; killed PID {}\n{}",
                    child.id(),
                    describe(&o)
                );
            }
        }
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// `(file, line, name) -> (cc, nc, tt, ct)`, as pstats reads a `.prof`.
pub type PstatsMap = std::collections::HashMap<(String, u32, String), (u64, u64, f64, f64)>;

/// The stats of a `.prof` as the interpreter's own `pstats` reads them:
/// `(file, line, name) -> (cc, nc, tt, ct)`. Fails the test when the file
/// cannot be read.
pub fn pstats(py: &Python, prof: &Path) -> PstatsMap {
    let out = run(py
        .command()
        .arg("-c")
        .arg(
            "import json, pstats, sys\n\
             st = pstats.Stats(sys.argv[1]).stats\n\
             print(json.dumps([[f, l, n, cc, nc, tt, ct] for (f, l, n), (cc, nc, tt, ct, _) in st.items()]))\n",
        )
        .arg(prof));
    assert!(
        out.status.success(),
        "{}: pstats cannot read {}: {}",
        py.label(),
        prof.display(),
        describe(&out)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (
                    r[0].as_str().unwrap().to_string(),
                    r[1].as_u64().unwrap() as u32,
                    r[2].as_str().unwrap().to_string(),
                ),
                (
                    r[3].as_u64().unwrap(),
                    r[4].as_u64().unwrap(),
                    r[5].as_f64().unwrap(),
                    r[6].as_f64().unwrap(),
                ),
            )
        })
        .collect()
}

/// A short description of an output for failure messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Ends a process by PID when dropped: tests end only what they started,
/// by PID. Disarm it once the process has been reaped; and since a PID can
/// be reused, it only signals a process whose command line still contains
/// `marker` (a path only our process has).
pub struct KillOnDrop {
    pid: Option<u32>,
    marker: String,
}

impl KillOnDrop {
    pub fn new(pid: u32, marker: impl Into<String>) -> KillOnDrop {
        KillOnDrop {
            pid: Some(pid),
            marker: marker.into(),
        }
    }

    /// The process was waited for: nothing to end.
    pub fn disarm(&mut self) {
        self.pid = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let Some(pid) = self.pid else {
            return;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&self.marker) {
            signal(pid, "KILL");
        }
    }
}

/// Sends signal `name` (e.g. "INT") to `pid`; a process already gone is fine.
pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(std::process::Stdio::null())
        .status();
}

/// The lines a child printed on one stream, filled by a reader thread.
#[derive(Default)]
struct Lines {
    state: Mutex<(Vec<String>, bool)>,
    changed: std::sync::Condvar,
}

impl Lines {
    fn follow(stream: impl Read + Send + 'static) -> std::sync::Arc<Lines> {
        use std::io::BufRead;
        let lines = std::sync::Arc::new(Lines::default());
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                l.state.lock().unwrap().0.push(line);
                l.changed.notify_all();
            }
            l.state.lock().unwrap().1 = true;
            l.changed.notify_all();
        });
        lines
    }

    /// Waits until a line after the first `from` satisfies `want`;
    /// returns its index, or `None` at end of stream or after `limit`.
    fn wait(&self, from: usize, want: &dyn Fn(&str) -> bool, limit: Duration) -> Option<usize> {
        let deadline = Instant::now() + limit;
        let mut st = self.state.lock().unwrap();
        let mut seen = from;
        loop {
            if let Some(i) = st.0[seen..].iter().position(|l| want(l)) {
                return Some(seen + i);
            }
            seen = st.0.len();
            let now = Instant::now();
            if st.1 || now >= deadline {
                return None;
            }
            st = self.changed.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    fn text(&self) -> String {
        self.state.lock().unwrap().0.join("\n")
    }
}

/// A child process with its output followed line by line, so that every
/// wait has a time limit. A wait that times out ends the process by its
/// PID and fails with everything it printed. Dropped while still running,
/// it is ended by PID too.
pub struct Spawned {
    pub child: std::process::Child,
    label: String,
    out: std::sync::Arc<Lines>,
    err: std::sync::Arc<Lines>,
    out_seen: usize,
    err_seen: usize,
    reaped: bool,
    /// Other processes whose output explains a failure of this one.
    pub others: Vec<String>,
}

impl Spawned {
    /// Starts `cmd` with stdin, stdout and stderr piped.
    pub fn spawn(label: impl Into<String>, cmd: &mut Command) -> Spawned {
        let label = label.into();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        let out = Lines::follow(child.stdout.take().unwrap());
        let err = Lines::follow(child.stderr.take().unwrap());
        Spawned {
            child,
            label,
            out,
            err,
            out_seen: 0,
            err_seen: 0,
            reaped: false,
            others: Vec::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed so far, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "--- {} (PID {}) stdout\n{}\n--- {} stderr\n{}",
            self.label,
            self.pid(),
            self.out.text(),
            self.label,
            self.err.text()
        )
    }

    fn fail(&mut self, what: &str) -> ! {
        let msg = format!("{what}\n{}\n{}", self.describe(), self.others.join("\n"));
        self.end();
        panic!("{msg}");
    }

    /// Ends it by PID (if not yet reaped) and reaps it.
    pub fn end(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
    }

    /// Waits for a stdout line equal to `line`.
    pub fn expect_out(&mut self, line: &str, limit: Duration) {
        match self.out.wait(self.out_seen, &|l| l == line, limit) {
            Some(i) => self.out_seen = i + 1,
            None => self.fail(&format!(
                "{}: no line {line:?} on stdout within {limit:?} (or it exited)",
                self.label
            )),
        }
    }

    /// Waits for a stderr line containing `part`.
    pub fn expect_err(&mut self, part: &str, limit: Duration) {
        match self.err.wait(self.err_seen, &|l| l.contains(part), limit) {
            Some(i) => self.err_seen = i + 1,
            None => self.fail(&format!(
                "{}: no line with {part:?} on stderr within {limit:?} (or it exited)",
                self.label
            )),
        }
    }

    pub fn write_stdin(&mut self, data: &[u8]) {
        use std::io::Write;
        if let Some(s) = self.child.stdin.as_mut() {
            let _ = s.write_all(data).and_then(|_| s.flush());
        }
    }

    /// Waits for it to exit within `limit`; a hang fails the test.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => {
                    self.reaped = true;
                    // Let the readers reach the end of the streams.
                    let _ = self.out.wait(0, &|_| false, Duration::from_secs(5));
                    let _ = self.err.wait(0, &|_| false, Duration::from_secs(5));
                    return st;
                }
                Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(5)),
                _ => self.fail(&format!("{}: still running after {limit:?}", self.label)),
            }
        }
    }

    /// Waits for it to exit with `code` within `limit`.
    pub fn expect_exit(&mut self, code: i32, limit: Duration) {
        let st = self.wait(limit);
        if st.code() != Some(code) {
            let msg = format!(
                "{}: exited with {st}, expected {code}\n{}\n{}",
                self.label,
                self.describe(),
                self.others.join("\n")
            );
            panic!("{msg}");
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.end();
    }
}
