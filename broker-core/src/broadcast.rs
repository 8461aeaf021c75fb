//! `mmi.broadcast` ([`domo_mdp::broadcast`]): one client request sent to every worker of a
//! service registered at that moment, each reply passed on as it comes, then a summary.
//!
//! Each worker gets an ordinary REQUEST under its own token. A worker with free credit gets
//! it at once (it leaves the waiting set like any dispatch); a busy one keeps it *pinned*
//! and gets it before any queued request as soon as one of its requests is done, so the
//! broadcast never waits behind the service's queue. A worker lost while it holds (or has
//! pinned) its part is reported `failed` at once; its part is never sent to another worker.
//! When the timeout passes, the parts not yet answered are `timed_out`, a pinned one is
//! taken back, and a late reply is dropped while freeing the worker's credit as usual.
//!
//! A broadcast is charged to its client as one request of its body's size (so the client's
//! limits apply) until its summary is sent; at most [`MAX_BROADCASTS`] run at once.

use std::time::Instant;

use bytes::Bytes;
use domo_mdp::broadcast::{self, Outcome, Reply, Summary};
use domo_mdp::{client, PeerId, ServiceName};
use tracing::debug;

use super::events::DropReason;
use super::timer::{Timer, TimerKey};
use super::worker::Request;
use super::{Broker, PeerKind};

/// Most broadcasts in progress at once; more are refused with `503`.
pub(crate) const MAX_BROADCASTS: usize = 1024;

/// A broadcast in progress.
#[derive(Debug)]
pub(super) struct Broadcast {
    client: PeerId,
    tag: Bytes,
    /// The body's size, charged to the client.
    size: usize,
    /// Each worker asked, and its outcome once known.
    parts: Vec<(PeerId, Option<Outcome>)>,
    timer: TimerKey,
}

