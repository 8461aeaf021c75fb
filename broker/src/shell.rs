//! The tokio shell: one ZMTP ROUTER socket, the clock and the [`Broker`] core.
//!
//! Design: a single task owns the socket's receive side, the core and a timer. Each wake-up
//! takes a batch of socket events (one await, then whatever else is already waiting), feeds
//! them to the core with the current time, and sends what the core produced. The core never
//! waits on the socket and the socket never waits on the core.
//!
//! Flow control towards clients lives here, because it is about sockets: a reply that does not
//! fit in a client's send queue is kept in a per-client overflow and the client is paused (the
//! router stops reading its requests) until its queue drains; then the overflow is flushed and
//! the client resumed. So no reply to a connected client is dropped for lack of room, a client
//! that does not read slows only itself, and the overflow is bounded by the requests the client
//! already had accepted. A reply to a client that has gone is dropped and counted.

use std::collections::{HashMap, VecDeque};
use std::future::Future;

use bytes::Bytes;
use domo_zmtp::{Endpoint, Options, PeerId, Router, RouterEvent, TrySendError};
use tracing::{debug, info, warn};

use crate::core::{Broker, BrokerConfig, ConfigError, Outbound, PeerKind};

/// Most socket events handled per wake-up before outbound messages are flushed.
const BATCH: usize = 256;

/// What the shell needs to run a broker.
#[derive(Debug, Clone)]
pub struct ShellConfig {
    /// Endpoints to bind (`tcp://host:port`, `tcp://*:port`, `ipc://path`).
    pub binds: Vec<String>,
    /// Settings of the broker core.
    pub core: BrokerConfig,
    /// Settings of the ZMTP transport.
    pub transport: Options,
}

impl Default for ShellConfig {
    fn default() -> Self {
        Self {
            binds: vec!["tcp://127.0.0.1:5555".to_string()],
            core: BrokerConfig::default(),
            transport: broker_transport_options(),
        }
    }
}

/// Transport options suited to a broker: per-peer send queues of 200,000 messages and 64 MiB,
/// since one client may have many requests answered before it reads (the zguide's
/// asynchronous client has 100,000 in flight); past them the flow control above pauses the
/// client, so a client that never reads costs at most 64 MiB of queued replies.
pub fn broker_transport_options() -> Options {
    Options {
        send_hwm: 200_000,
        send_hwm_bytes: 64 * 1024 * 1024,
        ..Options::default()
    }
}

/// Why the broker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// The core configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No endpoint to bind.
    #[error("no endpoint to bind")]
    NoEndpoint,
    /// Binding an endpoint failed.
    #[error(transparent)]
    Transport(#[from] domo_zmtp::Error),
}

/// Counters kept by the shell (the core keeps its own, see [`Broker::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShellStats {
    /// Replies dropped because their client had disconnected.
    pub replies_to_gone_clients: u64,
    /// Worker commands dropped because the worker had disconnected or its queue was full.
    pub worker_commands_dropped: u64,
    /// Times a client was paused because its replies backed up.
    pub clients_paused: u64,
}

/// A bound broker, ready to run.
#[derive(Debug)]
pub struct BoundBroker {
    router: Router,
    core: Broker,
    endpoints: Vec<Endpoint>,
}

/// Binds every endpoint and builds the core. Nothing is served until [`BoundBroker::run`].
///
/// # Errors
/// [`ShellError`] for an invalid configuration or an endpoint that cannot be bound.
pub async fn bind(config: ShellConfig) -> Result<BoundBroker, ShellError> {
    if config.binds.is_empty() {
        return Err(ShellError::NoEndpoint);
    }
    let core = Broker::new(config.core, now())?;
    let router = Router::new(config.transport);
    let mut endpoints = Vec::new();
    for ep in &config.binds {
        endpoints.push(router.bind(ep).await?);
    }
    Ok(BoundBroker {
        router,
        core,
        endpoints,
    })
}

