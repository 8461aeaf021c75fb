//! The broker core: MDP/0.1 routing, worker sessions, heartbeats and bounded queues as a
//! synchronous state machine.
//!
//! Inputs are `handle_*` calls that take the current time; outputs are pulled with
//! [`Broker::poll_outbound`] (messages to send) and [`Broker::poll_timeout`] (when to call
//! [`Broker::handle_timeout`] next), the shape of quinn-proto's `Connection`. A transport
//! shell owns the socket and the clock and drives it.
//!
//! Design: the core only changes state and queues messages. It does no I/O, reads no clock
//! (time is always a `now` argument; a `now` earlier than one already seen counts as that
//! one), spawns nothing, never blocks and never panics on input. It keeps no per-client state
//! (beyond the restricted rights of connected peers, see Rights below), so memory is bounded
//! by workers, connections and queue limits rather than by how many clients come and go; it
//! therefore does not know whether a client is still connected, and leaves vanished
//! clients and slow readers to the shell ([`Outbound::kind`] tells client replies apart). It
//! re-dispatches a request only when its worker is lost, never because a reply is slow (a
//! busy worker that heartbeats may take as long as it needs). It sends no error replies (MDP
//! has none): a dropped request is counted and the client's own timeout reports it. It never
//! logs message bodies.
//!
//! # Routing
//!
//! * A request for service `S` goes to the worker of `S` that has been idle longest (LRU), or
//!   waits in `S`'s FIFO queue. With worker credit (a worker registered through
//!   [`Broker::handle_message_with_credit`] may hold up to `N` requests, each under its own
//!   token), a worker waits while it holds fewer than its credit, and the one with the most
//!   free credit goes first, the longest waiting among equals; credit-1 workers (all RFC 7
//!   ones) keep the plain LRU order. Whenever `S` has both a waiting worker and a queued
//!   request, they are matched at once: after READY, after every REPLY (zeromq/majordomo #73), and
//!   after a lost request is put back. A worker always returns to its own service's idle
//!   list (zeromq/majordomo #61). Cost per request is a few hash lookups, independent of the
//!   number of services and workers.
//! * Requests for a service with no worker wait like any other (RFC 7 SHOULD queue) and every
//!   queued request is dropped after [`BrokerConfig::request_timeout`]; queues are bounded
//!   per service and in total ([`QueueLimits`]). Services exist only while they have workers
//!   or queued requests. `mmi.*` requests never create one.
//! * When a worker holding requests is lost (connection closed, expired, DISCONNECT, or
//!   removed for a protocol error), every request it holds goes back to the head of its queue
//!   (in the order it got them) and is dispatched again under a new token, at most
//!   [`BrokerConfig::max_redispatch`] times (at-least-once delivery, so workers should be
//!   idempotent; [`BrokerConfig::redispatch`] turns it off).
//! * A worker REQUEST carries a token in its client-address frame, not the client's routing
//!   id: 8 bytes naming this dispatch of this request (the format is in `token.rs`). RFC 7
//!   workers echo the frame in their REPLY, and the core maps the token back to the client
//!   and the request, and drops a reply whose token the sending worker does not hold (counted
//!   in [`Stats::dropped_replies`]): a late reply of a worker declared dead, whose request
//!   went to another worker, never reaches the client as a second reply. A re-dispatched
//!   request gets a new token. Nothing else changes on the wire.
//! * Replies go to the client as `[""][MDPC01][service][body…]`, `service` being the worker's.
//!
//! # Heartbeats
//!
//! Every worker, idle or busy, is sent HEARTBEAT once per interval in which the broker sent
//! it nothing else (RFC 7: no heartbeats while other traffic flows), and is removed after
//! `interval * liveness` without a valid command from it; any command counts, not only
//! HEARTBEAT. Each worker has its own timer in one deadline-ordered map, so every expired
//! worker is found however expiries interleave (zguide #579). An expired worker is removed
//! without a DISCONNECT (it is presumed dead); if it was alive after all, its next message
//! gets DISCONNECT as an unknown worker and it re-registers.
//!
//! Timers due at or before `now` fire at the start of every `handle_*` call, before the
//! input, so outcomes do not depend on how promptly the shell calls `handle_timeout`: a worker
//! past its expiry is never given a request and `mmi.service` never counts it.
//!
//! # Session rules (RFC 7) and the decisions where it is silent
//!
//! * DISCONNECT, and the worker removed, for: a second READY; READY for an `mmi.*` service
//!   (RFC 8; the service frame is checked); REPLY or HEARTBEAT from a peer that is not a
//!   registered worker (HEARTBEAT before READY included); REPLY from a worker that holds no
//!   request or holds another one than its token names (valid but unexpected; the reply is
//!   *not* forwarded, so a worker cannot send unsolicited replies to arbitrary clients). Such
//!   replies are also counted as dropped, `stale_token` if the token was handed out by this
//!   broker, `unknown_token` otherwise.
//! * Undecodable messages are dropped and counted by sender kind. From a registered worker
//!   they also cost it its session (DISCONNECT, request re-dispatched): RFC 7 says to treat
//!   such a peer as invalid, and a worker whose REPLY was garbled would otherwise keep its
//!   request forever. From anyone else they leave no state behind.
//! * A client request from a registered worker is dropped and the worker disconnected: a
//!   worker socket carries MDP/Worker only. The converse cannot be checked without client
//!   state, so a peer that sent client requests may later register as a worker.
//! * Silence: once the broker sends DISCONNECT to a peer, or a peer sends DISCONNECT, the
//!   broker sends that peer nothing more, not even replies to its earlier requests, and
//!   ignores what it sends, until its connection closes or `interval * liveness` passes
//!   (a peer that keeps talking after that gets one more DISCONNECT).
//! * A worker sending DISCONNECT is removed at once; the broker answers nothing.
//!
//! # Binary Star
//!
//! With [`Broker::enable_ha`] the broker is one of a primary/backup pair, ruled by the pure
//! machine in [`ha`]. Only the active broker serves: elsewhere every client request (`mmi.*`
//! too, except `mmi.ha`) is dropped unanswered and counted as `not_active`, so the client's
//! timeout sends it to the other broker, unless the request is the client vote that makes
//! this broker active. Workers register, heartbeat and expire exactly as on a lone broker, so
//! a passive broker already knows every worker when it takes over. When an active broker
//! yields (a dual-active conflict), its queued requests are dropped and a request whose
//! worker is lost is not dispatched again; replies of busy workers are still routed.
//!
//! # Rights
//!
//! With CURVE the shell knows each client's key and tells the core what it may do
//! ([`Broker::set_rights`], [`Rights`]): which services it may call (`mmi.*` and `titanic.*`
//! included) and which it may serve. A request it may not make is dropped and counted, a
//! READY it may not send gets DISCONNECT, MMI answers `403` about services it may not call.
//! A peer the core was told nothing about has every right (NULL: no security). Rights are
//! the one thing the core keeps per client, and only for connected peers with fewer than
//! every right.
//!
//! # Draining
//!
//! [`Broker::begin_drain`] drops every queued request and, from then on, every new client
//! request (counted as `shutdown`; MDP clients retry); replies of busy workers are still
//! routed, and `mmi.*` is still answered. [`Broker::is_drained`] says when no request is left;
//! [`Broker::disconnect_workers`] then sends DISCONNECT to every worker. The shell owns the
//! drain timeout. Per-service facts for metrics come out of [`Broker::poll_event`].

