//! Following children (`--subprocesses`): rprof's end of the announce
//! channels through which profiled processes hand over the rings of their
//! children.
//!
//! A child forked by a profiled process (and a Python that a profiled
//! process starts with `exec`, through rprof's `sitecustomize`) makes a ring
//! memfd of its own and sends `{magic, pid}` with the ring's fd
//! (`SCM_RIGHTS`) over a `SOCK_SEQPACKET` socket whose other end is here
//! (the shim's side is `injector/src/follow.rs`). Channels are:
//!
//! * the peer of a socket pair made in an attached target
//!   ([`Target::inject_following`](crate::attach::Target::inject_following)
//!   returns it; pass it to [`Announcements::add_channel`]);
//! * connections to an abstract unix socket of rprof's
//!   ([`Announcements::listen`]; `rprof run --subprocesses` names it in the
//!   environment, see [`Announcements::spec`]), accepted by
//!   [`Announcements::try_recv`] itself.
//!
//! Everything received is untrusted: a message that is not exactly an
//! announcement, or whose fd is not a sealed `rprof-ring-*` memfd, is
//! refused (and counted in [`Announcements::refused`]). The ring's header
//! and size are checked by `rprof_reader::Ring::open_announced`.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use rprof_controller::follow::Announcements;
//! let mut ann = Announcements::listen()?;
//! // ... start the target with ann.spec(...) in its environment ...
//! while let Some(a) = ann.try_recv()? {
//!     println!("PID {} has a ring of its own", a.pid);
//!     // rprof_reader::Ring::open_announced(a.ring) and a Session on it
//! }
//! # Ok(()) }
//! ```

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The first 8 bytes of an announcement (the shim's `ANNOUNCE_MAGIC`).
pub const ANNOUNCE_MAGIC: [u8; 8] = *b"rprofan1";
/// The first 8 bytes of a child's notice that it could not make a ring
/// (the shim's `FAILURE_MAGIC`): `{magic, pid, 0u32, reason}`, no fd.
pub const FAILURE_MAGIC: [u8; 8] = *b"rprofnp1";

/// The environment variable that carries the follow specification to
/// Pythons started with `exec` (read by rprof's `sitecustomize`).
pub const ENV_SPEC: &str = "RPROF_FOLLOW";
/// The environment variable with the shim's path for them.
pub const ENV_SHIM: &str = "RPROF_FOLLOW_SHIM";

/// A child announced a ring of its own.
#[derive(Debug)]
pub struct Announced {
    /// The child's pid, as it says (in its own PID namespace).
    pub pid: i32,
    /// The ring memfd (checked: a sealed `rprof-ring-*` memfd; its header
    /// is not checked yet).
    pub ring: File,
}

/// rprof's ends of the announce channels.
#[derive(Debug, Default)]
pub struct Announcements {
    listener: Option<OwnedFd>,
    name: Option<String>,
    channels: Vec<OwnedFd>,
    refused: u64,
    failures: Vec<(i32, String)>,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Announcements {
    /// No channel yet (add some with [`add_channel`](Self::add_channel)).
    pub fn new() -> Announcements {
        Announcements::default()
    }

    /// Also listens on a new abstract unix socket (`rprof-follow-PID-NONCE`)
    /// for processes started with `exec`.
    pub fn listen() -> io::Result<Announcements> {
        let name = format!(
            "rprof-follow-{}-{}",
            std::process::id(),
            crate::shim::nonce()
        );
        // SAFETY: plain socket calls on a new fd; the address is built
        // within sun_path's bounds (the name is < 60 bytes).
        let fd = unsafe {
            let fd = cvt(libc::socket(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            ))?;
            let fd = OwnedFd::from_raw_fd(fd);
            let (addr, len) = abstract_addr(&name);
            cvt(libc::bind(
                fd.as_raw_fd(),
                std::ptr::addr_of!(addr).cast(),
                len,
            ))?;
            cvt(libc::listen(fd.as_raw_fd(), 128))?;
            fd
        };
        Ok(Announcements {
            listener: Some(fd),
            name: Some(name),
            ..Announcements::default()
        })
    }

    /// The abstract socket's name, with [`listen`](Self::listen).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The value of [`ENV_SPEC`] for children started with `exec`: the
    /// socket's name and the ring settings `header` carries (a header
    /// written by `rprof_reader::Ring::create_in`). None without a listener.
    pub fn spec(&self, header: &rprof_abi::Header) -> Option<String> {
        let name = self.name.as_ref()?;
        Some(format!(
            "{name}:{}:{}:{}:{}:{}:{}:{}:{}:{}",
            header.capacity_words,
            header.segments,
            header.segment_words,
            header.clock,
            header.hook,
            header.full_policy,
            header.mode,
            header.reader_pid,
            header.flags
        ))
    }

    /// Adds rprof's end of a socket pair whose other end a target holds.
    pub fn add_channel(&mut self, fd: OwnedFd) {
        // SAFETY: fcntl on an fd we own.
        unsafe {
            let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
        self.channels.push(fd);
    }

    /// How many channels are open (processes or groups of processes that
    /// can still announce).
    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    /// How many messages were refused (not an announcement, or not a ring).
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Children that said they could not be profiled (no memory for a
    /// ring, ...): `(pid, reason)`, taken once. The reason is the child's
    /// own words (untrusted; printable ASCII only, at most 200 bytes).
    pub fn take_failures(&mut self) -> Vec<(i32, String)> {
        std::mem::take(&mut self.failures)
    }

    /// The next announcement, if one is waiting; never blocks. Accepts
    /// new connections first; channels whose every holder has exited are
    /// dropped.
    pub fn try_recv(&mut self) -> io::Result<Option<Announced>> {
        if let Some(l) = &self.listener {
            loop {
                // SAFETY: accept4 on our listening socket; a new fd is ours.
                let fd = unsafe {
                    libc::accept4(
                        l.as_raw_fd(),
                        std::ptr::null_mut(),
                        std::ptr::null_mut(),
                        libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                    )
                };
                if fd < 0 {
                    break;
                }
                // SAFETY: fd is new and ours.
                let conn = unsafe { OwnedFd::from_raw_fd(fd) };
                // Anyone in this network namespace can connect to an
                // abstract socket: only processes of our own user (or of
                // any user when rprof runs as root) may announce.
                if peer_uid(&conn).is_some_and(|uid| {
                    // SAFETY: geteuid has no preconditions.
                    let me = unsafe { libc::geteuid() };
                    me == 0 || uid == me
                }) && self.channels.len() < MAX_CHANNELS
                {
                    self.channels.push(conn);
                } else {
                    self.refused += 1;
                }
            }
        }
        let mut i = 0;
        while i < self.channels.len() {
            match recv_one(self.channels[i].as_raw_fd()) {
                Received::Nothing => i += 1,
                Received::Closed => {
                    self.channels.swap_remove(i);
                }
                Received::Refused => self.refused += 1,
                Received::Failure(pid, why) => {
                    if self.failures.len() < 10_000 {
                        self.failures.push((pid, why));
                    }
                }
                Received::Ring(a) => return Ok(Some(a)),
            }
        }
        Ok(None)
    }
}

/// The environment variable telling rprof's `sitecustomize` that this is
/// the process `rprof run` started itself (it starts its own capture); it
/// removes the variable, so that the program's children do not inherit it.
pub const ENV_MAIN: &str = "RPROF_FOLLOW_MAIN";

/// rprof's `sitecustomize`, found first on `PYTHONPATH` by every Python the
/// program starts. It takes itself off `sys.path`, loads the shim, has it make, announce and start a ring of
/// its own (`rprof_start_child`), takes what it imported for that out of
/// `sys.modules` again, and runs the real `sitecustomize`, if any, which
/// takes its place in `sys.modules`.
pub const SITECUSTOMIZE: &str = r#"# rprof --subprocesses: profiles this Python for the rprof that started its ancestor.
def _rprof_follow():
    import os, sys
    here = os.path.dirname(__file__)
    sys.path[:] = [p for p in sys.path if p != here]
    main = os.environ.pop("RPROF_FOLLOW_MAIN", None)
    spec = os.environ.get("RPROF_FOLLOW")
    shim = os.environ.get("RPROF_FOLLOW_SHIM")
    if not main and spec and shim:
        before = set(sys.modules)
        why = None
        try:
            import ctypes
            lib = ctypes.PyDLL(shim)
            loaded = set(sys.modules) - before
            if lib.rprof_start_child(os.fsencode(spec)) != 0:
                buf = ctypes.create_string_buffer(256)
                lib.rprof_last_error(buf, 256)
                why = buf.value.decode("utf-8", "replace")
        except Exception as e:
            loaded = set(sys.modules) - before
            why = "%s: %s" % (type(e).__name__, e)
        for name in loaded:
            sys.modules.pop(name, None)
        if why is not None:
            sys.stderr.write("rprof: warning: PID %d (%s) is not profiled: %s\n" % (os.getpid(), " ".join(getattr(sys, "orig_argv", sys.argv) or [sys.executable]), why))
            sys.stderr.flush()
    # The real sitecustomize, if any, replaces this one in sys.modules
    # (the import system keeps whatever is there once this returns).
    spec = sys.modules["_frozen_importlib_external"].PathFinder.find_spec("sitecustomize", sys.path)
    if spec is not None and spec.loader is not None:
        module = sys.modules["_frozen_importlib"].module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        spec.loader.exec_module(module)
_rprof_follow()
del _rprof_follow
"#;

/// What `rprof run --subprocesses` sets up: the announce socket, and a zip
/// holding [`SITECUSTOMIZE`] in a memfd (children read it through
/// `/proc/RPROF/fd/N`: nothing on disk).
#[derive(Debug)]
pub struct Children {
    /// The announce channels.
    pub announcements: Announcements,
    zip: File,
}

impl Children {
    /// Listens, and writes the zip.
    pub fn new() -> io::Result<Children> {
        let announcements = Announcements::listen()?;
        let zip = crate::shim::memfd("rprof-sitecustomize", false)?;
        let bytes = stored_zip("sitecustomize.py", SITECUSTOMIZE.as_bytes());
        std::io::Write::write_all(&mut &zip, &bytes)?;
        crate::shim::seal(&zip, crate::shim::SHIM_SEALS)?;
        Ok(Children { announcements, zip })
    }

    /// The environment for the program: [`ENV_SPEC`] (ring settings from
    /// `header`, the main ring's), [`ENV_SHIM`] (`shim`, a path children
    /// can open), [`ENV_MAIN`], and `PYTHONPATH` with the zip first.
    pub fn env(
        &self,
        header: &rprof_abi::Header,
        shim: &str,
    ) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        let zip = crate::shim::proc_path(&self.zip);
        let mut path = std::ffi::OsString::from(&zip);
        if let Some(old) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
            path.push(":");
            path.push(old);
        }
        vec![
            (
                ENV_SPEC.into(),
                self.announcements.spec(header).unwrap_or_default().into(),
            ),
            (ENV_SHIM.into(), shim.into()),
            (ENV_MAIN.into(), "1".into()),
            ("PYTHONPATH".into(), path),
        ]
    }
}

/// A zip archive holding one file, stored (not compressed).
fn stored_zip(name: &str, data: &[u8]) -> Vec<u8> {
    let crc = crc32(data);
    let n = name.len() as u16;
    let size = data.len() as u32;
    let mut out = Vec::new();
    let le16 = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&x.to_le_bytes());
    let le32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
    // Local file header.
    le32(&mut out, 0x0403_4b50);
    for x in [20u16, 0, 0, 0, 0x21] {
        le16(&mut out, x); // version, flags, method (stored), time, date
    }
    le32(&mut out, crc);
    le32(&mut out, size);
    le32(&mut out, size);
    le16(&mut out, n);
    le16(&mut out, 0);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(data);
    let central = out.len() as u32;
    le32(&mut out, 0x0201_4b50);
    for x in [20u16, 20, 0, 0, 0, 0x21] {
        le16(&mut out, x); // made by, needed, flags, method, time, date
    }
    le32(&mut out, crc);
    le32(&mut out, size);
    le32(&mut out, size);
    for x in [n, 0, 0, 0, 0] {
        le16(&mut out, x); // name, extra, comment, disk, internal attrs
    }
    le32(&mut out, 0o100644 << 16);
    le32(&mut out, 0); // local header offset
    out.extend_from_slice(name.as_bytes());
    let central_len = out.len() as u32 - central;
    le32(&mut out, 0x0605_4b50);
    for x in [0u16, 0, 1, 1] {
        le16(&mut out, x);
    }
    le32(&mut out, central_len);
    le32(&mut out, central);
    le16(&mut out, 0);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (!(crc & 1)).wrapping_add(1));
        }
    }
    !crc
}