impl BoundBroker {
    /// The endpoints as bound (port 0 resolved).
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Serves until `shutdown` completes, then closes the socket.
    ///
    /// # Errors
    /// Only if the socket fails underneath; a clean shutdown is `Ok`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<ShellStats, ShellError> {
        let Self {
            router,
            core,
            endpoints,
        } = self;
        for ep in &endpoints {
            info!(endpoint = %ep, "Broker listening");
        }
        let mut shell = Shell {
            router,
            core,
            overflow: HashMap::new(),
            stats: ShellStats::default(),
        };
        let result = shell.serve(shutdown).await;
        shell.router.shutdown().await;
        info!("Broker stopped");
        result.map(|()| shell.stats)
    }
}

/// The core's clock, from tokio so paused-time tests control it.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

struct Shell {
    router: Router,
    core: Broker,
    /// Replies that did not fit in a paused client's send queue, oldest first.
    overflow: HashMap<PeerId, VecDeque<Vec<Bytes>>>,
    stats: ShellStats,
}

impl Shell {
    async fn serve(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), ShellError> {
        tokio::pin!(shutdown);
        loop {
            self.flush_core();
            let deadline = self.core.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                event = self.router.recv_event() => {
                    self.on_event(event?);
                    for _ in 1..BATCH {
                        match self.router.try_recv_event()? {
                            Some(event) => self.on_event(event),
                            None => break,
                        }
                    }
                }
                () = sleep_until(deadline) => self.core.handle_timeout(now()),
            }
        }
    }

    fn on_event(&mut self, event: RouterEvent) {
        match event {
            RouterEvent::Message { peer, msg } => match to_mdp(&peer) {
                Some(id) => self.core.handle_message(now(), id, msg),
                None => warn!(peer = %peer, "Routing id unusable for MDP; message dropped"),
            },
            RouterEvent::Connected {
                peer,
                addr,
                socket_type,
            } => {
                debug!(peer = %peer, peer.addr = %addr, socket_type = %socket_type, "Peer connected");
            }
            RouterEvent::Disconnected { peer } => {
                debug!(peer = %peer, "Peer disconnected");
                if let Some(lost) = self.overflow.remove(&peer) {
                    self.stats.replies_to_gone_clients += lost.len() as u64;
                }
                if let Some(id) = to_mdp(&peer) {
                    self.core.handle_disconnect(now(), &id);
                }
            }
            RouterEvent::Writable { peer } => self.flush_overflow(&peer),
        }
    }

    /// Sends everything the core has produced.
    fn flush_core(&mut self) {
        while let Some(Outbound { peer, kind, frames }) = self.core.poll_outbound() {
            let peer = PeerId::from(peer.into_bytes());
            if let Some(queue) = self.overflow.get_mut(&peer) {
                queue.push_back(frames);
                continue;
            }
            match (self.router.try_send(&peer, frames), kind) {
                (Ok(()), _) => {}
                (Err(TrySendError::Full(frames)), PeerKind::Client) => {
                    self.overflow
                        .entry(peer.clone())
                        .or_default()
                        .push_back(frames);
                    self.router.pause(&peer);
                    self.stats.clients_paused += 1;
                    debug!(client = %peer, "Client not reading its replies; paused");
                }
                (Err(TrySendError::Unroutable(_)), PeerKind::Client) => {
                    self.stats.replies_to_gone_clients += 1;
                }
                (Err(_), PeerKind::Worker) => self.stats.worker_commands_dropped += 1,
                (Err(TrySendError::Closed(_)), PeerKind::Client) => {}
            }
        }
    }

    /// A paused client's queue drained: send what waited, resume it once all has gone.
    fn flush_overflow(&mut self, peer: &PeerId) {
        let Some(queue) = self.overflow.get_mut(peer) else {
            return;
        };
        while let Some(frames) = queue.pop_front() {
            match self.router.try_send(peer, frames) {
                Ok(()) => {}
                Err(TrySendError::Full(frames)) => {
                    queue.push_front(frames);
                    return;
                }
                Err(_) => {
                    self.stats.replies_to_gone_clients += 1 + queue.len() as u64;
                    self.overflow.remove(peer);
                    return;
                }
            }
        }
        self.overflow.remove(peer);
        self.router.resume(peer);
        debug!(client = %peer, "Client caught up; resumed");
    }
}

fn to_mdp(peer: &PeerId) -> Option<domo_mdp::PeerId> {
    domo_mdp::PeerId::new(peer.as_bytes().clone()).ok()
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
