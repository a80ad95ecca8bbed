//! Remote calls that restore the borrowed thread by themselves.
//!
//! A call made on a borrowed thread returns to glibc's `__restore_rt`
//! (`mov $15,%rax; syscall`: `rt_sigreturn`), and above its return address
//! on the thread's stack lies a signal frame (`rt_sigframe`) holding the
//! thread's own registers, blocked-signal mask and FPU/XSAVE state, as the
//! kernel would have saved them to run a signal handler. So the call ends,
//! whatever happens to rprof meanwhile (SIGKILL at any instant), with the
//! kernel putting the thread back exactly where it was: no new executable
//! memory, no return to address 0, nothing for rprof to undo. A thread
//! that was inside a restartable system call has the restart pre-applied
//! in the saved context (`rip -= 2`, `rax = orig_rax`), as `SA_RESTART`
//! would; one that was in a call restarted through `restart_syscall`
//! (a relative sleep, a futex wait with a timeout) sees `EINTR`, as it
//! would after any signal handler.
//!
//! rprof follows the call with `PTRACE_SYSCALL` and knows it is over at
//! the `rt_sigreturn` entry at `__restore_rt + 9` with the stack pointer
//! just above our frame (a signal handler of the target's, which returns
//! through `__restore_rt` too, does so on another stack pointer). Signals
//! that arrive meanwhile are delivered. A call is waited for as long as it
//! runs: [`Frame::call`] does not return before the thread is back.
//!
//! The registers cannot carry a result (`__restore_rt` overwrites `rax`
//! and `rt_sigreturn` restores it): every result is observed from outside
//! (a new fd in `/proc/PID/fd`, a new mapping in `/proc/PID/maps`, the
//! ring header).

use super::ptrace::{self, Event, Regs, Seized, TraceError};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

/// `mov $15,%rax; syscall`: glibc's `__restore_rt`.
pub const RESTORE_RT: [u8; 9] = [0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05];

/// Stack room the called function may use below the frame.
pub const STACK_ROOM: u64 = 256 * 1024;
/// Room for the calls' string arguments.
const DATA_BYTES: u64 = 4096;
/// `struct rt_sigframe` without the FPU state: return address (8),
/// `ucontext` (304), `siginfo` (128).
const FRAME_BYTES: u64 = 8 + 304 + 128;
const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
const FP_XSTATE_MAGIC2: u32 = 0x4650_5845;
const UC_FLAGS: u64 = 0x1 | 0x2 | 0x4; // FP_XSTATE | SIGCONTEXT_SS | STRICT_RESTORE_SS
const NR_RT_SIGRETURN: u64 = 15;
const NR_RESTART_SYSCALL: u64 = 219;

/// Why a call could not be made or did not end normally.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// ptrace failed.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The stack of the thread has too little room.
    #[error("the thread's stack has too little room")]
    NoRoom,
    /// The called function faulted (the thread was put back from outside
    /// and the fault not delivered).
    #[error("the injected call faulted with {0:?} at {1:#x}")]
    Fault(Signal, u64),
}

/// The signal frame written on a borrowed thread's stack, reused by every
/// call made on it. See the module docs.
pub struct Frame {
    pid: i32,
    /// The thread's registers as the frame restores them.
    base: Regs,
    xstate: Vec<u8>,
    /// Where the return address lies: the stack pointer at a call's entry.
    at: u64,
    data: u64,
    restore_rt: u64,
    calls: u32,
}

/// Applies the restart of an interrupted system call to `r`.
pub fn pre_apply_restart(r: &mut Regs) {
    if (r.orig_rax as i64) < 0 {
        return;
    }
    match r.rax as i64 {
        // ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND: run it again.
        -514..=-512 => {
            r.rax = r.orig_rax;
            r.rip -= 2;
        }
        // ERESTART_RESTARTBLOCK: restart_syscall, which returns EINTR once
        // rt_sigreturn has cleared the restart block.
        -516 => {
            r.rax = NR_RESTART_SYSCALL;
            r.rip -= 2;
        }
        _ => {}
    }
    r.orig_rax = u64::MAX;
}

fn sigcontext(r: &Regs, fpstate: u64) -> [u64; 32] {
    let mut sc = [0u64; 32];
    let order = [
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx,
        r.rax, r.rcx, r.rsp, r.rip, r.eflags,
    ];
    sc[..18].copy_from_slice(&order);
    // cs, gs, fs, ss as four u16.
    sc[18] = (r.cs & 0xffff) | ((r.ss & 0xffff) << 48);
    // err, trapno, oldmask, cr2 stay 0; then fpstate; reserved1 0.
    sc[23] = fpstate;
    sc
}

