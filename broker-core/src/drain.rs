//! Draining before shutdown: stop taking new client requests, let the requests held by
//! workers be answered, then send DISCONNECT to every worker.
//!
//! Design: the core only changes state; the shell decides how long to wait between
//! [`Broker::begin_drain`] and [`Broker::disconnect_workers`] (the drain timeout) by watching
//! [`Broker::is_drained`]. MDP puts reliability on the client (it retries), so requests still
//! queued when the drain begins are dropped at once and counted, rather than dispatched.

use std::time::Instant;

use tracing::info;

use super::events::DropReason;
use super::stats::{Departure, DisconnectReason};
use super::Broker;

impl Broker {
    /// Starts draining: every queued request is dropped (counted as `shutdown`), and from now
    /// on client requests to ordinary services are dropped too; `mmi.*` is still answered and
    /// replies of busy workers are still routed. Calling it again does nothing.
    pub fn begin_drain(&mut self, now: Instant) {
        self.begin(now);
        if self.draining {
            return;
        }
        self.draining = true;
        // A pair member that drains falls silent on the state link, so its peer can take
        // over as soon as clients vote for it instead of after the drain.
        self.leave_pair(now);
        let names: Vec<_> = self.services.keys().cloned().collect();
        for name in &names {
            self.drop_queued(name, DropReason::Shutdown);
        }
        info!(
            busy = self.stats.workers_busy,
            "Draining: new requests refused, waiting for busy workers"
        );
    }

    /// Whether [`Broker::begin_drain`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Whether a drain has begun and no request is left to answer: no worker holds one and
    /// none is queued.
    pub fn is_drained(&self) -> bool {
        self.draining && self.stats.workers_busy == 0 && self.stats.queued_requests == 0
    }

    /// Ends a drain: sends DISCONNECT to every registered worker and removes it; requests
    /// still held are dropped (counted as `shutdown`). Begins the drain if it had not begun.
    pub fn disconnect_workers(&mut self, now: Instant) {
        self.begin_drain(now);
        let now = self.begin(now);
        self.closing = true;
        let mut peers: Vec<_> = self.workers.keys().cloned().collect();
        peers.sort_unstable();
        for peer in peers {
            self.remove_worker(now, &peer, Departure::Shutdown);
            self.send_disconnect(now, peer, DisconnectReason::Shutdown);
        }
    }

    /// Drops every request queued for `name`, counted under `reason`.
    pub(super) fn drop_queued(&mut self, name: &domo_mdp::ServiceName, reason: DropReason) {
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        let mut dropped = Vec::new();
        while let Some(request) = service.queue.pop_front() {
            dropped.push(request);
        }
        if let Some(key) = service.timer.take() {
            self.timers.cancel(key);
        }
        for request in dropped {
            self.stats.dequeued(request.size);
            self.dropped(name, reason);
            self.release_client(&request);
        }
        self.queue_shrank(name);
    }
}
