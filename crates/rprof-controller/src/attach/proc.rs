//! What `/proc` says about a process: its state, tracer, owner, threads,
//! memory maps and current system calls. Everything read here comes from
//! the kernel, but describes a process that may be changing (or exiting)
//! while we read, so every parser tolerates short or odd input.

use std::io;
use std::path::PathBuf;

/// `/proc/PID/status`, the fields rprof needs.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// Command name.
    pub name: String,
    /// State letter: R, S, D, T, t, Z, X...
    pub state: char,
    /// PID of the process tracing this one, 0 if none.
    pub tracer_pid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
}

/// Reads `/proc/PID/status`.
pub fn status(pid: i32) -> io::Result<Status> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let mut s = Status::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "Name" => s.name = value.to_string(),
            "State" => s.state = value.chars().next().unwrap_or('?'),
            "TracerPid" => s.tracer_pid = value.parse().unwrap_or(0),
            "Uid" => s.uid = first_number(value),
            "Gid" => s.gid = first_number(value),
            _ => {}
        }
    }
    Ok(s)
}

fn first_number(s: &str) -> u32 {
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX)
}

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// `rwxp`-style permissions.
    pub perms: String,
    /// Offset in the file.
    pub offset: u64,
    /// The file, as the target sees it; `None` for anonymous memory.
    pub path: Option<String>,
    /// The last field as the kernel wrote it (`[stack]`, a path with
    /// ` (deleted)`, or empty).
    pub label: String,
}

/// Parses the text of `/proc/PID/maps`.
pub fn parse_maps(text: &str) -> Vec<Mapping> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.splitn(6, ' ');
        let (Some(range), Some(perms), Some(offset), Some(_dev), Some(_inode)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end), Ok(offset)) = (
            u64::from_str_radix(start, 16),
            u64::from_str_radix(end, 16),
            u64::from_str_radix(offset, 16),
        ) else {
            continue;
        };
        let label = fields.next().map(str::trim).unwrap_or("").to_string();
        let path = Some(label.as_str())
            .filter(|p| p.starts_with('/'))
            .map(|p| p.strip_suffix(" (deleted)").unwrap_or(p).to_string());
        out.push(Mapping {
            start,
            end,
            perms: perms.to_string(),
            offset,
            path,
            label,
        });
    }
    out
}

/// Reads `/proc/PID/maps`.
pub fn maps(pid: i32) -> io::Result<Vec<Mapping>> {
    Ok(parse_maps(&std::fs::read_to_string(format!(
        "/proc/{pid}/maps"
    ))?))
}

/// The thread ids of a process.
pub fn threads(pid: i32) -> io::Result<Vec<i32>> {
    let mut out: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// The state letter of thread `tid` (`/proc/PID/task/TID/stat`).
pub fn task_state(pid: i32, tid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    s[s.rfind(')')? + 1..].trim_start().chars().next()
}

/// `TracerPid` of thread `tid`.
pub fn task_tracer(pid: i32, tid: i32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Thread `tid`'s line of `/proc/PID/task/TID/syscall`.
pub fn task_syscall(pid: i32, tid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall")).ok()
}

/// Every open file descriptor of `pid` with what it links to.
pub fn fds(pid: i32) -> io::Result<Vec<(i32, String)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Ok(link) = std::fs::read_link(e.path()) {
            out.push((fd, link.to_string_lossy().into_owned()));
        }
    }
    out.sort();
    Ok(out)
}

/// How a process ended, read from `/proc/PID/stat` while it is a zombie
/// (before its parent collects it): `Some(wait status)`.
pub fn zombie_exit_code(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 is the state; field 52 (exit_code) is index 49 after ')'.
    if fields.first() != Some(&"Z") {
        return None;
    }
    fields.get(49)?.parse().ok()
}

/// `kernel.yama.ptrace_scope`, if Yama is enabled.
pub fn ptrace_scope() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A path inside the target's mount namespace, as this process can open it.
pub fn in_target_root(pid: i32, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root{path}"))
}

/// The file mapped at `path` in the target, as this process can open it.
///
/// First choice is `/proc/PID/map_files/START-END` of its lowest mapping:
/// the very file the target mapped, whatever has since been renamed or
/// planted at its path, and right for a target in a `chroot` (whose maps
/// show paths relative to *our* root, which `/proc/PID/root` would
/// prefix a second time). Opening it needs `CAP_SYS_ADMIN` (or
/// `CAP_CHECKPOINT_RESTORE`); without it, the path is read through
/// `/proc/PID/root`, as a sidecar container must.
pub fn mapped_file(pid: i32, maps: &[Mapping], path: &str) -> PathBuf {
    if let Some(m) = maps
        .iter()
        .filter(|m| m.path.as_deref() == Some(path))
        .min_by_key(|m| m.start)
    {
        let direct = PathBuf::from(format!("/proc/{pid}/map_files/{:x}-{:x}", m.start, m.end));
        if std::fs::File::open(&direct).is_ok() {
            return direct;
        }
    }
    in_target_root(pid, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let text = "\
55d0c0000000-55d0c0001000 r--p 00000000 fd:01 1234   /usr/bin/python3.11
7f00aa000000-7f00aa100000 r-xp 00028000 fd:01 99 /lib/x86_64-linux-gnu/libc.so.6
7f00bb000000-7f00bb001000 rw-p 00000000 00:00 0
7f00cc000000-7f00cc001000 r-xp 00001000 00:1a 77 /dev/shm/rprof-x/librprof injector.so (deleted)
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
garbage line
";
        let m = parse_maps(text);
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].path.as_deref(), Some("/usr/bin/python3.11"));
        assert_eq!(m[1].offset, 0x28000);
        assert_eq!(m[4].label, "[stack]");
        assert_eq!(m[2].path, None);
        assert_eq!(
            m[3].path.as_deref(),
            Some("/dev/shm/rprof-x/librprof injector.so")
        );
        assert_eq!(m[4].path, None);
    }

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id() as i32;
        let s = status(me).unwrap();
        assert!(matches!(s.state, 'R' | 'S'));
        assert!(threads(me).unwrap().contains(&me));
        assert!(maps(me).unwrap().iter().any(|m| m.perms.contains('x')));
    }
}
