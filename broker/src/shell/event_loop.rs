//! The shell's loop: one task takes a batch of socket events, feeds them to the core with
//! the current time, sends what the core produced, and wakes for the core's next deadline, a
//! control message or the state link of a pair.

use foldhash::HashMap;
use std::future::Future;
use std::sync::Arc;

use domo_mdp::extensions::{mux_requested, Announced, CREDIT_PROPERTY, MUX_PROPERTY};
use domo_mdp::{Credit, LockExt};
use domo_zmtp::proto::Metadata;
use domo_zmtp::{PublicKey, Router, RouterEvent};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::clock::now;
use super::control::{Control, ShellError, TICK};
use super::flow::{self, to_mdp};
use super::local::Local;
use super::pair::{ha_dealer_connected, ha_dealer_msg, ha_router_event, HaLink};
use crate::core::Broker;
use crate::health::Health;
use crate::metrics::{Metrics, ShellStats, Snapshot};
use crate::security::AuthorizedKeys;

/// Most socket events handled per wake-up before outbound messages are flushed.
const BATCH: usize = 256;

/// The running loop's state: the socket, the core, and what drives them.
pub(super) struct Shell {
    pub(super) router: Router,
    pub(super) core: Broker,
    pub(super) stats: ShellStats,
    pub(super) health: Arc<Health>,
    pub(super) metrics: Option<Arc<std::sync::Mutex<Metrics>>>,
    /// While draining: when to stop waiting for in-flight requests.
    pub(super) drain_until: Option<tokio::time::Instant>,
    /// The state link, when this broker is one of a pair.
    pub(super) ha: Option<HaLink>,
    /// Published whenever [`Broker::ha_status`] says serving changed.
    pub(super) serving: watch::Sender<bool>,
    /// With CURVE: the authorized keys and their rights.
    pub(super) keys: Option<Arc<AuthorizedKeys>>,
    /// The proved key of each connected CURVE peer, to apply a reload of the keys.
    pub(super) peer_keys: HashMap<domo_mdp::PeerId, PublicKey>,
    /// What each connected peer that announced an extension in its handshake asked for
    /// (worker credit other than 1, `X-Domo-Credit`; multiplexing, `X-Domo-Mux`), kept until
    /// its connection closes and handed to the core with each of its messages. Empty with
    /// RFC 7 peers only, so they cost one check.
    pub(super) announced: HashMap<domo_mdp::PeerId, Announced>,
    /// The services served in process (the embedded Titanic's).
    pub(super) local: Local,
}

impl Shell {
    pub(super) async fn serve(
        &mut self,
        mut control: mpsc::Receiver<Control>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ShellError> {
        tokio::pin!(shutdown);
        let mut control_open = true;
        loop {
            self.local.keep_registered(&mut self.core, now());
            self.flush_core();
            self.health.tick(&self.core);
            if self.drain_until.is_some() && self.core.is_drained() {
                info!("Drain complete: no request in flight");
                self.finish_drain();
                return Ok(());
            }
            let deadline = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            let tick = tokio::time::Instant::now() + TICK;
            let wake = match (deadline, self.drain_until) {
                (Some(d), Some(u)) => d.min(u).min(tick),
                (Some(d), None) => d.min(tick),
                (None, Some(u)) => u.min(tick),
                (None, None) => tick,
            };
            let ha_connected = self.ha.as_ref().is_none_or(|link| link.connected);
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                message = control.recv(), if control_open => match message {
                    Some(Control::Stop) => {
                        info!("Stopping without waiting");
                        self.finish_drain();
                        return Ok(());
                    }
                    Some(message) => self.on_control(message),
                    None => control_open = false,
                },
                event = self.router.recv_event() => {
                    // The peer's state that is already in first, so a client request is
                    // never judged on an older view of the pair than has arrived. Bounded,
                    // and the state link has its own branches below, so neither side can
                    // starve the other.
                    if let Some(link) = &self.ha {
                        link.drain(&mut self.core);
                    }
                    self.on_event(event?);
                    for _ in 1..BATCH {
                        match self.router.try_recv_event()? {
                            Some(event) => self.on_event(event),
                            None => break,
                        }
                    }
                }
                // Every answer ready now goes to the core before the next flush, so the
                // replies of one group commit leave together.
                done = self.local.finished(BATCH), if self.local.busy() => {
                    let now = now();
                    for done in done {
                        self.local.finish(&mut self.core, now, done);
                    }
                    flow::apply(&self.router, &mut self.core, &mut self.stats);
                }
                event = ha_router_event(self.ha.as_ref()) => {
                    if let Some(link) = &self.ha {
                        link.on_router_event(&mut self.core, event);
                    }
                }
                msg = ha_dealer_msg(self.ha.as_ref()) => HaLink::on_dealer_message(&mut self.core, msg),
                () = ha_dealer_connected(self.ha.as_ref()), if !ha_connected => {
                    if let Some(link) = &mut self.ha {
                        link.on_connected(&mut self.core);
                    }
                }
                () = tokio::time::sleep_until(wake) => {
                    self.core.handle_timeout(now());
                    if self.drain_until.is_some_and(|u| tokio::time::Instant::now() >= u) {
                        warn!(
                            busy = self.core.stats().workers_busy,
                            "Drain timeout: disconnecting workers with requests still held"
                        );
                        self.finish_drain();
                        return Ok(());
                    }
                }
            }
        }
    }

