//! The attach procedure itself: the checks before, and the safe-point
//! injection (see the module docs of [`super`]).

use super::elf::{self, Module};
use super::proc;
use super::ptrace::{Arg, Stop, TraceError, Tracer};
use super::{AttachError, Target};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Addresses needed to inject, found by [`inspect`].
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    dlopen: u64,
    dlerror: u64,
    dlsym: u64,
    errno_location: u64,
    /// Breakpoint candidates (see the module docs).
    safe_points: Vec<u64>,
    /// `rprof_attach` in a copy of this very shim that is already loaded.
    loaded_entry: Option<u64>,
}

/// What the injection did.
#[derive(Debug, Clone)]
pub struct InjectReport {
    /// The thread that was borrowed.
    pub thread: i32,
    /// How it was caught: "blocked in syscall N" or "breakpoint".
    pub safe_point: String,
    /// Whether the shim was already loaded (a previous attach).
    pub reused: bool,
}

/// x86_64 system calls a thread waits in, and which neither `malloc` nor
/// the dynamic loader blocks in.
const WAITING_SYSCALLS: &[i64] = &[
    0,   // read
    7,   // poll
    23,  // select
    34,  // pause
    35,  // nanosleep
    43,  // accept
    45,  // recvfrom
    47,  // recvmsg
    61,  // wait4
    128, // rt_sigtimedwait
    130, // rt_sigsuspend
    202, // futex
    230, // clock_nanosleep
    232, // epoll_wait
    247, // waitid
    270, // pselect6
    271, // ppoll
    281, // epoll_pwait
    288, // accept4
    441, // epoll_pwait2
];

const SAFE_POINT_FUNCTIONS: &[&str] = &[
    "PyEval_SaveThread",
    "PyEval_RestoreThread",
    "PyObject_Malloc",
    "PyObject_Free",
];

fn is_python_lib(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with("libpython3") && n.contains(".so"))
}

fn is_libc(path: &str) -> bool {
    path.rsplit('/').next().is_some_and(|n| {
        n == "libc.so.6"
            || (n.starts_with("libc-") && n.ends_with(".so"))
            || n.starts_with("libc.musl")
    })
}

