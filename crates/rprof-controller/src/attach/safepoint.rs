//! Finding a thread to borrow, at a point where it holds neither the
//! allocator's nor the dynamic loader's lock, without breakpoints and
//! without tracing more than one thread at a time.
//!
//! Two kinds of thread qualify:
//! * one **blocked in a waiting system call** (`accept`, `read`, `poll`,
//!   `futex`, `clock_nanosleep`, ...; [`WAITING_SYSCALLS`]) that shows the
//!   same line in `/proc/PID/task/TID/syscall` twice, 2 ms apart, and is not
//!   in an uninterruptible wait (`D`); once stopped, its registers must
//!   still show that call interrupted;
//! * one **running the interpreter**: stopped for a look, its `rip` is in
//!   libpython's (or the python executable's) code, not in libc or the
//!   loader.
//!
//! Either way, its live stack (the 64 KiB above `rsp`) must hold no signal
//! frame (a thread running a signal handler, which may have interrupted
//! `malloc`), and its stack mapping must leave room for the call. A return
//! address into the dynamic loader on it makes the thread second choice,
//! taken after a second, if the thread holds one of the loader's locks
//! (it is waiting inside `dlopen` or running a library constructor; see
//! [`loaderlock`]) or if those locks could not be found; an address left
//! stale by a lazy symbol binding or by the loader's start-up, on a thread
//! that holds no loader lock, does not delay it. Threads that do not
//! qualify are let go at once. The search
//! repeats every few milliseconds (a thread may block just after being
//! looked at) until the deadline.
//!
//! A thread that was asked to stop but has not stopped yet (it entered an
//! uninterruptible wait: `vfork`, disk I/O) is kept in a waiting list and
//! looked at once it stops; it is never let go before it has (the
//! [`Seized`] guard waits for it).

use super::loaderlock;
use super::proc;
use super::ptrace::{self, Event, Seized, TraceError};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// x86_64 system calls a thread waits in, and which neither `malloc` nor
/// the dynamic loader blocks in.
pub const WAITING_SYSCALLS: &[i64] = &[
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

/// The epoll waits, which an interruption ends with EINTR instead of a
/// restart.
const EPOLL_WAITS: &[i64] = &[232, 281, 441];

/// Code ranges that decide whether a stopped thread qualifies.
#[derive(Clone, Debug, Default)]
pub struct Ranges {
    /// Executable mappings of libpython or the python executable.
    pub python: Vec<(u64, u64)>,
    /// Executable mappings of the dynamic loader.
    pub loader: Vec<(u64, u64)>,
    /// The loader's recursive locks ([`loaderlock`]), if found.
    pub loader_locks: Option<Vec<u64>>,
    /// glibc's `__restore_rt`: on a thread's stack, the return address of
    /// a signal handler that is running.
    pub restore_rt: u64,
}

fn within(ranges: &[(u64, u64)], a: u64) -> bool {
    ranges.iter().any(|&(s, e)| s <= a && a < e)
}

/// A borrowed thread, stopped at a safe point.
pub struct Caught {
    /// The thread.
    pub thread: Seized,
    /// How it was found, for diagnostics.
    pub how: String,
}

/// Why no thread was caught.
pub enum Missed {
    /// ptrace failed.
    Trace(TraceError),
    /// No thread qualified before the deadline.
    Timeout,
    /// rprof was asked to stop meanwhile.
    Interrupted,
}

impl From<TraceError> for Missed {
    fn from(e: TraceError) -> Self {
        Missed::Trace(e)
    }
}

/// Looks at a stopped thread: `Some(description)` if it may be borrowed.
///
/// A return address into the loader may be stale (left in an unwritten
/// slot by an earlier lazy symbol binding): it makes a thread second
/// choice (`loader_ok` is set once the search has lasted a second) only if
/// the thread holds one of the loader's locks, or if they are unknown.
/// Borrowing a thread that really is inside a constructor is still safe:
/// the loader's lock is recursive, and glibc allows `dlopen` there.
fn qualifies(
    pid: i32,
    t: &Seized,
    ranges: &Ranges,
    loader_ok: bool,
) -> Result<Option<String>, TraceError> {
    let r = t.regs()?;
    let how = if (r.orig_rax as i64) >= 0 {
        // -ERESTART*: the kernel restarts it. The epoll waits are never
        // restarted (signal(7)): they return EINTR to the caller after
        // any stop, borrowed or not, and callers retry (Python's
        // selectors do, PEP 475), so EINTR from them counts too — an
        // idle gunicorn gthread worker waits in nothing else.
        let interrupted = matches!(r.rax as i64, -516..=-512)
            || (r.rax as i64 == -4 && EPOLL_WAITS.contains(&(r.orig_rax as i64)));
        if !(interrupted && WAITING_SYSCALLS.contains(&(r.orig_rax as i64))) {
            return Ok(None);
        }
        format!("blocked in system call {}", r.orig_rax)
    } else if within(&ranges.python, r.rip) {
        "running the interpreter".to_string()
    } else {
        return Ok(None);
    };
    // A return address into the loader on the live stack: the thread may be
    // inside dlopen or a constructor (holding the loader's lock).
    let maps = proc::maps(pid).map_err(|_| TraceError::Gone)?;
    let top = maps
        .iter()
        .find(|m| m.start <= r.rsp && r.rsp < m.end)
        .map_or(r.rsp, |m| m.end);
    let len = top.saturating_sub(r.rsp).min(64 * 1024) as usize;
    let stack = ptrace::read(pid, r.rsp, len)?;
    // Nor may it be running a signal handler (the code it interrupted may
    // hold malloc's lock): its return address is __restore_rt.
    let words = || {
        stack
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])))
    };
    let debug = |what: &str, v: u64| {
        if std::env::var_os("RPROF_DEBUG").is_some() {
            eprintln!(
                "rprof: debug: thread {} ({how}): {what} {v:#x} on its stack",
                t.tid()
            );
        }
    };
    if let Some(v) = words().find(|&v| v == ranges.restore_rt) {
        debug("skipped, signal handler return address", v);
        return Ok(None);
    }
    if let Some(v) =
        words().find(|&v| within(&ranges.loader, v) && after_a_call(pid, v, &ranges.loader))
    {
        let holds = ranges
            .loader_locks
            .as_deref()
            .and_then(|locks| loaderlock::held_by(pid, t.tid(), locks));
        if holds == Some(false) {
            // Inside dlopen, a constructor or dl_iterate_phdr it would
            // hold one of the loader's locks: the address is stale.
            debug(
                "taken, holds none of the loader's locks: stale loader return address",
                v,
            );
        } else if !loader_ok {
            debug("passed over for now, loader return address", v);
            return Ok(None);
        } else {
            debug("taken anyway, loader return address", v);
        }
    }
    Ok(Some(how))
}

