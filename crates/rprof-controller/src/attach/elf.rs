//! Finding functions in the target: which mapped file holds them, where it
//! is loaded, and the addresses of named symbols (with goblin).
//!
//! The files are opened as the target mapped them (`/proc/PID/map_files`),
//! or through `/proc/PID/root` where that is not allowed, so a target in
//! another mount namespace (a container) or a `chroot` is read from its
//! own filesystem.

use super::proc::{self, Mapping};
use goblin::container::{Container, Ctx, Endian};
use goblin::elf::section_header::{SectionHeader, SHT_DYNSYM};
use goblin::elf::sym::Symtab;
use goblin::elf::{header::ET_EXEC, program_header::PT_LOAD, Elf, Header, ProgramHeader};
use goblin::strtab::Strtab;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
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
        local: proc::mapped_file(pid, maps, &path),
        path,
        start: m.start,
    })
}

/// Why symbols could not be read.
#[derive(Debug)]
pub struct ElfError(pub String);

/// Resolves `names` in `module`; names that are absent are left out.
///
/// Only the dynamic symbol table is read (what `dlsym` would see): every
/// function rprof needs is exported, and skipping the full symbol table of
/// a large libpython keeps the attach fast.
pub fn symbols(module: &Module, names: &[&str]) -> Result<HashMap<String, u64>, ElfError> {
    Ok(extents(module, names)?
        .into_iter()
        .map(|(name, (at, _))| (name, at))
        .collect())
}

/// Resolves `names` in `module` to `(address, size)`, as [`symbols`] does.
pub fn extents(module: &Module, names: &[&str]) -> Result<HashMap<String, (u64, u64)>, ElfError> {
    let file = std::fs::File::open(&module.local)
        .map_err(|e| ElfError(format!("cannot read {}: {e}", module.local.display())))?;
    let bad =
        |e: goblin::error::Error| ElfError(format!("cannot parse {}: {e}", module.local.display()));
    let read = |offset: u64, len: u64| -> Result<Vec<u8>, ElfError> {
        // A corrupt file must not make us allocate without bound.
        if len > 1 << 30 {
            return Err(ElfError(format!(
                "{}: a table of {len} bytes",
                module.local.display()
            )));
        }
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| ElfError(format!("cannot read {}: {e}", module.local.display())))?;
        Ok(buf)
    };
    let head = read(0, 64)?;
    let header = Elf::parse_header(&head).map_err(bad)?;
    let ctx = Ctx::new(
        if header.e_ident[goblin::elf::header::EI_CLASS] == goblin::elf::header::ELFCLASS64 {
            Container::Big
        } else {
            Container::Little
        },
        if header.e_ident[goblin::elf::header::EI_DATA] == goblin::elf::header::ELFDATA2MSB {
            Endian::Big
        } else {
            Endian::Little
        },
    );
    let ph_bytes = read(
        header.e_phoff,
        u64::from(header.e_phnum) * u64::from(header.e_phentsize),
    )?;
    let phdrs = ProgramHeader::parse(&ph_bytes, 0, header.e_phnum as usize, ctx).map_err(bad)?;
    let base = load_base(&header, &phdrs, module.start);
    let sh_bytes = read(
        header.e_shoff,
        u64::from(header.e_shnum) * u64::from(header.e_shentsize),
    )?;
    let sections =
        SectionHeader::parse_from(&sh_bytes, 0, header.e_shnum as usize, ctx).map_err(bad)?;
    let mut out = HashMap::new();
    for dynsym in sections.iter().filter(|s| s.sh_type == SHT_DYNSYM) {
        let Some(strsec) = sections.get(dynsym.sh_link as usize) else {
            continue;
        };
        let count = (dynsym.sh_size / dynsym.sh_entsize.max(1)) as usize;
        let sym_bytes = read(dynsym.sh_offset, dynsym.sh_size)?;
        let syms = Symtab::parse(&sym_bytes, 0, count, ctx).map_err(bad)?;
        let str_bytes = read(strsec.sh_offset, strsec.sh_size)?;
        let strtab = Strtab::parse(&str_bytes, 0, str_bytes.len(), 0x0).map_err(bad)?;
        for sym in syms.iter() {
            if sym.st_value == 0 || sym.st_shndx == 0 {
                continue;
            }
            let Some(name) = strtab.get_at(sym.st_name) else {
                continue;
            };
            if names.contains(&name) && !out.contains_key(name) {
                out.insert(
                    name.to_string(),
                    (base.wrapping_add(sym.st_value), sym.st_size),
                );
            }
        }
    }
    Ok(out)
}

/// Where a file whose lowest mapping starts at `start` is loaded: symbol
/// values are relative to this (0 for a non-PIE executable).
pub fn load_base(header: &Header, phdrs: &[ProgramHeader], start: u64) -> u64 {
    if header.e_type == ET_EXEC {
        return 0;
    }
    let first_load = phdrs
        .iter()
        .filter(|p| p.p_type == PT_LOAD)
        .map(|p| p.p_vaddr & !0xfff)
        .min()
        .unwrap_or(0);
    start.wrapping_sub(first_load)
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
