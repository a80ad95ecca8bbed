//! Finding functions in the target: which mapped file holds them, where it
//! is loaded, and the addresses of named symbols (with goblin).
//!
//! The files are read through `/proc/PID/root`, so a target in another
//! mount namespace (a container) is read from its own filesystem.

use super::proc::{self, Mapping};
use goblin::elf::{header::ET_EXEC, program_header::PT_LOAD, Elf};
use std::collections::HashMap;
use std::path::PathBuf;

/// A file mapped into the target.
#[derive(Clone, Debug)]
pub struct Module {
    /// The path as the target sees it.
    pub path: String,
    /// The path as we can open it.
    pub local: PathBuf,
    /// Lowest mapped address of the file.
    pub start: u64,
}

/// The first mapped file whose path satisfies `pred`.
pub fn find(pid: i32, maps: &[Mapping], pred: impl Fn(&str) -> bool) -> Option<Module> {
    let m = maps
        .iter()
        .filter(|m| m.path.as_deref().is_some_and(&pred))
        .min_by_key(|m| m.start)?;
    let path = m.path.clone()?;
    Some(Module {
        local: proc::in_target_root(pid, &path),
        path,
        start: m.start,
    })
}

/// Why symbols could not be read.
#[derive(Debug)]
pub struct ElfError(pub String);

/// Resolves `names` in `module`; names that are absent are left out.
pub fn symbols(module: &Module, names: &[&str]) -> Result<HashMap<String, u64>, ElfError> {
    let bytes = std::fs::read(&module.local)
        .map_err(|e| ElfError(format!("cannot read {}: {e}", module.local.display())))?;
    let elf = Elf::parse(&bytes)
        .map_err(|e| ElfError(format!("cannot parse {}: {e}", module.local.display())))?;
    let base = if elf.header.e_type == ET_EXEC {
        0
    } else {
        let first_load = elf
            .program_headers
            .iter()
            .filter(|p| p.p_type == PT_LOAD)
            .map(|p| p.p_vaddr & !0xfff)
            .min()
            .unwrap_or(0);
        module.start.wrapping_sub(first_load)
    };
    let mut out = HashMap::new();
    let tables = [(&elf.dynsyms, &elf.dynstrtab), (&elf.syms, &elf.strtab)];
    for (syms, strtab) in tables {
        for sym in syms.iter() {
            if sym.st_value == 0 || sym.st_shndx == 0 {
                continue;
            }
            let Some(name) = strtab.get_at(sym.st_name) else {
                continue;
            };
            // Versioned names ("dlopen@@GLIBC_2.34") appear in .symtab.
            let name = name.split('@').next().unwrap_or(name);
            if names.contains(&name) && !out.contains_key(name) {
                out.insert(name.to_string(), base.wrapping_add(sym.st_value));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_libc_functions_in_our_own_process() {
        let me = std::process::id() as i32;
        let maps = proc::maps(me).unwrap();
        let libc_mod = find(me, &maps, |p| {
            p.contains("/libc.so") || p.contains("/libc-")
        })
        .unwrap();
        let syms = symbols(&libc_mod, &["getpid", "no_such_symbol_here"]).unwrap();
        // SAFETY: dlsym only reads the NUL-terminated name.
        let real = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"getpid".as_ptr()) } as u64;
        assert_eq!(syms.get("getpid").copied(), Some(real));
        assert!(!syms.contains_key("no_such_symbol_here"));
    }
}