/// Whether the code just before `v` is a call instruction that ends at `v`
/// (so `v` is a return address, not just a pointer to a function such as
/// `_dl_fini`, which the main thread's outermost frame keeps): a direct
/// call into the loader itself, or an indirect call whose ModRM/SIB
/// encoding has exactly the length that ends at `v`.
fn after_a_call(pid: i32, v: u64, loader: &[(u64, u64)]) -> bool {
    let Ok(code) = ptrace::read(pid, v.saturating_sub(8), 8) else {
        return true;
    };
    if code.len() != 8 {
        return true;
    }
    is_call_ending_at_end(&code, v, loader)
}

/// `code` holds the 8 bytes before `v`.
fn is_call_ending_at_end(code: &[u8], v: u64, loader: &[(u64, u64)]) -> bool {
    // call rel32 (e8), to a function of the loader.
    if code[3] == 0xe8 {
        let rel = i32::from_le_bytes([code[4], code[5], code[6], code[7]]);
        if within(loader, v.wrapping_add(rel as i64 as u64)) {
            return true;
        }
    }
    // call r/m64 (ff /2), optionally after a REX prefix.
    (2..=7).any(|len| {
        let start = 8 - len;
        let mut i = start;
        if (0x40..=0x4f).contains(&code[i]) {
            i += 1;
        }
        if i + 1 >= 8 || code[i] != 0xff {
            return false;
        }
        let modrm = code[i + 1];
        if (modrm >> 3) & 7 != 2 {
            return false;
        }
        let (md, rm) = (modrm >> 6, modrm & 7);
        let mut n = i + 2 - start; // bytes so far
        if md != 3 && rm == 4 {
            // SIB
            let Some(&sib) = code.get(i + 2) else {
                return false;
            };
            n += 1;
            if md == 0 && sib & 7 == 5 {
                n += 4;
            }
        }
        n += match (md, rm) {
            (0, 5) => 4,
            (1, _) => 1,
            (2, _) => 4,
            _ => 0,
        };
        n == len
    })
}

