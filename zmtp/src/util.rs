//! Small helpers: a random seed and jitter without a random-number crate, and the lock that
//! ignores poisoning.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// [`Mutex::lock`] that ignores poisoning: the queues and handles kept behind this crate's
/// mutexes stay consistent enough to keep serving after a panic elsewhere. (`domo-mdp` has
/// the public `LockExt` for the crates above; this crate is below it, so it keeps its own.)
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A random 64-bit value from the standard library's randomly keyed hasher.
pub(crate) fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x9E37_79B9_7F4A_7C15);
    h.finish()
}

/// `d` scaled by a random factor in [0.5, 1.0): jittered backoff that never exceeds `d`, so
/// many peers that lost the same server do not reconnect in lockstep.
pub(crate) fn jitter(d: Duration) -> Duration {
    let frac = (random_u64() >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(0.5 + frac / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range() {
        let d = Duration::from_millis(1000);
        for _ in 0..1000 {
            let j = jitter(d);
            assert!(j >= Duration::from_millis(500) && j < d, "{j:?}");
        }
    }
}
