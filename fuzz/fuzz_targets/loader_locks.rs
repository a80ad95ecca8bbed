//! The loader-lock scan (`loaderlock::scan::find_recursive_mutexes`) on
//! arbitrary bytes, as read from a target's `_rtld_global`: no panic, and
//! every offset it returns is 8-aligned, in bounds and not overlapping the
//! previous one. Included by path, like proc_maps.
#![no_main]

#[allow(dead_code)]
#[path = "../../crates/rprof-controller/src/attach/loaderlock/scan.rs"]
mod scan;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut last: Option<usize> = None;
    for at in scan::find_recursive_mutexes(data) {
        assert_eq!(at % 8, 0);
        assert!(at + scan::MUTEX_SIZE <= data.len());
        assert!(last.is_none_or(|l| at >= l + scan::MUTEX_SIZE));
        last = Some(at);
    }
});
