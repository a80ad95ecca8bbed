//! `/proc/PID/maps` parsing (`proc::parse_maps`) on arbitrary text
//! (a path can contain anything, even newlines): no panic, and every
//! mapping it returns is well formed. Included by path, like elf_symbols.
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/rprof-controller/src/attach/proc.rs"]
mod proc;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for m in proc::parse_maps(&text) {
        assert!(m.perms.len() <= text.len());
        let _ = m.file_name();
    }
});
