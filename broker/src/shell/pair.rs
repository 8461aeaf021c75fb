//! The state link of a Binary Star pair: its sockets, its transport options, and the loop's
//! handling of the peer's state messages.

use bytes::Bytes;
use std::sync::Arc;

use domo_zmtp::curve::Authorizer;
use domo_zmtp::{Dealer, Endpoint, KeyPair, Options, PublicKey, Router, RouterEvent, Security};
use tracing::{debug, warn};

use super::clock::now;
use crate::core::ha::HaConfig;
use crate::core::Broker;

/// What the shell needs to run a broker as one of a pair, in the core's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairLink {
    /// The state machine's settings: this broker's role and the heartbeat.
    pub machine: HaConfig,
    /// This broker's state endpoint, where the peer connects.
    pub bind: String,
    /// The peer's state endpoint.
    pub peer: String,
    /// With CURVE: the state link is encrypted and only the pinned peer key may speak on it.
    pub security: Option<PairKeys>,
}

/// The keys of a pair's state link: this broker's keypair and the peer's public key, pinned.
#[derive(Debug, Clone)]
pub struct PairKeys {
    /// This broker's keypair (its `[security] secret_key_file`).
    pub own: KeyPair,
    /// The peer's public key (`[ha] peer_key_file`): the only client the state endpoint
    /// accepts, and the only server the DEALER to the peer accepts.
    pub peer: PublicKey,
}

impl PartialEq for PairKeys {
    fn eq(&self, other: &Self) -> bool {
        self.own.public == other.own.public && self.peer == other.peer
    }
}

impl Eq for PairKeys {}

/// The state endpoint's authorizer: the pinned peer key and nothing else.
#[derive(Debug)]
struct Pinned(PublicKey);

impl Authorizer for Pinned {
    fn authorize(&self, client: &PublicKey) -> bool {
        *client == self.0
    }
}

impl PairLink {
    /// Options of the state endpoint's ROUTER: CURVE server pinned to the peer's key when
    /// the pair has keys.
    pub(super) fn router_options(&self) -> Options {
        let mut options = ha_transport_options(self);
        if let Some(keys) = &self.security {
            options.security =
                Security::curve_server_with(keys.own.secret.clone(), Arc::new(Pinned(keys.peer)));
        }
        options
    }

    /// Options of the DEALER to the peer: CURVE client of the peer's key.
    pub(super) fn dealer_options(&self) -> Options {
        let mut options = ha_transport_options(self);
        if let Some(keys) = &self.security {
            options.security = Security::curve_client(keys.peer, keys.own.clone());
        }
        options
    }
}

/// Most state-endpoint events handled ahead of a batch of client events (two brokers send
/// about two a heartbeat; more means a flood, which must not starve the clients).
const HA_BATCH: usize = 16;

/// The state link of a pair: a ROUTER on this broker's state endpoint (the peer's messages
/// come in there and are answered at once) and a DEALER to the peer's (this broker's
/// periodic messages go out there, and the peer's answers come back).
///
/// Design: both sockets carry the same small message both ways, so each broker hears the
/// other twice per heartbeat and a broker that starts hears its peer within a round trip,
/// whatever the other side's reconnect backoff. Periodic messages are only sent while the
/// DEALER is connected: a queue of old states delivered after a reconnect would tell the
/// peer about the past.
#[derive(Debug)]
pub(super) struct HaLink {
    pub(super) settings: PairLink,
    pub(super) router: Router,
    pub(super) dealer: Dealer,
    pub(super) endpoint: Endpoint,
    /// Whether the DEALER to the peer was connected at the last look.
    pub(super) connected: bool,
}

/// Transport options for the state link: tiny messages, tiny queues, and a reconnect that
/// retries at least every heartbeat, so a restarted peer is found at once.
pub(super) fn ha_transport_options(settings: &PairLink) -> Options {
    Options {
        max_message_size: 4096,
        max_frames: 16,
        send_hwm: 8,
        send_hwm_bytes: 64 * 1024,
        recv_hwm: 64,
        recv_hwm_bytes: 256 * 1024,
        handshake_timeout: settings
            .machine
            .heartbeat
            .max(std::time::Duration::from_millis(500))
            * 2,
        reconnect_interval: (settings.machine.heartbeat / 10)
            .max(std::time::Duration::from_millis(10)),
        reconnect_interval_max: settings.machine.heartbeat,
        connect_timeout: settings
            .machine
            .heartbeat
            .max(std::time::Duration::from_millis(100)),
        linger: std::time::Duration::ZERO,
        ..Options::default()
    }
}

/// A random, non-zero id for this process's incarnation in a pair (std's hasher keys are
/// random per process; the time and pid make two starts differ even without them).
pub(super) fn node_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish().max(1)
}

impl HaLink {
    /// A message on this broker's state endpoint: the peer's periodic state, answered with
    /// ours at once.
    pub(super) fn on_router_event(
        &self,
        core: &mut Broker,
        event: Result<RouterEvent, domo_zmtp::Error>,
    ) {
        match event {
            Ok(RouterEvent::Message { peer, msg }) => {
                if let Some(answer) = core.handle_peer_state(now(), &msg, true) {
                    let _ = self.router.try_send(&peer, answer);
                }
            }
            Ok(RouterEvent::Connected { peer, addr, .. }) => {
                debug!(peer = %peer, peer.addr = %addr, "Binary Star: peer connected to the state endpoint");
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "Binary Star: state endpoint failed"),
        }
    }

    /// A message on the DEALER to the peer: the peer's answer to our state.
    pub(super) fn on_dealer_message(core: &mut Broker, msg: Result<Vec<Bytes>, domo_zmtp::Error>) {
        if let Ok(frames) = msg {
            let _ = core.handle_peer_state(now(), &frames, false);
        }
    }

    /// Handles the state messages already waiting on both sockets of the state link (at most
    /// [`HA_BATCH`] on each).
    pub(super) fn drain(&self, core: &mut Broker) {
        for _ in 0..HA_BATCH {
            match self.router.try_recv_event() {
                Ok(Some(event)) => self.on_router_event(core, Ok(event)),
                Ok(None) => break,
                Err(error) => return self.on_router_event(core, Err(error)),
            }
        }
        for _ in 0..HA_BATCH {
            let Ok(Some(frames)) = self.dealer.try_recv() else {
                return;
            };
            let _ = core.handle_peer_state(now(), &frames, false);
        }
    }

    /// Sends the due state message to the peer, while the link is up.
    pub(super) fn flush(&mut self, core: &mut Broker) {
        let connected = self.dealer.is_connected();
        if self.connected && !connected {
            debug!("Binary Star: lost the connection to the peer's state endpoint");
        }
        self.connected = connected;
        while let Some(frames) = core.poll_peer_transmit() {
            if connected {
                let _ = self.dealer.try_send(frames);
            }
        }
    }

    /// The DEALER to the peer connected.
    pub(super) fn on_connected(&mut self, core: &mut Broker) {
        self.connected = true;
        debug!("Binary Star: connected to the peer's state endpoint");
        core.peer_link_up();
    }
}

pub(super) async fn ha_router_event(
    link: Option<&HaLink>,
) -> Result<RouterEvent, domo_zmtp::Error> {
    match link {
        Some(link) => link.router.recv_event().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn ha_dealer_msg(link: Option<&HaLink>) -> Result<Vec<Bytes>, domo_zmtp::Error> {
    match link {
        Some(link) => link.dealer.recv().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn ha_dealer_connected(link: Option<&HaLink>) {
    match link {
        Some(link) => {
            if link.dealer.connected().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}