/// `(major, minor)` from a file name like `libpython3.12.so.1.0` or
/// `python3.11`.
fn version_from_name(path: &str) -> Option<(u32, u32)> {
    let name = path.rsplit('/').next()?;
    let rest = name
        .strip_prefix("libpython")
        .or_else(|| name.strip_prefix("python"))?;
    let mut parts = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn io_to_attach(pid: i32, e: std::io::Error) -> AttachError {
    match e.kind() {
        std::io::ErrorKind::NotFound => AttachError::NoSuchProcess(pid),
        std::io::ErrorKind::PermissionDenied => permission_denied(pid),
        _ => AttachError::Inject {
            pid,
            why: e.to_string(),
        },
    }
}

fn permission_denied(pid: i32) -> AttachError {
    let owner = proc::status(pid).map(|s| s.uid).ok();
    let mut hint = String::from("run rprof as the target's user");
    if let Some(uid) = owner {
        hint.push_str(&format!(" (uid {uid})"));
    }
    hint.push_str(" or as root, or give it CAP_SYS_PTRACE (from a container: `docker run --pid=container:NAME --cap-add=SYS_PTRACE`, or `kubectl debug --target=CONTAINER` with SYS_PTRACE added; a seccomp profile must allow ptrace; `rprof doctor PID` checks all this)");
    match proc::ptrace_scope() {
        Some(s @ 1..=2) => hint.push_str(&format!(
            "; kernel.yama.ptrace_scope is {s}, which also requires that: `sudo sysctl kernel.yama.ptrace_scope=0` relaxes it"
        )),
        Some(3) => hint.push_str("; kernel.yama.ptrace_scope is 3: ptrace is disabled until reboot"),
        _ => {}
    }
    AttachError::PermissionDenied { pid, hint }
}

pub(crate) fn inspect(pid: i32, shim_file_name: &str) -> Result<Target, AttachError> {
    if pid <= 0 {
        return Err(AttachError::NoSuchProcess(pid));
    }
    let status = proc::status(pid).map_err(|e| io_to_attach(pid, e))?;
    match status.state {
        'Z' | 'X' => return Err(AttachError::Exiting(pid, status.state)),
        'T' => return Err(AttachError::Stopped(pid)),
        _ => {}
    }
    if status.tracer_pid != 0 {
        let tracer_name = proc::status(status.tracer_pid as i32)
            .map(|s| s.name)
            .unwrap_or_else(|_| "?".into());
        return Err(AttachError::AlreadyTraced {
            pid,
            tracer: status.tracer_pid,
            tracer_name,
        });
    }
    let maps = proc::maps(pid).map_err(|e| io_to_attach(pid, e))?;
    if maps.is_empty() {
        // Kernel threads and processes we may not inspect show no maps.
        return Err(AttachError::NotPython {
            pid,
            name: status.name.clone(),
        });
    }
    if maps.iter().any(|m| {
        m.path
            .as_deref()
            .is_some_and(|p| p.contains("/rprof-") && p.ends_with("/ring"))
    }) {
        return Err(AttachError::AlreadyAttached(pid));
    }
    let not_python = || AttachError::NotPython {
        pid,
        name: status.name.clone(),
    };
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| {
            p.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string()
        });
    let python = elf::find(pid, &maps, is_python_lib)
        .or_else(|| {
            exe.as_deref()
                .and_then(|e| elf::find(pid, &maps, |p| p == e))
        })
        .ok_or_else(not_python)?;
    let mut wanted: Vec<&str> = SAFE_POINT_FUNCTIONS.to_vec();
    wanted.extend(["Py_Version", "Py_IsInitialized"]);
    let py = elf::symbols(&python, &wanted).map_err(|e| AttachError::Inject { pid, why: e.0 })?;
    if !py.contains_key("Py_IsInitialized") || !py.contains_key("PyEval_SaveThread") {
        return Err(not_python());
    }
    let version = version_from_name(&python.path)
        .or_else(|| exe.as_deref().and_then(version_from_name))
        .or_else(|| py.get("Py_Version").and_then(|&a| read_py_version(pid, a)));
    if let Some((major, minor)) = version {
        if (major, minor) < (3, 8) {
            return Err(AttachError::Unsupported { pid, major, minor });
        }
    }
    super::libc::check(pid, &maps)?;
    let libc_mod = elf::find(pid, &maps, is_libc).ok_or_else(|| AttachError::Inject {
        pid,
        why: "no glibc found in the target (musl and static binaries are not supported)".into(),
    })?;
    let c = elf::symbols(
        &libc_mod,
        &[
            "dlopen",
            "dlerror",
            "dlsym",
            "__errno_location",
            "__libc_dlopen_mode",
        ],
    )
    .map_err(|e| AttachError::Inject { pid, why: e.0 })?;
    let need = |name: &str| {
        c.get(name).copied().ok_or_else(|| AttachError::Inject {
            pid,
            why: format!("{name} not found in the target's libc (glibc 2.34 or newer is needed)"),
        })
    };
    let loaded_entry = match maps.iter().find(|m| m.file_name() == Some(shim_file_name)) {
        Some(_) => {
            let module: Module =
                elf::find(pid, &maps, |p| p.rsplit('/').next() == Some(shim_file_name))
                    .ok_or_else(|| AttachError::Inject {
                        pid,
                        why: "the loaded shim vanished".into(),
                    })?;
            Some(shim_entry(module.start)?)
        }
        None => None,
    };
    let plan = Plan {
        dlopen: need("dlopen")?,
        dlerror: need("dlerror")?,
        dlsym: need("dlsym")?,
        errno_location: need("__errno_location")?,
        safe_points: SAFE_POINT_FUNCTIONS
            .iter()
            .filter_map(|n| py.get(*n).copied())
            .collect(),
        loaded_entry,
    };
    Ok(Target {
        pid,
        status,
        version,
        plan,
    })
}

/// `rprof_attach` in the embedded shim, loaded at `start`.
fn shim_entry(start: u64) -> Result<u64, AttachError> {
    let elf = goblin::elf::Elf::parse(crate::shim::SHIM).map_err(|e| AttachError::Inject {
        pid: 0,
        why: format!("the embedded shim does not parse: {e}"),
    })?;
    let base = elf::load_base(&elf.header, &elf.program_headers, start);
    elf.dynsyms
        .iter()
        .find(|s| elf.dynstrtab.get_at(s.st_name) == Some("rprof_attach"))
        .map(|s| base.wrapping_add(s.st_value))
        .ok_or_else(|| AttachError::Inject {
            pid: 0,
            why: "the embedded shim has no rprof_attach".into(),
        })
}

