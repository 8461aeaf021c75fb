//! Admission: requests are never dropped for lack of room; clients are paused instead.
//!
//! Design: MDP has no error reply, so a request dropped because a queue is full leaves its
//! client waiting for nothing. So the broker bounds its memory by not *reading*: when a
//! request cannot be taken, it goes back to the transport ([`Flow::Defer`]: in front of
//! whatever that client sent after it, its connection paused, TCP pushing back), and the
//! client is resumed when there is room again. The transport's receive budget bounds what
//! the held-back clients hold there together (`domo-zmtp`'s `Options::recv_budget_bytes`).
//!
//! The rule, per request of client `C` for service `S` (`mmi.*` is always answered):
//!
//! * `C` already has `client_limits` accepted and not answered (queued, at a worker, or
//!   replies the transport could not take yet): deferred, `client_limit`. In practice `C` is
//!   paused as soon as it reaches the limit, so this only catches requests already read.
//! * `S` has an idle worker: dispatched, whatever the queues hold (no queue grows).
//! * All queues together are *closed* (they reached `total_queue`): deferred, `total_full`;
//!   `C` waits for the total to reopen.
//! * `S`'s queue is closed (it reached `service_queue`): deferred, `service_full`; `C` waits
//!   for `S` to reopen. Only clients that send to `S` wait on it: clients of other services
//!   go on.
//! * Otherwise queued.
//!
//! A queue *closes* when it reaches either limit (it may pass it by the one request that
//! took it there: a request larger than the limit is still taken into an empty queue) and
//! *reopens* at the low watermark, three quarters of both limits ([`low_watermark`]); a
//! client's bound works the same way. Reopening resumes every client waiting on it, in the
//! order they were deferred; a resumed request that finds the queue closed again waits
//! again. Requests put back after losing their worker are always re-admitted. A client whose
//! replies back up in the transport is paused (`reply_backlog`) until the transport says it
//! is writable; meanwhile its replies wait here and count against its bound.
//!
//! What is never paused: workers (their connections are exempt from the transport's receive
//! budget, [`Flow::Worker`]), heartbeats, and `mmi.*` requests of clients that are not
//! paused. Requests still expire after `request_timeout`, and a queued request whose client
//! has disconnected is dropped when a worker would have taken it (`client_gone`).

use std::collections::VecDeque;

use bytes::Bytes;
use domo_mdp::{client, PeerId, ServiceName};

use super::config::QueueLimits;
use super::events::DropReason;
use super::worker::Request;
use super::{Broker, PeerKind};

/// What a client is charged per request on top of its body bytes: the broker's own
/// bookkeeping for it (queue entry, frame handles, the reply's envelope). Makes the byte
/// bound a bound on memory for small requests too.
pub const REQUEST_OVERHEAD: usize = 256;

/// What the transport must do to a peer's connection; taken with [`Broker::poll_flow`] and
/// carried out before the next message is handed to the core, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Put this request back in front of anything the client sent after it, and stop
    /// reading from the client until [`Flow::Resume`].
    Defer {
        /// The client.
        client: PeerId,
        /// The request, as the client sent it.
        frames: Vec<Bytes>,
    },
    /// Stop reading from the client.
    Pause {
        /// The client.
        client: PeerId,
    },
    /// Read from the client again.
    Resume {
        /// The client.
        client: PeerId,
    },
    /// The peer registered as a worker: always read what it sends (exempt it from the
    /// transport's receive budget), since its replies are what make room.
    Worker {
        /// The worker.
        peer: PeerId,
    },
}

/// Why a client was paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PauseCause {
    /// Its own requests, not yet answered, reached `client_limits`.
    ClientLimit,
    /// Its request was for a service whose queue is full.
    ServiceFull,
    /// Its request would have been queued while all queues together are full.
    TotalFull,
    /// Its replies back up: it does not read them.
    ReplyBacklog,
}

impl PauseCause {
    /// Every cause, in a fixed order (for metrics).
    pub const ALL: [Self; 4] = [
        Self::ClientLimit,
        Self::ServiceFull,
        Self::TotalFull,
        Self::ReplyBacklog,
    ];

    /// The cause as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientLimit => "client_limit",
            Self::ServiceFull => "service_full",
            Self::TotalFull => "total_full",
            Self::ReplyBacklog => "reply_backlog",
        }
    }
}

/// What a client waits for after a request of its was deferred.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Wait {
    /// The service's queue to reopen.
    Service(ServiceName),
    /// All queues together to reopen.
    Total,
}

