//! Counters and gauges the broker keeps for metrics.
//!
//! Everything is updated where the state changes, so reading [`Stats`] costs nothing and
//! never scans workers or queues. Counters only grow; gauges are current values.

/// What the broker has done, for metrics (`domo_*` in the operations guide).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Client requests to ordinary (not `mmi.*`) services, by outcome.
    pub requests: RequestStats,
    /// Client requests to `mmi.*` services, all answered at once by the broker.
    pub mmi_requests: u64,
    /// Messages that could not be decoded, dropped, by who sent them.
    pub protocol_errors: ProtocolErrors,
    /// DISCONNECT commands the broker sent, by the RFC 7 rule that called for them.
    pub disconnects_sent: DisconnectsSent,
    /// Registered workers the broker removed, by reason.
    pub worker_departures: WorkerDepartures,
    /// Messages dropped unread because they came from a peer the broker is silent towards
    /// (after a DISCONNECT either way; see [`crate::Broker`]).
    pub ignored_after_disconnect: u64,
    /// Gauge: registered workers holding no request.
    pub workers_idle: usize,
    /// Gauge: registered workers holding at least one request (with worker credit, a busy
    /// worker may still take more).
    pub workers_busy: usize,
    /// Gauge: requests held by workers, all workers together (one per busy worker of credit
    /// 1; up to its credit per worker).
    pub requests_at_workers: usize,
    /// Gauge: requests waiting in service queues.
    pub queued_requests: usize,
    /// Gauge: body bytes of the requests waiting in service queues.
    pub queued_bytes: usize,
    /// Gauge: services the broker knows (with workers, queued requests, or both).
    pub services: usize,
    /// Gauge: clients paused now (see [`crate::Flow`]).
    pub clients_paused: usize,
    /// Times a cause paused a client (a client held by two causes counts under both).
    pub pauses: Pauses,
    /// Replies dropped because their client disconnected while they waited for it to read
    /// (the requests count as replied).
    pub replies_to_gone_clients: u64,
    /// Worker replies dropped because their token names no request the worker holds; the
    /// requests themselves are counted in `requests` by their own outcome.
    pub dropped_replies: ReplyDrops,
    /// Requests handed back to the transport for lack of room; each comes back when its
    /// client is resumed, and is counted in `requests` only then.
    pub deferred: u64,
    /// Requests and registrations refused because the peer's rights do not cover the
    /// service (see [`crate::Rights`]); such requests are not counted in `requests`.
    pub refusals: Refusals,
}

/// Requests and registrations refused for lack of a right.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Client requests dropped because the client may not call the service (`mmi.*` and
    /// `titanic.*` included).
    pub call: u64,
    /// Workers disconnected because they may not serve their service (at READY, or when
    /// their rights changed).
    pub serve: u64,
}

/// Times clients were paused, by cause (see [`crate::PauseCause`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pauses {
    /// The client's own requests reached `client_limits`.
    pub client_limit: u64,
    /// Its request was for a service whose queue was full.
    pub service_full: u64,
    /// Its request would have been queued while all queues together were full.
    pub total_full: u64,
    /// Its replies backed up.
    pub reply_backlog: u64,
}

impl Pauses {
    pub(super) fn count(&mut self, cause: super::PauseCause) {
        use super::PauseCause::{ClientLimit, ReplyBacklog, ServiceFull, TotalFull};
        let counter = match cause {
            ClientLimit => &mut self.client_limit,
            ServiceFull => &mut self.service_full,
            TotalFull => &mut self.total_full,
            ReplyBacklog => &mut self.reply_backlog,
        };
        *counter += 1;
    }

    /// The count of one cause.
    pub fn get(&self, cause: super::PauseCause) -> u64 {
        use super::PauseCause::{ClientLimit, ReplyBacklog, ServiceFull, TotalFull};
        match cause {
            ClientLimit => self.client_limit,
            ServiceFull => self.service_full,
            TotalFull => self.total_full,
            ReplyBacklog => self.reply_backlog,
        }
    }
}

/// Client requests to ordinary services, by outcome.
///
/// Every received request ends in exactly one of `replied` or a [`RequestDrops`] reason, or
/// is still queued or held by a worker:
/// `received = replied + dropped.total() + queued_requests + requests_at_workers`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// Requests accepted for routing.
    pub received: u64,
    /// Of those, requests that arrived while their service had no registered worker (they
    /// are queued, as RFC 7 recommends; a high rate suggests a misspelled service name).
    pub no_worker: u64,
    /// REQUEST commands sent to workers, counting every re-dispatch.
    pub dispatched: u64,
    /// Times a request went back to its queue after its worker was lost.
    pub redispatched: u64,
    /// Requests whose reply was routed to the client.
    pub replied: u64,
    /// Requests dropped, by reason.
    pub dropped: RequestDrops,
}

