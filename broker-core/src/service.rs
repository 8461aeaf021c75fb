//! A service: its idle workers, least recently used first, and its request queue.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use domo_mdp::{PeerId, ServiceName};

use super::queue::RequestQueue;
use super::timer::{Timer, TimerKey, Timers};
use super::worker::{WaitKey, Worker};

/// One service the broker knows.
///
/// Created when a worker registers for it or a request for it has to wait; removed as soon
/// as it has neither workers nor queued requests, so clients naming arbitrary services cannot
/// grow the broker's memory beyond the queue limits.
///
/// Invariant between events: never both a worker with free credit and a queued request (the
/// broker dispatches as soon as both exist).
#[derive(Debug)]
pub(super) struct Service {
    /// The service's name, also its key in the broker's map; kept here to name the service
    /// in timers and logs without another lookup.
    pub(super) name: ServiceName,
    /// The waiting set: workers with free credit (idle ones, and ones with credit above 1
    /// that hold fewer requests than it), by [`WaitKey`]: the first entry has the most free
    /// credit and, among equals, has waited longest, so popping it gives least-recently-used
    /// dispatch for credit-1 workers; a worker that leaves is removed by key without a scan.
    pub(super) idle: BTreeMap<WaitKey, PeerId>,
    /// Requests waiting for a worker.
    pub(super) queue: RequestQueue,
    /// Registered workers, idle and busy.
    pub(super) workers: usize,
    /// The queue's expiry timer: pending whenever requests are queued, at or before the
    /// earliest deadline among them.
    pub(super) timer: Option<TimerKey>,
    /// The queue reached a limit and has not drained to the low watermark since: new
    /// requests are deferred (see [`super::admission`]). Only while requests are queued.
    pub(super) closed: bool,
    /// Clients whose request was deferred because the queue was closed, in that order.
    pub(super) waiting: VecDeque<PeerId>,
}

impl Service {
    /// A service with no workers and an empty queue.
    pub(super) fn new(name: ServiceName) -> Self {
        Self {
            name,
            idle: BTreeMap::new(),
            queue: RequestQueue::default(),
            workers: 0,
            timer: None,
            closed: false,
            waiting: VecDeque::new(),
        }
    }

    /// Takes the worker with the most free credit that has waited longest.
    pub(super) fn pop_idle(&mut self) -> Option<PeerId> {
        self.idle.pop_first().map(|(_, peer)| peer)
    }

    /// Puts `worker` (registered as `peer`) at the back of the waiting set among workers
    /// with as much free credit, as entry number `seq`, taking it out of the set first if it
    /// is there; leaves it out if it has no free credit.
    pub(super) fn relist(&mut self, worker: &mut Worker, peer: &PeerId, seq: u64) {
        if let Some(key) = worker.waiting.take() {
            self.idle.remove(&key);
        }
        let free = worker.free();
        if free > 0 {
            let key = WaitKey::new(free, seq);
            self.idle.insert(key, peer.clone());
            worker.waiting = Some(key);
        }
    }

    /// Makes sure the queue's expiry timer is pending; if it must be scheduled, it is set for
    /// `deadline`, which must be the earliest deadline in the queue. A timer already pending
    /// is left alone: it is at or before every deadline in the queue, since a request entering
    /// the queue never expires before one already in it (all wait the same timeout).
    pub(super) fn arm_timer(&mut self, timers: &mut Timers, deadline: Instant) {
        if self.timer.is_none() {
            self.timer = Some(timers.schedule(deadline, Timer::Queue(self.name.clone())));
        }
    }

    /// Whether the service has nothing left and can be forgotten.
    pub(super) fn is_unused(&self) -> bool {
        self.workers == 0 && self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_workers_pop_least_recently_used_first() {
        let mut service = Service::new(ServiceName::from_static("echo"));
        for (seq, id) in [(7, "b"), (3, "a"), (9, "c")] {
            service
                .idle
                .insert(WaitKey::new(1, seq), PeerId::new(id).unwrap());
        }
        service.idle.remove(&WaitKey::new(1, 7));
        assert_eq!(service.pop_idle(), Some(PeerId::new("a").unwrap()));
        assert_eq!(service.pop_idle(), Some(PeerId::new("c").unwrap()));
        assert_eq!(service.pop_idle(), None);
    }

    #[test]
    fn service_without_workers_or_requests_is_unused() {
        let mut service = Service::new(ServiceName::from_static("echo"));
        assert!(service.is_unused());
        service.workers = 1;
        assert!(!service.is_unused());
    }
}
