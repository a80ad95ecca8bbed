//! `rprof doctor [PID]`: what stands between this machine (and, with a
//! PID, that process) and a working `rprof attach`, checked without
//! touching the process: Yama's ptrace_scope, capabilities, seccomp,
//! `/dev/shm`, the TSC clock and, for a PID, the same inspection `attach`
//! does first (reading `/proc` and the files the process maps), the C
//! library, whether ptrace would be allowed, and its namespaces.
//!
//! Exit status: 0 when nothing blocks an attach (warnings included), else
//! the status `rprof attach` would exit with (10–21), or 1 for a problem of
//! this machine.

use anyhow::Result;
use rprof_controller::attach::{self, libc::Libc};
use std::process::ExitCode;

/// `CAP_SYS_PTRACE`'s bit in the capability sets.
const CAP_SYS_PTRACE: u32 = 19;
/// The default ring (`--ring-size 32`).
const DEFAULT_RING: u64 = 32 << 20;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Report {
    /// The exit status of the first failure.
    code: Option<u8>,
    warnings: usize,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, text: impl AsRef<str>) {
        let tag = match level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        println!("{tag}  {what:<14} {}", text.as_ref());
        if level == Level::Warn {
            self.warnings += 1;
        }
    }

    fn fail(&mut self, code: u8, what: &str, text: impl AsRef<str>) {
        self.line(Level::Fail, what, text);
        self.code.get_or_insert(code);
    }
}

/// Fields of a `/proc/PID/status` file.
fn status_field(pid: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim().to_string())
    })
}

fn first_number(s: &str) -> Option<u32> {
    s.split_whitespace().next()?.parse().ok()
}

/// Whether this process's effective capabilities include CAP_SYS_PTRACE.
fn has_cap_sys_ptrace() -> Option<bool> {
    let hex = status_field("self", "CapEff")?;
    let caps = u64::from_str_radix(&hex, 16).ok()?;
    Some(caps & (1 << CAP_SYS_PTRACE) != 0)
}

fn ptrace_scope() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The mount options of `mountpoint` in `pid`'s mount namespace (the last
/// mount there wins), with the filesystem's own options.
fn mount_options(pid: &str, mountpoint: &str) -> Option<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    text.lines().rev().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let f: Vec<&str> = left.split(' ').collect();
        let super_opts = right.split(' ').nth(2).unwrap_or("");
        (f.get(4) == Some(&mountpoint))
            .then(|| (f.get(5).unwrap_or(&"").to_string(), super_opts.to_string()))
    })
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

/// `/dev/shm` as the process `pid` sees it (`local` is how we reach it).
fn check_shm(r: &mut Report, pid: &str, local: &std::path::Path, whose: &str) {
    if !local.is_dir() {
        r.line(
            Level::Warn,
            "/dev/shm",
            format!("{whose} has no /dev/shm; the ring goes to /tmp"),
        );
        return;
    }
    let mut facts = Vec::new();
    let mut level = Level::Ok;
    if let Ok(st) = nix::sys::statvfs::statvfs(local) {
        let free = st.blocks_available() * st.fragment_size();
        let total = st.blocks() * st.fragment_size();
        facts.push(format!("{} free of {}", mib(free), mib(total)));
        if free < DEFAULT_RING {
            level = Level::Warn;
            facts.push(format!(
                "less than the default ring: pass --ring-size {}",
                (free >> 20).max(1)
            ));
        }
    }
    if let Some((opts, _)) = mount_options(pid, "/dev/shm") {
        if opts.split(',').any(|o| o == "noexec") {
            facts.push("mounted noexec (the shim is loaded from memory, not from there)".into());
        }
    }
    r.line(level, "/dev/shm", format!("{whose}: {}", facts.join("; ")));
}

/// Checks that do not depend on a target.
fn check_machine(r: &mut Report) -> (bool, Option<u32>, u32) {
    if cfg!(target_arch = "x86_64") {
        r.line(Level::Ok, "platform", "Linux x86_64");
    } else {
        r.line(Level::Warn, "platform", "not x86_64: untested");
    }
    let uid = status_field("self", "Uid")
        .and_then(|v| first_number(&v))
        .unwrap_or(u32::MAX);
    let cap = has_cap_sys_ptrace();
    let privileged = cap == Some(true);
    match cap {
        Some(true) => r.line(
            Level::Ok,
            "capabilities",
            format!("CAP_SYS_PTRACE is effective (uid {uid}): any process of this PID namespace can be traced"),
        ),
        Some(false) => r.line(
            Level::Warn,
            "capabilities",
            format!("no CAP_SYS_PTRACE (uid {uid}): only your own processes can be traced; run as root, or in a container add --cap-add=SYS_PTRACE"),
        ),
        None => r.line(Level::Warn, "capabilities", "cannot read CapEff from /proc/self/status"),
    }
    let scope = ptrace_scope();
    match scope {
        None => r.line(Level::Ok, "ptrace_scope", "Yama is not enabled: classic ptrace permissions"),
        Some(0) => r.line(Level::Ok, "ptrace_scope", "0: a process of the same user can be traced"),
        Some(s @ (1 | 2)) if privileged => r.line(
            Level::Ok,
            "ptrace_scope",
            format!("{s}: needs CAP_SYS_PTRACE, which rprof has"),
        ),
        Some(s @ (1 | 2)) => r.line(
            Level::Warn,
            "ptrace_scope",
            format!("{s}: attaching needs root or CAP_SYS_PTRACE (or `sudo sysctl kernel.yama.ptrace_scope=0`)"),
        ),
        Some(s) => r.fail(
            1,
            "ptrace_scope",
            format!("{s}: ptrace is disabled until reboot; rprof attach cannot work (rprof run still does)"),
        ),
    }
    match status_field("self", "Seccomp").as_deref() {
        Some("0") | None => r.line(Level::Ok, "seccomp", "no filter"),
        Some(mode) => r.line(
            Level::Warn,
            "seccomp",
            format!("mode {mode}: a filter is active; if it forbids ptrace or process_vm_readv, attach fails with permission denied (Docker's default profile allows them once SYS_PTRACE is added)"),
        ),
    }
    check_shm(r, "self", std::path::Path::new("/dev/shm"), "this machine");
    if rprof_reader::clock::tsc_is_invariant() {
        r.line(
            Level::Ok,
            "clock",
            "invariant TSC (constant_tsc, nonstop_tsc): rdtsc timestamps",
        );
    } else {
        r.line(
            Level::Warn,
            "clock",
            "no invariant TSC: clock_gettime timestamps instead (a higher overhead per event)",
        );
    }
    (privileged, scope, uid)
}

