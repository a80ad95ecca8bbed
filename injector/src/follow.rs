//! Following children (`--subprocesses`): a process of the capture that
//! forks, or a Python that a profiled process starts, gets a ring of its
//! own and announces it to rprof.
//!
//! The *announce channel* is a `SOCK_SEQPACKET` unix socket whose other end
//! rprof holds: one end of a socket pair created in the target by the
//! attach (passed to `rprof_attach`), or a connection to rprof's abstract
//! socket (`rprof run --subprocesses`, named in the `RPROF_FOLLOW`
//! environment variable). It is close-on-exec, and a forked child inherits
//! it. Without one, a forked child does what it always did: its first event
//! removes the hooks it inherited.
//!
//! With one, the child's first event (the first Python code it runs after
//! the fork, with the GIL held; see `hooks::forget_in_child`) creates a
//! ring memfd with its parent's settings, reserves its pages, seals its
//! size, writes its header, and sends `{magic, pid}` with the ring's fd
//! (`SCM_RIGHTS`) to rprof, without ever blocking (`MSG_DONTWAIT`; a gone
//! rprof gives `EPIPE`/`ECONNREFUSED`, never `SIGPIPE`). Only then does the
//! capture switch to the new ring and record on; if anything failed, the
//! child falls back on removing its hooks. A child that forks before its
//! first event has nothing to forget and nothing to announce; its own first
//! event does both.
//!
//! A Python started by `exec` (`subprocess`, `multiprocessing`'s spawn and
//! forkserver) lost the shim: rprof's `sitecustomize` loads it again and
//! calls `rprof_start_child` with the same specification, which does the
//! same from the start.

use core::ffi::c_int;
use core::ptr;
use core::sync::atomic::{AtomicI32, Ordering::Relaxed};
use rprof_abi::{Clock, FullPolicy, Header, Hook, HEADER_BYTES};

/// The announce channel's fd in this process, or -1 (do not follow).
static ANNOUNCE: AtomicI32 = AtomicI32::new(-1);

/// Magic of an announcement (first 8 bytes of the message).
pub const ANNOUNCE_MAGIC: [u8; 8] = *b"rprofan1";

/// Whether children are followed.
pub fn following() -> bool {
    ANNOUNCE.load(Relaxed) >= 0
}

/// Makes `fd` (an open `SOCK_SEQPACKET` socket, close-on-exec) the
/// announce channel; a previous one is closed.
pub fn set_channel(fd: c_int) {
    if fd < 0 {
        return;
    }
    // SAFETY: setting FD_CLOEXEC on an fd we were given.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    let old = ANNOUNCE.swap(fd, Relaxed);
    if old >= 0 && old != fd {
        // SAFETY: the old channel was ours.
        unsafe { libc::close(old) };
    }
}

/// The announce channel now (-1: none).
pub fn channel() -> c_int {
    ANNOUNCE.load(Relaxed)
}

/// Closes the announce channel if it is still `fd` (the one the capture
/// that ends had; a later attach may have set another meanwhile).
pub fn close_channel(fd: c_int) {
    if fd >= 0 && ANNOUNCE.compare_exchange(fd, -1, Relaxed, Relaxed).is_ok() {
        close(fd);
    }
}

