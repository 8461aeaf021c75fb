//! Test harness: a broker, a fake clock, MDP peers speaking through the `domo-mdp` codec,
//! and a checker for the core's invariants.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_mdp::extensions::Announced;
use domo_mdp::{client, worker, Credit, PeerId, ServiceName, WorkerCommand};

use crate::admission::charge;
use crate::token::Token;
use crate::worker::WaitKey;
use crate::{Broker, BrokerConfig, Flow, Outbound, Patterns, PeerKind, Rights};

pub(super) const MS: Duration = Duration::from_millis(1);
pub(super) const NS: Duration = Duration::from_nanos(1);
/// The default heartbeat interval.
pub(super) const INTERVAL: Duration = Duration::from_millis(2500);
/// The default worker expiry: interval * liveness.
pub(super) const EXPIRY: Duration = Duration::from_millis(7500);

pub(super) fn id(name: &str) -> PeerId {
    PeerId::new(Bytes::copy_from_slice(name.as_bytes())).unwrap()
}

pub(super) fn service(name: &str) -> ServiceName {
    ServiceName::try_from(name).unwrap()
}

pub(super) fn frames(parts: &[&[u8]]) -> Vec<Bytes> {
    parts
        .iter()
        .map(|part| Bytes::copy_from_slice(part))
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A message the broker sent, decoded for assertions. Bodies are joined with `|`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Sent {
    /// Worker REQUEST: to worker, from client (the client the broker maps the request's token
    /// to, or `token:` and the frame in hex if it maps it to none), body.
    Request(String, String, String),
    /// Client REPLY: to client, service, body.
    Reply(String, String, String),
    Heartbeat(String),
    Disconnect(String),
}

impl Sent {
    pub(super) fn request(worker: &str, client: &str, body: &str) -> Self {
        Self::Request(worker.into(), client.into(), body.into())
    }

    pub(super) fn reply(client: &str, service: &str, body: &str) -> Self {
        Self::Reply(client.into(), service.into(), body.into())
    }

    pub(super) fn heartbeat(worker: &str) -> Self {
        Self::Heartbeat(worker.into())
    }

    pub(super) fn disconnect(worker: &str) -> Self {
        Self::Disconnect(worker.into())
    }

    /// Decodes what the broker sent, checking it is valid MDP/0.1 for its receiver; a
    /// REQUEST's client is found by `client_of` from its address frame.
    fn decode(outbound: Outbound, mut client_of: impl FnMut(&PeerId) -> Option<String>) -> Self {
        let peer = text(outbound.peer.as_bytes());
        let join = |body: Vec<Bytes>| body.iter().map(|f| text(f)).collect::<Vec<_>>().join("|");
        match outbound.kind {
            PeerKind::Client => {
                let reply = client::decode_reply(outbound.frames).expect("valid client reply");
                Self::Reply(peer, reply.service.to_string(), join(reply.body))
            }
            PeerKind::Worker => match worker::decode_from_broker(outbound.frames) {
                Ok(WorkerCommand::Request { client, body }) => {
                    let client = client_of(&client).unwrap_or_else(|| format!("token:{client}"));
                    Self::Request(peer, client, join(body))
                }
                Ok(WorkerCommand::Heartbeat) => Self::Heartbeat(peer),
                Ok(WorkerCommand::Disconnect) => Self::Disconnect(peer),
                other => panic!("broker sent an invalid worker command: {other:?}"),
            },
        }
    }
}

/// A broker driven by a fake clock.
pub(super) struct Harness {
    pub(super) broker: Broker,
    pub(super) now: Instant,
    start: Instant,
    /// Decoded messages not yet taken by the test, with the time they were produced.
    sent: VecDeque<(Duration, Sent)>,
    /// Peers sent DISCONNECT, with when, until their connection closes: the broker must send
    /// them nothing more while silenced.
    disconnected: HashMap<PeerId, Instant>,
    /// State messages the broker produced for its Binary Star peer, oldest first.
    pub(super) to_peer: Vec<crate::ha::StateMessage>,
    /// Whether to check the invariants after every input (off for big tests, where the
    /// O(state) check would dominate; they call `check_invariants` at the end).
    pub(super) checking: bool,
    /// The transport as the shell drives it: messages of paused peers wait here, in order,
    /// and are delivered when the core resumes the peer.
    pub(super) held: HashMap<PeerId, VecDeque<Vec<Bytes>>>,
    /// Peers the core paused.
    pub(super) paused: HashSet<PeerId>,
    /// Peers the core said are workers.
    pub(super) exempt: HashSet<PeerId>,
    /// Every flow action, in order, for tests that check them.
    pub(super) flows: Vec<Flow>,
    /// The address frame (token) of the latest REQUEST each worker got for each client, which
    /// [`Harness::reply`] echoes as an RFC 7 worker does.
    tokens: HashMap<(String, String), PeerId>,
    /// Clients that announced multiplexing in their handshake (`X-Domo-Mux: 1`): their
    /// messages are delivered as the shell does, with that fact.
    mux: HashSet<PeerId>,
}

impl Harness {
    pub(super) fn new() -> Self {
        Self::with_config(BrokerConfig::default())
    }

    pub(super) fn with_config(config: BrokerConfig) -> Self {
        let start = Instant::now();
        Self {
            broker: Broker::new(config, start).unwrap(),
            now: start,
            start,
            sent: VecDeque::new(),
            disconnected: HashMap::new(),
            to_peer: Vec::new(),
            checking: true,
            held: HashMap::new(),
            paused: HashSet::new(),
            exempt: HashSet::new(),
            flows: Vec::new(),
            tokens: HashMap::new(),
            mux: HashSet::new(),
        }
    }

    /// Time since the harness started.
    pub(super) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    // === inputs ===

    /// Delivers raw frames from `peer`, or keeps them in the transport while the core has
    /// `peer` paused.
    pub(super) fn send(&mut self, peer: &str, frames: Vec<Bytes>) {
        let peer = id(peer);
        if self.paused.contains(&peer) {
            self.held.entry(peer).or_default().push_back(frames);
            return;
        }
        self.deliver(peer, frames);
        self.collect();
    }

    /// Hands frames to the core with what `peer` announced.
    fn deliver(&mut self, peer: PeerId, frames: Vec<Bytes>) {
        let announced = Announced {
            mux: self.mux.contains(&peer),
            ..Announced::RFC7
        };
        self.broker
            .handle_message_from(self.now, peer, frames, announced);
    }

    /// Marks `client` as having announced multiplexing in its handshake.
    pub(super) fn mux_client(&mut self, client: &str) {
        self.mux.insert(id(client));
    }

    /// A multiplexed client's request: `tag`, then a body of one frame per `|`-separated
    /// part.
    pub(super) fn tagged_request(&mut self, client: &str, name: &str, tag: &str, body: &str) {
        let body = body
            .split('|')
            .map(|p| Bytes::copy_from_slice(p.as_bytes()));
        let tag = Bytes::copy_from_slice(tag.as_bytes());
        self.send(
            client,
            client::encode_tagged_request(&service(name), tag, body),
        );
    }

    /// Messages of `peer` the transport holds (deferred or not yet read).
    pub(super) fn held(&self, peer: &str) -> usize {
        self.held.get(&id(peer)).map_or(0, VecDeque::len)
    }

    /// Whether the core has `peer` paused.
    pub(super) fn is_paused(&self, peer: &str) -> bool {
        self.paused.contains(&id(peer))
    }

    /// The transport could not take this reply: it goes back to the core.
    pub(super) fn send_blocked(&mut self, client: &str, frames: Vec<Bytes>) {
        self.broker.handle_send_blocked(id(client), frames);
        self.collect();
    }

    /// The transport has room for `client` again.
    pub(super) fn writable(&mut self, client: &str) {
        self.broker.handle_writable(&id(client));
        self.collect();
    }

    /// The shell tells the core what `peer` may call and serve (pattern lists, as in a
    /// certificate's metadata).
    pub(super) fn set_rights(&mut self, peer: &str, call: &str, serve: &str) {
        let rights = Rights {
            call: Patterns::parse(call).unwrap(),
            serve: Patterns::parse(serve).unwrap(),
        };
        self.broker.set_rights(self.now, id(peer), rights);
        self.collect();
    }

    pub(super) fn ready(&mut self, worker: &str, name: &str) {
        self.send(worker, worker::encode_ready(&service(name)));
    }

    /// READY from a worker that announced `credit` in its handshake.
    pub(super) fn ready_with_credit(&mut self, worker: &str, name: &str, credit: u32) {
        let credit = Credit::new(credit).expect("credit in range");
        let frames = worker::encode_ready(&service(name));
        self.broker
            .handle_message_with_credit(self.now, id(worker), frames, credit);
        self.collect();
    }

    /// A client request with a body of one frame per `|`-separated part.
    pub(super) fn request(&mut self, client: &str, name: &str, body: &str) {
        let body = body
            .split('|')
            .map(|p| Bytes::copy_from_slice(p.as_bytes()));
        self.send(client, client::encode_request(&service(name), body));
    }

    /// The worker replies to the latest request it got from `client`, echoing its token; if
    /// it got none, it puts the client's id in the address frame instead (a forged token).
    pub(super) fn reply(&mut self, worker: &str, client: &str, body: &str) {
        let address = self.token(worker, client).unwrap_or_else(|| id(client));
        self.reply_with(worker, &address, body);
    }

    /// The worker replies with `address` in the client-address frame.
    pub(super) fn reply_with(&mut self, worker: &str, address: &PeerId, body: &str) {
        let body = [Bytes::copy_from_slice(body.as_bytes())];
        self.send(worker, worker::encode_reply(address, body));
    }

    /// The address frame of the latest REQUEST `worker` got for `client`.
    pub(super) fn token(&self, worker: &str, client: &str) -> Option<PeerId> {
        self.tokens.get(&(worker.into(), client.into())).cloned()
    }

    pub(super) fn heartbeat(&mut self, worker: &str) {
        self.send(worker, worker::encode_heartbeat());
    }

    /// The worker sends DISCONNECT.
    pub(super) fn disconnect(&mut self, worker: &str) {
        self.send(worker, worker::encode_disconnect());
    }

    /// The transport reports the peer's connection closed.
    pub(super) fn close(&mut self, peer: &str) {
        self.held.remove(&id(peer));
        self.paused.remove(&id(peer));
        self.exempt.remove(&id(peer));
        self.broker.handle_disconnect(self.now, &id(peer));
        self.disconnected.remove(&id(peer));
        self.collect();
    }

    /// Moves the clock forward by `by`, firing each timer at its exact deadline.
    pub(super) fn advance(&mut self, by: Duration) {
        let target = self.now + by;
        while let Some(deadline) = self.broker.poll_timeout() {
            if deadline > target {
                break;
            }
            self.now = self.now.max(deadline);
            self.broker.handle_timeout(self.now);
            self.collect();
            let next = self.broker.poll_timeout();
            assert!(
                next.is_none_or(|t| t > self.now),
                "timer still due after firing"
            );
        }
        self.now = target;
    }

    /// Moves the clock to `at` after the start.
    pub(super) fn advance_to(&mut self, at: Duration) {
        let target = self.start + at;
        assert!(target >= self.now, "the clock only moves forward");
        self.advance(target - self.now);
    }

    /// Collects what the broker produced after a call made directly on `broker`.
    pub(super) fn collect_now(&mut self) {
        self.collect();
    }

    // === outputs ===

    fn collect(&mut self) {
        // Like the shell: flow actions first, and a resumed peer's held messages delivered
        // in order until it is paused again.
        let mut resumed = VecDeque::new();
        loop {
            while let Some(flow) = self.broker.poll_flow() {
                match &flow {
                    Flow::Defer { client, frames } => {
                        self.paused.insert(client.clone());
                        let held = self.held.entry(client.clone()).or_default();
                        held.push_front(frames.clone());
                    }
                    Flow::Pause { client } => {
                        self.paused.insert(client.clone());
                    }
                    Flow::Resume { client } => {
                        self.paused.remove(client);
                        resumed.push_back(client.clone());
                    }
                    Flow::Worker { peer } => {
                        self.exempt.insert(peer.clone());
                    }
                }
                self.flows.push(flow);
            }
            let Some(client) = resumed.pop_front() else {
                break;
            };
            if self.paused.contains(&client) {
                continue;
            }
            if let Some(frames) = self.held.get_mut(&client).and_then(VecDeque::pop_front) {
                self.deliver(client.clone(), frames);
                // More of its messages after this one, unless it was paused again.
                resumed.push_front(client);
            }
        }
        while let Some(frames) = self.broker.poll_peer_transmit() {
            let msg = crate::ha::StateMessage::decode(&frames).expect("valid state");
            self.to_peer.push(msg);
        }
        let expiry = self.broker.config().heartbeat.expiry();
        while let Some(outbound) = self.broker.poll_outbound() {
            if let Some(&since) = self.disconnected.get(&outbound.peer) {
                let silent = self.now < since + expiry;
                assert!(!silent, "broker sent to {} after DISCONNECT", outbound.peer);
            }
            let peer = outbound.peer.clone();
            let in_flight = &self.broker.in_flight;
            let mut token = None;
            let sent = Sent::decode(outbound, |address| {
                token = Some(address.clone());
                let held = in_flight.get(&Token::parse(address.as_bytes())?)?;
                Some(text(held.request.client.as_bytes()))
            });
            if let (Sent::Request(worker, client, _), Some(token)) = (&sent, token) {
                self.tokens.insert((worker.clone(), client.clone()), token);
            }
            if matches!(sent, Sent::Disconnect(_)) {
                self.disconnected.insert(peer, self.now);
            }
            self.sent.push_back((self.elapsed(), sent));
        }
        if self.checking {
            self.broker.check_invariants(self.now);
        }
    }

    /// Everything sent since the last call.
    pub(super) fn take(&mut self) -> Vec<Sent> {
        self.sent.drain(..).map(|(_, sent)| sent).collect()
    }

    /// Everything sent since the last call, with the time it was produced.
    pub(super) fn take_timed(&mut self) -> Vec<(Duration, Sent)> {
        self.sent.drain(..).collect()
    }

    /// Everything sent since the last call except heartbeats.
    pub(super) fn take_traffic(&mut self) -> Vec<Sent> {
        let all = self.take();
        all.into_iter()
            .filter(|sent| !matches!(sent, Sent::Heartbeat(_)))
            .collect()
    }

    /// Asks `mmi.workers` how many workers `name` has (takes all pending output).
    pub(super) fn worker_count(&mut self, name: &str) -> usize {
        self.take();
        self.request("mmi-probe", "mmi.workers", name);
        match self.take().as_slice() {
            [Sent::Reply(_, _, count)] => count.parse().unwrap(),
            other => panic!("unexpected answer to mmi.workers: {other:?}"),
        }
    }

    /// A full request/reply round trip on fresh peers and a fresh service: the broker still
    /// serves.
    pub(super) fn assert_still_serves(&mut self) {
        self.take();
        self.ready("probe-worker", "probe");
        self.request("probe-client", "probe", "ping");
        assert_eq!(
            self.take(),
            [Sent::request("probe-worker", "probe-client", "ping")]
        );
        self.reply("probe-worker", "probe-client", "pong");
        assert_eq!(self.take(), [Sent::reply("probe-client", "probe", "pong")]);
        self.disconnect("probe-worker");
        self.close("probe-worker");
    }
}

impl Broker {
    /// Checks every invariant the core relies on; panics with the first one broken.
    pub(super) fn check_invariants(&self, now: Instant) {
        assert!(now <= self.now, "core clock behind the harness");
        let (mut idle, mut busy, mut held) = (0, 0, 0);
        let mut workers_of: HashMap<&ServiceName, usize> = HashMap::new();
        for (peer, worker) in &self.workers {
            *workers_of.entry(&worker.service).or_default() += 1;
            let service = &self.services[&worker.service];
            assert!(
                worker.held.len() <= worker.credit.get() as usize,
                "{peer} holds more than its credit"
            );
            if worker.held.is_empty() {
                idle += 1;
            } else {
                busy += 1;
            }
            held += worker.held.len();
            for token in &worker.held {
                let in_flight = self.in_flight.get(token).expect("held request");
                assert_eq!(&in_flight.worker, peer, "request held by another worker");
                assert!(
                    token.issued_before(self.next_token),
                    "token from the future"
                );
            }
            match worker.waiting {
                Some(key) => {
                    assert!(worker.free() > 0, "{peer} waits without credit");
                    assert_eq!(key, WaitKey::new(worker.free(), key.seq()), "stale key");
                    assert_eq!(
                        service.idle.get(&key),
                        Some(peer),
                        "waiting worker not listed"
                    );
                }
                None => assert_eq!(worker.free(), 0, "{peer} has credit but does not wait"),
            }
            assert!(self.timers.is_pending(worker.timer), "worker without timer");
            assert!(worker.timer.at() <= worker.next_wake());
            assert!(
                !self.silenced.contains_key(peer),
                "registered worker is silenced"
            );
        }
        let mut queued = (0, 0);
        let mut timed_services = 0;
        for (name, service) in &self.services {
            assert_eq!(&service.name, name);
            assert!(!service.is_unused(), "unused service {name} kept");
            assert!(
                service.idle.is_empty() || service.queue.is_empty(),
                "undispatched"
            );
            assert_eq!(service.workers, workers_of.get(name).copied().unwrap_or(0));
            for (key, peer) in &service.idle {
                assert_eq!(self.workers[peer].waiting, Some(*key));
            }
            if let Some(key) = service.timer {
                timed_services += 1;
                assert!(self.timers.is_pending(key));
                assert!(service.queue.next_deadline().is_none_or(|d| key.at() <= d));
            } else {
                assert!(service.queue.is_empty(), "queued requests without a timer");
            }
            queued.0 += service.queue.len();
            queued.1 += service.queue.bytes();
        }
        for key in self.silenced.values() {
            assert!(self.timers.is_pending(*key));
        }
        for (peer, rights) in &self.rights {
            assert!(!rights.is_all(), "{peer} kept with every right");
            if let Some(worker) = self.workers.get(peer) {
                assert!(
                    rights.serve.allows(&worker.service),
                    "{peer} serves unallowed"
                );
            }
        }
        assert_eq!(
            self.in_flight.len(),
            held,
            "requests at workers that do not hold them"
        );
        // Broadcasts: each has its timer, a pending part is at its worker or pinned there,
        // and a worker with pinned parts has no free credit.
        let broadcasts = self.broadcasts_for_tests();
        for (id, _, _, timer, pending) in &broadcasts {
            assert!(self.timers.is_pending(*timer), "broadcast without timer");
            for worker in pending {
                let Some(w) = self.workers.get(*worker) else {
                    panic!("broadcast {id} waits for a worker that left");
                };
                let pinned = w.pinned.iter().any(|p| p.broadcast == Some(*id));
                let held = w
                    .held
                    .iter()
                    .any(|t| self.in_flight[t].request.broadcast == Some(*id));
                assert!(
                    pinned != held,
                    "broadcast {id} part at {worker}: pinned {pinned}, held {held}"
                );
            }
        }
        for (peer, worker) in &self.workers {
            assert!(
                worker.pinned.is_empty() || worker.waiting.is_none(),
                "{peer} has pinned parts and free credit"
            );
        }
        let pinned: usize = self.workers.values().map(|w| w.pinned.len()).sum();
        let timers = self.workers.len() + timed_services + self.silenced.len() + broadcasts.len();
        assert_eq!(self.timers.len(), timers, "stale timers");
        self.check_admission(&queued);
        let stats = &self.stats;
        assert_eq!((stats.workers_idle, stats.workers_busy), (idle, busy));
        assert_eq!(stats.requests_at_workers, held);
        assert_eq!((stats.queued_requests, stats.queued_bytes), queued);
        assert_eq!(stats.services, self.services.len());
        let requests = &stats.requests;
        let pending = (stats.queued_requests + stats.requests_at_workers + pinned) as u64;
        assert_eq!(
            requests.received,
            requests.replied + requests.dropped.total() + pending,
            "requests not accounted for"
        );
    }

    /// Every client is charged exactly for its queued and held requests and its backlog;
    /// paused clients are counted; closed queues are at or above their low watermark.
    fn check_admission(&self, queued: &(usize, usize)) {
        use crate::admission::at_low;
        let mut charged: HashMap<&PeerId, (usize, usize)> = HashMap::new();
        for service in self.services.values() {
            for request in service.queue.iter() {
                let entry = charged.entry(&request.client).or_default();
                entry.0 += 1;
                entry.1 += charge(request.size);
            }
            if service.closed {
                assert!(
                    !at_low(
                        service.queue.len(),
                        service.queue.bytes(),
                        self.config.service_queue
                    ),
                    "service {} closed below its low watermark",
                    service.name
                );
            } else {
                assert!(service.waiting.is_empty(), "clients wait on an open queue");
            }
        }
        for (_, client, size, _, _) in self.broadcasts_for_tests() {
            let entry = charged.entry(client).or_default();
            entry.0 += 1;
            entry.1 += charge(size);
        }
        for held in self.in_flight.values() {
            if held.request.broadcast.is_some() {
                continue;
            }
            let entry = charged.entry(&held.request.client).or_default();
            entry.0 += 1;
            entry.1 += charge(held.request.size);
        }
        for (peer, client) in &self.clients {
            let mut expected = charged.remove(peer).unwrap_or_default();
            for reply in &client.backlog {
                expected.0 += 1;
                expected.1 += charge(reply.iter().map(Bytes::len).sum());
            }
            assert_eq!(
                (client.requests, client.bytes),
                expected,
                "charges of client {peer}"
            );
            assert!(
                !client.is_unused_for_tests(),
                "client {peer} kept with nothing"
            );
        }
        assert!(
            charged.is_empty(),
            "requests of unknown clients: {charged:?}"
        );
        let paused = self.clients.values().filter(|c| c.paused).count();
        assert_eq!(self.stats.clients_paused, paused);
        if self.total_closed {
            assert!(!at_low(queued.0, queued.1, self.config.total_queue));
        } else {
            assert!(self.total_waiting.is_empty());
        }
    }
}
