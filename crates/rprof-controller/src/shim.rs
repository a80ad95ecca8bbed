//! The shim library, embedded in rprof, and the private directory it is
//! written to for the target to load.
//!
//! The directory is created with mode 0700 (under `/dev/shm` when it is
//! writable, so the ring lives in memory), holds the shim and the ring file,
//! and is removed when the [`Workdir`] is dropped.

use crate::ControllerError;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The shim built from `injector/` for this platform.
pub static SHIM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/librprof_injector.so"));

/// File name of the shim: it carries a hash of the shim's bytes, so that
/// `rprof attach` can recognise this very build already loaded in a target
/// (the shim is never unloaded) and reuse it.
pub fn file_name() -> String {
    // FNV-1a, 64 bits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in SHIM {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("librprof_injector-{h:016x}.so")
}
/// File name of the ring inside a [`Workdir`].
pub const RING_NAME: &str = "ring";

/// A private directory holding the shim and the ring of one capture.
///
/// Paths come in two views: *local*, as rprof opens them, and *target*, as
/// the profiled process opens them (they differ when the target lives in
/// another mount namespace and is reached through `/proc/PID/root`).
pub struct Workdir {
    dir: tempfile::TempDir,
    shim: PathBuf,
    target_dir: PathBuf,
}

impl Workdir {
    /// Creates the directory (in `/dev/shm`, else the temporary directory)
    /// and writes the shim into it, for a target started by rprof.
    pub fn new() -> Result<Workdir, ControllerError> {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        Self::create(&base, &base, None)
    }

    /// The same in `local` (the target's `target` directory as rprof sees
    /// it), owned by the target's `(uid, gid)` so that it can open the
    /// files, and by no one else.
    pub fn for_target(
        local: &Path,
        target: &Path,
        owner: (u32, u32),
    ) -> Result<Workdir, ControllerError> {
        Self::create(local, target, Some(owner))
    }

    fn create(
        local: &Path,
        target: &Path,
        owner: Option<(u32, u32)>,
    ) -> Result<Workdir, ControllerError> {
        sweep_stale(local);
        let mut builder = tempfile::Builder::new();
        builder
            .prefix("rprof-")
            .permissions(std::fs::Permissions::from_mode(0o700));
        let dir = builder.tempdir_in(local).map_err(|e| ControllerError::Io {
            what: format!("cannot create a private directory in {}", local.display()),
            source: e,
        })?;
        let chown = |p: &Path| -> Result<(), ControllerError> {
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).map_err(|e| {
                    ControllerError::Io {
                        what: format!(
                            "cannot give {} to the target's user (uid {uid})",
                            p.display()
                        ),
                        source: e,
                    }
                })?;
            }
            Ok(())
        };
        chown(dir.path())?;
        let target_dir = target.join(dir.path().file_name().unwrap_or_default());
        let shim = dir.path().join(file_name());
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o500)
            .open(&shim)
            .and_then(|mut f| f.write_all(SHIM).map(|_| f))
            .map_err(|e| ControllerError::Io {
                what: format!("cannot write the shim to {}", shim.display()),
                source: e,
            })?;
        f.flush().ok();
        chown(&shim)?;
        Ok(Workdir {
            dir,
            shim,
            target_dir,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The shim's path.
    pub fn shim(&self) -> &Path {
        &self.shim
    }

    /// Where the ring file goes.
    pub fn ring(&self) -> PathBuf {
        self.dir.path().join(RING_NAME)
    }

    /// The shim's path as the target sees it.
    pub fn target_shim(&self) -> PathBuf {
        self.target_dir.join(file_name())
    }

    /// The ring's path as the target sees it.
    pub fn target_ring(&self) -> PathBuf {
        self.target_dir.join(RING_NAME)
    }
}

/// Removes the directories of earlier rprof runs that were killed before
/// they could clean up: those whose ring names a reader process that no
/// longer exists, or that never got a ring and are over a minute old.
fn sweep_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let dir = e.path();
        let is_ours = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("rprof-"))
            && e.file_type().is_ok_and(|t| t.is_dir());
        if !is_ours {
            continue;
        }
        let head = std::fs::File::open(dir.join(RING_NAME)).and_then(|mut f| {
            let mut bytes = [0u8; 64];
            std::io::Read::read_exact(&mut f, &mut bytes).map(|_| bytes)
        });
        let stale = match head {
            Ok(bytes) => {
                let at = std::mem::offset_of!(rprof_abi::Header, reader_pid);
                let pid = bytes
                    .get(at..at + 4)
                    .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                bytes.starts_with(&rprof_abi::MAGIC)
                    && pid.is_some_and(|p| p != 0 && !Path::new(&format!("/proc/{p}")).exists())
            }
            Err(_) => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(60)),
        };
        if stale {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workdir_is_private_and_removed() {
        let w = Workdir::new().unwrap();
        let mode = std::fs::metadata(w.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(w.target_shim(), w.shim());
        assert!(file_name().starts_with("librprof_injector-"));
        assert_eq!(std::fs::read(w.shim()).unwrap(), SHIM);
        assert!(SHIM.starts_with(b"\x7fELF"));
        let p = w.path().to_path_buf();
        drop(w);
        assert!(!p.exists());
    }
}