/// Tells rprof that this forked child is not profiled, and why (no ring
/// is sent). Never blocks; best effort.
pub fn announce_failure(why: &str) {
    let chan = ANNOUNCE.load(Relaxed);
    if chan < 0 {
        return;
    }
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    let mut msg = [0u8; 16 + 200];
    msg[..8].copy_from_slice(&FAILURE_MAGIC);
    msg[8..12].copy_from_slice(&pid.to_le_bytes());
    let n = why.len().min(200);
    msg[16..16 + n].copy_from_slice(&why.as_bytes()[..n]);
    // SAFETY: sending our own buffer; never blocks, never raises SIGPIPE.
    unsafe {
        libc::send(
            chan,
            msg.as_ptr().cast(),
            16 + n,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
}

/// Magic of a failure notice: `{magic, pid, 4 bytes 0, reason}`, no fd.
pub const FAILURE_MAGIC: [u8; 8] = *b"rprofnp1";

/// The settings of a ring, copied from a parent's header or parsed from
/// the specification rprof puts in the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSpec {
    /// Main data area, in words (a power of two).
    pub capacity_words: u64,
    /// Per-thread segments.
    pub segments: u32,
    /// Words per segment.
    pub segment_words: u64,
    /// Requested clock.
    pub clock: u32,
    /// Requested hook.
    pub hook: u32,
    /// Full-ring policy.
    pub full_policy: u32,
    /// Record or floor.
    pub mode: u32,
    /// rprof's pid.
    pub reader_pid: u32,
    /// What is left out (`rprof_abi::flags`): a child records as its
    /// parent does.
    pub flags: u32,
}

impl RingSpec {
    /// The settings of the ring whose header is `h`.
    pub fn of(h: &Header) -> RingSpec {
        RingSpec {
            capacity_words: h.capacity_words,
            segments: h.segments,
            segment_words: h.segment_words,
            clock: h.clock,
            hook: h.hook,
            full_policy: h.full_policy,
            mode: h.mode,
            reader_pid: h.reader_pid,
            flags: h.flags,
        }
    }

    /// Parses `NAME:capacity:segments:segment_words:clock:hook:policy:mode:pid[:flags]`
    /// (the socket's name first); None if malformed.
    pub fn parse(s: &[u8]) -> Option<(&[u8], RingSpec)> {
        let mut it = s.split(|&b| b == b':');
        let name = it.next().filter(|n| !n.is_empty() && n.len() < 100)?;
        let mut num = || -> Option<u64> { core::str::from_utf8(it.next()?).ok()?.parse().ok() };
        let spec = RingSpec {
            capacity_words: num()?,
            segments: u32::try_from(num()?).ok()?,
            segment_words: num()?,
            clock: u32::try_from(num()?).ok()?,
            hook: u32::try_from(num()?).ok()?,
            full_policy: u32::try_from(num()?).ok()?,
            mode: u32::try_from(num()?).ok()?,
            reader_pid: u32::try_from(num()?).ok()?,
            flags: 0,
        };
        let spec = match it.next() {
            None => spec,
            Some(f) => RingSpec {
                flags: core::str::from_utf8(f).ok()?.parse().ok()?,
                ..spec
            },
        };
        Some((name, spec))
    }

    fn header(&self) -> Header {
        let clock = Clock::from_u32(self.clock).unwrap_or(Clock::Monotonic);
        let hook = Hook::from_u32(self.hook).unwrap_or(Hook::Auto);
        let policy = if self.full_policy == FullPolicy::Drop as u32 {
            FullPolicy::Drop
        } else {
            FullPolicy::Wait
        };
        let mut h = Header::new(self.capacity_words, clock, hook, policy, self.reader_pid);
        h.mode = self.mode;
        h.flags = self.flags;
        h.segments = self.segments;
        h.segment_words = self.segment_words;
        h
    }
}

/// Closes `fd` (ours).
fn close(fd: c_int) {
    // SAFETY: the caller owns fd.
    unsafe { libc::close(fd) };
}

/// Creates a ring memfd for this process with `spec`'s settings: sized,
/// its header and main area reserved (a process without the memory fails
/// here, not with SIGBUS later), sealed against shrinking, its header
/// written. Returns its fd (close-on-exec).
pub fn create_ring(spec: &RingSpec) -> Result<c_int, &'static str> {
    let h = spec.header();
    let total = rprof_abi::file_bytes(h.capacity_words, h.segments, h.segment_words)
        .ok_or("ring too large")?;
    h.validate(total).map_err(|_| "bad ring settings")?;
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let name = format!("rprof-ring-child-{pid}\0");
    // A raw system call: glibc's wrapper is 2.27+ and the wheel targets 2.17.
    // SAFETY: name is NUL-terminated.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_memfd_create,
            name.as_ptr(),
            libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
        )
    } as c_int;
    if fd < 0 {
        return Err("memfd_create failed");
    }
    let reserved = HEADER_BYTES as i64 + (h.capacity_words as i64) * 8;
    // SAFETY: plain calls on our own fd.
    let ok = unsafe {
        libc::ftruncate(fd, total as i64) == 0
            && libc::fallocate(fd, 0, 0, reserved) == 0
            && libc::fcntl(
                fd,
                libc::F_ADD_SEALS,
                libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
            ) == 0
    };
    if !ok {
        close(fd);
        return Err("cannot reserve memory for the child's ring");
    }
    // SAFETY: mapping the first page of our new memfd, checked below.
    let map = unsafe {
        libc::mmap(
            ptr::null_mut(),
            HEADER_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if map == libc::MAP_FAILED {
        close(fd);
        return Err("cannot map the child's ring");
    }
    // SAFETY: the map is a page-aligned HEADER_BYTES region of a file no
    // one else has yet.
    unsafe {
        ptr::write(map.cast::<Header>(), h);
        libc::munmap(map, HEADER_BYTES);
    }
    Ok(fd)
}

/// Sends `{magic, pid}` with `ring` to rprof over the announce channel.
/// Never blocks; false if the channel is closed, full or gone.
pub fn announce(ring: c_int) -> bool {
    let chan = ANNOUNCE.load(Relaxed);
    if chan < 0 {
        return false;
    }
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    let mut msg = [0u8; 16];
    msg[..8].copy_from_slice(&ANNOUNCE_MAGIC);
    msg[8..12].copy_from_slice(&pid.to_le_bytes());
    let mut iov = libc::iovec {
        iov_base: msg.as_mut_ptr().cast(),
        iov_len: msg.len(),
    };
    // Room for one fd (CMSG_SPACE(4) = 24 on 64-bit), 8-aligned.
    let mut cbuf = [0u64; 4];
    // SAFETY: msghdr is plain data; every pointer set below outlives the
    // sendmsg call; CMSG_* compute within cbuf, which is large enough for
    // one fd.
    unsafe {
        let mut m: libc::msghdr = core::mem::zeroed();
        m.msg_iov = &mut iov;
        m.msg_iovlen = 1;
        m.msg_control = cbuf.as_mut_ptr().cast();
        m.msg_controllen = libc::CMSG_SPACE(4) as usize;
        let c = libc::CMSG_FIRSTHDR(&m);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
        ptr::write_unaligned(libc::CMSG_DATA(c).cast::<c_int>(), ring);
        libc::sendmsg(chan, &m, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) == msg.len() as isize
    }
}

/// Connects to rprof's abstract socket `name` and makes the connection the
/// announce channel. False if rprof is not there.
pub fn connect(name: &[u8]) -> bool {
    // SAFETY: plain socket calls; the address is built within its bounds
    // (name.len() < 100 < sun_path's 108 bytes, checked by the parser).
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return false;
        }
        let mut addr: libc::sockaddr_un = core::mem::zeroed();
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        if name.len() + 1 > addr.sun_path.len() {
            close(fd);
            return false;
        }
        // Abstract: a leading NUL, then the name (no terminator).
        for (i, b) in name.iter().enumerate() {
            addr.sun_path[i + 1] = *b as libc::c_char;
        }
        let len = (core::mem::size_of::<libc::sa_family_t>() + 1 + name.len()) as libc::socklen_t;
        if libc::connect(fd, ptr::addr_of!(addr).cast(), len) != 0 {
            close(fd);
            return false;
        }
        set_channel(fd);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let (name, s) = RingSpec::parse(b"rprof-x:4096:128:4096:2:0:0:0:77").unwrap();
        assert_eq!(name, b"rprof-x");
        assert_eq!(s.capacity_words, 4096);
        assert_eq!(s.segments, 128);
        assert_eq!(s.clock, 2);
        assert_eq!(s.reader_pid, 77);
        assert_eq!(s.flags, 0);
        let (_, s) = RingSpec::parse(b"rprof-x:4096:128:4096:2:0:0:0:77:3").unwrap();
        assert_eq!(s.flags, 3);
        assert!(RingSpec::parse(b"x:1:2").is_none());
        assert!(RingSpec::parse(b":1:2:3:4:5:6:7:8").is_none());
    }

    #[test]
    fn creates_a_valid_ring() {
        let spec = RingSpec {
            capacity_words: 4096,
            segments: 2,
            segment_words: 4096,
            clock: 1,
            hook: 0,
            full_policy: 0,
            mode: 0,
            reader_pid: 1,
            flags: rprof_abi::flags::NO_SUBCALLS,
        };
        let fd = create_ring(&spec).unwrap();
        // SAFETY: stat is plain data.
        let mut st: libc::stat = unsafe { core::mem::zeroed() };
        // SAFETY: fd is ours, st writable.
        assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
        assert_eq!(
            st.st_size as usize,
            rprof_abi::file_bytes(4096, 2, 4096).unwrap()
        );
        close(fd);
    }
}