/// `Py_Version` (3.11+), read from the target's memory.
fn read_py_version(pid: i32, addr: u64) -> Option<(u32, u32)> {
    let process = remoteprocess::Process::new(pid as remoteprocess::Pid).ok()?;
    let mut buf = [0u8; 4];
    remoteprocess::ProcessMemory::read(&process, addr as usize, &mut buf).ok()?;
    let hex = u32::from_le_bytes(buf);
    Some((hex >> 24, (hex >> 16) & 0xff))
}

fn trace_err(pid: i32, e: TraceError) -> AttachError {
    match e {
        TraceError::Denied => permission_denied(pid),
        TraceError::Gone => AttachError::Gone(pid),
        other => AttachError::Inject {
            pid,
            why: other.to_string(),
        },
    }
}

pub(crate) fn inject(
    target: &Target,
    shim: &str,
    ring: &str,
    timeout: Duration,
) -> Result<InjectReport, AttachError> {
    let pid = target.pid;
    let err = |e| trace_err(pid, e);
    let mut tracer = Tracer::seize(pid).map_err(err)?;
    let (tid, how) = match blocked_thread(pid, &tracer) {
        Some((tid, nr)) => {
            tracer.interrupt(tid, Duration::from_secs(1)).map_err(err)?;
            // The thread may have left the call just before it stopped.
            let regs = tracer.regs(tid).map_err(err)?;
            if WAITING_SYSCALLS.contains(&(regs.orig_rax as i64)) {
                (tid, format!("blocked in system call {nr}"))
            } else {
                tracer.release(tid).map_err(err)?;
                (
                    catch_at_safe_point(&mut tracer, &target.plan, timeout).map_err(err)?,
                    "breakpoint".into(),
                )
            }
        }
        None => (
            catch_at_safe_point(&mut tracer, &target.plan, timeout).map_err(err)?,
            "breakpoint".into(),
        ),
    };
    let report = InjectReport {
        thread: tid.as_raw(),
        safe_point: how,
        reused: target.plan.loaded_entry.is_some(),
    };
    let result = load(&mut tracer, tid, &target.plan, shim, ring, timeout);
    // Give the thread back whatever happened, then detach everything.
    let released = tracer.release(tid);
    drop(tracer);
    result.map_err(|e| match e {
        Failure::Trace(t) => trace_err(pid, t),
        Failure::Call(why) => AttachError::Inject { pid, why },
    })?;
    released.map_err(err)?;
    Ok(report)
}

enum Failure {
    Trace(TraceError),
    Call(String),
}

impl From<TraceError> for Failure {
    fn from(e: TraceError) -> Self {
        Failure::Trace(e)
    }
}

/// The injected calls, on stopped thread `tid`: save `errno`, `dlopen` the
/// shim (unless loaded), find and call `rprof_attach`, restore `errno`.
fn load(
    tracer: &mut Tracer,
    tid: Pid,
    plan: &Plan,
    shim: &str,
    ring: &str,
    timeout: Duration,
) -> Result<(), Failure> {
    let errno_at = tracer.call(tid, plan.errno_location, &[], &[], timeout)?;
    let errno = tracer.read(errno_at, 4)?;
    let result = (|| {
        let entry = match plan.loaded_entry {
            Some(e) => e,
            None => {
                let handle = tracer.call(
                    tid,
                    plan.dlopen,
                    &[Arg::Data(0), Arg::Value(libc::RTLD_NOW as u64)],
                    &cstr(shim),
                    timeout,
                )?;
                if handle == 0 {
                    let msg = tracer.call(tid, plan.dlerror, &[], &[], timeout)?;
                    let why = if msg == 0 {
                        "dlopen failed".to_string()
                    } else {
                        tracer.read_cstr(msg, 512)?
                    };
                    return Err(Failure::Call(format!("dlopen of the shim failed: {why}")));
                }
                let entry = tracer.call(
                    tid,
                    plan.dlsym,
                    &[Arg::Value(handle), Arg::Data(0)],
                    &cstr("rprof_attach"),
                    timeout,
                )?;
                if entry == 0 {
                    return Err(Failure::Call("the shim has no rprof_attach".into()));
                }
                entry
            }
        };
        let r = tracer.call(tid, entry, &[Arg::Data(0)], &cstr(ring), timeout)?;
        if r as i32 != 0 {
            return Err(Failure::Call(
                "the shim could not start its agent thread".into(),
            ));
        }
        Ok(())
    })();
    if errno.len() == 4 {
        tracer.write(errno_at, &errno)?;
    }
    result
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// A thread blocked in a waiting system call, seen twice with the same
/// call, arguments and stack pointer; the main thread first.
fn blocked_thread(pid: i32, tracer: &Tracer) -> Option<(Pid, i64)> {
    let look = |tid: Pid| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{}/syscall", tid.as_raw())).ok()
    };
    let mut tids = tracer.threads();
    tids.sort_by_key(|t| (t.as_raw() != pid, t.as_raw()));
    let first: HashMap<Pid, String> = tids
        .iter()
        .filter_map(|t| look(*t).map(|s| (*t, s)))
        .collect();
    std::thread::sleep(Duration::from_millis(2));
    for tid in tids {
        let (Some(a), Some(b)) = (first.get(&tid), look(tid)) else {
            continue;
        };
        let nr: i64 = match b.split_whitespace().next().and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => continue,
        };
        if *a == b && WAITING_SYSCALLS.contains(&nr) {
            return Some((tid, nr));
        }
    }
    None
}