mod admission;
mod broadcast;
mod client;
mod config;
mod dispatch;
mod drain;
mod events;
pub mod ha;
mod pair;
mod queue;
mod rights;
mod service;
mod session;
mod stats;
mod timer;
mod token;
pub mod topics;
mod worker;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt};
use std::time::Instant;

use bytes::Bytes;
use domo_mdp::consts::MDPW01;
use domo_mdp::extensions::Announced;
use domo_mdp::{Credit, Incoming, PeerId, ServiceName};

use self::admission::Client;
pub use self::admission::{low_watermark, Flow, PauseCause, REQUEST_OVERHEAD};
pub use self::config::{BrokerConfig, ConfigError, QueueLimits, MAX_DURATION};
pub use self::events::{DropReason, Event};
pub use self::rights::{Pattern, PatternError, Patterns, Rights};
use self::service::Service;
pub use self::stats::{
    DisconnectsSent, Pauses, ProtocolErrors, Refusals, ReplyDrops, RequestDrops, RequestStats,
    Stats, WorkerDepartures,
};
use self::timer::{Timer, TimerKey, Timers};
use self::token::Token;
use self::worker::{InFlight, Worker};

/// A message for the transport to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// Routing id of the peer to send to.
    pub peer: PeerId,
    /// Who receives it: a client (the message is a client REPLY, subject to the shell's flow
    /// control towards slow readers) or a worker (a worker command).
    pub kind: PeerKind,
    /// The frames after the routing id.
    pub frames: Vec<Bytes>,
}