/// The most announce channels kept open at once.
pub const MAX_CHANNELS: usize = 4096;

/// The user id of the process at the other end of a connection.
fn peer_uid(conn: &OwnedFd) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let r = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::addr_of_mut!(cred).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(cred.uid)
}

fn abstract_addr(name: &str) -> (libc::sockaddr_un, libc::socklen_t) {
    // SAFETY: sockaddr_un is plain data.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (i, b) in name.bytes().take(addr.sun_path.len() - 1).enumerate() {
        addr.sun_path[i + 1] = b as libc::c_char;
    }
    let n = name.len().min(addr.sun_path.len() - 1);
    let len = (std::mem::size_of::<libc::sa_family_t>() + 1 + n) as libc::socklen_t;
    (addr, len)
}

enum Received {
    Failure(i32, String),
    Nothing,
    Closed,
    Refused,
    Ring(Announced),
}

fn recv_one(sock: RawFd) -> Received {
    let mut msg = [0u8; 256];
    let mut iov = libc::iovec {
        iov_base: msg.as_mut_ptr().cast(),
        iov_len: msg.len(),
    };
    let mut cbuf = [0u64; 16];
    // SAFETY: msghdr is plain data; the buffers outlive recvmsg; CMSG_*
    // walk within cbuf as the kernel filled it (msg_controllen).
    let (n, m) = unsafe {
        let mut m: libc::msghdr = std::mem::zeroed();
        m.msg_iov = &mut iov;
        m.msg_iovlen = 1;
        m.msg_control = cbuf.as_mut_ptr().cast();
        m.msg_controllen = std::mem::size_of_val(&cbuf);
        let n = libc::recvmsg(sock, &mut m, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC);
        (n, m)
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Received::Nothing,
            _ => Received::Closed,
        };
    }
    // Every fd that came is ours; keep at most one.
    let mut fds: Vec<File> = Vec::new();
    // SAFETY: walking the control messages the kernel wrote into cbuf.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&m);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for k in 0..bytes / 4 {
                    let fd = std::ptr::read_unaligned(data.add(4 * k).cast::<libc::c_int>());
                    if fd >= 0 {
                        fds.push(File::from_raw_fd(fd));
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&m, c);
        }
    }
    if n == 0 && fds.is_empty() {
        return Received::Closed;
    }
    if n >= 16 && msg[..8] == FAILURE_MAGIC && fds.is_empty() {
        let pid = u32::from_le_bytes([msg[8], msg[9], msg[10], msg[11]]);
        let why: String = msg[16..n as usize]
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '?'
                }
            })
            .collect();
        return match i32::try_from(pid) {
            Ok(pid) if pid > 0 => Received::Failure(pid, why),
            _ => Received::Refused,
        };
    }
    if n != 16
        || msg[..8] != ANNOUNCE_MAGIC
        || fds.len() != 1
        || m.msg_flags & (libc::MSG_CTRUNC | libc::MSG_TRUNC) != 0
    {
        return Received::Refused;
    }
    let pid = u32::from_le_bytes([msg[8], msg[9], msg[10], msg[11]]);
    let Ok(pid) = i32::try_from(pid) else {
        return Received::Refused;
    };
    let ring = fds.pop().expect("one fd");
    if pid <= 0 || !is_sealed_ring(&ring) {
        return Received::Refused;
    }
    Received::Ring(Announced { pid, ring })
}

