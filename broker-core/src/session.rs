//! Worker sessions: READY, REPLY, HEARTBEAT and DISCONNECT, invalid input, heartbeats and
//! expiry, and the RFC 7 rule that a DISCONNECT ends all talk with a peer.

use std::time::Instant;

use bytes::Bytes;
use domo_mdp::{worker, Credit, DecodeError, Liveness, PeerId, ServiceName, WorkerCommand};
use tracing::{debug, info};

use super::events::Event;
use super::stats::{Departure, DisconnectReason};
use super::timer::Timer;
use super::token::Token;
use super::worker::{WaitKey, Worker};
use super::{Broker, Flow, PeerKind, Service};

impl Broker {
    /// Handles a decoded command from a worker.
    /// `credit` is what the peer announced in its handshake; only READY uses it.
    pub(super) fn on_worker_command(
        &mut self,
        now: Instant,
        peer: PeerId,
        command: WorkerCommand,
        credit: Credit,
    ) {
        match command {
            WorkerCommand::Ready { service } => self.on_ready(now, peer, service, credit),
            WorkerCommand::Reply { client, body } => self.on_reply(now, peer, client, body),
            WorkerCommand::Heartbeat => self.on_heartbeat(now, peer),
            WorkerCommand::Disconnect => self.on_disconnect_command(now, peer),
            // `decode` never yields a REQUEST from a worker (it is `WrongDirection`); treated
            // as the invalid message it would be, to keep this match total without a panic.
            WorkerCommand::Request { .. } => {
                let error = DecodeError::WrongDirection(domo_mdp::consts::REQUEST);
                self.on_invalid(now, peer, true, &error);
            }
        }
    }

    /// [`Broker::register_in_process`] after `begin`.
    pub(super) fn on_ready_in_process(
        &mut self,
        now: Instant,
        peer: PeerId,
        service: ServiceName,
        credit: Credit,
    ) {
        self.on_ready(now, peer.clone(), service, credit);
        if let Some(worker) = self.workers.get_mut(&peer) {
            worker.in_process = true;
        }
    }

    fn on_ready(&mut self, now: Instant, peer: PeerId, service: ServiceName, credit: Credit) {
        if self.workers.contains_key(&peer) {
            self.reject_worker(now, &peer, DisconnectReason::SecondReady);
        } else if service.is_mmi() {
            self.send_disconnect(now, peer, DisconnectReason::MmiReady);
        } else if !self.may_serve(&peer, &service) {
            info!(worker = %peer, %service, "May not serve this service; sending DISCONNECT");
            self.stats.refusals.serve += 1;
            self.send_disconnect(now, peer, DisconnectReason::NotAuthorized);
        } else {
            self.register(now, peer, service, credit);
        }
    }

    /// Registers a new worker for `name` with `credit` in the service's waiting set (behind
    /// the workers with as much free credit), then dispatches (so it gets queued requests at
    /// once if there are any).
    fn register(&mut self, now: Instant, peer: PeerId, name: ServiceName, credit: Credit) {
        info!(worker = %peer, service = %name, %credit, "Worker registered");
        let seq = self.new_idle_seq();
        let service = self.services.entry(name.clone()).or_insert_with(|| {
            self.stats.services += 1;
            Service::new(name.clone())
        });
        service.workers += 1;
        let key = WaitKey::new(credit.get(), seq);
        service.idle.insert(key, peer.clone());
        self.stats.workers_idle += 1;
        let liveness = Liveness::new(now, self.config.heartbeat);
        let wake = liveness.next_heartbeat_due().min(liveness.deadline());
        let timer = self.timers.schedule(wake, Timer::Worker(peer.clone()));
        let worker = Worker {
            service: name.clone(),
            liveness,
            credit,
            held: Vec::new(),
            pinned: std::collections::VecDeque::new(),
            waiting: Some(key),
            timer,
            in_process: false,
        };
        self.workers.insert(peer.clone(), worker);
        self.flow.push_back(Flow::Worker { peer });
        self.event(|| Event::WorkerRegistered {
            service: name.clone(),
        });
        self.dispatch(now, &name);
    }