/// One service's gauges ([`Broker::service_gauges`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceGauges {
    /// The service.
    pub name: ServiceName,
    /// Requests waiting for a worker.
    pub queued: usize,
    /// Their body bytes.
    pub queued_bytes: usize,
    /// Workers holding no request.
    pub idle: usize,
    /// Workers holding at least one.
    pub busy: usize,
    /// Requests its workers may hold at once, all together (1 per RFC 7 worker).
    pub credit: u64,
    /// Requests they hold now.
    pub credit_used: u64,
}

/// The two kinds of MDP peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKind {
    /// Speaks MDP/Client (`MDPC01`).
    Client,
    /// Speaks MDP/Worker (`MDPW01`).
    Worker,
}

/// The Majordomo broker's state machine. See the [module documentation](self) for its
/// rules.
#[derive(Debug)]
pub struct Broker {
    config: BrokerConfig,
    /// Registered workers by routing id.
    workers: HashMap<PeerId, Worker>,
    /// Services with workers or queued requests.
    services: HashMap<ServiceName, Service>,
    /// Requests at workers, by the token sent in the client-address frame of their REQUEST
    /// (`token.rs`): one entry per request a worker holds, up to its credit per worker.
    in_flight: HashMap<Token, InFlight>,
    /// The token the next dispatch gets; tokens below it were handed out before.
    next_token: Token,
    /// Peers the broker is silent towards, with the timer that ends the silence.
    silenced: HashMap<PeerId, TimerKey>,
    /// Worker, queue and silence timers.
    timers: Timers,
    /// Messages waiting for [`Broker::poll_outbound`].
    outbound: VecDeque<Outbound>,
    /// Clients with requests in flight, or paused ([`admission`]).
    clients: HashMap<PeerId, Client>,
    /// Flow-control actions waiting for [`Broker::poll_flow`].
    flow: VecDeque<Flow>,
    /// All queues together reached `total_queue` and have not yet drained to the low
    /// watermark: requests that would be queued are deferred.
    total_closed: bool,
    /// Clients waiting for all queues together to reopen, in the order they were deferred.
    total_waiting: VecDeque<PeerId>,
    stats: Stats,
    /// Next key for a service's idle list; grows forever, so larger means idle more recently.
    next_idle_seq: u64,
    /// Latest `now` seen, so time never runs backwards inside the core.
    now: Instant,
    /// Events for [`Broker::poll_event`], recorded only while `recording`.
    events: VecDeque<Event>,
    recording: bool,
    /// Set by [`Broker::begin_drain`]: new client requests are dropped.
    draining: bool,
    /// Set by [`Broker::disconnect_workers`]: requests of lost workers are dropped.
    closing: bool,
    /// The Binary Star machine, when this broker is one of a pair ([`Broker::enable_ha`]).
    ha: Option<ha::Ha>,
    /// Connected peers with fewer than every right ([`Broker::set_rights`]); a peer not here
    /// may do anything.
    rights: HashMap<PeerId, Rights>,
    /// Broadcasts in progress ([`broadcast`]), by number.
    broadcasts: HashMap<u64, broadcast::Broadcast>,
    next_broadcast: u64,
}

