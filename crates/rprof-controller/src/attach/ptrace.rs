//! ptrace, and only ptrace: tracing every thread of the target, stopping
//! and resuming them, reading and writing their memory and registers, and
//! making one of them call a function.
//!
//! [`Tracer`] seizes every thread (`PTRACE_SEIZE` with
//! `PTRACE_O_TRACECLONE`, so threads started meanwhile are traced too)
//! without stopping them, and detaches from all of them when dropped,
//! resuming every thread it stopped (py-spy #390: never leave a target in
//! the `T` state). While it traces, every stop of every thread is handled
//! promptly: a thread stopped by ptrace while holding a lock the call
//! needs would otherwise deadlock the target.

use nix::errno::Errno;
use nix::sys::ptrace::{self, Event, Options};
use nix::sys::signal::Signal;
use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::io::{IoSlice, IoSliceMut};
use std::time::{Duration, Instant};

pub use libc::user_regs_struct as Regs;

/// What a thread is doing, as far as the tracer knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadState {
    /// Running.
    Running,
    /// In a ptrace stop, with this signal pending delivery (or none).
    Stopped(Option<Signal>),
}

/// A stop that the caller has to decide about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// A thread stopped with a signal about to be delivered.
    Signal(Pid, Signal),
    /// A thread stopped on our request (`PTRACE_INTERRUPT`) or a group stop.
    Interrupted(Pid),
    /// A thread exited.
    Exited(Pid),
}

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
    /// A deadline passed.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The called function crashed (the fault is suppressed).
    #[error("the injected call faulted at {0:#x}")]
    Fault(u64),
}

fn sys(what: &'static str) -> impl Fn(Errno) -> TraceError {
    move |errno| match errno {
        Errno::EPERM => TraceError::Denied,
        Errno::ESRCH => TraceError::Gone,
        errno => TraceError::Sys { what, errno },
    }
}

/// Every thread of one process, traced.
pub struct Tracer {
    pid: Pid,
    threads: BTreeMap<Pid, ThreadState>,
    /// Stops that arrived while waiting for something else.
    pending: Vec<Stop>,
}

impl Tracer {
    /// Seizes every thread of `pid`, leaving them running.
    pub fn seize(pid: i32) -> Result<Tracer, TraceError> {
        let mut t = Tracer {
            pid: Pid::from_raw(pid),
            threads: BTreeMap::new(),
            pending: Vec::new(),
        };
        // Threads may start while we seize; repeat until the list is stable.
        // Threads started by a seized thread are seized by TRACECLONE.
        for _ in 0..100 {
            let tids = super::proc::threads(pid).map_err(|_| TraceError::Gone)?;
            let mut new = false;
            for tid in tids {
                let tid = Pid::from_raw(tid);
                if t.threads.contains_key(&tid) {
                    continue;
                }
                match ptrace::seize(tid, Options::PTRACE_O_TRACECLONE) {
                    Ok(()) => {
                        t.threads.insert(tid, ThreadState::Running);
                        new = true;
                    }
                    Err(Errno::ESRCH) => {}
                    Err(e) => {
                        if t.threads.is_empty() {
                            return Err(sys("seizing the target")(e));
                        }
                    }
                }
            }
            if !new {
                return Ok(t);
            }
        }
        Ok(t)
    }

    /// The traced threads.
    pub fn threads(&self) -> Vec<Pid> {
        self.threads.keys().copied().collect()
    }

    /// The main thread.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Waits up to `timeout` for the next stop and returns it, after doing
    /// the routine handling (new threads are registered and resumed).
    pub fn next_stop(&mut self, timeout: Duration) -> Result<Option<Stop>, TraceError> {
        if !self.pending.is_empty() {
            return Ok(Some(self.pending.remove(0)));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match waitpid(None, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
                Ok(status) => {
                    if let Some(stop) = self.classify(status)? {
                        return Ok(Some(stop));
                    }
                }
                Err(Errno::ECHILD) => return Err(TraceError::Gone),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(sys("waiting for the target")(e)),
            }
        }
    }

    fn classify(&mut self, status: WaitStatus) -> Result<Option<Stop>, TraceError> {
        match status {
            WaitStatus::PtraceEvent(tid, _, ev) if ev == Event::PTRACE_EVENT_CLONE as i32 => {
                if let Ok(new) = ptrace::getevent(tid) {
                    self.threads
                        .entry(Pid::from_raw(new as i32))
                        .or_insert(ThreadState::Running);
                }
                self.resume(tid, None)?;
                Ok(None)
            }
            WaitStatus::PtraceEvent(tid, _, ev) if ev == Event::PTRACE_EVENT_STOP as i32 => {
                let known = self.threads.contains_key(&tid);
                self.threads.insert(tid, ThreadState::Stopped(None));
                if !known {
                    // A thread born traced starts with a stop; let it run.
                    self.resume(tid, None)?;
                    return Ok(None);
                }
                Ok(Some(Stop::Interrupted(tid)))
            }
            WaitStatus::PtraceEvent(tid, _, _) => {
                self.resume(tid, None)?;
                Ok(None)
            }
            WaitStatus::Stopped(tid, sig) => {
                self.threads.insert(tid, ThreadState::Stopped(Some(sig)));
                Ok(Some(Stop::Signal(tid, sig)))
            }
            WaitStatus::Exited(tid, _) | WaitStatus::Signaled(tid, _, _) => {
                self.threads.remove(&tid);
                Ok(Some(Stop::Exited(tid)))
            }
            _ => Ok(None),
        }
    }

