//! The shim library, embedded in rprof, and the anonymous memory files
//! (memfds) that carry it and the ring to the target.
//!
//! Nothing rprof hands to a target has a path: the shim and the ring live
//! in memfds, so there is no directory to race for, no file to clean up,
//! no `/dev/shm` to be too small or mounted `noexec`. `rprof run` creates
//! them itself and the child opens them through `/proc/RPROF/fd/N`;
//! `rprof attach` has the target create them (see `attach`), so that they
//! are the target's own and charged to it.
//!
//! Every byte of a ring is reserved (`fallocate`) before the shim may
//! write to it, so that writing can never fault for want of memory
//! (SIGBUS), and the ring is sealed against shrinking, so that the target
//! cannot make rprof's own reads fault either.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;

/// The shim built from `injector/` for this platform.
pub static SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/librprof_injector.so"));

/// A hash of the shim's bytes (FNV-1a, 64 bits, hex): part of the shim
/// memfd's name, so that `rprof attach` recognises this very build already
/// loaded in a target (the shim is never unloaded) and reuses it.
pub fn hash() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in SHIM {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// What every shim memfd's name starts with.
pub const SHIM_NAME_PREFIX: &str = "rprof-shim-";
/// What every ring memfd's name starts with.
pub const RING_NAME_PREFIX: &str = "rprof-ring-";

/// The memfd name of a shim of this build.
pub fn shim_name(nonce: &str) -> String {
    format!("{SHIM_NAME_PREFIX}{}-{nonce}", hash())
}

/// The memfd name of a ring.
pub fn ring_name(nonce: &str) -> String {
    format!("{RING_NAME_PREFIX}{nonce}")
}

/// How a memfd named `name` shows in `/proc/PID/fd` and `/proc/PID/maps`.
pub fn memfd_link(name: &str) -> String {
    format!("/memfd:{name} (deleted)")
}

/// Whether a mapping or fd link is a shim of this build.
pub fn is_this_shim(link: &str) -> bool {
    link.strip_prefix("/memfd:")
        .and_then(|n| n.strip_prefix(SHIM_NAME_PREFIX))
        .is_some_and(|rest| rest.starts_with(&hash()))
}

/// Whether a mapping or fd link is an rprof ring.
pub fn is_ring(link: &str) -> bool {
    link.starts_with(&format!("/memfd:{RING_NAME_PREFIX}"))
}

/// Whether a mapping or fd link is any rprof memfd.
pub fn is_rprof_memfd(link: &str) -> bool {
    link.starts_with("/memfd:rprof-")
}

/// 16 random hex digits.
pub fn nonce() -> String {
    let mut b = [0u8; 8];
    // A raw system call, not glibc's `getrandom` wrapper (glibc 2.25): the
    // wheel's binary links against glibc 2.17.
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::syscall(libc::SYS_getrandom, b.as_mut_ptr(), b.len(), 0) };
    if n != b.len() as libc::c_long {
        // Unpredictability is not needed for correctness (the name only has
        // to be new); fall back on time and pid.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        b = (t ^ u64::from(std::process::id()).rotate_left(40)).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `MFD_EXEC`: executable even where `vm.memfd_noexec` makes memfds
/// non-executable by default (Linux 6.3+; older kernels refuse the flag).
pub const MFD_EXEC: u32 = 0x10;

/// Creates a memfd in this process (close-on-exec, sealable).
pub fn memfd(name: &str, exec: bool) -> io::Result<File> {
    let cname = std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    for extra in if exec { vec![MFD_EXEC, 0] } else { vec![0] } {
        // A raw system call, not glibc's wrapper (glibc 2.27): the wheel's
        // binary links against glibc 2.17.
        // SAFETY: memfd_create reads the NUL-terminated name.
        let fd = unsafe { libc::syscall(libc::SYS_memfd_create, cname.as_ptr(), flags | extra) };
        let fd = fd as libc::c_int;
        if fd >= 0 {
            // SAFETY: fd is a new descriptor we own.
            return Ok(unsafe { File::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINVAL) {
            return Err(e);
        }
    }
    Err(io::Error::last_os_error())
}

/// A ring's size: `total` bytes, of which the first `reserved` are
/// written by every capture and reserved before the shim may write.
#[derive(Clone, Copy, Debug)]
pub struct RingBytes {
    /// The memfd's size.
    pub total: u64,
    /// How much of it, from the start, is reserved (`fallocate`).
    pub reserved: u64,
}

/// Sizes `file` to `bytes.total` and reserves the pages of its first
/// `bytes.reserved` bytes.
pub fn reserve(file: &File, bytes: RingBytes) -> io::Result<()> {
    file.set_len(bytes.total)?;
    let len = bytes.reserved.min(bytes.total);
    // SAFETY: fallocate on a descriptor we hold; mode 0 allocates.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Adds `seals` (`F_SEAL_*`) to a memfd.
pub fn seal(file: &File, seals: i32) -> io::Result<()> {
    // SAFETY: fcntl F_ADD_SEALS on a descriptor we hold.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The seals of a ring: its size is fixed for good.
pub const RING_SEALS: i32 = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
/// The seals of a shim: its bytes are fixed for good.
pub const SHIM_SEALS: i32 =
    libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// Writes the shim into an empty memfd and seals it.
pub fn fill_shim(file: &File) -> io::Result<()> {
    file.write_all_at(SHIM, 0)?;
    seal(file, SHIM_SEALS)
}

/// A memfd holding the shim, sealed, in this process.
pub fn shim_memfd() -> io::Result<File> {
    let f = memfd(&shim_name(&nonce()), true)?;
    fill_shim(&f)?;
    Ok(f)
}

/// How a child of this process can open `file`: `/proc/PID/fd/N`.
pub fn proc_path(file: &File) -> String {
    format!("/proc/{}/fd/{}", std::process::id(), file.as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_memfd_is_sealed_and_named() {
        let f = shim_memfd().unwrap();
        let link = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
        let link = link.to_string_lossy();
        assert!(is_this_shim(&link), "{link}");
        assert!(is_rprof_memfd(&link) && !is_ring(&link));
        assert_eq!(std::fs::read(proc_path(&f)).unwrap(), SHIM);
        assert!(SHIM.starts_with(b"\x7fELF"));
        // Sealed: no more writes.
        assert!(f.write_all_at(b"x", 0).is_err());
        let st = f.metadata().unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::nlink(&st), 0);
    }

    #[test]
    fn ring_memfd_is_reserved_and_cannot_shrink() {
        let f = memfd(&ring_name(&nonce()), false).unwrap();
        reserve(
            &f,
            RingBytes {
                total: 2 << 20,
                reserved: 1 << 20,
            },
        )
        .unwrap();
        seal(&f, RING_SEALS).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 2 << 20);
        // The reserved part is allocated, the rest sparse.
        let blocks = std::os::unix::fs::MetadataExt::blocks(&f.metadata().unwrap());
        assert_eq!(blocks * 512, 1 << 20);
        assert!(f.set_len(0).is_err());
        assert_ne!(nonce(), nonce());
    }
}
