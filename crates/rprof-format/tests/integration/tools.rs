//! Outside tools some checks need: a Python virtual environment with
//! `jsonschema`, `protobuf` and `grpcio-tools` (for `protoc`), and
//! speedscope's published file-format schema from its npm package. Both are
//! set up once per test run under `CARGO_TARGET_TMPDIR` and reused by later
//! runs.
//!
//! When a tool cannot be had (no network to the registries, no `npm`), the
//! checks that need it print why and pass without it, unless
//! `RPROF_TEST_REQUIRE_TOOLS=1`, which makes them fail instead (for CI
//! machines that are known to have them).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::util;

/// The speedscope release whose schema the output is checked against.
const SPEEDSCOPE: &str = "speedscope@1.25.0";

/// Prints why a check could not run, or fails if tools are required.
pub fn skip(check: &str, reason: &str) {
    let required = std::env::var_os("RPROF_TEST_REQUIRE_TOOLS").is_some_and(|v| v == "1");
    assert!(
        !required,
        "{check}: {reason} (RPROF_TEST_REQUIRE_TOOLS=1 forbids skipping)"
    );
    eprintln!("SKIPPED {check}: {reason}");
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("could not run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The interpreter of a virtual environment with `jsonschema`, `protobuf`
/// and `grpcio-tools` installed.
pub fn venv_python() -> Result<PathBuf, String> {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    VENV.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rprof-format-venv");
        let python = dir.join("bin/python");
        let ready = dir.join(".rprof-ready");
        if ready.is_file() && python.is_file() {
            return Ok(python);
        }
        // grpcio-tools needs Python 3.9 or later; take the newest.
        let base = util::pythons()
            .into_iter()
            .rev()
            .find(|p| p.version >= (3, 9))
            .ok_or("no Python 3.9 or later to make a virtual environment with")?;
        run(util::python_command(&base.path)
            .args(["-m", "venv", "--clear"])
            .arg(&dir))
        .map_err(|e| format!("could not create a virtual environment: {e}"))?;
        run(util::python_command(&python).args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            "--timeout",
            "30",
            "--retries",
            "1",
            "jsonschema",
            "protobuf",
            "grpcio-tools",
        ]))
        .map_err(|e| format!("could not install jsonschema, protobuf and grpcio-tools: {e}"))?;
        std::fs::write(&ready, b"").map_err(|e| e.to_string())?;
        Ok(python)
    })
    .clone()
}

/// `file-format-schema.json` from speedscope's npm package.
pub fn speedscope_schema() -> Result<PathBuf, String> {
    static SCHEMA: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("rprof-format-speedscope");
            let schema = dir.join("package/dist/release/file-format-schema.json");
            if schema.is_file() {
                return Ok(schema);
            }
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            run(Command::new("npm")
                .args(["pack", "--silent", SPEEDSCOPE, "--pack-destination"])
                .arg(&dir))
            .map_err(|e| format!("could not download {SPEEDSCOPE} with npm: {e}"))?;
            let tarball = std::fs::read_dir(&dir)
                .map_err(|e| e.to_string())?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|e| e == "tgz"))
                .ok_or("npm pack wrote no tarball")?;
            run(Command::new("tar")
                .arg("xzf")
                .arg(&tarball)
                .arg("-C")
                .arg(&dir))?;
            if schema.is_file() {
                Ok(schema)
            } else {
                Err(format!(
                    "{SPEEDSCOPE} has no dist/release/file-format-schema.json"
                ))
            }
        })
        .clone()
}
