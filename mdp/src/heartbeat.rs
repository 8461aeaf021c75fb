//! The heartbeat and liveness rule, shared by the broker and the worker SDK.
//!
//! RFC 7's own weakness is that both ends must agree on heartbeat timing; keeping the rule in
//! one place means our broker and worker SDK cannot disagree about it.
//!
//! Design: [`Liveness`] is plain data driven by `now` arguments. It never reads a clock,
//! schedules nothing and sends nothing; its owner asks it for deadlines and acts on them.

use std::time::{Duration, Instant};

/// Heartbeat settings: how often to send a heartbeat, and how many intervals of silence
/// mean the peer is dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Time between heartbeats while no other traffic flows.
    pub interval: Duration,
    /// Number of silent intervals after which the peer is considered dead (RFC 7: "usually
    /// 3-5").
    pub liveness: u32,
}

impl Heartbeat {
    /// The zguide's heartbeat interval: 2500 ms.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(2500);
    /// The zguide's liveness: 3 intervals.
    pub const DEFAULT_LIVENESS: u32 = 3;

    /// How long a peer may stay silent before it is considered dead: `interval * liveness`,
    /// saturating instead of overflowing.
    pub fn expiry(&self) -> Duration {
        self.interval.saturating_mul(self.liveness)
    }
}

impl Default for Heartbeat {
    /// The values of the zguide's C broker and worker: 2500 ms, liveness 3 (7.5 s expiry).
    fn default() -> Self {
        Self {
            interval: Self::DEFAULT_INTERVAL,
            liveness: Self::DEFAULT_LIVENESS,
        }
    }
}

/// Tracks one peer: when it is declared dead, and when we next owe it a heartbeat.
///
/// # Panics
///
/// The methods that take `now` panic if `now` plus the interval or expiry overflows
/// [`Instant`], as `Instant + Duration` does. Only absurd settings (centuries) get there;
/// validate configuration before building one.
#[derive(Debug, Clone)]
pub struct Liveness {
    config: Heartbeat,
    /// The peer is dead from this instant on, unless we hear from it first.
    deadline: Instant,
    /// We owe the peer a heartbeat at this instant, unless we send something else first.
    next_heartbeat: Instant,
}

impl Liveness {
    /// Starts tracking a peer at `now`, as if we had just heard from it and sent to it.
    pub fn new(now: Instant, config: Heartbeat) -> Self {
        Self {
            config,
            deadline: now + config.expiry(),
            next_heartbeat: now + config.interval,
        }
    }

    /// Records traffic from the peer at `now`. Any inbound command counts as a sign of life,
    /// not only HEARTBEAT (RFC 7).
    pub fn on_traffic(&mut self, now: Instant) {
        self.deadline = now + self.config.expiry();
    }

    /// Whether the peer is dead at `now`: silent for the whole expiry.
    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    /// The instant the peer becomes dead unless it sends something first.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// The instant a heartbeat is due unless something else is sent first.
    pub fn next_heartbeat_due(&self) -> Instant {
        self.next_heartbeat
    }

    /// Records that we sent a heartbeat at `now`. Call it after sending any other message as
    /// well: RFC 7 says not to send heartbeats while other traffic flows, and any traffic
    /// tells the peer we are alive.
    pub fn on_heartbeat_sent(&mut self, now: Instant) {
        self.next_heartbeat = now + self.config.interval;
    }

    /// The settings this tracker uses.
    pub fn config(&self) -> Heartbeat {
        self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn default_is_the_zguide_values() {
        let config = Heartbeat::default();
        assert_eq!(config.interval, Duration::from_millis(2500));
        assert_eq!(config.liveness, 3);
        assert_eq!(config.expiry(), Duration::from_millis(7500));
    }

    #[test]
    fn expiry_saturates_instead_of_overflowing() {
        let config = Heartbeat {
            interval: Duration::MAX,
            liveness: 2,
        };
        assert_eq!(config.expiry(), Duration::MAX);
    }

    #[test]
    fn new_peer_expires_after_exactly_interval_times_liveness() {
        let start = Instant::now();
        let peer = Liveness::new(start, Heartbeat::default());
        assert_eq!(peer.deadline(), start + 7500 * MS);
        assert!(!peer.is_expired(start + 7499 * MS));
        assert!(peer.is_expired(start + 7500 * MS));
    }

    #[test]
    fn traffic_pushes_the_deadline_back() {
        let start = Instant::now();
        let mut peer = Liveness::new(start, Heartbeat::default());
        peer.on_traffic(start + 5000 * MS);
        assert_eq!(peer.deadline(), start + 12_500 * MS);
        assert!(!peer.is_expired(start + 12_499 * MS));
        assert!(peer.is_expired(start + 12_500 * MS));
    }

    #[test]
    fn worker_missing_three_heartbeats_is_expired() {
        let start = Instant::now();
        let mut peer = Liveness::new(start, Heartbeat::default());
        peer.on_traffic(start + 2500 * MS);
        let silence_from = start + 2500 * MS;
        assert!(!peer.is_expired(silence_from + 2 * 2500 * MS));
        assert!(peer.is_expired(silence_from + 3 * 2500 * MS));
    }

    #[test]
    fn heartbeat_is_due_one_interval_after_the_last_send() {
        let start = Instant::now();
        let mut peer = Liveness::new(start, Heartbeat::default());
        assert_eq!(peer.next_heartbeat_due(), start + 2500 * MS);
        peer.on_heartbeat_sent(start + 2600 * MS);
        assert_eq!(peer.next_heartbeat_due(), start + 5100 * MS);
    }

    #[test]
    fn inbound_traffic_does_not_delay_our_heartbeat() {
        let start = Instant::now();
        let mut peer = Liveness::new(start, Heartbeat::default());
        peer.on_traffic(start + 1000 * MS);
        assert_eq!(peer.next_heartbeat_due(), start + 2500 * MS);
    }

    #[test]
    fn zero_liveness_expires_immediately() {
        let start = Instant::now();
        let config = Heartbeat {
            interval: 100 * MS,
            liveness: 0,
        };
        let peer = Liveness::new(start, config);
        assert!(peer.is_expired(start));
        assert_eq!(peer.config(), config);
    }
}