/// A client with requests accepted and not answered, or paused. Entries exist only while
/// one of those holds, so memory follows what clients have in flight, not how many come.
#[derive(Debug, Default)]
pub(super) struct Client {
    /// Whether its connection is open (as far as the core was told). A disconnected client
    /// keeps its entry while requests of its are in flight, so their charges can be given
    /// back; those still queued are dropped when a worker would take them.
    pub(super) gone: bool,
    /// Requests accepted and not answered, plus replies in `backlog`.
    pub(super) requests: usize,
    /// What those are charged: body bytes plus [`REQUEST_OVERHEAD`] each.
    pub(super) bytes: usize,
    /// At or over its bound: paused until below the low watermark.
    pub(super) over_limit: bool,
    /// The transport's send queue towards it was full: replies wait in `backlog`.
    pub(super) blocked: bool,
    /// Replies the transport could not take yet, oldest first.
    pub(super) backlog: VecDeque<Vec<Bytes>>,
    /// A deferred request of its waits for this.
    pub(super) waiting: Option<Wait>,
    /// Whether the transport was told to stop reading from it.
    pub(super) paused: bool,
}

impl Client {
    fn should_pause(&self) -> bool {
        self.over_limit || self.blocked || self.waiting.is_some()
    }

    fn is_unused(&self) -> bool {
        self.requests == 0 && !self.should_pause() && !self.paused && self.backlog.is_empty()
    }

    #[cfg(test)]
    pub(super) fn is_unused_for_tests(&self) -> bool {
        self.is_unused()
    }
}

/// The level at which a closed queue (or a paused client) reopens: three quarters of the
/// limit, and always below it.
pub fn low_watermark(limit: usize) -> usize {
    limit.saturating_sub((limit / 4).max(1))
}

/// Whether `requests` and `bytes` reached either limit.
pub(super) fn at_limit(requests: usize, bytes: usize, limits: QueueLimits) -> bool {
    requests >= limits.max_requests || bytes >= limits.max_bytes
}

/// Whether `requests` and `bytes` are at or below the low watermark of both limits.
pub(super) fn at_low(requests: usize, bytes: usize, limits: QueueLimits) -> bool {
    requests <= low_watermark(limits.max_requests) && bytes <= low_watermark(limits.max_bytes)
}

/// What a request of `size` body bytes is charged to its client.
pub(super) fn charge(size: usize) -> usize {
    size.saturating_add(REQUEST_OVERHEAD)
}

/// What a reply is charged while it waits in a backlog.
fn reply_charge(frames: &[Bytes]) -> usize {
    charge(frames.iter().map(Bytes::len).sum())
}

impl Broker {
    /// Takes the next flow-control action for the transport. The shell must carry out every
    /// action queued by a `handle_*` call before it hands the core the next message, so a
    /// deferred request is back in the transport before anything else from that client is
    /// read.
    pub fn poll_flow(&mut self) -> Option<Flow> {
        self.flow.pop_front()
    }

    /// The transport could not take a reply to `client` (its send queue is full): the reply
    /// waits in the core, in order with later ones, and the client is paused until
    /// [`Broker::handle_writable`].
    pub fn handle_send_blocked(&mut self, client: PeerId, frames: Vec<Bytes>) {
        let entry = self.clients.entry(client.clone()).or_default();
        entry.requests += 1;
        entry.bytes += reply_charge(&frames);
        entry.backlog.push_back(frames);
        if !entry.blocked {
            entry.blocked = true;
            self.stats.pauses.count(PauseCause::ReplyBacklog);
        }
        self.update_pause(&client);
    }

    /// Whether replies to `client` wait in the core (the shell hands later replies back with
    /// [`Broker::handle_send_blocked`] too, so they keep their order).
    pub fn is_reply_blocked(&self, client: &PeerId) -> bool {
        !self.clients.is_empty() && self.clients.get(client).is_some_and(|c| c.blocked)
    }

    /// The transport has room for `client` again: its waiting replies go out, and it is
    /// resumed unless something else holds it.
    pub fn handle_writable(&mut self, client: &PeerId) {
        let Some(entry) = self.clients.get_mut(client) else {
            return;
        };
        if !entry.blocked {
            return;
        }
        entry.blocked = false;
        let backlog = std::mem::take(&mut entry.backlog);
        for frames in &backlog {
            entry.requests -= 1;
            entry.bytes -= reply_charge(frames);
        }
        for frames in backlog {
            self.emit(client.clone(), PeerKind::Client, frames);
        }
        self.client_changed(client);
    }