/// Whether `f` is a memfd named `rprof-ring-*` that cannot shrink or grow.
fn is_sealed_ring(f: &File) -> bool {
    let Ok(meta) = f.metadata() else {
        return false;
    };
    let link = std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd()))
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default();
    // SAFETY: fcntl on an fd we own.
    let seals = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) };
    meta.file_type().is_file()
        && std::os::unix::fs::MetadataExt::nlink(&meta) == 0
        && crate::shim::is_ring(&link)
        && seals >= 0
        && seals & (libc::F_SEAL_SHRINK | libc::F_SEAL_GROW)
            == (libc::F_SEAL_SHRINK | libc::F_SEAL_GROW)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(sock: RawFd, payload: &[u8], fd: Option<RawFd>) {
        let mut iov = libc::iovec {
            iov_base: payload.as_ptr() as *mut _,
            iov_len: payload.len(),
        };
        let mut cbuf = [0u64; 4];
        // SAFETY: as in the shim's announce; buffers outlive the call.
        unsafe {
            let mut m: libc::msghdr = std::mem::zeroed();
            m.msg_iov = &mut iov;
            m.msg_iovlen = 1;
            if let Some(fd) = fd {
                m.msg_control = cbuf.as_mut_ptr().cast();
                m.msg_controllen = libc::CMSG_SPACE(4) as usize;
                let c = libc::CMSG_FIRSTHDR(&m);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>(), fd);
            }
            assert!(libc::sendmsg(sock, &m, 0) >= 0);
        }
    }

    fn pair() -> (OwnedFd, OwnedFd) {
        let mut sv = [0; 2];
        assert_eq!(
            // SAFETY: socketpair writes two fds into sv.
            unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                    0,
                    sv.as_mut_ptr(),
                )
            },
            0
        );
        // SAFETY: both are new fds of ours.
        unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) }
    }

    fn announcement(pid: u32) -> Vec<u8> {
        let mut m = ANNOUNCE_MAGIC.to_vec();
        m.extend_from_slice(&pid.to_le_bytes());
        m.extend_from_slice(&[0; 4]);
        m
    }

    #[test]
    fn accepts_sealed_rings_and_refuses_the_rest() {
        let (ours, theirs) = pair();
        let mut ann = Announcements::new();
        ann.add_channel(ours);
        assert!(ann.try_recv().unwrap().is_none());
        // A sealed ring.
        let ring = crate::shim::memfd("rprof-ring-child-1", false).unwrap();
        ring.set_len(1 << 16).unwrap();
        crate::shim::seal(&ring, crate::shim::RING_SEALS).unwrap();
        send(
            theirs.as_raw_fd(),
            &announcement(42),
            Some(ring.as_raw_fd()),
        );
        let a = ann.try_recv().unwrap().expect("announced");
        assert_eq!(a.pid, 42);
        // Not sealed; not a ring; no fd; bad magic.
        let unsealed = crate::shim::memfd("rprof-ring-x", false).unwrap();
        send(
            theirs.as_raw_fd(),
            &announcement(43),
            Some(unsealed.as_raw_fd()),
        );
        let other = crate::shim::memfd("something", false).unwrap();
        crate::shim::seal(&other, crate::shim::RING_SEALS).unwrap();
        send(
            theirs.as_raw_fd(),
            &announcement(44),
            Some(other.as_raw_fd()),
        );
        send(theirs.as_raw_fd(), &announcement(45), None);
        send(
            theirs.as_raw_fd(),
            b"rprofXX1\x2e\0\0\0\0\0\0\0",
            Some(ring.as_raw_fd()),
        );
        let mut notice = FAILURE_MAGIC.to_vec();
        notice.extend_from_slice(&46u32.to_le_bytes());
        notice.extend_from_slice(&[0; 4]);
        notice.extend_from_slice(b"no memory\n");
        send(theirs.as_raw_fd(), &notice, None);
        assert!(ann.try_recv().unwrap().is_none());
        assert_eq!(ann.refused(), 4);
        assert_eq!(ann.take_failures(), vec![(46, "no memory?".to_string())]);
        drop(theirs);
        assert!(ann.try_recv().unwrap().is_none());
        assert_eq!(ann.channels(), 0);
    }

    #[test]
    fn crc_and_zip() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let z = stored_zip("a.py", b"x = 1\n");
        assert_eq!(&z[..4], b"PK\x03\x04");
        assert_eq!(&z[z.len() - 22..z.len() - 18], b"PK\x05\x06");
    }

    #[test]
    fn listens_on_an_abstract_socket() {
        let mut ann = Announcements::listen().unwrap();
        let name = ann.name().unwrap().to_string();
        // SAFETY: plain socket calls.
        let c = unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0);
            let (addr, len) = abstract_addr(&name);
            assert_eq!(libc::connect(fd, std::ptr::addr_of!(addr).cast(), len), 0);
            OwnedFd::from_raw_fd(fd)
        };
        let ring = crate::shim::memfd("rprof-ring-child-2", false).unwrap();
        crate::shim::seal(&ring, crate::shim::RING_SEALS).unwrap();
        send(c.as_raw_fd(), &announcement(7), Some(ring.as_raw_fd()));
        let a = ann.try_recv().unwrap().expect("announced");
        assert_eq!(a.pid, 7);
    }
}
