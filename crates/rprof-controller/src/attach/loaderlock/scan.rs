//! The pure part of [`super`]: recognising `pthread_mutex_t`s in bytes
//! read from the target (untrusted: any bytes, any length; fuzzed by
//! `fuzz/fuzz_targets/loader_locks.rs`).

/// `sizeof(pthread_mutex_t)` on x86_64.
pub const MUTEX_SIZE: usize = 40;
/// `PTHREAD_MUTEX_RECURSIVE_NP`.
const RECURSIVE: i32 = 1;

/// The little-endian `i32` at `at` in `b`.
pub fn word_i32(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn word_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Offsets (8-aligned) in `bytes` of what looks like a recursive,
/// non-robust `pthread_mutex_t`: `__kind` exactly
/// `PTHREAD_MUTEX_RECURSIVE_NP`, an empty robust list, and either free
/// (`__lock`, `__count`, `__owner` all 0) or held (`__lock` 1 or 2,
/// `__count` ≥ 1, an owner TID > 0). Pure, for any bytes.
pub fn find_recursive_mutexes(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + MUTEX_SIZE <= bytes.len() {
        let m = &bytes[at..at + MUTEX_SIZE];
        let (lock, count, owner) = (word_i32(m, 0), word_i32(m, 4), word_i32(m, 8));
        let (kind, spins) = (word_i32(m, 16), word_i32(m, 20));
        let free = lock == 0 && count == 0 && owner == 0;
        let held = (1..=2).contains(&lock) && count >= 1 && owner > 0;
        if kind == RECURSIVE
            && spins == 0
            && word_u64(m, 24) == 0
            && word_u64(m, 32) == 0
            && (free || held)
        {
            out.push(at);
            at += MUTEX_SIZE;
        } else {
            at += 8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mutex(lock: i32, count: i32, owner: i32, kind: i32) -> Vec<u8> {
        let mut m = vec![0u8; MUTEX_SIZE];
        m[0..4].copy_from_slice(&lock.to_le_bytes());
        m[4..8].copy_from_slice(&count.to_le_bytes());
        m[8..12].copy_from_slice(&owner.to_le_bytes());
        m[16..20].copy_from_slice(&kind.to_le_bytes());
        m
    }

    #[test]
    fn finds_free_and_held_recursive_mutexes_and_nothing_else() {
        let mut b = vec![0xffu8; 16];
        b.extend(mutex(0, 0, 0, RECURSIVE));
        b.extend(mutex(0, 0, 0, 0)); // a normal mutex
        b.extend(mutex(1, 2, 4242, RECURSIVE));
        b.extend(mutex(1, 0, 4242, RECURSIVE)); // held with no count: not a mutex
        b.extend(mutex(0, 0, 7, RECURSIVE)); // free with an owner: not a mutex
        assert_eq!(find_recursive_mutexes(&b), vec![16, 96]);
        // Any bytes, any length: no panic.
        for len in 0..b.len() {
            find_recursive_mutexes(&b[..len]);
        }
    }
}