    fn on_control(&mut self, message: Control) {
        match message {
            Control::Drain { timeout } => {
                if self.drain_until.is_none() {
                    self.drain_until = Some(tokio::time::Instant::now() + timeout);
                    self.health.set_draining();
                    self.core.begin_drain(now());
                }
            }
            Control::LeavePair => self.core.leave_pair(now()),
            Control::KeysReloaded => self.apply_keys(),
            Control::Reconfigure(config) => match self.core.reconfigure(config) {
                Ok(()) => info!("Broker settings reloaded"),
                Err(error) => warn!(%error, "Reloaded settings refused; keeping the old ones"),
            },
            Control::Scrape(done) => {
                // Fire overdue timers first, so the figures are as of now.
                self.core.handle_timeout(now());
                self.flush_core();
                self.refresh_metrics();
                let _ = done.send(());
            }
            // Handled by the loop.
            Control::Stop => {}
        }
    }

    /// DISCONNECTs every worker and sends what is queued.
    fn finish_drain(&mut self) {
        self.health.set_draining();
        self.core.disconnect_workers(now());
        self.flush_core();
    }

    fn refresh_metrics(&mut self) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let snapshot = Snapshot {
            core: self.core.stats().clone(),
            shell: self.stats,
            router: self.router.stats(),
            services: self.core.service_gauges(),
            draining: self.core.is_draining(),
            ha: self.core.ha_status().zip(self.core.ha_stats().cloned()),
        };
        metrics.lock_unpoisoned().refresh(&snapshot);
    }

    /// Sends everything the core has produced: the pair's state, metrics events, messages,
    /// and the flow control they lead to.
    fn flush_core(&mut self) {
        if let Some(link) = &mut self.ha {
            link.flush(&mut self.core);
        }
        let serving = self.core.ha_status().is_none_or(|s| s.serving);
        self.serving.send_if_modified(|was| {
            let changed = *was != serving;
            *was = serving;
            changed
        });
        self.drain_events();
        flow::send_outbound(
            &self.router,
            &mut self.core,
            &mut self.stats,
            &mut self.local,
        );
    }

    fn drain_events(&mut self) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let mut metrics = metrics.lock_unpoisoned();
        while let Some(event) = self.core.poll_event() {
            metrics.on_event(event);
        }
    }

    fn on_event(&mut self, event: RouterEvent) {
        match event {
            RouterEvent::Message { peer, msg } => match to_mdp(&peer) {
                Some(id) => {
                    let announced = self.announced_by(&id);
                    self.core.handle_message_from(now(), id, msg, announced);
                    // Before the next message: a deferred request must be back in the router
                    // ahead of anything else its client sent.
                    flow::apply(&self.router, &mut self.core, &mut self.stats);
                }
                None => warn!(peer = %peer, "Routing id unusable for MDP; message dropped"),
            },
            RouterEvent::Connected {
                peer,
                addr,
                socket_type,
                key,
                metadata,
            } => {
                debug!(peer = %peer, peer.addr = %addr, socket_type = %socket_type, "Peer connected");
                if let Some(key) = key {
                    self.on_key(&peer, key);
                }
                self.on_metadata(&peer, &metadata);
            }
            RouterEvent::Disconnected { peer } => {
                debug!(peer = %peer, "Peer disconnected");
                if let Some(id) = to_mdp(&peer) {
                    self.peer_keys.remove(&id);
                    self.announced.remove(&id);
                    self.core.handle_disconnect(now(), &id);
                    flow::apply(&self.router, &mut self.core, &mut self.stats);
                }
            }
            RouterEvent::Writable { peer } => {
                if let Some(id) = to_mdp(&peer) {
                    self.core.handle_writable(&id);
                    flow::apply(&self.router, &mut self.core, &mut self.stats);
                }
            }
        }
    }
}

