//! The reconnect schedule: exponential backoff with optional jitter, as in the zguide's
//! `ppworker` (1 s, 2 s, 4 s … capped at 32 s, back to 1 s after any sign of life).
//!
//! Jitter follows the workspace's one rule: a jittered delay is the nominal delay `d` scaled
//! by a random factor uniform in `[1 - spread, 1)`, never longer than `d`, so the cap stays a
//! cap. Here the spread is a quarter. `domo-zmtp` (below this crate) applies the same rule to
//! the DEALER's reconnect, with a spread of a half.
//!
//! Design: pure data. It never sleeps and never reads a clock; the jitter comes from a small
//! seeded generator so tests can turn it off or reproduce it.
//!
//! It lives here, next to [`crate::Liveness`], because two crates drive it: the worker SDK's
//! sessions (reconnecting to a broker) and Titanic's store (reopening its file).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Settings of the reconnect backoff: [`Default`], then the setters.
///
/// The worker SDK's `Worker::new` refuses a zero `initial` or `max`: a zero delay would
/// reconnect in a busy loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackoffOptions {
    /// First delay after losing the broker; not zero. Default 1 s.
    pub initial: Duration,
    /// Cap on the doubling delay; not zero. Default 32 s.
    pub max: Duration,
    /// Take a random part of up to a quarter off each delay (delays fall in `[3d/4, d)`), so
    /// many workers that lost the same broker do not reconnect in lockstep. Default on; tests
    /// turn it off for exact times.
    pub jitter: bool,
}

impl Default for BackoffOptions {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(32),
            jitter: true,
        }
    }
}

impl BackoffOptions {
    /// Sets the first delay (not zero).
    #[must_use]
    pub fn initial(mut self, initial: Duration) -> Self {
        self.initial = initial;
        self
    }

    /// Sets the cap on the doubling delay (not zero).
    #[must_use]
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// Sets whether each delay loses a random part of up to a quarter.
    #[must_use]
    pub fn jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }
}

/// How much of each delay the jitter may take off (see the module docs).
const JITTER_SPREAD: f64 = 0.25;

/// The current position in the backoff schedule.
#[derive(Debug, Clone)]
pub struct Backoff {
    options: BackoffOptions,
    /// The nominal delay the next call to [`Backoff::next_delay`] uses.
    current: Duration,
    /// xorshift64 state for the jitter; never zero.
    rng: u64,
}

impl Backoff {
    /// A schedule at its first delay, with a random jitter seed.
    pub fn new(options: BackoffOptions) -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x9E37_79B9_7F4A_7C15);
        Self::with_seed(options, h.finish())
    }

    /// A schedule at its first delay whose jitter is reproducible from `seed`.
    pub fn with_seed(options: BackoffOptions, seed: u64) -> Self {
        Self {
            options,
            current: options.initial,
            rng: seed | 1,
        }
    }

    /// The delay to wait now (the nominal delay, jittered into `[3d/4, d)` if asked); doubles
    /// the nominal delay for the next time, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.current.min(self.options.max);
        self.current = nominal.saturating_mul(2).min(self.options.max);
        if self.options.jitter {
            nominal.mul_f64(1.0 - JITTER_SPREAD + JITTER_SPREAD * self.random_fraction())
        } else {
            nominal
        }
    }

    /// Back to the first delay: the broker showed a sign of life.
    pub fn reset(&mut self) {
        self.current = self.options.initial;
    }

    /// The nominal delay the next [`Backoff::next_delay`] starts from.
    pub fn current(&self) -> Duration {
        self.current
    }

    fn random_fraction(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact() -> BackoffOptions {
        BackoffOptions {
            jitter: false,
            ..BackoffOptions::default()
        }
    }

    #[test]
    fn delays_double_from_one_second_to_a_32_second_cap() {
        let mut b = Backoff::with_seed(exact(), 7);
        let secs: Vec<u64> = (0..8).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 32, 32]);
    }

    #[test]
    fn reset_goes_back_to_the_first_delay() {
        let mut b = Backoff::with_seed(exact(), 7);
        b.next_delay();
        b.next_delay();
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }

    #[test]
    fn jitter_takes_off_at_most_a_quarter() {
        let mut b = Backoff::with_seed(BackoffOptions::default(), 42);
        let mut nominal = Duration::from_secs(1);
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(
                d >= nominal - nominal / 4 && d < nominal,
                "{d:?} for {nominal:?}"
            );
            nominal = (nominal * 2).min(Duration::from_secs(32));
        }
    }

    #[test]
    fn jitter_varies_between_delays() {
        let options = BackoffOptions {
            max: Duration::from_secs(1),
            ..BackoffOptions::default()
        };
        let mut b = Backoff::with_seed(options, 42);
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays.windows(2).any(|w| w[0] != w[1]), "{delays:?}");
    }
}
