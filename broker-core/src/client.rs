//! Client requests: the call right (see [`super::rights`]), MMI answers, admission into service queues (see [`super::admission`]),
//! direct dispatch.

use std::collections::hash_map::Entry;
use std::time::Instant;

use bytes::Bytes;
use domo_mdp::{client, mmi, ClientRequest, MmiRequest, PeerId, ServiceName};
use tracing::debug;

use super::events::{DropReason, Event};
use super::stats::DisconnectReason;
use super::worker::Request;
use super::{Broker, PeerKind, Service};

impl Broker {
    /// Handles a decoded REQUEST from a multiplexed client: its tag is split off the body
    /// and goes with the request to its reply. A missing or bad tag drops the request as
    /// malformed.
    pub(super) fn on_tagged_request(&mut self, now: Instant, peer: PeerId, request: ClientRequest) {
        match client::split_tag(request.body) {
            Ok((tag, body)) => {
                let request = ClientRequest {
                    service: request.service,
                    body,
                };
                self.on_client_request(now, peer, request, Some(tag));
            }
            Err(error) => self.on_invalid(now, peer, false, &error),
        }
    }

    /// Handles a decoded client REQUEST; `tag` is a multiplexed client's tag, which the
    /// reply carries back.
    pub(super) fn on_client_request(
        &mut self,
        now: Instant,
        peer: PeerId,
        request: ClientRequest,
        tag: Option<Bytes>,
    ) {
        if self.workers.contains_key(&peer) {
            debug!(worker = %peer, "Client request on a worker session");
            self.reject_worker(now, &peer, DisconnectReason::ClientRequest);
            return;
        }
        let ClientRequest { service, body } = request;
        if !self.may_call(&peer, &service) {
            self.refuse_call(&peer, &service);
            return;
        }
        if service.as_bytes() == domo_mdp::broadcast::SERVICE.as_bytes() {
            if self.pair_admits(now, &service, false) {
                self.on_broadcast(now, peer, tag, body);
            }
            return;
        }
        let question = MmiRequest::parse(&service, &body);
        if question == Some(MmiRequest::Ha) {
            // Answered in every state, and never a vote: operators ask both brokers.
            self.answer_mmi(peer, service, tag, MmiRequest::Ha);
            return;
        }
        if !self.pair_admits(now, &service, question.is_some()) {
            debug!(%service, client = %peer, "Not the active broker of the pair; request dropped");
            return;
        }
        if let Some(question) = question {
            self.answer_mmi(peer, service, tag, question);
            return;
        }
        if self.draining {
            self.stats.requests.received += 1;
            debug!(%service, client = %peer, "Draining; request dropped");
            self.dropped(&service, DropReason::Shutdown);
            return;
        }
        if let Err(refused) = self.admission(&peer, &service) {
            debug!(%service, client = %peer, ?refused, "No room; request deferred, client paused");
            self.defer(peer, service, tag, body, refused);
            return;
        }
        self.stats.requests.received += 1;
        let mut request = Request::new(peer, body, now);
        request.tag = tag;
        self.charge_client(&request.client, request.size);
        self.route(now, service, request);
    }

    /// Sends an admitted request to the first worker of its service's waiting set (most free
    /// credit, then longest waiting), or queues it.
    ///
    /// Creates the service if it is new; one hash lookup in all.
    fn route(&mut self, now: Instant, name: ServiceName, request: Request) {
        let service = match self.services.entry(name) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                self.stats.services += 1;
                let service = Service::new(entry.key().clone());
                entry.insert(service)
            }
        };
        if service.workers == 0 {
            self.stats.requests.no_worker += 1;
        }
        if let Some(worker) = service.pop_idle() {
            self.send_request(now, worker, request);
            return;
        }
        let deadline = now + self.config.request_timeout;
        self.stats.enqueued(request.size);
        service.queue.push_fresh(request, deadline);
        service.arm_timer(&mut self.timers, deadline);
        let name = service.name.clone();
        self.queue_grew(&name);
    }

    /// Answers an `mmi.*` request at once, from the current registrations (RFC 8 and the
    /// domo extensions documented in [`domo_mdp::mmi`]). Never creates a service.
    fn answer_mmi(
        &mut self,
        peer: PeerId,
        service: ServiceName,
        tag: Option<Bytes>,
        question: MmiRequest,
    ) {
        self.stats.mmi_requests += 1;
        let body = match question {
            MmiRequest::Service(name) | MmiRequest::Workers(name) | MmiRequest::Queued(name)
                if !self.may_call(&peer, &name) =>
            {
                mmi::forbidden_reply()
            }
            MmiRequest::Service(name) => mmi::service_reply(self.worker_count(&name) > 0),
            MmiRequest::Services => mmi::services_reply(self.served_services(&peer)),
            MmiRequest::Workers(name) => mmi::workers_reply(self.worker_count(&name)),
            MmiRequest::Queued(name) => mmi::workers_reply(
                self.services
                    .get(&name)
                    .map_or(0, |service| service.queue.len()),
            ),
            MmiRequest::Ha => self.ha_reply(),
            MmiRequest::Unknown => mmi::not_implemented_reply(),
            MmiRequest::BadRequest => mmi::bad_request_reply(),
        };
        let frames = encode_reply(&service, tag, body);
        self.emit(peer, PeerKind::Client, frames);
    }

    /// Registered workers, idle and busy, of a service.
    fn worker_count(&self, name: &ServiceName) -> usize {
        self.services.get(name).map_or(0, |service| service.workers)
    }

    /// Names of the services that have at least one worker and that `peer` may call, sorted
    /// by their bytes so the answer does not depend on hash order.
    fn served_services(&self, peer: &PeerId) -> Vec<ServiceName> {
        let mut names: Vec<ServiceName> = self
            .services
            .values()
            .filter(|service| service.workers > 0 && self.may_call(peer, &service.name))
            .map(|service| service.name.clone())
            .collect();
        names.sort_unstable();
        names
    }

    /// Sends a worker's reply to the client (with the request's tag, for a multiplexed
    /// client), unless the broker is silent towards it.
    pub(super) fn send_reply(
        &mut self,
        now: Instant,
        client: PeerId,
        tag: Option<Bytes>,
        received_at: Instant,
        service: &ServiceName,
        body: Vec<Bytes>,
    ) {
        if self.is_silenced(&client) {
            self.dropped(service, DropReason::ClientSilenced);
            debug!(%client, %service, "Reply to a silenced peer dropped");
            return;
        }
        if self.client_gone(&client) {
            self.dropped(service, DropReason::ClientGone);
            debug!(%client, %service, "Reply to a client that has gone dropped");
            return;
        }
        self.stats.requests.replied += 1;
        self.event(|| Event::Replied {
            service: service.clone(),
            duration: now.saturating_duration_since(received_at),
        });
        let frames = encode_reply(service, tag, body);
        if self.is_reply_blocked(&client) {
            // Behind the replies already waiting for room.
            self.handle_send_blocked(client, frames);
            return;
        }
        self.emit(client, PeerKind::Client, frames);
    }
}

/// A client REPLY, tagged for a multiplexed client.
fn encode_reply(service: &ServiceName, tag: Option<Bytes>, body: Vec<Bytes>) -> Vec<Bytes> {
    match tag {
        Some(tag) => client::encode_tagged_reply(service, tag, body),
        None => client::encode_reply(service, body),
    }
}
