//! Looking before touching: everything `rprof attach` learns about the
//! target from `/proc` and the ELF files it maps, without stopping or
//! changing it. Every refusal here leaves the target untouched. The result
//! is a [`Plan`]: the addresses the remote calls need and the code ranges
//! the safe-point search needs.

use super::elf;
use super::loaderlock;
use super::proc;
use super::safepoint::Ranges;
use super::{AttachError, Target};
use crate::shim;

/// Addresses needed to inject, found by [`inspect`].
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub dlopen: u64,
    pub syscall: u64,
    pub close: u64,
    /// glibc's `__restore_rt` (`mov $15,%rax; syscall`).
    pub restore_rt: u64,
    /// errno's offset from the thread pointer, if `__errno_location` has
    /// the usual shape.
    pub errno_tpoff: Option<u64>,
    /// Code ranges for the safe-point search.
    pub ranges: Ranges,
    /// `rprof_attach` in a copy of this very shim that is already loaded.
    pub loaded_entry: Option<u64>,
}

/// What the injection did.
#[derive(Debug, Clone)]
pub struct InjectReport {
    /// The thread that was borrowed.
    pub thread: i32,
    /// How it was found.
    pub safe_point: String,
    /// Whether the shim was already loaded (a previous attach).
    pub reused: bool,
    /// How many calls were injected.
    pub calls: u32,
    /// The ring memfd's name as `/proc/PID/maps` shows it.
    pub ring_link: String,
}

fn is_python_lib(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with("libpython3") && n.contains(".so"))
}

pub(crate) fn is_loader(path: &str) -> bool {
    path.rsplit('/')
        .next()
        .is_some_and(|n| n.starts_with("ld-linux") || n.starts_with("ld-2.") || n == "ld.so")
}

pub(crate) fn is_libc(path: &str) -> bool {
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

/// A mapped rprof ring whose shim has not finished with it (state NEW or
/// RECORDING); a finished capture's ring that is still being unmapped
/// does not count.
fn live_ring(pid: i32, m: &proc::Mapping) -> bool {
    let legacy = m
        .path
        .as_deref()
        .is_some_and(|p| p.contains("/rprof-") && p.ends_with("/ring"));
    if !(shim::is_ring(&m.label) || legacy) || m.offset != 0 {
        return false;
    }
    let at = std::mem::offset_of!(rprof_abi::Header, shim_state);
    match super::ptrace::read(pid, m.start + at as u64, 4) {
        Ok(b) if b.len() == 4 => {
            let st = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
            st == rprof_abi::state::NEW || st == rprof_abi::state::RECORDING
        }
        // Unreadable: assume somebody is using it.
        _ => true,
    }
}

/// `__restore_rt` in the executable mapping of the target's libc: the only
/// place of its 9 bytes (`mov $15,%rax; syscall`).
pub(crate) fn find_restore_rt(pid: i32, maps: &[proc::Mapping], libc_path: &str) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(proc::mapped_file(pid, maps, libc_path)).ok()?;
    for m in maps
        .iter()
        .filter(|m| m.perms.contains('x') && m.path.as_deref() == Some(libc_path))
    {
        let len = (m.end - m.start).min(64 << 20) as usize;
        let mut buf = vec![0u8; len];
        let n = file.read_at(&mut buf, m.offset).ok()?;
        buf.truncate(n);
        let pat = super::remote::RESTORE_RT;
        if let Some(i) = buf.windows(pat.len()).position(|w| w == pat) {
            return Some(m.start + i as u64);
        }
    }
    None
}

/// errno's offset from the thread pointer, from the code of
/// `__errno_location` (`[endbr64]; mov disp(%rip),%rax; add %fs:0,%rax;
/// ret`) and the GOT word it loads.
fn errno_tpoff(pid: i32, at: u64) -> Option<u64> {
    let code = super::ptrace::read(pid, at, 24).ok()?;
    let skip = if code.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]) {
        4
    } else {
        0
    };
    let c = code.get(skip..skip + 17)?;
    if c[..3] != [0x48, 0x8b, 0x05]
        || c[7..16] != [0x64, 0x48, 0x03, 0x04, 0x25, 0, 0, 0, 0]
        || c[16] != 0xc3
    {
        return None;
    }
    let disp = i32::from_le_bytes([c[3], c[4], c[5], c[6]]) as i64;
    let got = (at as i64 + skip as i64 + 7 + disp) as u64;
    let w = super::ptrace::read(pid, got, 8).ok()?;
    Some(u64::from_le_bytes(w.try_into().ok()?))
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

