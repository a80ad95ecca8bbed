//! The injected calls: on a borrowed thread, have the target create the
//! ring's and the shim's memfds, fill them from rprof, load the shim and
//! start its agent; then give the thread back and make sure no thread of
//! the target is left traced.
//!
//! The calls, each returning through [`remote::Frame`]:
//! 1. `close(fd)` for memfds a killed rprof left open in the target;
//! 2. `syscall(SYS_memfd_create, "rprof-ring-NONCE", MFD_CLOEXEC |
//!    MFD_ALLOW_SEALING)`: rprof finds the new fd by its name in
//!    `/proc/PID/fd`, takes its own handle (`pidfd_getfd`), checks it is a
//!    memfd of that name, sizes it and reserves every page (`fallocate`; a
//!    target without the memory gets a one-line error and nothing else)
//!    and seals its size;
//! 3. the same for `rprof-shim-HASH-NONCE` (with `MFD_EXEC` where the
//!    kernel knows it), which rprof fills with the shim and seals;
//! 4. `dlopen("/proc/self/fd/N", RTLD_NOW)`; the shim's base comes from
//!    `/proc/PID/maps`, `rprof_attach`'s address from the embedded ELF;
//! 5. with `--subprocesses` only: `syscall(SYS_socketpair, AF_UNIX,
//!    SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)`; rprof takes `sv[1]`
//!    (`pidfd_getfd`) and closes it in the target, so that once rprof is
//!    gone the shim's announcements fail at once (see `crate::follow`);
//! 6. `rprof_attach(ring_fd, shim_fd, sv[0] or -1)`, which maps the ring,
//!    closes the fds, keeps the announce channel, starts the shim's agent
//!    thread and returns.
//!
//! Steps 3–4 are skipped when this very shim is already loaded. errno is
//! saved before and put back after. rprof's own SIGINT/SIGTERM/SIGHUP/
//! SIGQUIT are looked at only between calls: the attach is then undone
//! (fds closed, thread given back) and reported as interrupted.

use super::inspect::{InjectReport, Plan};
use super::ptrace::{self, Seized, TraceError};
use super::remote::{CallError, Frame};
use super::safepoint::{self, Missed};
use super::{proc, AttachError, Target};
use crate::{shim, signals, testing};
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const SYS_MEMFD_CREATE: u64 = 319;
const SYS_SOCKETPAIR: u64 = 53;

fn trace_err(pid: i32, e: TraceError) -> AttachError {
    match e {
        TraceError::Gone => AttachError::Gone(pid),
        TraceError::Denied => super::inspect::permission_denied(pid),
        other => AttachError::Inject {
            pid,
            why: other.to_string(),
        },
    }
}

fn call_err(pid: i32, e: CallError) -> AttachError {
    match e {
        CallError::Trace(t) => trace_err(pid, t),
        other => AttachError::Inject {
            pid,
            why: other.to_string(),
        },
    }
}

/// One borrowed thread with its frame, and the state rprof put into the
/// target through it. Dropping it undoes that state: memfds created and
/// not yet handed to the shim are closed in the target, errno is put back,
/// the thread is detached (waited for if need be) and rprof waits until no
/// thread of the target shows it as tracer.
struct Borrowed<'a> {
    pid: i32,
    plan: &'a Plan,
    thread: Seized,
    frame: Frame,
    /// Target fds of memfds we created, until the shim owns them.
    created: Vec<i32>,
    /// errno's address and value before the first call.
    errno: Option<(u64, Vec<u8>)>,
}

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        for fd in std::mem::take(&mut self.created) {
            if self.close(fd).is_err() {
                break;
            }
        }
        if let Some((at, v)) = &self.errno {
            let _ = ptrace::write(self.pid, *at, v);
        }
        let _ = self.thread.release();
        confirm_untraced(self.pid);
    }
}

impl Borrowed<'_> {
    fn call(&mut self, func: u64, args: &[u64], data: &[u8]) -> Result<(), AttachError> {
        let (pid, tid) = (self.pid, self.thread.tid());
        let mut waiting = || {
            eprintln!(
                "rprof: thread {tid} of PID {pid} is still inside the injected call after 2 s \
                 (another thread probably holds the dynamic loader's lock, e.g. in a slow import); \
                 waiting for it to return (interrupting rprof now is safe: the thread puts itself back)"
            );
        };
        self.frame
            .call(&mut self.thread, func, args, data, &mut waiting)
            .map_err(|e| call_err(pid, e))
    }

    fn close(&mut self, fd: i32) -> Result<(), AttachError> {
        self.call(self.plan.close, &[fd as u64], &[])
    }

    /// `memfd_create(name, flags)` in the target; the new fd, found by name.
    fn memfd(&mut self, name: &str, flags: u32) -> Result<Option<i32>, AttachError> {
        let mut data = name.as_bytes().to_vec();
        data.push(0);
        let ptr = self.frame.data_ptr();
        self.call(
            self.plan.syscall,
            &[SYS_MEMFD_CREATE, ptr, u64::from(flags)],
            &data,
        )?;
        let link = shim::memfd_link(name);
        let fds = proc::fds(self.pid).map_err(|_| AttachError::Gone(self.pid))?;
        Ok(fds.into_iter().find(|(_, l)| *l == link).map(|(fd, _)| fd))
    }
}