    /// Resumes a stopped thread, delivering `sig`.
    pub fn resume(&mut self, tid: Pid, sig: Option<Signal>) -> Result<(), TraceError> {
        match ptrace::cont(tid, sig) {
            Ok(()) | Err(Errno::ESRCH) => {
                self.threads.insert(tid, ThreadState::Running);
                Ok(())
            }
            Err(e) => Err(sys("resuming a thread")(e)),
        }
    }

    /// Handles a stop that is not ours: a signal is delivered as it would
    /// have been, an interrupt or exit needs nothing.
    pub fn pass(&mut self, stop: Stop) -> Result<(), TraceError> {
        match stop {
            Stop::Signal(tid, sig) => self.resume(tid, Some(sig)),
            Stop::Interrupted(tid) => self.resume(tid, None),
            Stop::Exited(_) => Ok(()),
        }
    }

    /// Marks a stopped thread's pending signal as handled (it will not be
    /// delivered), e.g. the SIGTRAP of our own breakpoint.
    pub fn swallow_signal(&mut self, tid: Pid) {
        if let Some(ThreadState::Stopped(_)) = self.threads.get(&tid) {
            self.threads.insert(tid, ThreadState::Stopped(None));
        }
    }

    /// Resumes a thread stopped by us, delivering the signal it was stopped
    /// with, if any.
    pub fn release(&mut self, tid: Pid) -> Result<(), TraceError> {
        match self.threads.get(&tid).copied() {
            Some(ThreadState::Stopped(sig)) => self.resume(tid, sig),
            _ => Ok(()),
        }
    }