pub(crate) fn permission_denied(pid: i32) -> AttachError {
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

pub(crate) fn inspect(pid: i32) -> Result<Target, AttachError> {
    if pid <= 0 {
        return Err(AttachError::NoSuchProcess(pid));
    }
    let status = proc::status(pid).map_err(|e| io_to_attach(pid, e))?;
    match status.state {
        'Z' | 'X' => return Err(AttachError::Exiting(pid, status.state)),
        'T' => return Err(AttachError::Stopped(pid)),
        _ => {}
    }
    // Any thread traced: a debugger, or another rprof borrowing a thread.
    let tids = proc::threads(pid).map_err(|e| io_to_attach(pid, e))?;
    let tracer = std::iter::once(status.tracer_pid)
        .chain(tids.iter().filter_map(|t| proc::task_tracer(pid, *t)))
        .find(|t| *t != 0);
    if let Some(tracer) = tracer {
        let tracer_name = proc::status(tracer as i32)
            .map(|s| s.name)
            .unwrap_or_else(|_| "?".into());
        return Err(AttachError::AlreadyTraced {
            pid,
            tracer,
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
    if maps.iter().any(|m| live_ring(pid, m)) {
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
    let wanted = ["Py_Version", "Py_IsInitialized", "PyEval_SaveThread"];
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
        &["dlopen", "syscall", "close", "__errno_location"],
    )
    .map_err(|e| AttachError::Inject { pid, why: e.0 })?;
    let need = |name: &str| {
        c.get(name).copied().ok_or_else(|| AttachError::Inject {
            pid,
            why: format!("{name} not found in the target's libc (glibc 2.34 or newer is needed)"),
        })
    };
    let exec_of = |pred: &dyn Fn(&str) -> bool| -> Vec<(u64, u64)> {
        maps.iter()
            .filter(|m| m.perms.contains('x') && m.path.as_deref().is_some_and(pred))
            .map(|m| (m.start, m.end))
            .collect()
    };
    let restore_rt =
        find_restore_rt(pid, &maps, &libc_mod.path).ok_or_else(|| AttachError::Inject {
            pid,
            why: "no rt_sigreturn trampoline (__restore_rt) found in the target's libc".into(),
        })?;
    let loader_locks = elf::find(pid, &maps, is_loader).and_then(|ld| loaderlock::find(pid, &ld));
    if std::env::var_os("RPROF_DEBUG").is_some() {
        match &loader_locks {
            Some(l) => eprintln!("rprof: debug: the loader's locks: {} found", l.len()),
            None => eprintln!("rprof: debug: the loader's locks: not found"),
        }
    }
    let ranges = Ranges {
        python: exec_of(&|p: &str| p == python.path),
        loader: exec_of(&|p: &str| is_loader(p)),
        loader_locks,
        restore_rt,
    };
    let errno_tpoff = c
        .get("__errno_location")
        .and_then(|&at| errno_tpoff(pid, at));
    let loaded_entry = match maps.iter().find(|m| shim::is_this_shim(&m.label)) {
        Some(m) => {
            let start = maps
                .iter()
                .filter(|x| x.label == m.label)
                .map(|x| x.start)
                .min()
                .unwrap_or(m.start);
            Some(shim_entry(pid, start)?)
        }
        None => None,
    };
    let plan = Plan {
        dlopen: need("dlopen")?,
        syscall: need("syscall")?,
        close: need("close")?,
        restore_rt,
        errno_tpoff,
        ranges,
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
pub(crate) fn shim_entry(pid: i32, start: u64) -> Result<u64, AttachError> {
    let elf = goblin::elf::Elf::parse(crate::shim::SHIM).map_err(|e| AttachError::Inject {
        pid,
        why: format!("the embedded shim does not parse: {e}"),
    })?;
    let base = elf::load_base(&elf.header, &elf.program_headers, start);
    elf.dynsyms
        .iter()
        .find(|s| elf.dynstrtab.get_at(s.st_name) == Some("rprof_attach"))
        .map(|s| base.wrapping_add(s.st_value))
        .ok_or_else(|| AttachError::Inject {
            pid,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_errno_and_restore_rt_in_our_own_process() {
        let me = std::process::id() as i32;
        let maps = proc::maps(me).unwrap();
        let libc_mod = elf::find(me, &maps, is_libc).unwrap();
        let syms = elf::symbols(&libc_mod, &["__errno_location"]).unwrap();
        let off = errno_tpoff(me, syms["__errno_location"]).expect("usual __errno_location");
        let fs_base: u64;
        // SAFETY: reading the thread pointer (%fs:0 holds it on x86_64).
        unsafe { std::arch::asm!("mov {}, fs:0", out(reg) fs_base) };
        // SAFETY: __errno_location has no preconditions.
        let real = unsafe { libc::__errno_location() } as u64;
        assert_eq!(fs_base.wrapping_add(off), real);
        let rt = find_restore_rt(me, &maps, &libc_mod.path).unwrap();
        let bytes = super::super::ptrace::read(me, rt, 9).unwrap();
        assert_eq!(bytes, super::super::remote::RESTORE_RT);
    }

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
        assert!(is_loader("/lib64/ld-linux-x86-64.so.2"));
        assert!(!is_libc("/lib/x86_64-linux-gnu/libcap.so.2"));
    }
}
