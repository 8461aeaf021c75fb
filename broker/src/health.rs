//! What health checks and the service manager see of the running loop: when it last woke,
//! whether it is ready or draining, and the figures for systemd's `STATUS=`.
//!
//! Design: plain atomics written by the loop and read by anyone, so `/healthz`, `/readyz` and
//! the watchdog never wait on the loop (a wedged loop shows as a stale tick, not a hang).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::core::Broker;

/// State shared with health checks and the service manager; written only by the loop.
#[derive(Debug, Default)]
pub struct Health {
    /// Milliseconds since [`Health::epoch`] at the loop's last wake-up.
    last_tick_ms: AtomicU64,
    epoch: std::sync::OnceLock<tokio::time::Instant>,
    ready: AtomicBool,
    draining: AtomicBool,
    services: AtomicU64,
    workers: AtomicU64,
    queued: AtomicU64,
}

impl Health {
    fn epoch(&self) -> tokio::time::Instant {
        *self.epoch.get_or_init(tokio::time::Instant::now)
    }

    /// Records a wake-up of the loop and the figures for `STATUS=`.
    pub(crate) fn tick(&self, core: &Broker) {
        let ms = self.epoch().elapsed().as_millis();
        self.last_tick_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
        let s = core.stats();
        self.services.store(s.services as u64, Ordering::Relaxed);
        self.workers
            .store((s.workers_idle + s.workers_busy) as u64, Ordering::Relaxed);
        self.queued
            .store(s.queued_requests as u64, Ordering::Relaxed);
    }

    /// Time since the loop last woke up.
    pub fn since_tick(&self) -> Duration {
        let last = Duration::from_millis(self.last_tick_ms.load(Ordering::Relaxed));
        self.epoch().elapsed().saturating_sub(last)
    }

    /// A counter that changes whenever the loop wakes (for the watchdog).
    pub fn tick_stamp(&self) -> u64 {
        self.last_tick_ms.load(Ordering::Relaxed)
    }

    /// `Ok` when every socket is bound and no drain is in progress; otherwise why not.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Relaxed) {
            Err("draining")
        } else if !self.ready.load(Ordering::Relaxed) {
            Err("not serving yet")
        } else {
            Ok(())
        }
    }

    /// Marks a drain in progress: `/readyz` fails from now on.
    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Marks the broker ready (called once every socket is bound).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// One line for the service manager: services, workers, queued requests.
    pub fn status(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let state = if self.draining.load(Ordering::Relaxed) {
            "draining; "
        } else {
            ""
        };
        format!(
            "{state}{} services, {} workers, {} queued",
            get(&self.services),
            get(&self.workers),
            get(&self.queued)
        )
    }
}