/// rprof's own handle on the target's fd `fd` (not checked).
fn dup_fd(pid: i32, fd: i32) -> Result<File, String> {
    // SAFETY: plain system calls; a returned fd is ours.
    let ours = unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        let got = if pidfd >= 0 {
            let g = libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) as i32;
            libc::close(pidfd);
            g
        } else {
            -1
        };
        if got >= 0 {
            got
        } else {
            let path = std::ffi::CString::new(format!("/proc/{pid}/fd/{fd}")).unwrap_or_default();
            libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC)
        }
    };
    if ours < 0 {
        return Err(format!(
            "cannot open the target's memfd: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `ours` is a new descriptor owned by nobody else.
    Ok(unsafe { File::from_raw_fd(ours) })
}

/// rprof's own handle on the target's fd `fd`, checked to be the memfd
/// named `name`.
fn take_fd(pid: i32, fd: i32, name: &str) -> Result<File, String> {
    let file = dup_fd(pid, fd)?;
    let ours = std::os::fd::AsRawFd::as_raw_fd(&file);
    let meta = file.metadata().map_err(|e| e.to_string())?;
    let link = std::fs::read_link(format!("/proc/self/fd/{ours}"))
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !meta.file_type().is_file()
        || std::os::unix::fs::MetadataExt::nlink(&meta) != 0
        || link != shim::memfd_link(name)
    {
        return Err(format!(
            "fd {fd} of the target is not the memfd rprof asked for ({link})"
        ));
    }
    Ok(file)
}

/// Borrows a thread and runs the calls. `ring_bytes` is the ring's size;
/// `make_ring` turns the reserved ring memfd into the caller's reader.
pub(crate) fn inject<R>(
    target: &Target,
    ring_bytes: shim::RingBytes,
    make_ring: impl FnOnce(File) -> Result<R, String>,
    timeout: Duration,
    follow: bool,
) -> Result<(R, InjectReport, Option<OwnedFd>), AttachError> {
    let pid = target.pid;
    let plan = &target.plan;
    let deadline = Instant::now() + timeout;
    let mut skip: Vec<i32> = Vec::new();
    let (thread, how, frame) = loop {
        let caught =
            match safepoint::catch(pid, &plan.ranges, deadline, &skip, &|| signals::pending()) {
                Ok(c) => c,
                Err(Missed::Timeout) => return Err(AttachError::NoSafePoint(pid)),
                Err(Missed::Interrupted) => return Err(interrupted(pid)),
                Err(Missed::Trace(e)) => return Err(trace_err(pid, e)),
            };
        testing::pause_at("caught", None);
        if signals::pending() {
            return Err(interrupted(pid));
        }
        match Frame::build(pid, &caught.thread, plan.restore_rt) {
            Ok(f) => break (caught.thread, caught.how, f),
            Err(CallError::NoRoom) => {
                skip.push(caught.thread.tid());
                caught.thread.detach().map_err(|e| trace_err(pid, e))?;
            }
            Err(e) => return Err(call_err(pid, e)),
        }
    };
    let errno = plan.errno_tpoff.and_then(|off| {
        let at = frame.fs_base().wrapping_add(off);
        let v = ptrace::read(pid, at, 4).ok().filter(|v| v.len() == 4)?;
        Some((at, v))
    });
    let mut b = Borrowed {
        pid,
        plan,
        thread,
        frame,
        created: Vec::new(),
        errno,
    };
    let nonce = shim::nonce();
    let result = run_calls(&mut b, &nonce, ring_bytes, make_ring, follow);
    let (calls, tid) = (b.frame.calls(), b.thread.tid());
    // Undo what is left to undo, give the thread back, check no thread is
    // traced.
    drop(b);
    let (ring, announce) = result?;
    Ok((
        ring,
        InjectReport {
            thread: tid,
            safe_point: how,
            reused: plan.loaded_entry.is_some(),
            calls,
            ring_link: shim::memfd_link(&shim::ring_name(&nonce)),
        },
        announce,
    ))
}

fn interrupted(pid: i32) -> AttachError {
    AttachError::Interrupted(pid)
}

fn run_calls<R>(
    b: &mut Borrowed<'_>,
    nonce: &str,
    ring_bytes: shim::RingBytes,
    make_ring: impl FnOnce(File) -> Result<R, String>,
    follow: bool,
) -> Result<(R, Option<OwnedFd>), AttachError> {
    let pid = b.pid;
    let check = || {
        if signals::pending() {
            Err(interrupted(pid))
        } else {
            Ok(())
        }
    };
    check()?;
    // 1. What a killed rprof left open.
    let stale: Vec<i32> = proc::fds(pid)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, l)| shim::is_rprof_memfd(l))
        .map(|(fd, _)| fd)
        .collect();
    for fd in stale {
        b.close(fd)?;
    }
    check()?;
    // 2. The ring.
    let ring_name = shim::ring_name(nonce);
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    let ring_fd = b
        .memfd(&ring_name, flags)?
        .ok_or_else(|| AttachError::Inject {
            pid,
            why: "memfd_create failed in the target (Linux 3.17 or newer is needed)".into(),
        })?;
    b.created.push(ring_fd);
    let file = take_fd(pid, ring_fd, &ring_name).map_err(|why| AttachError::Inject { pid, why })?;
    shim::reserve(&file, ring_bytes).map_err(|e| AttachError::NoMemory {
        pid,
        mib: ring_bytes.reserved >> 20,
        why: e.to_string(),
    })?;
    shim::seal(&file, shim::RING_SEALS).map_err(|e| AttachError::Inject {
        pid,
        why: format!("cannot seal the ring: {e}"),
    })?;
    let ring = make_ring(file).map_err(|why| AttachError::Inject { pid, why })?;
    check()?;
    // 3-4. The shim.
    let (entry, shim_fd) = match b.plan.loaded_entry {
        Some(e) => (e, -1),
        None => {
            let name = shim::shim_name(nonce);
            let fd = match b.memfd(&name, flags | shim::MFD_EXEC)? {
                Some(fd) => fd,
                None => b.memfd(&name, flags)?.ok_or_else(|| AttachError::Inject {
                    pid,
                    why: "memfd_create failed in the target".into(),
                })?,
            };
            b.created.push(fd);
            let file = take_fd(pid, fd, &name).map_err(|why| AttachError::Inject { pid, why })?;
            shim::fill_shim(&file).map_err(|e| AttachError::Inject {
                pid,
                why: format!("cannot write the shim: {e}"),
            })?;
            drop(file);
            check()?;
            let path = format!("/proc/self/fd/{fd}\0");
            let ptr = b.frame.data_ptr();
            b.call(
                b.plan.dlopen,
                &[ptr, libc::RTLD_NOW as u64],
                path.as_bytes(),
            )?;
            let link = shim::memfd_link(&name);
            let maps = proc::maps(pid).map_err(|_| AttachError::Gone(pid))?;
            let Some(start) = maps
                .iter()
                .filter(|m| m.label == link)
                .map(|m| m.start)
                .min()
            else {
                return Err(AttachError::Inject {
                    pid,
                    why: "dlopen of the shim failed in the target (is /proc mounted there, and are memfds executable: vm.memfd_noexec?)".into(),
                });
            };
            (super::inspect::shim_entry(pid, start)?, fd)
        }
    };
    check()?;
    // 5. The announce channel.
    let (announce_fd, announce) = if follow {
        let (theirs, ours) = socket_pair(b)?;
        (theirs, Some(ours))
    } else {
        (-1, None)
    };
    // 6. Start the agent; the shim owns (and closes) the fds from here.
    b.call(
        entry,
        &[
            ring_fd as u64,
            shim_fd as i64 as u64,
            announce_fd as i64 as u64,
        ],
        &[],
    )?;
    b.created.clear();
    Ok((ring, announce))
}

