//! Matching requests with workers: dispatch, waiting sets and credit, losing a worker,
//! re-dispatch and queue expiry.

use std::mem;
use std::time::Instant;

use domo_mdp::{worker, PeerId, ServiceName};
use tracing::{debug, error, info, warn};

use super::events::{DropReason, Event};
use super::stats::Departure;
use super::token::Token;
use super::worker::{InFlight, Request};
use super::{Broker, PeerKind, Service};

impl Broker {
    /// Sends `request` to `peer`, a registered worker just taken off its service's waiting
    /// set, under a new token. The worker goes back into the set if it has credit left.
    pub(super) fn send_request(&mut self, now: Instant, peer: PeerId, mut request: Request) {
        let token = self.new_token();
        let seq = self.new_idle_seq();
        let (Some(worker), Some(address)) = (self.workers.get_mut(&peer), token.to_address())
        else {
            // Unreachable: waiting sets only hold registered workers, and a token is always
            // a valid frame. Not worth a panic.
            error!(worker = %peer, "Idle worker is not registered; request dropped");
            self.stats.requests.dropped.worker_lost += 1;
            self.release_client(&request);
            return;
        };
        if request.redispatches == 0 && self.recording {
            let queue_wait = now.saturating_duration_since(request.received_at);
            let service = worker.service.clone();
            self.events.push_back(Event::Dispatched {
                service,
                queue_wait,
            });
        }
        let frames = if self.config.redispatch {
            // Keep the body to send again if this worker is lost; frames are refcounted.
            worker::encode_request(&address, request.body.iter().cloned())
        } else {
            worker::encode_request(&address, mem::take(&mut request.body))
        };
        worker.liveness.on_heartbeat_sent(now);
        worker.waiting = None;
        if worker.held.is_empty() {
            self.stats.workers_idle -= 1;
            self.stats.workers_busy += 1;
        }
        worker.held.push(token);
        if let Some(service) = self.services.get_mut(&worker.service) {
            service.relist(worker, &peer, seq);
        }
        let held = InFlight {
            worker: peer.clone(),
            request,
        };
        self.in_flight.insert(token, held);
        self.stats.requests_at_workers = self.in_flight.len();
        self.stats.requests.dispatched += 1;
        self.emit(peer, PeerKind::Worker, frames);
    }

    /// A worker replied to the request it holds under `token`: the request is done (its
    /// token forgotten), one credit is free again, and the worker goes to the back of its
    /// service's waiting set among workers with as much free credit (the service it
    /// registered for, never another: zeromq/majordomo #61); then the service dispatches
    /// (zeromq/majordomo #73).
    pub(super) fn finish_request(&mut self, now: Instant, peer: &PeerId, token: Token) {
        let seq = self.new_idle_seq();
        let Some(worker) = self.workers.get_mut(peer) else {
            return;
        };
        let Some(service) = self.services.get_mut(&worker.service) else {
            return;
        };
        if let Some(at) = worker.held.iter().position(|held| *held == token) {
            worker.held.remove(at);
            if worker.held.is_empty() {
                self.stats.workers_busy -= 1;
                self.stats.workers_idle += 1;
            }
        }
        let done = self.in_flight.remove(&token);
        self.stats.requests_at_workers = self.in_flight.len();
        service.relist(worker, peer, seq);
        let name = service.name.clone();
        if let Some(done) = done {
            self.release_client(&done.request);
        }
        // Its broadcast parts first, then the service's queue.
        self.serve_pinned(now, peer);
        self.dispatch(now, &name);
    }

    /// A token no dispatch has had before.
    fn new_token(&mut self) -> Token {
        let token = self.next_token;
        self.next_token = token.next();
        token
    }

    /// A key for an idle list, larger than every key handed out before.
    pub(super) fn new_idle_seq(&mut self) -> u64 {
        let seq = self.next_idle_seq;
        self.next_idle_seq += 1;
        seq
    }

    /// Matches the service's queued requests with its workers that have free credit, oldest
    /// request first, each to the worker first in the waiting set, while it has both. A
    /// request whose client has disconnected is dropped instead (`client_gone`): nobody would
    /// read its reply.
    pub(super) fn dispatch(&mut self, now: Instant, name: &ServiceName) {
        let mut taken = false;
        while let Some(request) = self
            .services
            .get_mut(name)
            .filter(|service| !service.idle.is_empty())
            .and_then(|service| service.queue.pop_front())
        {
            taken = true;
            self.stats.dequeued(request.size);
            if self.client_gone(&request.client) {
                self.drop_for_gone_client(name, &request);
                continue;
            }
            let Some(worker) = self.services.get_mut(name).and_then(Service::pop_idle) else {
                // Not reached: the loop checked for an idle worker. Counted, not lost silently.
                self.dropped(name, DropReason::WorkerLost);
                self.release_client(&request);
                break;
            };
            self.send_request(now, worker, request);
        }
        if taken {
            self.queue_shrank(name);
        }
    }

