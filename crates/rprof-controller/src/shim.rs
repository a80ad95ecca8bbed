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

/// File name of the shim inside a [`Workdir`].
pub const SHIM_NAME: &str = "librprof_injector.so";
/// File name of the ring inside a [`Workdir`].
pub const RING_NAME: &str = "ring";

/// A private directory holding the shim and the ring of one capture.
pub struct Workdir {
    dir: tempfile::TempDir,
    shim: PathBuf,
}

impl Workdir {
    /// Creates the directory and writes the shim into it.
    pub fn new() -> Result<Workdir, ControllerError> {
        let shm = Path::new("/dev/shm");
        let builder = {
            let mut b = tempfile::Builder::new();
            b.prefix("rprof-")
                .permissions(std::fs::Permissions::from_mode(0o700));
            b
        };
        let dir = match builder.tempdir_in(shm) {
            Ok(d) => d,
            Err(_) => builder.tempdir().map_err(|e| ControllerError::Io {
                what: format!(
                    "cannot create a private directory in {}",
                    std::env::temp_dir().display()
                ),
                source: e,
            })?,
        };
        let shim = dir.path().join(SHIM_NAME);
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
        Ok(Workdir { dir, shim })
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workdir_is_private_and_removed() {
        let w = Workdir::new().unwrap();
        let mode = std::fs::metadata(w.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(std::fs::read(w.shim()).unwrap(), SHIM);
        assert!(SHIM.starts_with(b"\x7fELF"));
        let p = w.path().to_path_buf();
        drop(w);
        assert!(!p.exists());
    }
}
