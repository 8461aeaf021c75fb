//! Deadlines as data: one ordered map holds every timer of the broker.
//!
//! Each timer has exactly one owner (a worker, a service queue, a silenced peer) that stores
//! its [`TimerKey`] and cancels it when the owner goes away, so the map never holds stale
//! entries and its size is bounded by the number of owners. Popping in key order finds *every*
//! due timer, however they interleave (the zguide purge loop that stops at the first live
//! worker, zguide #579, cannot happen here).
//!
//! Owners may schedule a timer *earlier* than strictly needed and re-check when it fires;
//! that lets the hot path (a message from a worker pushing its expiry back) change a field
//! instead of touching this map.

use std::collections::BTreeMap;
use std::time::Instant;

use domo_mdp::{PeerId, ServiceName};

/// Identifies one scheduled timer: its deadline plus a sequence number that makes keys
/// unique and orders timers with equal deadlines by scheduling order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct TimerKey {
    at: Instant,
    seq: u64,
}

impl TimerKey {
    /// The timer's deadline.
    #[cfg(test)]
    pub(super) fn at(self) -> Instant {
        self.at
    }
}

/// What to do when a timer fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Timer {
    /// Check the worker's liveness and send it a HEARTBEAT if one is due.
    Worker(PeerId),
    /// Drop the expired requests at the head of the service's queue.
    Queue(ServiceName),
    /// Stop being silent towards the peer.
    Silence(PeerId),
    /// A broadcast's timeout ([`super::broadcast`]).
    Broadcast(u64),
}

/// All pending timers, in deadline order.
#[derive(Debug, Default)]
pub(super) struct Timers {
    entries: BTreeMap<TimerKey, Timer>,
    next_seq: u64,
}

impl Timers {
    /// Schedules `timer` at `at` and returns the key that cancels it.
    pub(super) fn schedule(&mut self, at: Instant, timer: Timer) -> TimerKey {
        let key = TimerKey {
            at,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.entries.insert(key, timer);
        key
    }

    /// Cancels a timer; a no-op if it already fired.
    pub(super) fn cancel(&mut self, key: TimerKey) {
        self.entries.remove(&key);
    }

    /// The earliest deadline, if any timer is pending.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.entries.first_key_value().map(|(key, _)| key.at)
    }

    /// Removes and returns the earliest timer if its deadline is at or before `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let entry = self.entries.first_entry()?;
        if entry.key().at > now {
            return None;
        }
        Some(entry.remove())
    }

    /// Number of pending timers.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the timer with this key is pending.
    #[cfg(test)]
    pub(super) fn is_pending(&self, key: TimerKey) -> bool {
        self.entries.contains_key(&key)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn peer(id: &'static str) -> PeerId {
        PeerId::new(id).unwrap()
    }

    #[test]
    fn timers_pop_in_deadline_order_and_only_when_due() {
        let start = Instant::now();
        let mut timers = Timers::default();
        timers.schedule(start + Duration::from_secs(2), Timer::Worker(peer("b")));
        timers.schedule(start + Duration::from_secs(1), Timer::Worker(peer("a")));
        assert_eq!(timers.next_deadline(), Some(start + Duration::from_secs(1)));
        assert_eq!(timers.pop_due(start), None);
        let due = start + Duration::from_secs(2);
        assert_eq!(timers.pop_due(due), Some(Timer::Worker(peer("a"))));
        assert_eq!(timers.pop_due(due), Some(Timer::Worker(peer("b"))));
        assert_eq!(timers.pop_due(due), None);
    }

    #[test]
    fn equal_deadlines_pop_in_scheduling_order() {
        let at = Instant::now();
        let mut timers = Timers::default();
        timers.schedule(at, Timer::Silence(peer("first")));
        timers.schedule(at, Timer::Silence(peer("second")));
        assert_eq!(timers.pop_due(at), Some(Timer::Silence(peer("first"))));
        assert_eq!(timers.pop_due(at), Some(Timer::Silence(peer("second"))));
    }

    #[test]
    fn cancelled_timer_never_fires() {
        let at = Instant::now();
        let mut timers = Timers::default();
        let key = timers.schedule(at, Timer::Silence(peer("a")));
        assert!(timers.is_pending(key));
        timers.cancel(key);
        timers.cancel(key);
        assert_eq!(timers.pop_due(at), None);
        assert_eq!(timers.len(), 0);
    }
}
