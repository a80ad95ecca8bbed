//! The `.prof` (marshal) reader on arbitrary bytes: errors are fine, panics
//! and unbounded allocation are not; whatever it reads, written back and
//! read again, gives the same counts.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(profile) = rprof_format::read_pstats(data) else {
        return;
    };
    let mut out = Vec::new();
    if rprof_format::write_pstats(&profile, &mut out).is_err() {
        return;
    }
    let again = rprof_format::read_pstats(&out).expect("reading back what was written");
    assert_eq!(again.total_calls(), profile.total_calls());
    assert_eq!(again.functions.len(), profile.functions.len());
});