    /// Stops a running thread and waits until it is stopped; other stops
    /// that arrive meanwhile are passed through.
    pub fn interrupt(&mut self, tid: Pid, timeout: Duration) -> Result<(), TraceError> {
        if matches!(self.threads.get(&tid), Some(ThreadState::Stopped(_))) {
            return Ok(());
        }
        ptrace::interrupt(tid).map_err(sys("interrupting a thread"))?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_stop(left)? {
                None => return Err(TraceError::Timeout("stopping a thread")),
                Some(Stop::Interrupted(t)) if t == tid => return Ok(()),
                Some(Stop::Signal(t, sig)) if t == tid => {
                    // A signal arrived first: keep it pending (it is
                    // delivered when we resume) and consider the thread
                    // stopped; the interrupt stop will follow and is passed.
                    self.threads.insert(t, ThreadState::Stopped(Some(sig)));
                    return Ok(());
                }
                Some(Stop::Exited(t)) if t == tid => return Err(TraceError::Gone),
                Some(other) => self.pass(other)?,
            }
        }
    }

    /// Registers of a stopped thread.
    pub fn regs(&self, tid: Pid) -> Result<Regs, TraceError> {
        ptrace::getregs(tid).map_err(sys("reading registers"))
    }

    /// Sets the registers of a stopped thread.
    pub fn set_regs(&self, tid: Pid, regs: Regs) -> Result<(), TraceError> {
        ptrace::setregs(tid, regs).map_err(sys("writing registers"))
    }

    /// Reads target memory.
    pub fn read(&self, addr: u64, len: usize) -> Result<Vec<u8>, TraceError> {
        let mut buf = vec![0u8; len];
        let n = process_vm_readv(
            self.pid,
            &mut [IoSliceMut::new(&mut buf)],
            &[RemoteIoVec {
                base: addr as usize,
                len,
            }],
        )
        .map_err(sys("reading target memory"))?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Writes target memory that is writable (stacks, heap).
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), TraceError> {
        let n = process_vm_writev(
            self.pid,
            &[IoSlice::new(data)],
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

    /// Replaces the byte at `addr` in (read-only) code, through a stopped
    /// thread; returns the old byte.
    pub fn poke_code_byte(&self, via: Pid, addr: u64, byte: u8) -> Result<u8, TraceError> {
        let word = ptrace::read(via, addr as ptrace::AddressType).map_err(sys("reading code"))?;
        let old = (word & 0xff) as u8;
        let new = (word & !0xff) | byte as libc::c_long;
        ptrace::write(via, addr as ptrace::AddressType, new).map_err(sys("writing code"))?;
        Ok(old)
    }

    /// Makes stopped thread `tid` call `func(args...)` and returns its
    /// result (`rax`). The thread's registers are restored afterwards,
    /// exactly, so it later carries on where it was (a system call it was
    /// in is restarted by the kernel). `data` is copied onto the thread's
    /// stack, below the red zone, first; `args` may refer to it through
    /// [`StackData`] offsets.
    pub fn call(
        &mut self,
        tid: Pid,
        func: u64,
        args: &[Arg],
        data: &[u8],
        timeout: Duration,
    ) -> Result<u64, TraceError> {
        let saved = self.regs(tid)?;
        let prior = self
            .threads
            .get(&tid)
            .copied()
            .unwrap_or(ThreadState::Stopped(None));
        let result = self.call_inner(tid, saved, func, args, data, timeout);
        // Restore whatever happened, unless the thread is gone.
        match self.set_regs(tid, saved) {
            Ok(()) | Err(TraceError::Gone) => {}
            Err(e) => return Err(e),
        }
        // The thread is stopped again as it was before the call, with the
        // same signal (if any) pending; the SIGSEGV that ended the call is
        // never delivered.
        self.threads.insert(tid, prior);
        result
    }

    fn call_inner(
        &mut self,
        tid: Pid,
        saved: Regs,
        func: u64,
        args: &[Arg],
        data: &[u8],
        timeout: Duration,
    ) -> Result<u64, TraceError> {
        assert!(args.len() <= 6, "at most six integer arguments");
        // Leave the red zone (128 bytes) and then some untouched.
        let data_at = (saved.rsp - 1024 - data.len() as u64) & !0xf;
        self.write(data_at, data)?;
        // The return address is 0: returning faults there, which is how we
        // know the call is over. At function entry rsp + 8 is 16-aligned.
        let sp = data_at - 64 - 8;
        self.write(sp, &0u64.to_le_bytes())?;
        let mut r = saved;
        r.rsp = sp;
        r.rip = func;
        r.rax = 0;
        // Not in a system call any more: stops the kernel from "restarting"
        // one by rewinding our new rip.
        r.orig_rax = u64::MAX;
        // The ABI requires the direction flag clear at calls.
        r.eflags &= !(1 << 10);
        let values: Vec<u64> = args
            .iter()
            .map(|a| match a {
                Arg::Value(v) => *v,
                Arg::Data(off) => data_at + *off as u64,
            })
            .collect();
        let slots = [
            &mut r.rdi, &mut r.rsi, &mut r.rdx, &mut r.rcx, &mut r.r8, &mut r.r9,
        ];
        for (slot, v) in slots.into_iter().zip(values) {
            *slot = v;
        }
        self.set_regs(tid, r)?;
        // Any signal pending for this thread waits until the call is over.
        self.resume(tid, None)?;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let stop = self.next_stop(left.max(Duration::from_millis(1)))?;
            match stop {
                None if Instant::now() >= deadline => {
                    return Err(TraceError::Timeout("waiting for the injected call"));
                }
                None => {}
                Some(Stop::Signal(t, Signal::SIGSEGV)) if t == tid => {
                    let now = self.regs(tid)?;
                    if now.rip == 0 {
                        return Ok(now.rax);
                    }
                    return Err(TraceError::Fault(now.rip));
                }
                Some(Stop::Signal(t, sig)) if t == tid => {
                    // Deliver it: the target's handler runs on top of the
                    // call, as it would have on top of its own code.
                    self.resume(tid, Some(sig))?;
                }
                Some(Stop::Exited(t)) if t == tid => return Err(TraceError::Gone),
                Some(other) => self.pass(other)?,
            }
        }
    }

    /// Reads a NUL-terminated string of at most `max` bytes.
    pub fn read_cstr(&self, addr: u64, max: usize) -> Result<String, TraceError> {
        let bytes = self.read(addr, max)?;
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        Ok(String::from_utf8_lossy(&bytes[..end]).into_owned())
    }

    /// Stops every running thread, then detaches from all, delivering any
    /// signal a thread was stopped with.
    pub fn detach_all(&mut self) {
        let tids: Vec<Pid> = self.threads.keys().copied().collect();
        for tid in &tids {
            let _ = self.interrupt(*tid, Duration::from_millis(500));
        }
        // Signals that arrived and were parked.
        for stop in std::mem::take(&mut self.pending) {
            if let Stop::Signal(t, sig) = stop {
                self.threads.insert(t, ThreadState::Stopped(Some(sig)));
            }
        }
        for (tid, st) in std::mem::take(&mut self.threads) {
            let sig = match st {
                ThreadState::Stopped(sig) => sig,
                ThreadState::Running => None,
            };
            let _ = ptrace::detach(tid, sig);
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        self.detach_all();
    }
}

/// An argument of an injected call.
#[derive(Clone, Copy, Debug)]
pub enum Arg {
    /// A plain integer or pointer.
    Value(u64),
    /// The address of `data[offset]` once copied to the stack.
    Data(usize),
}
