//! ptrace of one thread at a time: the [`Seized`] guard.
//!
//! rprof never traces the whole target. It seizes (`PTRACE_SEIZE`, which
//! does not stop the thread) only the thread it is looking at or borrowing,
//! and that thread is in one of three states this type tracks: running,
//! asked to stop (`PTRACE_INTERRUPT` sent, stop not seen yet: a thread in an
//! uninterruptible wait such as `vfork` only stops once it leaves it), or
//! stopped. Dropping a [`Seized`] detaches, and since `PTRACE_DETACH` only
//! works on a stopped thread, a thread that was asked to stop is *waited
//! for* first, however long that takes: it is never left traced with a
//! stop pending (which would freeze it later, with nobody to resume it).
//!
//! Signals that arrive for the thread while it is stopped by rprof are
//! held and delivered when it is resumed or detached.

use nix::errno::Errno;
use nix::sys::ptrace::{self, Event as PtraceEvent, Options};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

pub use libc::user_regs_struct as Regs;

/// Errors of tracing.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// ptrace refused (EPERM): no permission to trace.
    #[error("permission denied")]
    Denied,
    /// Another errno.
    #[error("{what}: {errno}")]
    Sys {
        /// What failed.
        what: &'static str,
        /// Why.
        errno: Errno,
    },
    /// The thread or process is gone.
    #[error("the target exited")]
    Gone,
}

pub(crate) fn sys(what: &'static str) -> impl Fn(Errno) -> TraceError {
    move |errno| match errno {
        Errno::EPERM => TraceError::Denied,
        Errno::ESRCH => TraceError::Gone,
        errno => TraceError::Sys { what, errno },
    }
}

/// What a wait saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Stopped by our `PTRACE_INTERRUPT`.
    Interrupted,
    /// Stopped because the whole process was stopped (SIGSTOP & co).
    GroupStop(Signal),
    /// Stopped with a signal about to be delivered.
    Signal(Signal),
    /// Stopped at a system call entry or exit (`PTRACE_SYSCALL`).
    Syscall,
    /// The thread exited.
    Exited,
}

/// One seized thread. See the module docs.
pub struct Seized {
    tid: Pid,
    stopped: bool,
    interrupt_pending: bool,
    gone: bool,
    /// A signal taken at a signal-delivery stop, delivered on resume.
    held: Option<Signal>,
}

impl Seized {
    /// Seizes thread `tid` without stopping it.
    pub fn seize(tid: i32) -> Result<Seized, TraceError> {
        let tid = Pid::from_raw(tid);
        ptrace::seize(tid, Options::PTRACE_O_TRACESYSGOOD).map_err(sys("seizing a thread"))?;
        Ok(Seized {
            tid,
            stopped: false,
            interrupt_pending: false,
            gone: false,
            held: None,
        })
    }

    /// The thread id.
    pub fn tid(&self) -> i32 {
        self.tid.as_raw()
    }

    /// Asks the thread to stop (it stops once it can: at once, or when it
    /// leaves an uninterruptible wait).
    pub fn interrupt(&mut self) -> Result<(), TraceError> {
        if self.stopped || self.interrupt_pending || self.gone {
            return Ok(());
        }
        ptrace::interrupt(self.tid).map_err(sys("interrupting a thread"))?;
        self.interrupt_pending = true;
        Ok(())
    }

