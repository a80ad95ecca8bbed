//! Finding interpreters, running helper scripts, and a test profile that
//! exercises every corner of the format.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use rprof_stats::{CallStats, Function, FunctionStats, Profile};

/// An interpreter to test against.
pub struct Python {
    pub path: PathBuf,
    pub version: (u32, u32),
}

impl std::fmt::Display for Python {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (major, minor) = self.version;
        write!(f, "Python {major}.{minor} ({})", self.path.display())
    }
}

/// `RPROF_TEST_PYTHON` if set, else every `~/.pyenv/versions/*/bin/python3`
/// and `/usr/bin/python3.N`. Panics if there are none: these tests are the
/// point of the crate and must not pass vacuously.
pub fn pythons() -> Vec<Python> {
    let candidates: Vec<PathBuf> = match std::env::var_os("RPROF_TEST_PYTHON") {
        Some(p) => vec![PathBuf::from(p)],
        None => discover(),
    };
    let mut found: Vec<Python> = Vec::new();
    for path in candidates {
        let Ok(canonical) = path.canonicalize() else {
            continue;
        };
        if found
            .iter()
            .any(|p| p.path.canonicalize().ok().as_ref() == Some(&canonical))
        {
            continue;
        }
        let out = python_command(&path)
            .args([
                "-c",
                "import sys; print(sys.version_info[0], sys.version_info[1])",
            ])
            .output();
        let Ok(out) = out else { continue };
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text.split_whitespace().map(str::parse::<u32>);
        if let (true, Some(Ok(major)), Some(Ok(minor))) =
            (out.status.success(), parts.next(), parts.next())
        {
            if major == 3 {
                found.push(Python {
                    path,
                    version: (major, minor),
                });
            }
        }
    }
    assert!(
        !found.is_empty(),
        "no Python 3 interpreter found: install one under ~/.pyenv/versions or as \
         /usr/bin/python3.N, or point RPROF_TEST_PYTHON at one"
    );
    found.sort_by_key(|p| p.version);
    found
}

