//! The dynamic loader's own locks: where they are in the target, and
//! whether a given thread holds one.
//!
//! glibc keeps its loader locks (`_dl_load_lock`, taken by `dlopen`,
//! `dlclose` and while library constructors and destructors run;
//! `_dl_load_write_lock`, taken by `dl_iterate_phdr`; `_dl_load_tls_lock`
//! on 2.35+) as recursive `pthread_mutex_t`s inside `_rtld_global`, the
//! loader's exported (GLIBC_PRIVATE) state. A held recursive mutex names
//! its owner's TID. Rather than hard-code `_rtld_global`'s layout, which
//! changes between glibc releases, rprof scans it for words shaped like a
//! recursive mutex (the `pthread_mutex_t` ABI is fixed on x86_64) and
//! trusts the result only if it finds at least two of them.
//!
//! The safe-point search uses this to tell a stale return address into
//! the loader on a thread's stack (left by an earlier lazy symbol binding,
//! or by the loader's own start-up on the main thread's stack) from a
//! thread that really is inside `dlopen` or a constructor: only the latter
//! holds one of these locks.

use super::elf;
use super::ptrace;

mod scan;

use scan::{find_recursive_mutexes, word_i32, MUTEX_SIZE};

/// `_rtld_global` is a few KiB; anything far larger is not what we expect.
const MAX_RTLD_GLOBAL: u64 = 256 * 1024;

/// The addresses of the loader's recursive locks in the target, or `None`
/// if they cannot be found with confidence (no `_rtld_global` exported,
/// unreadable, or fewer than two lock-shaped words in it).
pub fn find(pid: i32, loader: &elf::Module) -> Option<Vec<u64>> {
    let syms = elf::extents(loader, &["_rtld_global"]).ok()?;
    let &(at, size) = syms.get("_rtld_global")?;
    if size < MUTEX_SIZE as u64 || size > MAX_RTLD_GLOBAL {
        return None;
    }
    let bytes = ptrace::read(pid, at, size as usize).ok()?;
    let found = find_recursive_mutexes(&bytes);
    (found.len() >= 2).then(|| found.into_iter().map(|o| at + o as u64).collect())
}

/// Whether thread `tid` holds one of the locks at `locks` (`None` if they
/// could not be read).
pub fn held_by(pid: i32, tid: i32, locks: &[u64]) -> Option<bool> {
    for &at in locks {
        let m = ptrace::read(pid, at, 12).ok()?;
        if m.len() != 12 {
            return None;
        }
        if word_i32(&m, 0) != 0 && word_i32(&m, 8) == tid {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attach::inspect::is_loader;
    use crate::attach::proc;

    /// What the `dl_iterate_phdr` callback below needs and finds.
    struct Probe {
        locks: Vec<u64>,
        held: Option<Option<bool>>,
    }

    extern "C" fn while_iterating(
        _info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: `data` is the `&mut Probe` passed below, alive for the
        // whole dl_iterate_phdr call and used by nothing else meanwhile.
        let probe = unsafe { &mut *(data as *mut Probe) };
        if probe.held.is_none() {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            probe.held = Some(held_by(std::process::id() as i32, tid, &probe.locks));
        }
        0
    }

    /// `dl_iterate_phdr` holds the loader's write lock while it calls back:
    /// proof, on this glibc, that the scan finds the real locks and that a
    /// held one names its owner.
    #[test]
    fn a_thread_inside_dl_iterate_phdr_holds_a_loader_lock_and_others_do_not() {
        let me = std::process::id() as i32;
        let maps = proc::maps(me).unwrap();
        let ld = elf::find(me, &maps, is_loader).unwrap();
        let locks = find(me, &ld).expect("the loader's locks in this process");
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        assert_eq!(held_by(me, tid, &locks), Some(false));
        let mut probe = Probe {
            locks: locks.clone(),
            held: None,
        };
        // SAFETY: the callback only reads our own memory and writes
        // through `data`, which outlives the call.
        unsafe {
            libc::dl_iterate_phdr(
                Some(while_iterating),
                &mut probe as *mut Probe as *mut libc::c_void,
            )
        };
        assert_eq!(probe.held, Some(Some(true)));
        assert_eq!(held_by(me, tid, &locks), Some(false));
    }
}