impl Broker {
    /// A request to `mmi.broadcast` from `peer` (tagged on a multiplexed connection, else
    /// refused: one reply per request is all an RFC 7 client can take).
    pub(super) fn on_broadcast(
        &mut self,
        now: Instant,
        peer: PeerId,
        tag: Option<Bytes>,
        body: Vec<Bytes>,
    ) {
        self.stats.mmi_requests += 1;
        let Some(tag) = tag else {
            let refused = Reply::Refused {
                status: 400,
                reason: "mmi.broadcast needs a multiplexed connection (the mux extension)".into(),
            };
            let frames = client::encode_reply(&service_name(), refused.encode());
            self.emit(peer, PeerKind::Client, frames);
            return;
        };
        let refuse = |status, reason: &str| Reply::Refused {
            status,
            reason: reason.to_string(),
        };
        let request = match broadcast::parse_request(body) {
            Ok(r) => r,
            Err(why) => return self.send_broadcast(&peer, &tag, &refuse(400, why)),
        };
        if !self.may_call(&peer, &request.service) {
            let why = format!("this client may not call {}", request.service);
            return self.send_broadcast(&peer, &tag, &refuse(403, &why));
        }
        if self.draining {
            return self.send_broadcast(&peer, &tag, &refuse(503, "the broker is stopping"));
        }
        if self.broadcasts.len() >= MAX_BROADCASTS {
            let why = "too many broadcasts in progress";
            return self.send_broadcast(&peer, &tag, &refuse(503, why));
        }
        let mut workers: Vec<PeerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.service == request.service)
            .map(|(p, _)| p.clone())
            .collect();
        // The same order whatever the hash map's.
        workers.sort_unstable();
        if workers.is_empty() {
            return self.send_broadcast(&peer, &tag, &Reply::Done(Summary::default()));
        }
        let id = self.next_broadcast;
        self.next_broadcast += 1;
        let timeout = request.timeout.map_or(self.config.request_timeout, |t| {
            t.min(self.config.request_timeout)
        });
        let size: usize = request.body.iter().map(Bytes::len).sum();
        self.charge_client(&peer, size);
        debug!(service = %request.service, client = %peer, workers = workers.len(), "Broadcast");
        let timer = self.timers.schedule(now + timeout, Timer::Broadcast(id));
        self.broadcasts.insert(
            id,
            Broadcast {
                client: peer.clone(),
                tag,
                size,
                parts: workers.iter().map(|w| (w.clone(), None)).collect(),
                timer,
            },
        );
        for worker in workers {
            let mut part = Request::new(peer.clone(), request.body.clone(), now);
            part.broadcast = Some(id);
            self.stats.requests.received += 1;
            let Some(w) = self.workers.get_mut(&worker) else {
                continue;
            };
            w.pinned.push_back(part);
            self.serve_pinned(now, &worker);
        }
    }

    /// Sends the worker's pinned broadcast parts while it has free credit.
    pub(super) fn serve_pinned(&mut self, now: Instant, peer: &PeerId) {
        loop {
            let Some(worker) = self.workers.get_mut(peer) else {
                return;
            };
            let Some(key) = worker.waiting else {
                // No free credit: it gets them as its requests are done.
                return;
            };
            let Some(part) = worker.pinned.pop_front() else {
                return;
            };
            if let Some(service) = self.services.get_mut(&worker.service) {
                service.idle.remove(&key);
            }
            worker.waiting = None;
            self.send_request(now, peer.clone(), part);
        }
    }

    /// A worker of `service` answered its part of broadcast `id`.
    pub(super) fn broadcast_answered(
        &mut self,
        id: u64,
        worker: &PeerId,
        service: &ServiceName,
        body: Vec<Bytes>,
    ) {
        if !self.set_outcome(id, worker, Outcome::Answered) {
            debug!(%worker, "Late reply to a finished broadcast dropped");
            self.dropped(service, DropReason::Expired);
            return;
        }
        self.stats.requests.replied += 1;
        let reply = Reply::Reply {
            worker: broadcast::worker_name(worker.as_bytes()),
            body,
        };
        self.send_part(id, &reply);
        self.finish_if_done(id);
    }

    /// A worker of `service` was lost holding (or having pinned) its part of broadcast `id`.
    pub(super) fn broadcast_failed(&mut self, id: u64, worker: &PeerId, service: &ServiceName) {
        self.dropped(service, DropReason::WorkerLost);
        if !self.set_outcome(id, worker, Outcome::Failed) {
            return;
        }
        let reply = Reply::Failed {
            worker: broadcast::worker_name(worker.as_bytes()),
        };
        self.send_part(id, &reply);
        self.finish_if_done(id);
    }

    /// The timeout of broadcast `id` passed: every part not answered is `timed_out`.
    pub(super) fn on_broadcast_timer(&mut self, id: u64) {
        let Some(b) = self.broadcasts.get_mut(&id) else {
            return;
        };
        let mut pending = Vec::new();
        for (worker, outcome) in &mut b.parts {
            if outcome.is_none() {
                *outcome = Some(Outcome::TimedOut);
                pending.push(worker.clone());
            }
        }
        // Parts still pinned are not sent any more.
        for worker in pending {
            let Some(w) = self.workers.get_mut(&worker) else {
                continue;
            };
            let before = w.pinned.len();
            w.pinned.retain(|part| part.broadcast != Some(id));
            if w.pinned.len() < before {
                let service = w.service.clone();
                self.dropped(&service, DropReason::Expired);
            }
        }
        self.finish(id, false);
    }

    /// Records a part's outcome; `false` if the broadcast is over or the part already ended.
    fn set_outcome(&mut self, id: u64, worker: &PeerId, outcome: Outcome) -> bool {
        let Some(b) = self.broadcasts.get_mut(&id) else {
            return false;
        };
        match b.parts.iter_mut().find(|(w, o)| w == worker && o.is_none()) {
            Some((_, o)) => {
                *o = Some(outcome);
                true
            }
            None => false,
        }
    }

    fn send_part(&mut self, id: u64, reply: &Reply) {
        if let Some(b) = self.broadcasts.get(&id) {
            let (client, tag) = (b.client.clone(), b.tag.clone());
            self.send_broadcast(&client, &tag, reply);
        }
    }

    fn finish_if_done(&mut self, id: u64) {
        if self
            .broadcasts
            .get(&id)
            .is_some_and(|b| b.parts.iter().all(|(_, o)| o.is_some()))
        {
            self.finish(id, true);
        }
    }

    /// Sends the summary and forgets the broadcast.
    fn finish(&mut self, id: u64, cancel_timer: bool) {
        let Some(b) = self.broadcasts.remove(&id) else {
            return;
        };
        if cancel_timer {
            self.timers.cancel(b.timer);
        }
        let summary = Summary::of(b.parts.iter().map(|(w, o)| {
            (
                broadcast::worker_name(w.as_bytes()),
                o.unwrap_or(Outcome::TimedOut),
            )
        }));
        self.send_broadcast(&b.client, &b.tag, &Reply::Done(summary));
        self.release(&b.client, b.size);
    }

    /// One tagged reply from `mmi.broadcast` to `client`, unless it is gone or silenced.
    fn send_broadcast(&mut self, client: &PeerId, tag: &Bytes, reply: &Reply) {
        if self.is_silenced(client) || self.client_gone(client) {
            return;
        }
        let frames = client::encode_tagged_reply(&service_name(), tag.clone(), reply.encode());
        if self.is_reply_blocked(client) {
            self.handle_send_blocked(client.clone(), frames);
            return;
        }
        self.emit(client.clone(), PeerKind::Client, frames);
    }

    /// Each broadcast in progress: its client, its charge, its timer, and the workers
    /// whose part is pending (for the invariant checks of the tests).
    #[cfg(test)]
    pub(super) fn broadcasts_for_tests(
        &self,
    ) -> Vec<(u64, &PeerId, usize, TimerKey, Vec<&PeerId>)> {
        self.broadcasts
            .iter()
            .map(|(id, b)| {
                let pending = b
                    .parts
                    .iter()
                    .filter(|(_, o)| o.is_none())
                    .map(|(w, _)| w)
                    .collect();
                (*id, &b.client, b.size, b.timer, pending)
            })
            .collect()
    }
}

fn service_name() -> ServiceName {
    ServiceName::from_static(broadcast::SERVICE)
}
