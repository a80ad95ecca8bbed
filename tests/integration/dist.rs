//! Distribution: the command-line niceties (`--version`, completions, the
//! man page, `rprof doctor`), the refusal of a musl target, profiling
//! targets in containers (simulated with `unshare`: PID and mount
//! namespaces, a private `/dev/shm` mounted noexec with 64 MiB, a different
//! filesystem root, a sidecar in the target's PID namespace), and the wheel.
//!
//! The wheel tests need a wheel built by `scripts/wheel.sh` and zig (which
//! that script installs): `scripts/test_wheel.sh` builds it and runs them
//! with `RPROF_WHEEL` set; without it they are ignored, never skipped.
//! The namespace tests need root (`unshare -p`), like a container host.

use crate::util::{self, describe, root, run, KillOnDrop};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn rprof() -> Command {
    util::rprof()
}

/// The newest supported interpreter (the others are the differential
/// suite's business).
fn newest() -> &'static util::Python {
    util::interpreters().last().unwrap()
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rprof-dist-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

// ---------------------------------------------------------------- CLI

#[test]
fn version_names_the_commit_and_the_pythons() {
    let out = run(rprof().arg("--version"));
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("rprof 0."), "{text}");
    assert!(text.contains("3.8-3.15"), "{text}");
    let commit = text
        .split("(commit ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap_or_else(|| panic!("no commit in {text}"));
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root())
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert!(
        commit.len() >= 7 && head.starts_with(commit),
        "--version says commit {commit:?}, HEAD is {head:?}"
    );
    let short = run(rprof().arg("-V"));
    assert_eq!(
        String::from_utf8_lossy(&short.stdout).trim(),
        format!(
            "rprof {}",
            text.lines().next().unwrap().trim_start_matches("rprof ")
        )
    );
}

