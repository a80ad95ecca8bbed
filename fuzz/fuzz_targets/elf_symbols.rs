//! ELF symbol lookup (`elf::symbols`) on an arbitrary file, as a
//! target could map one: errors are fine, panics and reads of unbounded
//! size are not. The module is included by path so that this target keeps
//! working however the attach code around it is organised; re-point the
//! paths if elf.rs or proc.rs move.
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/rprof-controller/src/attach/elf.rs"]
mod elf;
#[allow(dead_code)]
#[path = "../../crates/rprof-controller/src/attach/proc.rs"]
mod proc;

use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(data).unwrap();
    let module = elf::Module {
        path: "/fuzz/libpython.so".into(),
        local: file.path().to_path_buf(),
        start: 0x7f00_0000_0000,
    };
    let _ = elf::symbols(&module, &["Py_IsInitialized", "PyGILState_Ensure", "dlopen"]);
});