    /// Whether a request from `client` for `service` may be taken now; if not, why.
    pub(super) fn admission(&self, client: &PeerId, service: &ServiceName) -> Result<(), Refused> {
        if let Some(entry) = self.clients.get(client) {
            if entry.paused || entry.should_pause() {
                // Read before the pause took effect: it keeps its place.
                return Err(Refused::Again);
            }
        }
        let Some(queue) = self.services.get(service) else {
            return if self.total_closed {
                Err(Refused::Total)
            } else {
                Ok(())
            };
        };
        if !queue.idle.is_empty() {
            return Ok(());
        }
        if self.total_closed {
            return Err(Refused::Total);
        }
        if queue.closed {
            return Err(Refused::Service);
        }
        Ok(())
    }

    /// Hands a request back to the transport and pauses its client until what it waits for
    /// reopens.
    pub(super) fn defer(
        &mut self,
        client: PeerId,
        service: ServiceName,
        tag: Option<Bytes>,
        body: Vec<Bytes>,
        wait: Refused,
    ) {
        self.stats.deferred += 1;
        // Handed back as it came, so it is read again the same way.
        let frames = match tag {
            Some(tag) => client::encode_tagged_request(&service, tag, body),
            None => client::encode_request(&service, body),
        };
        let entry = self.clients.entry(client.clone()).or_default();
        match wait {
            Refused::Again => {}
            Refused::Total => {
                entry.waiting = Some(Wait::Total);
                self.stats.pauses.count(PauseCause::TotalFull);
                self.total_waiting.push_back(client.clone());
            }
            Refused::Service => {
                entry.waiting = Some(Wait::Service(service.clone()));
                self.stats.pauses.count(PauseCause::ServiceFull);
                if let Some(s) = self.services.get_mut(&service) {
                    s.waiting.push_back(client.clone());
                }
            }
        }
        if !entry.paused {
            entry.paused = true;
            self.stats.clients_paused += 1;
        }
        self.flow.push_back(Flow::Defer { client, frames });
    }

    /// Charges an accepted request to its client; pauses the client at its bound.
    pub(super) fn charge_client(&mut self, client: &PeerId, size: usize) {
        let limits = self.config.client_limits;
        let entry = self.clients.entry(client.clone()).or_default();
        entry.gone = false;
        entry.requests += 1;
        entry.bytes += charge(size);
        if !entry.over_limit && at_limit(entry.requests, entry.bytes, limits) {
            entry.over_limit = true;
            self.stats.pauses.count(PauseCause::ClientLimit);
            self.update_pause(client);
        }
    }

    /// A request of `client` is answered or dropped: gives its charge back.
    pub(super) fn release_client(&mut self, request: &Request) {
        if request.broadcast.is_some() {
            // Its broadcast is charged as a whole, and released when it ends.
            return;
        }
        self.release(&request.client, request.size);
    }

    /// Gives back the charge of one request of `size` bytes of `client`.
    pub(super) fn release(&mut self, client: &PeerId, size: usize) {
        let Some(entry) = self.clients.get_mut(client) else {
            return;
        };
        entry.requests -= 1;
        entry.bytes -= charge(size);
        self.client_changed(&client.clone());
    }

    /// Whether a queued request's client has disconnected.
    pub(super) fn client_gone(&self, client: &PeerId) -> bool {
        self.clients.get(client).is_some_and(|c| c.gone)
    }

    /// The transport reported `peer` disconnected: replies waiting for it are dropped, it
    /// waits for nothing any more, and its requests still queued will be dropped.
    pub(super) fn client_disconnected(&mut self, peer: &PeerId) {
        let Some(entry) = self.clients.get_mut(peer) else {
            return;
        };
        entry.gone = true;
        entry.waiting = None;
        entry.over_limit = false;
        entry.blocked = false;
        let backlog = std::mem::take(&mut entry.backlog);
        for frames in &backlog {
            entry.requests -= 1;
            entry.bytes -= reply_charge(frames);
        }
        if std::mem::take(&mut entry.paused) {
            self.stats.clients_paused -= 1;
        }
        self.stats.replies_to_gone_clients += backlog.len() as u64;
        if entry.is_unused() {
            self.clients.remove(peer);
        }
    }

    /// After a client's usage went down: lifts its bound at the low watermark, resumes it if
    /// nothing else holds it, forgets it if nothing is left.
    fn client_changed(&mut self, client: &PeerId) {
        let limits = self.config.client_limits;
        let Some(entry) = self.clients.get_mut(client) else {
            return;
        };
        if entry.over_limit && at_low(entry.requests, entry.bytes, limits) {
            entry.over_limit = false;
        }
        self.update_pause(client);
    }