fn same_namespace(pid: i32, ns: &str) -> Option<bool> {
    let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).ok()?;
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok()?;
    Some(ours == theirs)
}

/// Checks of one target, read-only.
fn check_target(r: &mut Report, pid: i32, privileged: bool, scope: Option<u32>, uid: u32) {
    let target = match attach::inspect(pid) {
        Ok(t) => t,
        Err(e) => {
            r.fail(e.exit_code(), "target", e.to_string());
            return;
        }
    };
    let version = target
        .version
        .map_or("version told after loading".into(), |(a, b)| {
            format!("Python {a}.{b}")
        });
    r.line(
        Level::Ok,
        "target",
        format!(
            "PID {pid} ({}) is CPython, {version}, state {}",
            target.status.name, target.status.state
        ),
    );
    match attach::libc::of_process(pid) {
        Ok(libc @ Libc::Glibc { .. }) => r.line(Level::Ok, "libc", libc.to_string()),
        Ok(other) => r.fail(21, "libc", other.to_string()),
        Err(e) => r.line(Level::Warn, "libc", format!("cannot read the maps: {e}")),
    }
    // What the kernel will decide at PTRACE_SEIZE, predicted.
    let owner = target.status.uid;
    let allowed = match scope {
        Some(3) => false,
        Some(1 | 2) => privileged,
        _ => privileged || owner == uid,
    };
    if allowed {
        r.line(
            Level::Ok,
            "permission",
            format!("PID {pid} belongs to uid {owner}; ptrace is allowed"),
        );
    } else {
        let err = rprof_controller::attach::AttachError::PermissionDenied {
            pid,
            hint: format!(
                "it belongs to uid {owner}, rprof runs as uid {uid}{}; run rprof as that user or as root, or give it CAP_SYS_PTRACE",
                scope.map_or(String::new(), |s| format!(" with ptrace_scope {s}"))
            ),
        };
        r.fail(err.exit_code(), "permission", err.to_string());
    }
    let pid_ns = same_namespace(pid, "pid");
    let mnt_ns = same_namespace(pid, "mnt");
    let mut ns = Vec::new();
    if pid_ns == Some(false) {
        let nspid = status_field(&pid.to_string(), "NSpid").unwrap_or_default();
        ns.push(format!("another PID namespace (its PIDs: {nspid})",));
    }
    if mnt_ns == Some(false) {
        ns.push(
            "another mount namespace (a container): rprof reaches its files through /proc/PID/root"
                .into(),
        );
    }
    if ns.is_empty() {
        r.line(
            Level::Ok,
            "namespaces",
            "the same PID and mount namespaces as rprof",
        );
    } else {
        r.line(Level::Ok, "namespaces", ns.join("; "));
    }
    if mnt_ns == Some(false) {
        let root = std::path::PathBuf::from(format!("/proc/{pid}/root/dev/shm"));
        check_shm(r, &pid.to_string(), &root, &format!("PID {pid}"));
    }
}

/// Runs every check and prints one line each.
pub fn doctor(pid: Option<i32>) -> Result<ExitCode> {
    let mut r = Report {
        code: None,
        warnings: 0,
    };
    let (privileged, scope, uid) = check_machine(&mut r);
    if let Some(pid) = pid {
        check_target(&mut r, pid, privileged, scope, uid);
    }
    let what = pid.map_or("this machine".to_string(), |p| format!("PID {p}"));
    Ok(match r.code {
        Some(code) => {
            println!("rprof doctor: rprof attach cannot profile {what} (exit status {code}); see FAIL above");
            ExitCode::from(code)
        }
        None => {
            println!(
                "rprof doctor: nothing blocks profiling {what}{}",
                match r.warnings {
                    0 => String::new(),
                    n => format!(" ({n} warning{})", if n == 1 { "" } else { "s" }),
                }
            );
            ExitCode::SUCCESS
        }
    })
}
