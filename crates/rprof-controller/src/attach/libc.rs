//! Which C library a target runs on, and whether rprof's shim can be
//! loaded there.
//!
//! The shim is a glibc shared library linked against glibc 2.17 (the
//! wheel's manylinux_2_17 floor). Loaded into a musl process (Alpine and
//! other musl-based images) or a glibc older than that, `dlopen` would fail
//! inside the target with an obscure message, or worse; so `inspect`
//! refuses such a target up front, from its memory maps and its libc's
//! ELF version definitions, without touching it.

use super::proc::{self, Mapping};
use super::AttachError;

/// The oldest glibc the shim runs on.
pub const GLIBC_FLOOR: (u32, u32) = (2, 17);

/// The C library a process has mapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Libc {
    /// glibc, with the newest `GLIBC_x.y` version it defines, if it could
    /// be read.
    Glibc {
        /// The library as the target sees it.
        path: String,
        /// `(2, minor)`.
        version: Option<(u32, u32)>,
    },
    /// musl (`ld-musl-*.so.1` or `libc.musl-*.so.1`).
    Musl {
        /// The library as the target sees it.
        path: String,
    },
    /// No shared C library: a static binary, or an unknown libc.
    None,
}

impl std::fmt::Display for Libc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Libc::Glibc {
                path,
                version: Some((a, b)),
            } => write!(f, "glibc {a}.{b} ({path})"),
            Libc::Glibc {
                path,
                version: None,
            } => write!(f, "glibc of unknown version ({path})"),
            Libc::Musl { path } => write!(f, "musl libc ({path})"),
            Libc::None => write!(f, "no shared C library (a static binary?)"),
        }
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn is_musl(path: &str) -> bool {
    let n = file_name(path);
    // Alpine maps `/lib/ld-musl-x86_64.so.1`; Debian's musl package
    // resolves that link to `/usr/lib/x86_64-linux-musl/libc.so`.
    n.starts_with("ld-musl-") || n.starts_with("libc.musl-") || path.contains("-linux-musl/")
}

/// The program interpreter (`PT_INTERP`) of `pid`'s executable.
fn interpreter(pid: i32) -> Option<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/exe")).ok()?;
    let elf = goblin::elf::Elf::parse(&bytes).ok()?;
    elf.interpreter.map(str::to_string)
}

fn is_glibc(path: &str) -> bool {
    let n = file_name(path);
    n == "libc.so.6" || (n.starts_with("libc-2.") && n.ends_with(".so"))
}

/// The C library in `maps` (of process `pid`, whose files are read through
/// `/proc/PID/root`). musl wins if both appear: a musl process can map no
/// glibc, while a glibc process never maps musl's loader.
pub fn detect(pid: i32, maps: &[Mapping]) -> Libc {
    let paths = || maps.iter().filter_map(|m| m.path.as_deref());
    if let Some(p) = paths().find(|p| is_musl(p)) {
        return Libc::Musl {
            path: p.to_string(),
        };
    }
    match paths().find(|p| is_glibc(p)) {
        Some(p) => Libc::Glibc {
            path: p.to_string(),
            version: glibc_version(&proc::mapped_file(pid, maps, p)),
        },
        None => match interpreter(pid) {
            // A libc renamed beyond recognition: the loader still tells.
            Some(interp) if interp.contains("musl") => Libc::Musl { path: interp },
            _ => Libc::None,
        },
    }
}

/// The C library of process `pid` (for `rprof doctor`).
pub fn of_process(pid: i32) -> std::io::Result<Libc> {
    Ok(detect(pid, &proc::maps(pid)?))
}

/// The newest `GLIBC_2.N` version node a glibc defines: its release.
pub fn glibc_version(file: &std::path::Path) -> Option<(u32, u32)> {
    let bytes = std::fs::read(file).ok()?;
    let elf = goblin::elf::Elf::parse(&bytes).ok()?;
    let verdef = elf.verdef.as_ref()?;
    let mut best = None;
    for def in verdef.iter() {
        for aux in def.iter() {
            let Some(name) = elf.dynstrtab.get_at(aux.vda_name) else {
                continue;
            };
            if let Some(v) = parse_glibc_version(name) {
                best = best.max(Some(v));
            }
        }
    }
    best
}

/// `(2, 17)` from `GLIBC_2.17`; `GLIBC_2.2.5` counts as `(2, 2)`.
pub fn parse_glibc_version(name: &str) -> Option<(u32, u32)> {
    let mut parts = name.strip_prefix("GLIBC_")?.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Refuses a target whose C library cannot load the shim.
pub(crate) fn check(pid: i32, maps: &[Mapping]) -> Result<(), AttachError> {
    let libc = detect(pid, maps);
    let supported = match &libc {
        Libc::Glibc { version, .. } => version.is_none_or(|v| v >= GLIBC_FLOOR),
        Libc::Musl { .. } | Libc::None => false,
    };
    if supported {
        Ok(())
    } else {
        Err(AttachError::UnsupportedLibc {
            pid,
            libc: libc.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PID no process has: nothing is read from `/proc`.
    const NO_PID: i32 = i32::MAX;

    fn mapping(path: &str) -> Mapping {
        Mapping {
            start: 0x1000,
            end: 0x2000,
            perms: "r-xp".into(),
            offset: 0,
            path: Some(path.into()),
            label: path.into(),
        }
    }

    #[test]
    fn recognises_musl_by_its_loader_or_libc() {
        for p in [
            "/lib/ld-musl-x86_64.so.1",
            "/usr/lib/libc.musl-x86_64.so.1",
            "/usr/lib/x86_64-linux-musl/libc.so",
        ] {
            let maps = [mapping("/usr/bin/python3.12"), mapping(p)];
            assert_eq!(detect(NO_PID, &maps), Libc::Musl { path: p.into() });
            let err = check(NO_PID, &maps).unwrap_err();
            assert_eq!(err.exit_code(), 21);
            let msg = err.to_string();
            assert!(msg.contains("musl") && msg.contains("2.17"), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
    }

    #[test]
    fn no_libc_is_refused() {
        let maps = [mapping("/usr/local/bin/python-static")];
        assert_eq!(detect(NO_PID, &maps), Libc::None);
        assert_eq!(check(NO_PID, &maps).unwrap_err().exit_code(), 21);
    }

    #[test]
    fn parses_glibc_version_nodes() {
        assert_eq!(parse_glibc_version("GLIBC_2.17"), Some((2, 17)));
        assert_eq!(parse_glibc_version("GLIBC_2.2.5"), Some((2, 2)));
        assert_eq!(parse_glibc_version("GLIBC_PRIVATE"), None);
        assert_eq!(parse_glibc_version("GCC_3.0"), None);
    }

    #[test]
    fn reads_our_own_glibc_release() {
        let me = std::process::id() as i32;
        let maps = proc::maps(me).unwrap();
        let Libc::Glibc { version, .. } = detect(me, &maps) else {
            panic!("the test process maps no glibc: {maps:?}");
        };
        // The release glibc reports for itself.
        let out = std::process::Command::new("getconf")
            .arg("GNU_LIBC_VERSION")
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let release = text.split_whitespace().nth(1).unwrap();
        let (a, b) = release.split_once('.').unwrap();
        assert_eq!(version, Some((a.parse().unwrap(), b.parse().unwrap())));
        assert!(check(me, &maps).is_ok());
    }
}