    /// Tells the transport to pause or resume `client` when what should be differs from
    /// what is, and forgets a client with nothing left.
    fn update_pause(&mut self, client: &PeerId) {
        let Some(entry) = self.clients.get_mut(client) else {
            return;
        };
        let should = entry.should_pause() && !entry.gone;
        if should != entry.paused {
            entry.paused = should;
            if should {
                self.stats.clients_paused += 1;
                self.flow.push_back(Flow::Pause {
                    client: client.clone(),
                });
            } else {
                self.stats.clients_paused -= 1;
                self.flow.push_back(Flow::Resume {
                    client: client.clone(),
                });
            }
        }
        if self.clients.get(client).is_some_and(Client::is_unused) {
            self.clients.remove(client);
        }
    }

    /// After a queue shrank: reopens the service's queue and all queues together at their
    /// low watermarks, resuming the clients that wait on them, then forgets the service if
    /// it has nothing left.
    pub(super) fn queue_shrank(&mut self, name: &ServiceName) {
        let limits = self.config.service_queue;
        if let Some(service) = self.services.get_mut(name) {
            if service.closed && at_low(service.queue.len(), service.queue.bytes(), limits) {
                service.closed = false;
                let waiting = std::mem::take(&mut service.waiting);
                for client in waiting {
                    self.stop_waiting(&client, &Wait::Service(name.clone()));
                }
            }
        }
        self.reopen_total();
        self.remove_service_if_unused(name);
    }

    /// After a queue grew: closes it, and all queues together, at their limits.
    pub(super) fn queue_grew(&mut self, name: &ServiceName) {
        let limits = self.config.service_queue;
        if let Some(service) = self.services.get_mut(name) {
            if !service.closed && at_limit(service.queue.len(), service.queue.bytes(), limits) {
                service.closed = true;
            }
        }
        let total = self.config.total_queue;
        if !self.total_closed
            && at_limit(self.stats.queued_requests, self.stats.queued_bytes, total)
        {
            self.total_closed = true;
        }
    }

    /// After new limits: reopens the queues and lifts the client bounds the new limits put
    /// at or below their low watermarks (lower limits take effect as queues and clients grow).
    pub(super) fn limits_changed(&mut self) {
        let mut names: Vec<ServiceName> = self
            .services
            .values()
            .filter(|service| service.closed)
            .map(|service| service.name.clone())
            .collect();
        names.sort_unstable();
        for name in &names {
            self.queue_shrank(name);
        }
        if self.total_closed {
            // Reopens the total if it now can (any name will do; none is removed).
            self.reopen_total();
        }
        let mut over: Vec<PeerId> = self
            .clients
            .iter()
            .filter(|(_, c)| c.over_limit)
            .map(|(peer, _)| peer.clone())
            .collect();
        over.sort_unstable();
        for peer in &over {
            self.client_changed(peer);
        }
    }

    fn reopen_total(&mut self) {
        let total = self.config.total_queue;
        if self.total_closed && at_low(self.stats.queued_requests, self.stats.queued_bytes, total) {
            self.total_closed = false;
            let waiting = std::mem::take(&mut self.total_waiting);
            for client in waiting {
                self.stop_waiting(&client, &Wait::Total);
            }
        }
    }

    fn stop_waiting(&mut self, client: &PeerId, wait: &Wait) {
        let Some(entry) = self.clients.get_mut(client) else {
            return;
        };
        if entry.waiting.as_ref() == Some(wait) {
            entry.waiting = None;
            self.update_pause(client);
        }
    }

    /// A queued request whose client has gone is dropped instead of dispatched.
    pub(super) fn drop_for_gone_client(&mut self, name: &ServiceName, request: &Request) {
        self.dropped(name, DropReason::ClientGone);
        self.release_client(request);
    }
}

/// Why [`Broker::admission`] refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// The client is paused already (the request was read before the pause took effect).
    Again,
    /// All queues together are closed.
    Total,
    /// The service's queue is closed.
    Service,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_watermark_is_three_quarters_and_always_below_the_limit() {
        assert_eq!(low_watermark(8), 6);
        assert_eq!(low_watermark(4), 3);
        assert_eq!(low_watermark(1), 0);
        assert_eq!(low_watermark(0), 0);
        assert_eq!(low_watermark(200_000), 150_000);
        assert!(low_watermark(usize::MAX) < usize::MAX);
    }

    #[test]
    fn limits_close_at_either_bound_and_reopen_below_both() {
        let limits = QueueLimits {
            max_requests: 8,
            max_bytes: 800,
        };
        assert!(!at_limit(7, 799, limits));
        assert!(at_limit(8, 0, limits));
        assert!(at_limit(0, 800, limits));
        assert!(at_low(6, 600, limits));
        assert!(!at_low(7, 0, limits));
        assert!(!at_low(0, 601, limits));
    }
}