fn completion(shell: &str) -> String {
    let out = run(rprof().args(["completions", shell]));
    assert!(out.status.success(), "{}", describe(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn has(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn bash_completion_parses_and_completes() {
    let dir = scratch();
    let script = dir.path().join("rprof.bash");
    std::fs::write(&script, completion("bash")).unwrap();
    let out = run(Command::new("bash").arg("-n").arg(&script));
    assert!(out.status.success(), "bash -n: {}", describe(&out));
    // What bash offers after `rprof at<TAB>` and `rprof attach --on<TAB>`.
    let probe = format!(
        r#"source {s}
COMP_WORDS=(rprof at); COMP_CWORD=1; COMP_LINE="rprof at"; COMP_POINT=${{#COMP_LINE}}
_rprof rprof at rprof; echo "sub: ${{COMPREPLY[*]}}"
COMP_WORDS=(rprof attach --on); COMP_CWORD=2; COMP_LINE="rprof attach --on"; COMP_POINT=${{#COMP_LINE}}
_rprof rprof --on attach; echo "opt: ${{COMPREPLY[*]}}""#,
        s = script.display()
    );
    let out = run(Command::new("bash").args(["-c", &probe]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sub: attach"), "{}", describe(&out));
    assert!(text.contains("--on-full"), "{}", describe(&out));
}

#[test]
fn zsh_and_fish_completions() {
    let zsh = completion("zsh");
    assert!(zsh.starts_with("#compdef rprof"), "{zsh}");
    assert!(zsh.contains("--ring-size"));
    let fish = completion("fish");
    assert!(fish.contains("complete -c rprof"), "{fish}");
    assert!(fish.contains("ring-size"));
    // Parsed by the shells themselves where they are installed.
    let dir = scratch();
    for (shell, text) in [("zsh", &zsh), ("fish", &fish)] {
        if !has(shell) {
            eprintln!("{shell} is not installed: checked the script's content only");
            continue;
        }
        let file = dir.path().join(format!("rprof.{shell}"));
        std::fs::write(&file, text).unwrap();
        let out = run(Command::new(shell).arg("-n").arg(&file));
        assert!(out.status.success(), "{shell} -n: {}", describe(&out));
    }
}

#[test]
fn man_page_renders_cleanly() {
    let out = run(rprof().arg("man"));
    assert!(out.status.success(), "{}", describe(&out));
    let dir = scratch();
    let page = dir.path().join("rprof.1");
    std::fs::write(&page, &out.stdout).unwrap();
    // groff with every warning on: the page must produce none.
    let g = run(Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(&page));
    assert!(
        g.status.success() && g.stderr.is_empty(),
        "groff: {}",
        describe(&g)
    );
    let m = run(Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100"));
    assert!(m.status.success(), "man -l: {}", describe(&m));
    let text = String::from_utf8_lossy(&m.stdout);
    for want in [
        "RPROF ATTACH",
        "RPROF RUN",
        "RPROF DOCTOR",
        "--duration",
        "--ring-size",
        "3.8-3.15",
    ] {
        assert!(text.contains(want), "the man page lacks {want:?}:\n{text}");
    }
}

// ------------------------------------------------------------- doctor

fn doctor(args: &[&str]) -> (Option<i32>, String) {
    let out = run(rprof().arg("doctor").args(args));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn doctor_checks_this_machine() {
    let (code, text) = doctor(&[]);
    for what in [
        "capabilities",
        "ptrace_scope",
        "seccomp",
        "/dev/shm",
        "clock",
    ] {
        assert!(
            text.lines()
                .any(|l| l.get(6..).is_some_and(|r| r.starts_with(what))),
            "no {what} line:\n{text}"
        );
    }
    let failed = text.lines().any(|l| l.starts_with("FAIL"));
    assert_eq!(code, Some(if failed { 1 } else { 0 }), "{text}");
    assert!(text.lines().last().unwrap().starts_with("rprof doctor: "));
}

/// A process started by a test, ended by PID.
struct Started {
    child: std::process::Child,
    guard: KillOnDrop,
    /// Where its output goes (a file: tests must not read a pipe of a
    /// process that is being profiled).
    out: PathBuf,
}

impl Started {
    fn spawn(cmd: &mut Command, out: &Path, marker: &str) -> Started {
        let file = std::fs::File::create(out).unwrap();
        let child = cmd
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let guard = KillOnDrop::new(child.id(), marker);
        Started {
            child,
            guard,
            out: out.to_path_buf(),
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.output().lines().any(|l| l == "ready") {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.guard.disarm();
                panic!(
                    "the target exited ({st}) before it was ready:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the target is not ready after 60 s:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn end(mut self) {
        util::signal(self.child.id(), "KILL");
        let _ = self.child.wait();
        self.guard.disarm();
    }
}

/// Python code that loads the example service (argv[1]), serves one
/// request, prints `ready` and serves forever (with the service's pauses).
const SERVICE: &str = concat!(
    "import runpy, sys, time\n",
    "g = runpy.run_path(sys.argv[1], run_name='service')\n",
    "db = g['Database']()\n",
    "g['serve_one'](db, 0)\n",
    "print('ready', flush=True)\n",
    "n = 1\n",
    "while True:\n",
    "    g['serve_one'](db, n)\n",
    "    n += 1\n",
    "    if n % 200 == 0:\n",
    "        time.sleep(0.01)\n",
);

fn service_path() -> PathBuf {
    root().join("examples/service.py")
}

fn tracer_of(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

fn mapped_files(pid: u32) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mut v: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/'))
        .map(String::from)
        .collect();
    v.sort();
    v.dedup();
    v
}

#[test]
fn doctor_with_a_pid_checks_without_touching() {
    let py = newest();
    let dir = scratch();
    let marker = service_path().to_string_lossy().into_owned();
    let mut t = Started::spawn(
        py.command().args(["-c", SERVICE]).arg(service_path()),
        &dir.path().join("service.out"),
        &marker,
    );
    t.wait_ready();
    let pid = t.child.id();
    let before = mapped_files(pid);
    let (code, text) = doctor(&[&pid.to_string()]);
    assert_eq!(code, Some(0), "{text}");
    let (a, b, _) = py.version;
    assert!(
        text.contains(&format!("is CPython, Python {a}.{b}")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok    libc") && l.contains("glibc 2.")),
        "{text}"
    );
    assert!(text.contains("ptrace is allowed"), "{text}");
    assert!(text.contains("the same PID and mount namespaces"), "{text}");
    // Untouched: never traced, nothing loaded.
    assert_eq!(tracer_of(pid), Some(0));
    assert_eq!(mapped_files(pid), before);
    t.end();

    // Not Python, and no such process: attach's own exit statuses.
    let mut sleeper = Started::spawn(
        Command::new("sleep").arg("60.123"),
        &dir.path().join("sleep.out"),
        "60.123",
    );
    let (code, text) = doctor(&[&sleeper.child.id().to_string()]);
    assert_eq!(code, Some(13), "{text}");
    assert!(text.contains("is not a CPython process"), "{text}");
    let _ = sleeper.child.try_wait();
    sleeper.end();
    let (code, text) = doctor(&["2147483646"]);
    assert_eq!(code, Some(10), "{text}");
}

// ------------------------------------------------------------- musl

/// The zig from `scripts/wheel.sh`'s build venv.
fn zig() -> PathBuf {
    root().join("target/dist-venv/bin/python-zig")
}

/// A musl program that looks like CPython to `inspect` (it exports the C
/// API symbols rprof looks for) and waits.
fn build_musl_python(dir: &Path) -> PathBuf {
    let src = dir.join("fake.c");
    std::fs::write(
        &src,
        r#"#include <stdio.h>
#include <unistd.h>
int Py_IsInitialized(void) { return 1; }
void *PyEval_SaveThread(void) { return 0; }
void PyEval_RestoreThread(void *p) { (void)p; }
const unsigned int Py_Version = 0x030C01F0;
int main(void) { puts("ready"); fflush(stdout); for (;;) pause(); }
"#,
    )
    .unwrap();
    let exe = dir.join("python3.12");
    let out = run(Command::new(zig())
        .args([
            "cc",
            "-target",
            "x86_64-linux-musl",
            "-dynamic",
            "-rdynamic",
            "-o",
        ])
        .arg(&exe)
        .arg(&src));
    assert!(out.status.success(), "zig cc (musl): {}", describe(&out));
    exe
}

#[test]
#[ignore = "needs zig and musl: run scripts/test_wheel.sh"]
fn musl_target_is_refused_untouched() {
    assert!(
        Path::new("/lib/ld-musl-x86_64.so.1").exists(),
        "musl's loader is missing: apt-get install musl (scripts/test_wheel.sh does)"
    );
    let dir = scratch();
    let exe = build_musl_python(dir.path());
    let marker = exe.to_string_lossy().into_owned();
    let mut t = Started::spawn(
        &mut Command::new(&exe),
        &dir.path().join("musl.out"),
        &marker,
    );
    t.wait_ready();
    let pid = t.child.id();
    let before = mapped_files(pid);
    let out = run(rprof().args(["attach", &pid.to_string(), "-d", "1"]));
    assert_eq!(out.status.code(), Some(21), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("musl libc (") && err.contains("glibc 2.17 or newer"),
        "{err}"
    );
    let (code, text) = doctor(&[&pid.to_string()]);
    assert_eq!(code, Some(21), "{text}");
    assert_eq!(tracer_of(pid), Some(0));
    assert_eq!(mapped_files(pid), before, "the target was touched");
    t.end();
}

// ------------------------------------------------------ containers

/// The first of `pid` and its descendants that satisfies `pred`.
fn descendant(pid: u32, pred: &dyn Fn(u32) -> bool) -> Option<u32> {
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        if pred(p) {
            return Some(p);
        }
        let tasks = std::fs::read_dir(format!("/proc/{p}/task")).ok()?;
        for t in tasks.flatten() {
            let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            todo.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    None
}

fn is_python(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .is_ok_and(|e| e.to_string_lossy().contains("python"))
}

/// The example service in a simulated container, started by `sh -c
/// SCRIPT` (which ends by exec-ing `"$0" -c "$1" "$2"`: the interpreter,
/// [`SERVICE`] and the script); returns the process and the target's host
/// PID.
fn container(script: &str, extra: &[&Path], dir: &Path) -> (Started, u32) {
    let py = newest();
    let marker = service_path().to_string_lossy().into_owned();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .arg(&py.path)
        .arg(SERVICE)
        .arg(service_path());
    for e in extra {
        cmd.arg(e);
    }
    cmd.env("PYTHONHASHSEED", "0");
    let mut t = Started::spawn(&mut cmd, &dir.join("target.out"), &marker);
    t.wait_ready();
    let host_pid = descendant(t.child.id(), &is_python)
        .unwrap_or_else(|| panic!("no python under PID {}:\n{}", t.child.id(), t.output()));
    (t, host_pid)
}

/// `rprof attach` from the host for one second into `prof`, then ends the
/// target; asserts success and a profile of the service.
fn attach_from_the_host(t: Started, host_pid: u32, prof: &Path, ctx: &str) {
    assert_attach_works(
        rprof()
            .args(["attach", &host_pid.to_string(), "-d", "1", "-o"])
            .arg(prof),
        prof,
        host_pid,
        ctx,
    );
    t.end();
}

/// `rprof attach` for one second into `prof`; asserts success and a
/// profile of the service.
fn assert_attach_works(cmd: &mut Command, prof: &Path, host_pid: u32, ctx: &str) {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{ctx}: rprof attach failed: {}",
        describe(&out)
    );
    let check = run(newest()
        .command()
        .args([
            "-c",
            "import pstats, sys; s = pstats.Stats(sys.argv[1]); \
         print(sorted({k[2] for k in s.stats if k[0].endswith('service.py')}))",
        ])
        .arg(prof));
    let funcs = String::from_utf8_lossy(&check.stdout);
    assert!(
        funcs.contains("'serve_one'") && funcs.contains("'route'"),
        "{ctx}: the profile lacks the service's functions: {funcs}\n{}",
        describe(&check)
    );
    assert_eq!(tracer_of(host_pid), Some(0), "{ctx}: left traced");
}

/// A container as runtimes make them: own PID and mount namespaces,
/// `/proc` of its own, and `/dev/shm` a fresh 64 MiB tmpfs mounted
/// noexec,nosuid,nodev. Profiled from the host.
const NOEXEC_CONTAINER: &str = "exec unshare -p -f -m --mount-proc --propagation private sh -c \
     'mount -t tmpfs -o noexec,nosuid,nodev,size=64M tmpfs /dev/shm && exec \"$0\" -c \"$1\" \"$2\"' \
     \"$0\" \"$1\" \"$2\"";

#[test]
fn attach_from_the_host_into_a_container_with_noexec_shm() {
    let dir = scratch();
    let (t, host_pid) = container(NOEXEC_CONTAINER, &[], dir.path());
    // The target sees itself as PID 1, in another mount namespace.
    let status = std::fs::read_to_string(format!("/proc/{host_pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert!(
        nspid.trim().ends_with("\t1") || nspid.ends_with(" 1"),
        "{nspid}"
    );
    let (code, text) = doctor(&[&host_pid.to_string()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("another PID namespace"), "{text}");
    assert!(text.contains("another mount namespace"), "{text}");
    assert!(
        text.contains(&format!("PID {host_pid}: "))
            && text.contains("of 64 MiB")
            && text.contains("noexec"),
        "doctor does not describe the target's /dev/shm:\n{text}"
    );
    attach_from_the_host(
        t,
        host_pid,
        &dir.path().join("host.prof"),
        "host -> container (noexec /dev/shm)",
    );
}

/// A sidecar (`docker run --pid=container:X`, `kubectl debug --target`):
/// rprof in the target's PID namespace, with a mount namespace and a
/// `/proc` of its own, attaching to PID 1.
#[test]
fn attach_from_a_sidecar_sharing_the_pid_namespace() {
    let dir = scratch();
    let (t, host_pid) = container(NOEXEC_CONTAINER, &[], dir.path());
    let prof = dir.path().join("sidecar.prof");
    let mut cmd = Command::new("nsenter");
    cmd.args(["-t", &host_pid.to_string(), "-p", "--"])
        .args(["unshare", "-m", "--mount-proc", "--propagation", "private"])
        .arg(env!("CARGO_BIN_EXE_rprof"))
        .args(["attach", "1", "-d", "1", "-o"])
        .arg(&prof);
    assert_attach_works(&mut cmd, &prof, host_pid, "sidecar -> PID 1");
    t.end();
}

/// A target whose filesystem root is not rprof's, as in a container:
/// `pivot_root` into a tree of its own (the host's, bound again, with its
/// own `/dev/shm` and `/tmp`, which rprof sees only through
/// `/proc/PID/root`), the old root unmounted.
#[test]
fn attach_into_a_target_with_another_root() {
    let dir = scratch();
    let new_root = dir.path().join("root");
    std::fs::create_dir(&new_root).unwrap();
    let script = "exec unshare -m --propagation private sh -c \
        'set -e; mount --rbind / \"$3\"; \
         mount -t tmpfs -o nosuid,nodev,size=64M tmpfs \"$3/dev/shm\"; \
         mount -t tmpfs tmpfs \"$3/tmp\"; \
         cd \"$3\"; pivot_root . mnt; umount -l /mnt; \
         exec \"$0\" -c \"$1\" \"$2\"' \"$0\" \"$1\" \"$2\" \"$3\"";
    let (t, host_pid) = container(script, &[&new_root], dir.path());
    // Its /tmp is not ours.
    use std::os::unix::fs::MetadataExt;
    let theirs = std::fs::metadata(format!("/proc/{host_pid}/root/tmp")).unwrap();
    let ours = std::fs::metadata("/tmp").unwrap();
    assert_ne!(theirs.dev(), ours.dev(), "the target's /tmp is the host's");
    attach_from_the_host(
        t,
        host_pid,
        &dir.path().join("pivot.prof"),
        "host -> target with another root",
    );
}

/// A target in a plain `chroot` (no `pivot_root`): its maps, read from
/// the host, name files relative to the host's root (`NEWROOT/usr/...`),
/// which `/proc/PID/root` would prefix a second time. rprof reads the
/// files the target mapped through `/proc/PID/map_files` instead.
#[test]
fn attach_into_a_chrooted_target() {
    let dir = scratch();
    let new_root = dir.path().join("root");
    std::fs::create_dir(&new_root).unwrap();
    let script = "exec unshare -m --propagation private sh -c \
        'set -e; mount --rbind / \"$3\"; \
         exec chroot \"$3\" \"$0\" -c \"$1\" \"$2\"' \"$0\" \"$1\" \"$2\" \"$3\"";
    let (t, host_pid) = container(script, &[&new_root], dir.path());
    let maps = std::fs::read_to_string(format!("/proc/{host_pid}/maps")).unwrap();
    let root = new_root.to_str().unwrap();
    assert!(
        maps.lines()
            .any(|l| l.contains(&format!("{root}/")) && l.contains("libc")),
        "the chrooted target's maps do not show host-relative paths:\n{maps}"
    );
    attach_from_the_host(
        t,
        host_pid,
        &dir.path().join("chroot.prof"),
        "host -> chrooted target",
    );
}

// -------------------------------------------------------------- wheel

fn wheel() -> PathBuf {
    let w = std::env::var_os("RPROF_WHEEL")
        .expect("RPROF_WHEEL names the wheel to test (scripts/test_wheel.sh sets it)");
    PathBuf::from(w)
}

/// The newest `GLIBC_x.y` an ELF file needs, and its symbols that need it.
fn glibc_floor(bytes: &[u8]) -> ((u32, u32), Vec<String>) {
    let elf = goblin::elf::Elf::parse(bytes).expect("an ELF file");
    let strtab = &elf.dynstrtab;
    let mut need = std::collections::HashMap::new();
    if let Some(verneed) = &elf.verneed {
        for file in verneed.iter() {
            for aux in file.iter() {
                let name = strtab.get_at(aux.vna_name).unwrap_or("");
                if let Some(v) = parse_glibc(name) {
                    need.insert(aux.vna_other, v);
                }
            }
        }
    }
    let floor = need.values().copied().max().unwrap_or((0, 0));
    let mut symbols = Vec::new();
    if let Some(versym) = &elf.versym {
        for (i, sym) in elf.dynsyms.iter().enumerate() {
            let Some(v) = versym.get_at(i) else { continue };
            if need.get(&v.version()) == Some(&floor) {
                symbols.push(strtab.get_at(sym.st_name).unwrap_or("?").to_string());
            }
        }
    }
    (floor, symbols)
}

fn parse_glibc(name: &str) -> Option<(u32, u32)> {
    let mut p = name.strip_prefix("GLIBC_")?.split('.');
    Some((p.next()?.parse().ok()?, p.next()?.parse().ok()?))
}

/// The shim embedded in the rprof binary: the ELF image inside it that
/// exports `rprof_attach`.
fn embedded_shim(binary: &[u8]) -> &[u8] {
    let magic = b"\x7fELF\x02\x01\x01";
    let mut at = 1;
    while let Some(i) = binary[at..].windows(magic.len()).position(|w| w == magic) {
        let start = at + i;
        if let Ok(elf) = goblin::elf::Elf::parse(&binary[start..]) {
            let exports = elf
                .dynsyms
                .iter()
                .any(|s| elf.dynstrtab.get_at(s.st_name) == Some("rprof_attach"));
            if exports {
                return &binary[start..];
            }
        }
        at = start + 1;
    }
    panic!("no embedded shim found in the rprof binary");
}

fn unzip_binary(dir: &Path) -> PathBuf {
    let out = run(newest()
        .command()
        .args([
            "-c",
            "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
         n = [n for n in z.namelist() if n.endswith('.data/scripts/rprof')]; \
         assert len(n) == 1, z.namelist(); \
         open(sys.argv[2], 'wb').write(z.read(n[0]))",
        ])
        .arg(wheel())
        .arg(dir.join("rprof")));
    assert!(out.status.success(), "unzip: {}", describe(&out));
    dir.join("rprof")
}

#[test]
#[ignore = "needs a wheel: run scripts/test_wheel.sh"]
fn wheel_binary_and_shim_need_glibc_2_17_at_most() {
    let name = wheel().file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.contains("manylinux_2_17_x86_64"), "{name}");
    let dir = scratch();
    let bytes = std::fs::read(unzip_binary(dir.path())).unwrap();
    let (bin, bin_syms) = glibc_floor(&bytes);
    let (shim, shim_syms) = glibc_floor(embedded_shim(&bytes));
    println!(
        "glibc floor: rprof binary GLIBC_{}.{} ({}), shim GLIBC_{}.{} ({})",
        bin.0,
        bin.1,
        bin_syms.join(" "),
        shim.0,
        shim.1,
        shim_syms.join(" ")
    );
    assert!(bin >= (2, 2), "the binary needs no glibc version at all?");
    assert!(
        bin <= (2, 17),
        "the rprof binary needs GLIBC_{}.{} for {bin_syms:?}",
        bin.0,
        bin.1
    );
    assert!(
        shim <= (2, 17),
        "the shim needs GLIBC_{}.{} for {shim_syms:?}: use raw syscalls instead",
        shim.0,
        shim.1
    );
}

/// Every interpreter found, free-threaded builds included (the wheel is
/// `py3-none`: it installs everywhere).
fn all_interpreters() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = util::interpreters()
        .iter()
        .map(|p| p.path.clone())
        .collect();
    let ft = Path::new("/opt/cpython-3.14t/bin/python3.14t");
    if ft.exists()
        && !util::FREE_THREADED_SUPPORTED
        && std::env::var_os("RPROF_TEST_PYTHON").is_none()
    {
        v.push(ft.to_path_buf());
    }
    v
}

/// A fresh venv of `python` with the wheel installed (by its own pip, or,
/// where the interpreter ships no ensurepip, by the build venv's).
fn venv_with_wheel(python: &Path, dir: &Path) -> PathBuf {
    let venv = dir.join("venv");
    let has_pip = run(Command::new(python).args(["-c", "import ensurepip"]))
        .status
        .success();
    let mut mk = Command::new(python);
    mk.args(["-m", "venv"]);
    if !has_pip {
        mk.arg("--without-pip");
    }
    let out = run(mk.arg(&venv));
    assert!(out.status.success(), "venv: {}", describe(&out));
    let mut pip = if has_pip {
        let mut c = Command::new(venv.join("bin/python"));
        c.args(["-m", "pip"]);
        c
    } else {
        let mut c = Command::new(root().join("target/dist-venv/bin/pip"));
        c.arg("--python").arg(venv.join("bin/python"));
        c
    };
    let out = run(pip
        .args([
            "install",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
        ])
        .arg(wheel()));
    assert!(out.status.success(), "pip install: {}", describe(&out));
    venv
}

#[test]
#[ignore = "needs a wheel: run scripts/test_wheel.sh"]
fn wheel_installs_and_profiles_on_every_interpreter() {
    let mut failures = Vec::new();
    for python in all_interpreters() {
        let started = Instant::now();
        let dir = scratch();
        let venv = venv_with_wheel(&python, dir.path());
        let bin = venv.join("bin");
        let ctx = python.display().to_string();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let v = run(Command::new(bin.join("rprof")).arg("--version"));
        assert!(v.status.success(), "{ctx}: {}", describe(&v));
        let m = run(Command::new(bin.join("python")).args(["-m", "rprof", "--version"]));
        assert_eq!(
            m.stdout,
            v.stdout,
            "{ctx}: python -m rprof: {}",
            describe(&m)
        );
        let free_threaded = run(Command::new(&python).args([
            "-c",
            "import sysconfig, sys; sys.exit(0 if sysconfig.get_config_var('Py_GIL_DISABLED') else 1)",
        ]))
        .status
        .success();
        if free_threaded && !util::FREE_THREADED_SUPPORTED {
            // Installed, and the commands run; profiling a free-threaded
            // build is not supported yet (the differential suite names it).
            println!(
                "{ctx}: installed (free-threaded: run/attach not tested until supported) ({:.1?})",
                started.elapsed()
            );
            continue;
        }
        // `rprof run` from the venv, its python3 first on PATH.
        let prof = dir.path().join("run.prof");
        let r = run(Command::new(bin.join("rprof"))
            .arg("run")
            .arg("-o")
            .arg(&prof)
            .arg(service_path())
            .args(["--requests", "300"])
            .env("PATH", &path));
        if !r.status.success() {
            failures.push(format!("{ctx}: rprof run: {}", describe(&r)));
            continue;
        }
        // `rprof attach` from the venv to the service run by the venv's python.
        let marker = dir.path().to_string_lossy().into_owned();
        let mut t = Started::spawn(
            Command::new(bin.join("python"))
                .args(["-c", SERVICE])
                .arg(service_path())
                .arg(&marker),
            &dir.path().join("service.out"),
            &marker,
        );
        t.wait_ready();
        let pid = t.child.id();
        let aprof = dir.path().join("attach.prof");
        let a = run(Command::new(bin.join("rprof"))
            .args(["attach", &pid.to_string(), "-d", "1", "-o"])
            .arg(&aprof));
        t.end();
        if !a.status.success() {
            failures.push(format!("{ctx}: rprof attach: {}", describe(&a)));
            continue;
        }
        for p in [&prof, &aprof] {
            let c = run(Command::new(bin.join("python"))
                .args([
                    "-c",
                    "import pstats, sys; s = pstats.Stats(sys.argv[1]); \
                     assert any(k[2] == 'serve_one' for k in s.stats), 'no serve_one'",
                ])
                .arg(p));
            if !c.status.success() {
                failures.push(format!("{ctx}: {}: {}", p.display(), describe(&c)));
            }
        }
        println!(
            "{ctx}: installed, run and attach ok ({:.1?})",
            started.elapsed()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