impl Broker {
    /// Creates a broker with no workers and no services at time `now`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if `config` does not pass [`BrokerConfig::validate`].
    pub fn new(config: BrokerConfig, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            workers: HashMap::new(),
            services: HashMap::new(),
            in_flight: HashMap::new(),
            next_token: Token::FIRST,
            silenced: HashMap::new(),
            timers: Timers::default(),
            outbound: VecDeque::new(),
            clients: HashMap::new(),
            flow: VecDeque::new(),
            total_closed: false,
            total_waiting: VecDeque::new(),
            stats: Stats::default(),
            next_idle_seq: 0,
            now,
            events: VecDeque::new(),
            recording: false,
            draining: false,
            closing: false,
            ha: None,
            rights: HashMap::new(),
            broadcasts: HashMap::new(),
            next_broadcast: 1,
        })
    }

    /// Handles a message from the ROUTER socket: the sender's routing id and the frames after
    /// it. Anything may arrive here; invalid input is dropped and counted.
    pub fn handle_message(&mut self, now: Instant, peer: PeerId, frames: Vec<Bytes>) {
        self.handle_message_from(now, peer, frames, Announced::RFC7);
    }

    /// [`Broker::handle_message`] for a peer that announced worker credit in its handshake
    /// ([`domo_mdp::extensions::CREDIT_PROPERTY`]); see [`Broker::handle_message_from`].
    pub fn handle_message_with_credit(
        &mut self,
        now: Instant,
        peer: PeerId,
        frames: Vec<Bytes>,
        credit: Credit,
    ) {
        let announced = Announced { credit, mux: false };
        self.handle_message_from(now, peer, frames, announced);
    }

    /// Registers a worker that the shell runs in process (no connection): as a READY from
    /// `peer` for `service` with `credit` would, except that it never expires for silence,
    /// since there is no connection that could die without a word. It leaves by its
    /// DISCONNECT or [`Broker::handle_disconnect`] like any worker, and talks to the core
    /// with [`Broker::handle_message_from`] as any worker does.
    pub fn register_in_process(
        &mut self,
        now: Instant,
        peer: PeerId,
        service: ServiceName,
        credit: Credit,
    ) {
        let now = self.begin(now);
        self.on_ready_in_process(now, peer, service, credit);
    }

    /// [`Broker::handle_message`] for a peer that announced extensions in its handshake
    /// (the transport keeps them per connection): if the message is its READY, the worker
    /// may hold up to `announced.credit` requests at once; if it is a client request and
    /// `announced.mux`, its first body frame is a tag that the reply carries back
    /// ([`domo_mdp::client::split_tag`]).
    pub fn handle_message_from(
        &mut self,
        now: Instant,
        peer: PeerId,
        frames: Vec<Bytes>,
        announced: Announced,
    ) {
        let now = self.begin(now);
        if self.is_silenced(&peer) {
            self.stats.ignored_after_disconnect += 1;
            return;
        }
        let worker_header = frames.iter().take(2).any(|frame| frame == MDPW01);
        match domo_mdp::decode(frames) {
            Ok(Incoming::Client(request)) if announced.mux => {
                self.on_tagged_request(now, peer, request);
            }
            Ok(Incoming::Client(request)) => self.on_client_request(now, peer, request, None),
            Ok(Incoming::Worker(command)) => {
                self.on_worker_command(now, peer, command, announced.credit);
            }
            Err(error) => self.on_invalid(now, peer, worker_header, &error),
        }
    }

    /// Handles the transport's report that the connection of `peer` closed. A worker is
    /// removed at once (its request re-dispatched); a silenced peer is forgotten; nothing is
    /// sent to the peer.
    pub fn handle_disconnect(&mut self, now: Instant, peer: &PeerId) {
        let now = self.begin(now);
        if let Some(key) = self.silenced.remove(peer) {
            self.timers.cancel(key);
        }
        self.rights.remove(peer);
        self.client_disconnected(peer);
        self.remove_worker(now, peer, stats::Departure::ConnectionClosed);
    }

    /// Fires every timer due at or before `now`: heartbeats, worker expiry, request expiry.
    /// Call it when `now` reaches [`Broker::poll_timeout`]; calling it at other times is
    /// harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.begin(now);
    }

    /// When [`Broker::handle_timeout`] must next be called, or `None` if no timer is pending
    /// (no workers, no queued requests, no silenced peers).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timers = self.timers.next_deadline();
        let ha = self.ha.as_ref().and_then(ha::Ha::poll_timeout);
        match (timers, ha) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes the next message to send, in the order the broker produced them.
    pub fn poll_outbound(&mut self) -> Option<Outbound> {
        self.outbound.pop_front()
    }

    /// Counters and gauges for metrics.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The settings this broker runs with.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Replaces the settings (a configuration reload). Queue limits, the request timeout and
    /// re-dispatch apply to the next request; heartbeat settings apply to workers that
    /// register afterwards (a registered worker keeps the interval it was registered with,
    /// since it was told nothing new).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] if `config` does not pass [`BrokerConfig::validate`]; nothing changes.
    pub fn reconfigure(&mut self, config: BrokerConfig) -> Result<(), ConfigError> {
        config.validate()?;
        self.config = config;
        self.limits_changed();
        Ok(())
    }

    /// Per-service gauges for every service the broker knows now (a worker is busy while it
    /// holds at least one request). Costs one pass over the services and one over the
    /// workers; meant for a scrape.
    pub fn service_gauges(&self) -> Vec<ServiceGauges> {
        let mut credit: HashMap<&ServiceName, (u64, u64)> = HashMap::new();
        for w in self.workers.values() {
            let c = credit.entry(&w.service).or_default();
            c.0 += u64::from(w.credit.get());
            c.1 += w.held.len() as u64;
        }
        self.services
            .values()
            .map(|s| {
                let idle = s
                    .idle
                    .values()
                    .filter(|peer| self.workers.get(*peer).is_some_and(|w| !w.is_busy()))
                    .count();
                let (credit, credit_used) = credit.get(&s.name).copied().unwrap_or_default();
                ServiceGauges {
                    name: s.name.clone(),
                    queued: s.queue.len(),
                    queued_bytes: s.queue.bytes(),
                    idle,
                    busy: s.workers - idle,
                    credit,
                    credit_used,
                }
            })
            .collect()
    }

    /// Starts handling an input: clamps `now` to the latest time seen and fires due timers.
    fn begin(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        let now = self.now;
        if let Some(ha) = &mut self.ha {
            // First, so a stall is noticed before anything else is judged.
            ha.tick(now);
        }
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Worker(peer) => self.on_worker_timer(now, peer),
                Timer::Queue(service) => self.on_queue_timer(now, &service),
                Timer::Silence(peer) => {
                    self.silenced.remove(&peer);
                }
                Timer::Broadcast(id) => self.on_broadcast_timer(id),
            }
        }
        now
    }

    fn is_silenced(&self, peer: &PeerId) -> bool {
        !self.silenced.is_empty() && self.silenced.contains_key(peer)
    }

    /// Queues a message for the transport.
    fn emit(&mut self, peer: PeerId, kind: PeerKind, frames: Vec<Bytes>) {
        self.outbound.push_back(Outbound { peer, kind, frames });
    }
}