/// Why requests were dropped. MDP has no error reply, so the client sees a timeout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestDrops {
    /// The request waited in its queue for the whole `request_timeout`.
    pub expired: u64,
    /// The request lost its worker once more after `max_redispatch` re-dispatches.
    pub redispatch_limit: u64,
    /// The request lost its worker while re-dispatch is off.
    pub worker_lost: u64,
    /// The worker replied, but the broker is silent towards the client (it is a peer that
    /// sent or was sent DISCONNECT), so the reply was not sent.
    pub client_silenced: u64,
    /// The broker was draining: queued when the drain began, received during it, or still
    /// held by a worker when every worker was disconnected.
    pub shutdown: u64,
    /// The broker is the member of a Binary Star pair that is not serving: received then,
    /// or queued when it stopped being active.
    pub not_active: u64,
    /// The client had disconnected: a queued request of its was not dispatched, or its
    /// reply (or replies waiting for it to read) was not sent.
    pub client_gone: u64,
}

impl RequestDrops {
    /// All dropped requests.
    pub fn total(&self) -> u64 {
        self.expired
            + self.redispatch_limit
            + self.worker_lost
            + self.client_silenced
            + self.shutdown
            + self.not_active
            + self.client_gone
    }
}

/// Worker replies whose token (the client-address frame the worker echoed) names no request
/// that worker holds. Such a reply is never forwarded; the worker also gets DISCONNECT
/// ([`DisconnectsSent::unknown_worker`] or [`DisconnectsSent::unexpected_reply`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyDrops {
    /// A token this broker handed out, for a request that worker no longer holds: it was
    /// answered already, or the worker was declared dead and the request went to another
    /// worker, expired or was dropped. Usually a late reply.
    pub stale_token: u64,
    /// A frame that is no token this broker handed out: forged, garbled, or a client's
    /// routing id from a broker that sends those.
    pub unknown_token: u64,
}

/// Undecodable messages, by sender. A message counts as a worker's if its sender is a
/// registered worker or its first frames contain the `MDPW01` header; otherwise as a
/// client's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProtocolErrors {
    /// From clients (or peers of unknown kind).
    pub client: u64,
    /// From workers.
    pub worker: u64,
}

/// DISCONNECT commands sent, by cause.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisconnectsSent {
    /// A registered worker sent READY again.
    pub second_ready: u64,
    /// A worker tried to register an `mmi.*` service (RFC 8 forbids it).
    pub mmi_ready: u64,
    /// A peer that is not a registered worker sent REPLY or HEARTBEAT.
    pub unknown_worker: u64,
    /// A worker sent REPLY while holding no request, or for another client than the one
    /// whose request it holds.
    pub unexpected_reply: u64,
    /// A registered worker sent a message that could not be decoded.
    pub invalid_message: u64,
    /// A registered worker sent a client request on its worker session.
    pub client_request: u64,
    /// The broker finished draining and disconnected every worker.
    pub shutdown: u64,
    /// A worker may not serve its service: at READY, or after its rights changed.
    pub not_authorized: u64,
}

/// Registered workers removed, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerDepartures {
    /// The worker sent DISCONNECT.
    pub disconnect: u64,
    /// The transport reported the worker's connection closed.
    pub connection_closed: u64,
    /// The worker was silent for `interval * liveness`.
    pub expired: u64,
    /// The broker sent DISCONNECT for a protocol violation; [`DisconnectsSent`] says which.
    pub protocol_error: u64,
    /// The broker disconnected it at the end of a drain.
    pub shutdown: u64,
}

/// Why the broker sent DISCONNECT; selects a [`DisconnectsSent`] counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DisconnectReason {
    SecondReady,
    MmiReady,
    UnknownWorker,
    UnexpectedReply,
    InvalidMessage,
    ClientRequest,
    Shutdown,
    NotAuthorized,
}

/// Why a registered worker was removed; selects a [`WorkerDepartures`] counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Departure {
    Disconnect,
    ConnectionClosed,
    Expired,
    ProtocolError,
    Shutdown,
}

impl DisconnectsSent {
    pub(super) fn count(&mut self, reason: DisconnectReason) {
        let counter = match reason {
            DisconnectReason::SecondReady => &mut self.second_ready,
            DisconnectReason::MmiReady => &mut self.mmi_ready,
            DisconnectReason::UnknownWorker => &mut self.unknown_worker,
            DisconnectReason::UnexpectedReply => &mut self.unexpected_reply,
            DisconnectReason::InvalidMessage => &mut self.invalid_message,
            DisconnectReason::ClientRequest => &mut self.client_request,
            DisconnectReason::Shutdown => &mut self.shutdown,
            DisconnectReason::NotAuthorized => &mut self.not_authorized,
        };
        *counter += 1;
    }
}

impl WorkerDepartures {
    pub(super) fn count(&mut self, departure: Departure) {
        let counter = match departure {
            Departure::Disconnect => &mut self.disconnect,
            Departure::ConnectionClosed => &mut self.connection_closed,
            Departure::Expired => &mut self.expired,
            Departure::ProtocolError => &mut self.protocol_error,
            Departure::Shutdown => &mut self.shutdown,
        };
        *counter += 1;
    }
}

impl Stats {
    /// A request entered a queue.
    pub(super) fn enqueued(&mut self, size: usize) {
        self.queued_requests += 1;
        self.queued_bytes += size;
    }

    /// A request left a queue (dispatched or dropped).
    pub(super) fn dequeued(&mut self, size: usize) {
        self.queued_requests -= 1;
        self.queued_bytes -= size;
    }
}
