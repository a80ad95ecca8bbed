//! Shared helpers: finding interpreters and workloads, running rprof and
//! Python, and a guard that ends a child process by PID.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

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

/// Every supported interpreter on this machine, found once. Panics if
/// there is none: a test suite that tests nothing must not pass.
pub fn interpreters() -> &'static [Python] {
    static FOUND: OnceLock<Vec<Python>> = OnceLock::new();
    FOUND.get_or_init(|| {
        let mut seen = std::collections::HashSet::new();
        let mut found = Vec::new();
        for path in candidates() {
            let Ok(real) = path.canonicalize() else {
                eprintln!("skipping {}: not found", path.display());
                continue;
            };
            if !seen.insert(real) {
                continue;
            }
            match version_of(&path) {
                Some((_, _, _, true)) if !FREE_THREADED_SUPPORTED => eprintln!(
                    "not testing {}: free-threaded builds are not supported yet",
                    path.display()
                ),
                Some((a, b, c, ft)) if (a, b, c) >= (3, 8, 0) => found.push(Python {
                    path,
                    version: (a, b, c),
                    free_threaded: ft,
                }),
                Some((a, b, _, _)) => eprintln!(
                    "skipping {}: Python {a}.{b} is not supported (3.8 or newer)",
                    path.display()
                ),
                None => eprintln!("skipping {}: does not run", path.display()),
            }
        }
        // By version, oldest first; the same version keeps discovery order
        // (pyenv before the system's copy), so `last()` is the newest.
        found.sort_by_key(|p| p.version);
        assert!(
            !found.is_empty(),
            "no supported Python interpreter found (looked in $PYENV_ROOT/versions and /usr/bin/python3.N; set RPROF_TEST_PYTHON)"
        );
        found
    })
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

/// Output of a command that must have run, with its stderr on failure.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
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
