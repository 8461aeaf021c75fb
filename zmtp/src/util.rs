//! Small helpers: a random seed and jitter without a random-number crate, the exponential
//! backoff, and the lock that ignores poisoning.

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

/// The jitter rule of the workspace: `d` scaled by a random factor uniform in
/// `[1 - spread, 1)`, so a jittered delay is never longer than the nominal one (a cap stays a
/// cap) and many peers that lost the same server do not reconnect in lockstep. `domo_mdp`'s
/// `Backoff` follows the same rule; this crate is below it and keeps its own copy.
pub(crate) fn jitter(d: Duration, spread: f64) -> Duration {
    let frac = (random_u64() >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(1.0 - spread + spread * frac)
}

/// Exponential backoff: `initial`, doubling up to `max` (at least `initial`), back to
/// `initial` on [`Backoff::reset`]. The one schedule of this crate (the DEALER's reconnect,
/// the ROUTER's accept retry); it never sleeps and adds no jitter itself.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            current: initial,
        }
    }

    /// The delay to wait now; doubles the next one, up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = delay.saturating_mul(2).min(self.max);
        delay
    }

    /// Back to the first delay.
    pub(crate) fn reset(&mut self) {
        self.current = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_range() {
        let d = Duration::from_millis(1000);
        for spread in [0.5, 0.25] {
            let low = d.mul_f64(1.0 - spread);
            for _ in 0..1000 {
                let j = jitter(d, spread);
                assert!(j >= low && j < d, "{j:?} for spread {spread}");
            }
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(10), ms(50));
        let delays: Vec<Duration> = (0..5).map(|_| b.next_delay()).collect();
        assert_eq!(delays, [ms(10), ms(20), ms(40), ms(50), ms(50)]);
        b.reset();
        assert_eq!(b.next_delay(), ms(10));
    }

    #[test]
    fn backoff_cap_below_the_first_delay_keeps_the_first_delay() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(10));
        assert_eq!(b.next_delay(), ms(100));
        assert_eq!(b.next_delay(), ms(100));
    }
}