    /// Removes a registered worker, if `peer` is one; every request it holds is
    /// re-dispatched (each under a new token) or dropped. Sends nothing to the worker.
    pub(super) fn remove_worker(&mut self, now: Instant, peer: &PeerId, departure: Departure) {
        let Some(worker) = self.workers.remove(peer) else {
            return;
        };
        self.timers.cancel(worker.timer);
        self.stats.worker_departures.count(departure);
        let name = worker.service;
        let held = worker.held.len();
        if departure == Departure::Expired {
            warn!(worker = %peer, service = %name, held, "Worker expired");
        } else {
            info!(worker = %peer, service = %name, held, reason = ?departure, "Worker removed");
        }
        if let Some(service) = self.services.get_mut(&name) {
            service.workers -= 1;
            if let Some(key) = worker.waiting {
                service.idle.remove(&key);
            }
        }
        if worker.held.is_empty() {
            self.stats.workers_idle -= 1;
        } else {
            self.stats.workers_busy -= 1;
        }
        // The tokens die with their dispatches: a late reply carrying one is stale.
        let (parts, lost): (Vec<Request>, Vec<Request>) = worker
            .held
            .iter()
            .filter_map(|token| self.in_flight.remove(token))
            .map(|lost| lost.request)
            .chain(worker.pinned)
            .partition(|request| request.broadcast.is_some());
        self.stats.requests_at_workers = self.in_flight.len();
        // A broadcast part is this worker's alone: it failed.
        for part in parts {
            if let Some(id) = part.broadcast {
                self.broadcast_failed(id, peer, &name);
            }
        }
        self.requeue(now, &name, lost);
        self.remove_service_if_unused(&name);
    }

    /// Puts the requests of a lost worker back at the head of their queue, oldest first,
    /// then dispatches them; drops those that may not go again.
    fn requeue(&mut self, now: Instant, name: &ServiceName, lost: Vec<Request>) {
        let mut put_back = false;
        for request in lost {
            put_back |= self.put_back(now, name, request);
        }
        if !put_back {
            return;
        }
        self.dispatch(now, name);
        if self.draining {
            // No new work while draining: a request that found no idle worker at once goes.
            self.drop_queued(name, DropReason::Shutdown);
        }
    }

    /// Puts a request whose worker was lost back at the head of its queue (behind other
    /// requests put back before it), unless re-dispatch is off or the request has used up
    /// its re-dispatches; `false` if it was dropped.
    fn put_back(&mut self, now: Instant, name: &ServiceName, mut request: Request) -> bool {
        let reason = if self.closing {
            Some(DropReason::Shutdown)
        } else if !self.is_serving() {
            // A pair member that stopped being active hands out no more work.
            Some(DropReason::NotActive)
        } else if self.client_gone(&request.client) {
            Some(DropReason::ClientGone)
        } else if !self.config.redispatch {
            debug!(service = %name, client = %request.client, "Worker lost, request dropped");
            Some(DropReason::WorkerLost)
        } else if request.redispatches >= self.config.max_redispatch {
            warn!(
                service = %name,
                client = %request.client,
                redispatches = request.redispatches,
                "Request lost one worker too many, dropped"
            );
            Some(DropReason::RedispatchLimit)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.dropped(name, reason);
            self.release_client(&request);
            return false;
        }
        let Some(service) = self.services.get_mut(name) else {
            // Not reached: the service of a registered worker exists until the worker goes.
            self.dropped(name, DropReason::WorkerLost);
            self.release_client(&request);
            return false;
        };
        request.redispatches += 1;
        self.stats.requests.redispatched += 1;
        self.stats.enqueued(request.size);
        let deadline = now + self.config.request_timeout;
        service.queue.push_retried(request, deadline);
        service.arm_timer(&mut self.timers, deadline);
        // Always re-admitted (it was admitted once), but it counts towards closing the queue.
        self.queue_grew(name);
        true
    }

    /// The queue timer of a service fired: drops its expired requests and schedules the
    /// timer again for the next deadline.
    pub(super) fn on_queue_timer(&mut self, now: Instant, name: &ServiceName) {
        let Some(service) = self.services.get_mut(name) else {
            return;
        };
        service.timer = None;
        let reason = if service.workers == 0 {
            DropReason::UnknownService
        } else {
            DropReason::Expired
        };
        let mut expired = Vec::new();
        while let Some(request) = service.queue.pop_expired(now) {
            expired.push(request);
        }
        if let Some(deadline) = service.queue.next_deadline() {
            service.arm_timer(&mut self.timers, deadline);
        }
        for request in expired {
            self.stats.dequeued(request.size);
            self.dropped(name, reason);
            self.release_client(&request);
            debug!(service = %name, client = %request.client, "Queued request expired");
        }
        self.queue_shrank(name);
    }

    /// Forgets a service that has neither workers nor queued requests.
    pub(super) fn remove_service_if_unused(&mut self, name: &ServiceName) {
        if !self
            .services
            .get(name)
            .is_some_and(|service| service.is_unused())
        {
            return;
        }
        if let Some(service) = self.services.remove(name) {
            if let Some(key) = service.timer {
                self.timers.cancel(key);
            }
            self.stats.services -= 1;
        }
    }
}