fn discover() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        let versions = Path::new(&home).join(".pyenv/versions");
        if let Ok(dir) = std::fs::read_dir(versions) {
            for entry in dir.flatten() {
                let exe = entry.path().join("bin/python3");
                if exe.is_file() {
                    out.push(exe);
                }
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/usr/bin") {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_versioned = name.strip_prefix("python3.").is_some_and(|minor| {
                !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit())
            });
            if is_versioned {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// A command for `python` with a UTF-8 environment, whatever the caller's.
pub fn python_command(python: &Path) -> Command {
    let mut cmd = Command::new(python);
    cmd.env("PYTHONIOENCODING", "utf-8")
        .env("PYTHONUTF8", "1")
        .env("LC_ALL", "C.UTF-8")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONSTARTUP");
    cmd
}

/// Runs one of `tests/scripts/*.py` and returns its stdout, or an error
/// with everything it printed.
pub fn run_script(python: &Python, script: &str, args: &[&Path]) -> Result<Vec<u8>, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scripts")
        .join(script);
    let out = python_command(&python.path)
        .arg(&script)
        .args(args)
        .output()
        .map_err(|e| format!("{python}: could not run {}: {e}", script.display()))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "{python}: {} failed ({}):\n{}{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("rprof-format-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Splits `<len>\n<bytes>` records, as the helper scripts print them.
pub fn records(mut out: &[u8]) -> Vec<String> {
    let mut records = Vec::new();
    while !out.is_empty() {
        let nl = out
            .iter()
            .position(|&b| b == b'\n')
            .expect("record length line");
        let len: usize = std::str::from_utf8(&out[..nl]).unwrap().parse().unwrap();
        let body = &out[nl + 1..nl + 1 + len];
        records.push(String::from_utf8(body.to_vec()).expect("UTF-8 table"));
        out = &out[nl + 1 + len..];
    }
    records
}

fn stats(ncalls: u64, primitive: u64, tottime: f64, cumtime: f64) -> CallStats {
    CallStats {
        ncalls,
        primitive,
        tottime,
        cumtime,
    }
}

/// A profile with builtins, recursion (nc != cc), caller edges, counts
/// beyond 2**31 and 2**63, non-ASCII names, functions that collide after
/// `strip_dirs`, sort ties, zero counts, and times that round half-way.
pub fn tricky_profile() -> Profile {
    let f = |file: &str, line, name: &str, totals, callers| FunctionStats {
        func: Function::python(file, line, name),
        totals,
        callers,
    };
    let b = |label: &str, totals, callers| FunctionStats {
        func: Function::builtin(label),
        totals,
        callers,
    };
    Profile {
        functions: vec![
            /* 0 */
            f(
                "/srv/app/main.py",
                1,
                "<module>",
                stats(1, 1, 0.0005, 2.5),
                vec![],
            ),
            /* 1 */
            f(
                "/srv/app/données/fib.py",
                10,
                "fib",
                stats(177, 1, 0.0625, 0.1875),
                vec![
                    (0, stats(1, 1, 0.0005, 0.1875)),
                    (1, stats(176, 0, 0.062, 0.18)),
                ],
            ),
            /* 2 */
            b(
                "<built-in method builtins.len>",
                stats(3_000_000_000, 3_000_000_000, 1.5, 1.5),
                vec![
                    (1, stats(2_999_999_999, 2_999_999_999, 1.25, 1.25)),
                    (0, stats(1, 1, 0.25, 0.25)),
                ],
            ),
            /* 3 */
            b(
                "<method 'append' of 'list' objects>",
                stats(u64::MAX, 1 << 40, 1e-9, 1e-9),
                vec![(0, stats(u64::MAX, 1 << 40, 1e-9, 1e-9))],
            ),
            /* 4 */
            f(
                "/a/util.py",
                5,
                "helper",
                stats(2, 2, 0.0015, 0.0025),
                vec![(0, stats(2, 2, 0.0015, 0.0025))],
            ),
            /* 5 */
            f(
                "/b/util.py",
                5,
                "helper",
                stats(3, 1, 0.001, 0.002),
                vec![(0, stats(1, 1, 0.001, 0.002)), (5, stats(2, 0, 0.0, 0.001))],
            ),
            /* 6 */
            f(
                "/tmp/ß/naïve.py",
                7,
                "naïve_函数",
                stats(4, 4, 0.0, 0.0),
                vec![(0, stats(4, 4, 0.0, 0.0))],
            ),
            /* 7 */
            f(
                "/srv/app/main.py",
                20,
                "tie",
                stats(4, 4, 0.0, 0.0),
                vec![(0, stats(4, 4, 0.0, 0.0))],
            ),
            /* 8 */
            f(
                "/srv/app/main.py",
                9,
                "tie",
                stats(4, 4, 0.0, 0.0),
                vec![(0, stats(4, 4, 0.0, 0.0))],
            ),
            /* 9 */ b("plain label", stats(0, 0, 0.0, 0.0), vec![]),
            /* 10 */ b("<", stats(5, 0, 0.125, 0.375), vec![]),
            /* 11 */
            f(
                "rel/dir/",
                3_000_000_000,
                "weird",
                stats(1, 1, 1234.5678, 98765.4321),
                vec![],
            ),
            /* 12 */ f("~", 1, "<not a builtin>", stats(1, 1, 0.0, 0.0), vec![]),
            /* 13 */
            f(
                "",
                0,
                "",
                stats(6, 6, 0.0005, 0.0015),
                vec![(13, stats(6, 6, 0.0, 0.0))],
            ),
        ],
    }
}

/// The Python expression `check_pstats.py` compares a loaded stats dict
/// with: a list of `(key, (cc, nc, tt, ct, [(caller, (nc, cc, tt, ct))]))`
/// with floats given by their bits and strings by their UTF-8 bytes, so
/// nothing is lost in spelling.
pub fn python_expected(profile: &Profile) -> String {
    fn key(f: &Function) -> String {
        format!("(S({:?}), {}, S({:?}))", hex(&f.file), f.line, hex(&f.name))
    }
    fn hex(s: &str) -> String {
        s.bytes().fold(String::new(), |mut acc, b| {
            let _ = write!(acc, "{b:02x}");
            acc
        })
    }
    fn float(x: f64) -> String {
        format!("F(0x{:016x})", x.to_bits())
    }
    let mut out = String::from("EXPECTED = [\n");
    for s in &profile.functions {
        let t = &s.totals;
        let _ = write!(
            out,
            "  ({}, ({}, {}, {}, {}, [",
            key(&s.func),
            t.primitive,
            t.ncalls,
            float(t.tottime),
            float(t.cumtime)
        );
        for (id, c) in &s.callers {
            let _ = write!(
                out,
                "({}, ({}, {}, {}, {})), ",
                key(&profile.functions[*id as usize].func),
                c.ncalls,
                c.primitive,
                float(c.tottime),
                float(c.cumtime)
            );
        }
        out.push_str("])),\n");
    }
    out.push_str("]\n");
    out
}

/// `1234567` as inferno prints counts: `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