    /// Waits up to `timeout` (forever if `None`) for the thread's next stop.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<Option<Event>, TraceError> {
        if self.gone {
            return Ok(Some(Event::Exited));
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut nap = Duration::from_micros(20);
        loop {
            match waitpid(self.tid, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(None);
                    }
                    std::thread::sleep(nap);
                    nap = (nap * 2).min(Duration::from_millis(1));
                }
                Ok(status) => {
                    if let Some(ev) = self.classify(status) {
                        return Ok(Some(ev));
                    }
                }
                Err(Errno::EINTR) => {}
                Err(Errno::ECHILD) => {
                    self.gone = true;
                    self.stopped = false;
                    return Ok(Some(Event::Exited));
                }
                Err(e) => return Err(sys("waiting for a thread")(e)),
            }
        }
    }

    fn classify(&mut self, status: WaitStatus) -> Option<Event> {
        let ev = match status {
            WaitStatus::PtraceEvent(_, sig, ev) if ev == PtraceEvent::PTRACE_EVENT_STOP as i32 => {
                if matches!(
                    sig,
                    Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU
                ) {
                    Event::GroupStop(sig)
                } else {
                    self.interrupt_pending = false;
                    Event::Interrupted
                }
            }
            WaitStatus::PtraceEvent(..) => Event::Interrupted,
            WaitStatus::PtraceSyscall(_) => Event::Syscall,
            WaitStatus::Stopped(_, sig) => Event::Signal(sig),
            WaitStatus::Exited(..) | WaitStatus::Signaled(..) => {
                self.gone = true;
                self.stopped = false;
                return Some(Event::Exited);
            }
            _ => return None,
        };
        self.stopped = true;
        Some(ev)
    }

    /// Keeps a signal the thread stopped with, to deliver it later.
    pub fn hold(&mut self, sig: Signal) {
        // Two different signals at one stop cannot happen: each stop
        // reports one, and we resume in between.
        self.held = Some(sig);
    }

    /// Resumes a stopped thread (delivering `sig`), stopping at its next
    /// system call entry or exit if `syscalls`.
    pub fn resume(&mut self, sig: Option<Signal>, syscalls: bool) -> Result<(), TraceError> {
        let r = if syscalls {
            ptrace::syscall(self.tid, sig)
        } else {
            ptrace::cont(self.tid, sig)
        };
        r.map_err(sys("resuming a thread"))?;
        self.stopped = false;
        Ok(())
    }

    /// Registers of the stopped thread.
    pub fn regs(&self) -> Result<Regs, TraceError> {
        ptrace::getregs(self.tid).map_err(sys("reading registers"))
    }

    /// Sets the registers of the stopped thread.
    pub fn set_regs(&self, regs: Regs) -> Result<(), TraceError> {
        ptrace::setregs(self.tid, regs).map_err(sys("writing registers"))
    }

    /// The stopped thread's blocked-signal mask (`PTRACE_GETSIGMASK`).
    pub fn sigmask(&self) -> Result<u64, TraceError> {
        let mut mask: u64 = 0;
        // SAFETY: PTRACE_GETSIGMASK writes `data` (8 bytes, the size we
        // pass as `addr`) into `mask`.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_GETSIGMASK,
                self.tid.as_raw(),
                std::mem::size_of::<u64>(),
                &mut mask as *mut u64,
            )
        };
        if r < 0 {
            return Err(sys("reading the signal mask")(Errno::last()));
        }
        Ok(mask)
    }

    /// The stopped thread's extended FPU state (`NT_X86_XSTATE`), in the
    /// XSAVE layout the kernel's signal frames use.
    pub fn xstate(&self) -> Result<Vec<u8>, TraceError> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        const NT_X86_XSTATE: usize = 0x202;
        // SAFETY: PTRACE_GETREGSET writes at most iov_len bytes into the
        // buffer iov describes and updates iov_len.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_GETREGSET,
                self.tid.as_raw(),
                NT_X86_XSTATE,
                &mut iov as *mut libc::iovec,
            )
        };
        if r < 0 {
            return Err(sys("reading the FPU state")(Errno::last()));
        }
        buf.truncate(iov.iov_len);
        Ok(buf)
    }

    /// Puts back the extended FPU state.
    pub fn set_xstate(&self, state: &[u8]) -> Result<(), TraceError> {
        let mut copy = state.to_vec();
        let mut iov = libc::iovec {
            iov_base: copy.as_mut_ptr().cast(),
            iov_len: copy.len(),
        };
        // SAFETY: PTRACE_SETREGSET reads iov_len bytes from the buffer.
        let r = unsafe {
            libc::ptrace(
                libc::PTRACE_SETREGSET,
                self.tid.as_raw(),
                0x202usize,
                &mut iov as *mut libc::iovec,
            )
        };
        if r < 0 {
            return Err(sys("writing the FPU state")(Errno::last()));
        }
        Ok(())
    }

    /// Stops the thread if needed (waiting as long as it takes) and
    /// detaches, delivering any held signal. The thread runs on.
    pub fn detach(mut self) -> Result<(), TraceError> {
        self.release()
    }

    /// [`detach`](Self::detach), for an owner that is being dropped.
    pub fn release(&mut self) -> Result<(), TraceError> {
        if self.gone {
            return Ok(());
        }
        if !self.stopped {
            self.interrupt()?;
            let since = Instant::now();
            let mut told = false;
            while !self.stopped && !self.gone {
                if let Some(Event::Signal(sig)) = self.wait(Some(Duration::from_millis(100)))? {
                    self.hold(sig);
                }
                if !told && since.elapsed() > Duration::from_secs(2) && !self.stopped {
                    told = true;
                    eprintln!(
                        "rprof: waiting for thread {} to leave an uninterruptible wait before letting it go (it must not be left half-stopped)",
                        self.tid
                    );
                }
            }
            if self.gone {
                return Ok(());
            }
        }
        let sig = self.held.take();
        match ptrace::detach(self.tid, sig) {
            Ok(()) | Err(Errno::ESRCH) => {
                self.gone = true;
                Ok(())
            }
            Err(e) => Err(sys("detaching a thread")(e)),
        }
    }
}

impl Drop for Seized {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// Reads target memory.
pub fn read(pid: i32, addr: u64, len: usize) -> Result<Vec<u8>, TraceError> {
    use nix::sys::uio::{process_vm_readv, RemoteIoVec};
    let mut buf = vec![0u8; len];
    let n = process_vm_readv(
        Pid::from_raw(pid),
        &mut [std::io::IoSliceMut::new(&mut buf)],
        &[RemoteIoVec {
            base: addr as usize,
            len,
        }],
    )
    .map_err(sys("reading target memory"))?;
    buf.truncate(n);
    Ok(buf)
}

/// Writes target memory that is writable (stacks).
pub fn write(pid: i32, addr: u64, data: &[u8]) -> Result<(), TraceError> {
    use nix::sys::uio::{process_vm_writev, RemoteIoVec};
    let n = process_vm_writev(
        Pid::from_raw(pid),
        &[std::io::IoSlice::new(data)],
        &[RemoteIoVec {
            base: addr as usize,
            len: data.len(),
        }],
    )
    .map_err(sys("writing target memory"))?;
    if n != data.len() {
        return Err(TraceError::Sys {
            what: "writing target memory",
            errno: Errno::EFAULT,
        });
    }
    Ok(())
}