// === Extensions announced in the handshake ===

impl Shell {
    /// Keeps what a peer announced in its handshake: its worker credit (a value that is not
    /// a decimal number in `1..=1024` counts as 1, RFC 7's, and is counted as malformed) and
    /// whether it asked for multiplexing (only `1` asks; anything else is RFC 7).
    fn on_metadata(&mut self, peer: &domo_zmtp::PeerId, metadata: &Metadata) {
        let credit = metadata.get(CREDIT_PROPERTY);
        let mux = metadata.get(MUX_PROPERTY);
        if credit.is_none() && mux.is_none() {
            return;
        }
        let Some(id) = to_mdp(peer) else {
            return;
        };
        let mut announced = Announced::RFC7;
        if let Some(value) = credit {
            match Credit::parse(value) {
                Some(credit) => announced.credit = credit,
                None => {
                    debug!(peer = %peer, value = ?value, "Malformed worker credit; taken as 1");
                    self.stats.malformed_credit += 1;
                }
            }
        }
        if let Some(value) = mux {
            announced.mux = mux_requested(value);
            if !announced.mux {
                debug!(peer = %peer, value = ?value, "X-Domo-Mux other than 1; plain RFC 7 client");
            }
        }
        if announced != Announced::RFC7 {
            debug!(peer = %peer, credit = %announced.credit, mux = announced.mux, "Peer announced extensions");
            self.announced.insert(id, announced);
        }
    }

    /// What `peer` announced; RFC 7's if nothing.
    fn announced_by(&self, peer: &domo_mdp::PeerId) -> Announced {
        if self.announced.is_empty() {
            return Announced::RFC7;
        }
        self.announced.get(peer).copied().unwrap_or(Announced::RFC7)
    }
}

// === CURVE keys and rights ===

impl Shell {
    /// A peer connected with a proved CURVE key: the core learns its rights before its first
    /// message. A key no longer authorized (removed by a reload after its handshake) has its
    /// connection closed.
    fn on_key(&mut self, peer: &domo_zmtp::PeerId, key: PublicKey) {
        let Some(id) = to_mdp(peer) else {
            return;
        };
        let Some(keys) = &self.keys else {
            return; // not our allow-list (cannot happen: CURVE is set with the keys)
        };
        match keys.rights(&key) {
            Some(rights) => {
                debug!(peer = %peer, %key, "Peer authenticated");
                self.core.set_rights(now(), id.clone(), rights);
                self.peer_keys.insert(id, key);
            }
            None => {
                info!(peer = %peer, %key, "Key no longer authorized; connection closed");
                self.router.disconnect(peer);
            }
        }
    }

    /// The authorized keys were reloaded: closes the connections whose key is gone (a worker
    /// among them is removed at once) and gives the other peers their (maybe new) rights,
    /// which disconnects a worker that may no longer serve its service.
    fn apply_keys(&mut self) {
        let Some(keys) = self.keys.clone() else {
            return;
        };
        let now = now();
        let mut closed = 0;
        let peers: Vec<_> = self
            .peer_keys
            .iter()
            .map(|(i, k)| (i.clone(), *k))
            .collect();
        for (id, key) in peers {
            match keys.rights(&key) {
                Some(rights) => self.core.set_rights(now, id, rights),
                None => {
                    info!(peer = %id, %key, "Key no longer authorized; connection closed");
                    self.peer_keys.remove(&id);
                    // The core lets go of it now, not when the connection has finished
                    // closing, so no request is dispatched to a worker being closed (its
                    // own request goes back to the queue). The later Disconnected finds
                    // nothing left to do.
                    self.core.handle_disconnect(now, &id);
                    self.router
                        .disconnect(&domo_zmtp::PeerId::from(id.into_bytes()));
                    closed += 1;
                }
            }
        }
        flow::apply(&self.router, &mut self.core, &mut self.stats);
        info!(
            peers = self.peer_keys.len(),
            closed, "Authorized keys applied to the connected peers"
        );
    }
}