impl Frame {
    /// Builds the frame for stopped thread `t` (restart pre-applied) below
    /// its stack pointer, after checking that the mapping holding the stack
    /// leaves [`STACK_ROOM`] below it (a main-thread `[stack]` grows).
    pub fn build(pid: i32, t: &Seized, restore_rt: u64) -> Result<Frame, CallError> {
        let mut base = t.regs()?;
        pre_apply_restart(&mut base);
        let mask = t.sigmask()?;
        let mut xstate = t.xstate()?;
        // The kernel's sw_reserved bytes (464..512) say how big the XSAVE
        // area is; MAGIC2 must follow it.
        let word = |b: &[u8], at: usize| -> u32 {
            b.get(at..at + 4)
                .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        };
        let magic1 = word(&xstate, 464);
        let xsize = word(&xstate, 480) as usize;
        if magic1 == FP_XSTATE_MAGIC1 && xsize >= 576 && xsize <= xstate.len() {
            xstate.truncate(xsize);
            xstate.extend_from_slice(&FP_XSTATE_MAGIC2.to_le_bytes());
        } else {
            // Legacy FXSAVE only.
            xstate.truncate(512);
        }
        let top = base.rsp.wrapping_sub(128 + 256);
        let xs_at = (top - xstate.len() as u64) & !63;
        let data = (xs_at - DATA_BYTES) & !15;
        let at = ((data - FRAME_BYTES) & !15) - 8;
        let maps = super::proc::maps(pid).map_err(|_| TraceError::Gone)?;
        let room_ok = maps
            .iter()
            .find(|m| m.start <= base.rsp && base.rsp < m.end)
            .is_some_and(|m| {
                if m.label == "[stack]" {
                    at > m.start + 4096
                } else if m.label == "[heap]" || m.path.is_some() {
                    // An alternate signal stack in the heap or in a file
                    // mapping: its real size is unknown.
                    false
                } else {
                    at.saturating_sub(m.start) >= STACK_ROOM && m.perms.starts_with("rw")
                }
            });
        if !room_ok {
            return Err(CallError::NoRoom);
        }
        // rt_sigframe: pretcode, ucontext { uc_flags, uc_link, uc_stack,
        // uc_mcontext, uc_sigmask }, siginfo.
        let mut frame: Vec<u8> = Vec::with_capacity(FRAME_BYTES as usize);
        let mut push = |v: u64| frame.extend_from_slice(&v.to_le_bytes());
        push(restore_rt);
        push(UC_FLAGS);
        push(0);
        // uc_stack: an invalid mode (3), so rt_sigreturn leaves the
        // thread's sigaltstack as it is (do_sigaltstack fails, ignored).
        push(0);
        push(3);
        push(0);
        for v in sigcontext(&base, xs_at) {
            push(v);
        }
        push(mask);
        frame.resize(FRAME_BYTES as usize, 0);
        ptrace::write(pid, xs_at, &xstate)?;
        ptrace::write(pid, at, &frame)?;
        Ok(Frame {
            pid,
            base,
            xstate,
            at,
            data,
            restore_rt,
            calls: 0,
        })
    }

    /// The thread's `fs` base (its TLS).
    pub fn fs_base(&self) -> u64 {
        self.base.fs_base
    }

    /// Makes the stopped thread call `func(args...)`, with `data` copied
    /// above the frame first (`args` refer to it as `data_ptr() + offset`),
    /// and waits, as long as it takes, until it is back where it was.
    /// `waiting` is told once if the call takes more than 2 s.
    pub fn call(
        &mut self,
        t: &mut Seized,
        func: u64,
        args: &[u64],
        data: &[u8],
        waiting: &mut dyn FnMut(),
    ) -> Result<(), CallError> {
        assert!(args.len() <= 6 && data.len() as u64 <= DATA_BYTES);
        if !data.is_empty() {
            ptrace::write(self.pid, self.data, data)?;
        }
        let mut r = self.base;
        r.rsp = self.at;
        r.rip = func;
        r.rax = 0;
        r.orig_rax = u64::MAX;
        r.eflags &= !(1 << 10 | 1 << 8); // DF, TF
        let slots = [
            &mut r.rdi, &mut r.rsi, &mut r.rdx, &mut r.rcx, &mut r.r8, &mut r.r9,
        ];
        for (slot, v) in slots.into_iter().zip(args) {
            *slot = *v;
        }
        t.set_regs(r)?;
        t.resume(None, true)?;
        self.calls += 1;
        crate::testing::pause_at("call", Some(self.calls));
        let since = Instant::now();
        let mut told = false;
        let mut returning = false;
        loop {
            let ev = t.wait(Some(Duration::from_millis(50)))?;
            if !told && since.elapsed() > Duration::from_secs(2) {
                told = true;
                waiting();
            }
            match ev {
                None => {}
                Some(Event::Exited) => return Err(TraceError::Gone.into()),
                Some(Event::Syscall) => {
                    let now = t.regs()?;
                    if returning {
                        // The exit of our rt_sigreturn: the thread is back.
                        return Ok(());
                    }
                    let ours = now.orig_rax == NR_RT_SIGRETURN
                        && now.rip == self.restore_rt + 9
                        && now.rsp == self.at + 8;
                    returning = ours;
                    t.resume(None, true)?;
                }
                Some(Event::Signal(sig)) => {
                    if matches!(
                        sig,
                        Signal::SIGSEGV | Signal::SIGBUS | Signal::SIGILL | Signal::SIGFPE
                    ) && self.fault_is_ours(t)?
                    {
                        let at = t.regs()?.rip;
                        self.put_back(t)?;
                        return Err(CallError::Fault(sig, at));
                    }
                    // The target's signal: delivered on top of the call,
                    // as it would have been on top of its own code.
                    t.resume(Some(sig), true)?;
                }
                Some(Event::Interrupted) | Some(Event::GroupStop(_)) => {
                    // Not ours to keep stopped: the call must finish.
                    t.resume(None, true)?;
                }
            }
        }
    }