/// Plants breakpoints at the safe-point functions and returns the first
/// thread that reaches one, stopped at the function's entry with the
/// breakpoints removed again.
fn catch_at_safe_point(
    tracer: &mut Tracer,
    plan: &Plan,
    timeout: Duration,
) -> Result<Pid, TraceError> {
    let main = tracer.pid();
    tracer.interrupt(main, Duration::from_secs(1))?;
    let mut planted: Vec<(u64, u8)> = Vec::new();
    for &addr in &plan.safe_points {
        match tracer.poke_code_byte(main, addr, 0xcc) {
            Ok(old) => planted.push((addr, old)),
            Err(e) => {
                unplant(tracer, main, &planted);
                tracer.release(main)?;
                return Err(e);
            }
        }
    }
    tracer.release(main)?;
    let is_bp = |rip: u64| planted.iter().any(|(a, _)| *a == rip.wrapping_sub(1));
    let deadline = Instant::now() + timeout;
    let mut hit = None;
    while hit.is_none() && Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        match tracer.next_stop(left)? {
            None => break,
            Some(Stop::Signal(tid, Signal::SIGTRAP)) => {
                let mut regs = tracer.regs(tid)?;
                if is_bp(regs.rip) {
                    regs.rip -= 1;
                    tracer.set_regs(tid, regs)?;
                    tracer.swallow_signal(tid);
                    hit = Some(tid);
                } else {
                    tracer.pass(Stop::Signal(tid, Signal::SIGTRAP))?;
                }
            }
            Some(other) => tracer.pass(other)?,
        }
    }
    // Remove the breakpoints through a stopped thread.
    let via = match hit {
        Some(t) => t,
        None => {
            tracer.interrupt(main, Duration::from_secs(1))?;
            main
        }
    };
    unplant(tracer, via, &planted);
    // Threads that hit a breakpoint just before it was removed are stopped
    // one byte past the function's entry: put them back on it.
    let settle = Instant::now() + Duration::from_millis(3);
    while Instant::now() < settle {
        match tracer.next_stop(Duration::from_millis(1))? {
            None => {}
            Some(Stop::Signal(tid, Signal::SIGTRAP)) if Some(tid) != hit => {
                let mut regs = tracer.regs(tid)?;
                if is_bp(regs.rip) {
                    regs.rip -= 1;
                    tracer.set_regs(tid, regs)?;
                    tracer.swallow_signal(tid);
                    tracer.release(tid)?;
                } else {
                    tracer.pass(Stop::Signal(tid, Signal::SIGTRAP))?;
                }
            }
            Some(other) => tracer.pass(other)?,
        }
    }
    match hit {
        Some(t) => Ok(t),
        None => {
            tracer.release(main)?;
            Err(TraceError::Timeout("for a thread to reach a safe point"))
        }
    }
}

fn unplant(tracer: &Tracer, via: Pid, planted: &[(u64, u8)]) {
    for &(addr, old) in planted {
        let _ = tracer.poke_code_byte(via, addr, old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_names() {
        assert_eq!(version_from_name("/x/libpython3.12.so.1.0"), Some((3, 12)));
        assert_eq!(version_from_name("/usr/bin/python3.11"), Some((3, 11)));
        assert_eq!(version_from_name("/usr/bin/python3"), None);
        assert_eq!(version_from_name("/usr/lib/libpython2.7.so"), Some((2, 7)));
    }

    #[test]
    fn recognises_libraries() {
        assert!(is_python_lib(
            "/root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0"
        ));
        assert!(!is_python_lib("/usr/lib/libpythonic.so"));
        assert!(is_libc("/lib/x86_64-linux-gnu/libc.so.6"));
        assert!(!is_libc("/lib/x86_64-linux-gnu/libcap.so.2"));
    }
}