/// A `SOCK_SEQPACKET` socket pair made in the target: its end's fd there
/// (in `b.created` until the shim owns it) and rprof's end, closed in the
/// target.
fn socket_pair(b: &mut Borrowed<'_>) -> Result<(i32, OwnedFd), AttachError> {
    let pid = b.pid;
    let ptr = b.frame.data_ptr();
    let unset = [0xffu8; 8];
    b.call(
        b.plan.syscall,
        &[
            SYS_SOCKETPAIR,
            libc::AF_UNIX as u64,
            (libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC) as u64,
            0,
            ptr,
        ],
        &unset,
    )?;
    let sv = ptrace::read(pid, ptr, 8).map_err(|e| trace_err(pid, e))?;
    let theirs = i32::from_le_bytes([sv[0], sv[1], sv[2], sv[3]]);
    let peer = i32::from_le_bytes([sv[4], sv[5], sv[6], sv[7]]);
    if theirs < 0 || peer < 0 || sv.len() != 8 {
        return Err(AttachError::Inject {
            pid,
            why: "socketpair failed in the target".into(),
        });
    }
    b.created.push(theirs);
    b.created.push(peer);
    let ours = dup_fd(pid, peer).map_err(|why| AttachError::Inject { pid, why })?;
    let meta = ours.metadata().map_err(|e| AttachError::Inject {
        pid,
        why: e.to_string(),
    })?;
    if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
        return Err(AttachError::Inject {
            pid,
            why: format!("fd {peer} of the target is not the socket rprof asked for"),
        });
    }
    b.created.retain(|&fd| fd != peer);
    b.close(peer)?;
    Ok((theirs, OwnedFd::from(ours)))
}

/// Waits (bounded) until no thread of `pid` shows rprof as its tracer.
fn confirm_untraced(pid: i32) {
    let me = std::process::id();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let tids = proc::threads(pid).unwrap_or_default();
        if tids.iter().all(|t| proc::task_tracer(pid, *t) != Some(me)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