    /// A worker's REPLY: `address` is the frame it echoed from the REQUEST, a token naming
    /// the request it answers. Forwarded only if this worker holds that request.
    fn on_reply(&mut self, now: Instant, peer: PeerId, address: PeerId, body: Vec<Bytes>) {
        let token = Token::parse(address.as_bytes());
        let Some(worker) = self.workers.get_mut(&peer) else {
            self.reply_dropped(token);
            self.send_disconnect(now, peer, DisconnectReason::UnknownWorker);
            return;
        };
        worker.liveness.on_traffic(now);
        // The worker's state and the map agree (the tests check it after every input); both
        // are asked so that a reply is never forwarded on the word of one of them alone.
        let held = token
            .filter(|token| worker.holds(*token))
            .and_then(|token| Some((token, self.in_flight.get(&token)?)))
            .filter(|(_, held)| held.worker == peer);
        let Some((token, held)) = held else {
            debug!(worker = %peer, %address, busy = worker.is_busy(), "Unexpected REPLY");
            self.reply_dropped(token);
            self.reject_worker(now, &peer, DisconnectReason::UnexpectedReply);
            return;
        };
        if let Some(id) = held.request.broadcast {
            let service = worker.service.clone();
            self.broadcast_answered(id, &peer, &service, body);
            self.finish_request(now, &peer, token);
            return;
        }
        let client = held.request.client.clone();
        let tag = held.request.tag.clone();
        let received_at = held.request.received_at;
        let service = worker.service.clone();
        self.send_reply(now, client, tag, received_at, &service, body);
        self.finish_request(now, &peer, token);
    }

    /// Counts a worker reply dropped because its token names no request the worker holds.
    fn reply_dropped(&mut self, token: Option<Token>) {
        let drops = &mut self.stats.dropped_replies;
        match token {
            Some(token) if token.issued_before(self.next_token) => drops.stale_token += 1,
            _ => drops.unknown_token += 1,
        }
    }

    fn on_heartbeat(&mut self, now: Instant, peer: PeerId) {
        match self.workers.get_mut(&peer) {
            Some(worker) => worker.liveness.on_traffic(now),
            None => self.send_disconnect(now, peer, DisconnectReason::UnknownWorker),
        }
    }

    /// A peer sent DISCONNECT: a worker is removed, and the broker falls silent towards the
    /// peer whether or not it was one (RFC 7: "the broker then sends nothing more").
    fn on_disconnect_command(&mut self, now: Instant, peer: PeerId) {
        self.remove_worker(now, &peer, Departure::Disconnect);
        self.silence(now, peer);
    }

    /// Handles a message that did not decode: dropped and counted; a registered worker that
    /// sent it loses its session.
    pub(super) fn on_invalid(
        &mut self,
        now: Instant,
        peer: PeerId,
        worker_header: bool,
        error: &DecodeError,
    ) {
        let registered = self.workers.contains_key(&peer);
        if registered || worker_header {
            self.stats.protocol_errors.worker += 1;
        } else {
            self.stats.protocol_errors.client += 1;
        }
        debug!(%peer, registered, %error, "Invalid message dropped");
        if registered {
            self.reject_worker(now, &peer, DisconnectReason::InvalidMessage);
        }
    }

    /// Removes a registered worker for a protocol violation and sends it DISCONNECT.
    pub(super) fn reject_worker(&mut self, now: Instant, peer: &PeerId, reason: DisconnectReason) {
        self.remove_worker(now, peer, Departure::ProtocolError);
        self.send_disconnect(now, peer.clone(), reason);
    }

    /// Sends DISCONNECT, then nothing more: the peer is silenced.
    pub(super) fn send_disconnect(&mut self, now: Instant, peer: PeerId, reason: DisconnectReason) {
        debug!(%peer, ?reason, "Sending DISCONNECT");
        self.stats.disconnects_sent.count(reason);
        self.emit(peer.clone(), PeerKind::Worker, worker::encode_disconnect());
        self.silence(now, peer);
    }

    /// Ignores the peer and sends it nothing until its connection closes or a worker's
    /// expiry time passes, whichever comes first.
    fn silence(&mut self, now: Instant, peer: PeerId) {
        if self.silenced.contains_key(&peer) {
            return;
        }
        let until = now + self.config.heartbeat.expiry();
        let key = self.timers.schedule(until, Timer::Silence(peer.clone()));
        self.silenced.insert(peer, key);
    }

    /// A worker's timer fired: it expires, or gets a HEARTBEAT if one is due; then the timer
    /// is set for the next of the two.
    pub(super) fn on_worker_timer(&mut self, now: Instant, peer: PeerId) {
        let Some(worker) = self.workers.get_mut(&peer) else {
            return;
        };
        if worker.in_process {
            // Alive as long as the shell runs it, however late this timer fires (a loop
            // starved of CPU on a loaded machine must not expire the embedded Titanic).
            worker.liveness.on_traffic(now);
        }
        if worker.liveness.is_expired(now) {
            self.remove_worker(now, &peer, Departure::Expired);
            return;
        }
        let heartbeat_due = now >= worker.liveness.next_heartbeat_due();
        if heartbeat_due {
            worker.liveness.on_heartbeat_sent(now);
        }
        // Not expired and no heartbeat due: both instants are after `now`, so `begin` cannot
        // spin on this timer.
        let wake = worker.next_wake();
        debug_assert!(wake > now, "worker timer rescheduled in the past");
        worker.timer = self.timers.schedule(wake, Timer::Worker(peer.clone()));
        if heartbeat_due {
            self.emit(peer, PeerKind::Worker, worker::encode_heartbeat());
        }
    }
}