/// Finds and stops a thread to borrow, by `deadline`. `stop_requested`
/// is polled between looks.
pub fn catch(
    pid: i32,
    ranges: &Ranges,
    deadline: Instant,
    skip: &[i32],
    stop_requested: &dyn Fn() -> bool,
) -> Result<Caught, Missed> {
    let mut limbo: Vec<Seized> = Vec::new();
    let second_choice_from = Instant::now() + Duration::from_secs(1);
    let mut first = true;
    loop {
        if stop_requested() {
            return Err(Missed::Interrupted);
        }
        // Threads that stopped since we asked.
        let mut i = 0;
        while i < limbo.len() {
            match limbo[i].wait(Some(Duration::ZERO))? {
                None => i += 1,
                Some(Event::Exited) => {
                    limbo.swap_remove(i);
                }
                Some(ev) => {
                    let mut t = limbo.swap_remove(i);
                    if let Event::Signal(sig) = ev {
                        t.hold(sig);
                    }
                    let loader_ok = Instant::now() >= second_choice_from;
                    if let Some(how) = qualifies(pid, &t, ranges, loader_ok)? {
                        return Ok(Caught { thread: t, how });
                    }
                }
            }
        }
        let mut tids = proc::threads(pid).map_err(|_| TraceError::Gone)?;
        if tids.is_empty() {
            return Err(TraceError::Gone.into());
        }
        tids.sort_by_key(|t| (*t != pid, *t));
        tids.retain(|t| !limbo.iter().any(|l| l.tid() == *t) && !skip.contains(t));
        // Blocked threads, seen twice.
        let look: HashMap<i32, String> = tids
            .iter()
            .filter_map(|t| proc::task_syscall(pid, *t).map(|s| (*t, s)))
            .collect();
        std::thread::sleep(Duration::from_millis(2));
        let mut order: Vec<(i32, bool)> = Vec::new();
        for &tid in &tids {
            let state = proc::task_state(pid, tid);
            if !matches!(state, Some('S' | 'R')) {
                continue;
            }
            let again = proc::task_syscall(pid, tid);
            let blocked = match (look.get(&tid), &again) {
                (Some(a), Some(b)) if a == b => b
                    .split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<i64>().ok())
                    .is_some_and(|n| WAITING_SYSCALLS.contains(&n)),
                _ => false,
            };
            if state == Some('S') && blocked {
                order.push((tid, true));
            } else if state == Some('R') {
                order.push((tid, false));
            }
        }
        // Blocked threads first, then running ones.
        order.sort_by_key(|&(tid, blocked)| (!blocked, tid != pid));
        for (tid, _) in order {
            let mut t = match Seized::seize(tid) {
                Ok(t) => t,
                Err(TraceError::Gone) => continue,
                Err(e) => return Err(e.into()),
            };
            if first {
                first = false;
                crate::testing::pause_at("seized", None);
            }
            if stop_requested() {
                // Dropping `t` detaches it.
                return Err(Missed::Interrupted);
            }
            t.interrupt()?;
            match t.wait(Some(Duration::from_millis(20)))? {
                None => {
                    // Entered an uninterruptible wait: look later.
                    limbo.push(t);
                    continue;
                }
                Some(Event::Exited) => continue,
                Some(Event::Signal(sig)) => t.hold(sig),
                Some(_) => {}
            }
            let loader_ok = Instant::now() >= second_choice_from;
            if let Some(how) = qualifies(pid, &t, ranges, loader_ok)? {
                return Ok(Caught { thread: t, how });
            }
            t.detach()?;
        }
        if Instant::now() >= deadline {
            // Dropping the waiting list waits for each of them to stop.
            return Err(Missed::Timeout);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_call_instructions_ending_at_the_return_address() {
        let ld = [(0x1000u64, 0x9000u64)];
        let v = 0x2000u64;
        // call rel32 into the loader: e8 + (0x1800 - 0x2000)
        let rel = (0x1800i64 - 0x2000i64) as i32;
        let mut c = [0x90u8; 8];
        c[3] = 0xe8;
        c[4..].copy_from_slice(&rel.to_le_bytes());
        assert!(is_call_ending_at_end(&c, v, &ld));
        // ... but not one to elsewhere.
        c[4..].copy_from_slice(&0x4000_0000i32.to_le_bytes());
        assert!(!is_call_ending_at_end(&c, v, &ld));
        // call *%rax (ff d0), call *%r11 (41 ff d3), call *0x10(%rbx) (ff 53 10),
        // call *disp32(%rip) (ff 15 xx xx xx xx)
        for tail in [
            &[0xff, 0xd0][..],
            &[0x41, 0xff, 0xd3],
            &[0xff, 0x53, 0x10],
            &[0xff, 0x15, 1, 2, 3, 4],
        ] {
            let mut c = [0x90u8; 8];
            c[8 - tail.len()..].copy_from_slice(tail);
            assert!(is_call_ending_at_end(&c, v, &ld), "{tail:x?}");
        }
        // An ff /2 whose encoding does not end at v is not a call to v.
        let c = [0x90, 0x90, 0x90, 0x90, 0xff, 0x15, 0x00, 0x00];
        assert!(!is_call_ending_at_end(&c, v, &ld));
        // Plain data.
        assert!(!is_call_ending_at_end(&[0x90; 8], v, &ld));
    }
}
