//! When the writer tries to reopen the store after a failed write.
//!
//! Design: pure data, like the [`Backoff`] it is built on (the worker SDK's schedule). It never sleeps and
//! never reads a clock: the writer passes the time in, so the schedule is tested exactly.
//!
//! A failed write makes the store *broken*: the writer refuses writes and tries to reopen the
//! file after the next backoff delay. A failed attempt waits the next, doubled, delay. An
//! attempt that reopens the file and writes makes the store writable again, but keeps the
//! backoff where it is, so a disk that is still (nearly) full and fails the next write at once
//! is not retried faster than before; the first successful group commit resets it.

use std::time::{Duration, Instant};

use domo_mdp::{Backoff, BackoffOptions};

/// The reopen schedule of a store.
#[derive(Debug)]
pub(crate) struct Recovery {
    backoff: Backoff,
    /// While broken: when to try reopening.
    retry_at: Option<Instant>,
}

impl Recovery {
    pub(crate) fn new(options: BackoffOptions) -> Self {
        Self {
            backoff: Backoff::new(options),
            retry_at: None,
        }
    }

    #[cfg(test)]
    fn with_seed(options: BackoffOptions, seed: u64) -> Self {
        Self {
            backoff: Backoff::with_seed(options, seed),
            retry_at: None,
        }
    }

    /// A write or a reopen attempt failed at `now`: broken until an attempt after the
    /// returned delay succeeds.
    pub(crate) fn failed(&mut self, now: Instant) -> Duration {
        let delay = self.backoff.next_delay();
        self.retry_at = Some(now + delay);
        delay
    }

    /// When to try reopening, while broken; `None` while the store is writable.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// The store was reopened and written to: writable again.
    pub(crate) fn reopened(&mut self) {
        self.retry_at = None;
    }

    /// A group commit succeeded: the next failure starts from the first delay again.
    pub(crate) fn committed(&mut self) {
        self.backoff.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn exact() -> BackoffOptions {
        BackoffOptions::default()
            .initial(100 * MS)
            .max(400 * MS)
            .jitter(false)
    }

    #[test]
    fn a_writable_store_has_no_retry_time() {
        assert_eq!(Recovery::with_seed(exact(), 1).retry_at(), None);
    }

    #[test]
    fn failed_attempts_wait_doubling_delays_up_to_the_cap() {
        let mut r = Recovery::with_seed(exact(), 1);
        let t0 = Instant::now();
        let delays: Vec<Duration> = (0..5).map(|_| r.failed(t0)).collect();
        assert_eq!(delays, [100 * MS, 200 * MS, 400 * MS, 400 * MS, 400 * MS]);
        assert_eq!(r.retry_at(), Some(t0 + 400 * MS));
    }

    #[test]
    fn the_retry_time_counts_from_the_failure() {
        let mut r = Recovery::with_seed(exact(), 1);
        let t0 = Instant::now();
        r.failed(t0);
        assert_eq!(r.retry_at(), Some(t0 + 100 * MS));
        let t1 = t0 + 150 * MS;
        r.failed(t1);
        assert_eq!(r.retry_at(), Some(t1 + 200 * MS));
    }

    #[test]
    fn a_reopen_makes_the_store_writable_but_keeps_the_backoff() {
        let mut r = Recovery::with_seed(exact(), 1);
        let t0 = Instant::now();
        r.failed(t0);
        r.failed(t0);
        r.reopened();
        assert_eq!(r.retry_at(), None);
        // Failing again right after the reopen: no faster than the last attempt.
        assert_eq!(r.failed(t0), 400 * MS);
    }

    #[test]
    fn a_successful_commit_resets_the_backoff() {
        let mut r = Recovery::with_seed(exact(), 1);
        let t0 = Instant::now();
        r.failed(t0);
        r.failed(t0);
        r.reopened();
        r.committed();
        assert_eq!(r.failed(t0), 100 * MS);
    }

    #[test]
    fn jitter_takes_off_at_most_a_quarter_of_the_delay() {
        let options = exact().jitter(true);
        let mut r = Recovery::with_seed(options, 42);
        let t0 = Instant::now();
        let mut nominal = 100 * MS;
        for _ in 0..10 {
            let d = r.failed(t0);
            assert!(d >= nominal - nominal / 4 && d <= nominal, "{d:?}");
            nominal = (nominal * 2).min(400 * MS);
        }
    }
}