    /// Whether the synchronous fault at this stop was raised by the call
    /// itself (si_code > 0: sent by the kernel, not by kill()).
    fn fault_is_ours(&self, t: &Seized) -> Result<bool, TraceError> {
        let info = nix::sys::ptrace::getsiginfo(nix::unistd::Pid::from_raw(t.tid()))
            .map_err(ptrace::sys("reading a signal's origin"))?;
        Ok(info.si_code > 0)
    }

    /// Puts the thread back from outside (after a fault in the call).
    fn put_back(&self, t: &mut Seized) -> Result<(), TraceError> {
        t.set_regs(self.base)?;
        let mut legacy = self.xstate.clone();
        if legacy.len() > 512 {
            legacy.truncate(legacy.len() - 4);
        }
        let _ = t.set_xstate(&legacy);
        Ok(())
    }

    /// How many calls were made.
    pub fn calls(&self) -> u32 {
        self.calls
    }

    /// The address of the data area in the target.
    pub fn data_ptr(&self) -> u64 {
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::{elf, inspect, proc};
    use std::process::Command;

    #[test]
    fn restarts_are_pre_applied() {
        // SAFETY: user_regs_struct is plain integers; all-zero is valid.
        let mut r: Regs = unsafe { std::mem::zeroed() };
        r.orig_rax = 7;
        r.rax = (-514i64) as u64;
        r.rip = 0x1002;
        pre_apply_restart(&mut r);
        assert_eq!((r.rip, r.rax, r.orig_rax), (0x1000, 7, u64::MAX));
        r.orig_rax = 230;
        r.rax = (-516i64) as u64;
        r.rip = 0x2002;
        pre_apply_restart(&mut r);
        assert_eq!((r.rip, r.rax), (0x2000, NR_RESTART_SYSCALL));
        // A finished call keeps its result; outside a call nothing changes.
        r.orig_rax = 0;
        r.rax = 5;
        r.rip = 0x3000;
        pre_apply_restart(&mut r);
        assert_eq!((r.rip, r.rax, r.orig_rax), (0x3000, 5, u64::MAX));
    }

    /// Borrows `sleep 1` inside clock_nanosleep, makes it create a memfd,
    /// gives it back: it must create the memfd, then finish its sleep
    /// (not early) and exit 0.
    #[test]
    fn a_call_runs_and_the_thread_comes_back() {
        let started = std::time::Instant::now();
        let mut child = Command::new("sleep").arg("1").spawn().unwrap();
        let pid = child.id() as i32;
        let deadline = started + Duration::from_secs(5);
        while !proc::task_syscall(pid, pid).is_some_and(|s| s.starts_with("230 ")) {
            assert!(Instant::now() < deadline, "sleep never slept");
            std::thread::sleep(Duration::from_millis(1));
        }
        let maps = proc::maps(pid).unwrap();
        let libc_mod = elf::find(pid, &maps, inspect::is_libc).unwrap();
        let syscall = elf::symbols(&libc_mod, &["syscall"]).unwrap()["syscall"];
        let rt = inspect::find_restore_rt(pid, &maps, &libc_mod.path).unwrap();
        let mut t = Seized::seize(pid).unwrap();
        t.interrupt().unwrap();
        assert_eq!(
            t.wait(Some(Duration::from_secs(2))).unwrap(),
            Some(Event::Interrupted)
        );
        let mut f = Frame::build(pid, &t, rt).unwrap();
        let name = b"rprof-unit-test\0";
        f.call(
            &mut t,
            syscall,
            &[319, f.data_ptr(), libc::MFD_CLOEXEC as u64],
            name,
            &mut || {},
        )
        .unwrap();
        let fds = proc::fds(pid).unwrap();
        assert!(
            fds.iter()
                .any(|(_, l)| l == "/memfd:rprof-unit-test (deleted)"),
            "{fds:?}"
        );
        t.detach().unwrap();
        let st = child.wait().unwrap();
        assert!(st.success(), "{st:?}");
        assert!(started.elapsed() >= Duration::from_secs(1));
    }
}
