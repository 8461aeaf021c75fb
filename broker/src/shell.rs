//! The tokio shell: one ZMTP ROUTER socket, the clock and the [`Broker`] core.
//!
//! Design: a single task owns the socket's receive side, the core and a timer. Each wake-up
//! takes a batch of socket events (one await, then whatever else is already waiting), feeds
//! them to the core with the current time, and sends what the core produced. The core never
//! waits on the socket and the socket never waits on the core.
//!
//! Flow control is decided by the core ([`crate::core::Flow`]) and carried out here on the
//! router, right after the input that caused it and before the next message is taken: a
//! request the core has no room for is handed back to the router ([`Router::defer`]) and its
//! client paused, registered workers are exempted from the router's receive budget, and a
//! reply that does not fit in a client's send queue goes back to the core, which holds it
//! (and the client's later replies) and pauses the client until the router reports it
//! `Writable`. So no request or reply of a connected client is dropped for lack of room, and
//! a client that does not read slows only itself. A reply to a client that has gone is
//! dropped and counted.
//!
//! The outside talks to the loop through one bounded channel of [`Control`] messages (drain,
//! stop, reload, scrape), so the core keeps a single owner. A drain asks the core to refuse
//! new requests ([`Broker::begin_drain`]), waits until [`Broker::is_drained`] or the drain
//! timeout, then has the core DISCONNECT every worker and closes the socket after writing
//! what is queued. The loop wakes at least every [`TICK`] and stamps [`Health`], so a wedged
//! loop shows in `/healthz` and stops the systemd watchdog pings.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domo_zmtp::{Dealer, Endpoint, Options, PeerId, Router, RouterEvent, TrySendError};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::config::HaSettings;
use crate::core::{Broker, BrokerConfig, ConfigError, Flow, Outbound, PeerKind};
pub use crate::health::Health;
use crate::metrics::{Metrics, Snapshot};

/// How often the loop wakes when nothing happens, so `/healthz` and the watchdog see it tick.
pub const TICK: Duration = Duration::from_secs(1);

/// Capacity of the control channel into the loop.
pub const CONTROL_CAPACITY: usize = 16;

/// What the outside (signals, reload, the metrics listener) asks of a running broker.
#[derive(Debug)]
pub enum Control {
    /// Begin draining: refuse new requests, wait up to `timeout` for those held by workers,
    /// then DISCONNECT every worker and stop.
    Drain {
        /// Longest wait for in-flight requests.
        timeout: Duration,
    },
    /// Stop now: DISCONNECT every worker (ends a drain early; a second signal).
    Stop,
    /// Apply new core settings (a reload).
    Reconfigure(BrokerConfig),
    /// Shutdown is starting: stop telling the Binary Star peer our state, so it can take
    /// over while this broker winds down (see [`Broker::leave_pair`]).
    LeavePair,
    /// Copy current figures into the metrics, then answer.
    Scrape(oneshot::Sender<()>),
}

/// Most socket events handled per wake-up before outbound messages are flushed.
const BATCH: usize = 256;

/// Most state-endpoint events handled ahead of a batch of client events (two brokers send
/// about two a heartbeat; more means a flood, which must not starve the clients).
const HA_BATCH: usize = 16;

/// What the shell needs to run a broker.
#[derive(Debug, Clone)]
pub struct ShellConfig {
    /// Endpoints to bind (`tcp://host:port`, `tcp://*:port`, `ipc://path`).
    pub binds: Vec<String>,
    /// Settings of the broker core.
    pub core: BrokerConfig,
    /// Settings of the ZMTP transport.
    pub transport: Options,
    /// The Binary Star pair this broker belongs to, if any.
    pub ha: Option<HaSettings>,
}

impl Default for ShellConfig {
    fn default() -> Self {
        Self {
            binds: vec!["tcp://127.0.0.1:5555".to_string()],
            core: BrokerConfig::default(),
            transport: broker_transport_options(),
            ha: None,
        }
    }
}

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
struct HaLink {
    settings: HaSettings,
    router: Router,
    dealer: Dealer,
    endpoint: Endpoint,
}

/// Transport options for the state link: tiny messages, tiny queues, and a reconnect that
/// retries at least every heartbeat, so a restarted peer is found at once.
fn ha_transport_options(settings: &HaSettings) -> Options {
    Options {
        max_message_size: 4096,
        max_frames: 16,
        send_hwm: 8,
        send_hwm_bytes: 64 * 1024,
        recv_hwm: 64,
        recv_hwm_bytes: 256 * 1024,
        handshake_timeout: settings
            .heartbeat
            .max(std::time::Duration::from_millis(500))
            * 2,
        reconnect_interval: (settings.heartbeat / 10).max(std::time::Duration::from_millis(10)),
        reconnect_interval_max: settings.heartbeat,
        connect_timeout: settings
            .heartbeat
            .max(std::time::Duration::from_millis(100)),
        linger: std::time::Duration::ZERO,
        ..Options::default()
    }
}

/// What the broker's router may hold of messages received and not yet taken by the core,
/// all peers but workers together: 64 MiB. Requests the core defers for lack of room stay
/// there, so this (with the queue limits) is what bounds memory under a burst from many
/// clients; past it the router reads no more large frames and TCP pushes back.
pub const RECEIVE_BUDGET_BYTES: usize = 64 << 20;

/// Transport options suited to a broker: per-peer send queues of 200,000 messages and 8 MiB,
/// since one client may have many requests answered before it reads (the zguide's
/// asynchronous client has 100,000 small ones in flight); past them the client is paused and
/// its replies wait in the core, counted against its bound (`client_limits`). Per-peer
/// receive queues of 8 MiB. So a client that never reads holds at most its bound (32 MiB by
/// default) plus 8 MiB in each queue: 48 MiB of messages, about 64 MiB of memory once the
/// buffers they sit in are counted (measured: 65 MiB, BENCHMARKS.md). The receive budget
/// is [`RECEIVE_BUDGET_BYTES`].
pub fn broker_transport_options() -> Options {
    Options {
        send_hwm: 200_000,
        send_hwm_bytes: 8 * 1024 * 1024,
        recv_hwm_bytes: 8 * 1024 * 1024,
        recv_budget_bytes: RECEIVE_BUDGET_BYTES,
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
}

/// What a broker that stopped cleanly had counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finished {
    /// The shell's counters.
    pub shell: ShellStats,
    /// The core's counters and gauges at the end.
    pub core: crate::core::Stats,
}

/// A bound broker, ready to run.
#[derive(Debug)]
pub struct BoundBroker {
    router: Router,
    core: Broker,
    endpoints: Vec<Endpoint>,
    health: Arc<Health>,
    metrics: Option<Arc<std::sync::Mutex<Metrics>>>,
    ha: Option<HaLink>,
    /// `true` while the broker serves clients: always alone; in a pair only while active.
    serving: watch::Sender<bool>,
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
    let ha = match config.ha {
        Some(settings) => {
            let options = ha_transport_options(&settings);
            let ha_router = Router::new(options.clone());
            let endpoint = ha_router.bind(&settings.bind).await?;
            let dealer = Dealer::connect(&settings.peer, options)?;
            Some(HaLink {
                settings,
                router: ha_router,
                dealer,
                endpoint,
            })
        }
        None => None,
    };
    let health = Arc::new(Health::default());
    health.tick(&core);
    let (serving, _) = watch::channel(ha.is_none());
    Ok(BoundBroker {
        router,
        core,
        endpoints,
        health,
        metrics: None,
        ha,
        serving,
    })
}

impl BoundBroker {
    /// The endpoints as bound (port 0 resolved).
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The pair's state endpoint as bound (port 0 resolved), if this broker is one of a
    /// pair.
    pub fn ha_endpoint(&self) -> Option<&Endpoint> {
        self.ha.as_ref().map(|l| &l.endpoint)
    }

    /// Follows whether the broker serves clients: always `true` for a lone broker; for one of
    /// a pair, `true` only while it is active (and not resynchronising after a stall). The
    /// embedded Titanic pauses its dispatcher on it, so a passive broker's own Titanic
    /// neither sends requests nor counts as a client vote.
    pub fn serving(&self) -> watch::Receiver<bool> {
        self.serving.subscribe()
    }

    /// Health and status shared with the metrics listener and the service manager.
    pub fn health(&self) -> Arc<Health> {
        self.health.clone()
    }

    /// Keeps metrics: from now on the loop feeds `metrics` (shared with the listener).
    pub fn with_metrics(mut self, metrics: Arc<std::sync::Mutex<Metrics>>) -> Self {
        self.core.record_events(true);
        self.metrics = Some(metrics);
        self
    }

    /// Serves until `shutdown` completes, then closes the socket (no drain).
    ///
    /// # Errors
    /// Only if the socket fails underneath; a clean shutdown is `Ok`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<Finished, ShellError> {
        let (_tx, control) = mpsc::channel(1);
        self.serve(control, shutdown).await
    }

    /// Serves until told to stop on `control` (a [`Control::Drain`] that finished or a
    /// [`Control::Stop`]), then closes the socket after writing what is queued (the workers'
    /// DISCONNECTs among it). A closed channel is never a reason to stop.
    ///
    /// # Errors
    /// Only if the socket fails underneath; a clean shutdown is `Ok`.
    pub async fn run_with(self, control: mpsc::Receiver<Control>) -> Result<Finished, ShellError> {
        self.serve(control, std::future::pending()).await
    }

    async fn serve(
        self,
        control: mpsc::Receiver<Control>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Finished, ShellError> {
        let Self {
            router,
            mut core,
            endpoints,
            health,
            metrics,
            ha,
            serving,
        } = self;
        for ep in &endpoints {
            info!(endpoint = %ep, "Broker listening");
        }
        if let Some(link) = &ha {
            info!(
                role = %link.settings.role,
                endpoint = %link.endpoint,
                peer = %link.settings.peer,
                heartbeat = ?link.settings.heartbeat,
                "Binary Star: state endpoint bound; starting as {}",
                link.settings.role
            );
            // Started here, not at bind: the machine takes a long gap before its first tick
            // (a slow store recovery) for a freeze.
            core.enable_ha(link.settings.machine(), node_id(), now());
            health.set_ha_role(link.settings.role);
        }
        health.set_ready();
        let mut shell = Shell {
            router,
            core,
            stats: ShellStats::default(),
            health,
            metrics,
            drain_until: None,
            ha,
            ha_connected: false,
            serving,
        };
        let result = shell.serve(control, shutdown).await;
        if let Some(link) = &shell.ha {
            link.dealer.shutdown().await;
            link.router.shutdown().await;
        }
        shell.router.shutdown().await;
        info!("Broker stopped");
        result.map(|()| Finished {
            shell: shell.stats,
            core: shell.core.stats().clone(),
        })
    }
}

/// A random, non-zero id for this process's incarnation in a pair (std's hasher keys are
/// random per process; the time and pid make two starts differ even without them).
fn node_id() -> u64 {
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

/// The core's clock, from tokio so paused-time tests control it.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

struct Shell {
    router: Router,
    core: Broker,
    stats: ShellStats,
    health: Arc<Health>,
    metrics: Option<Arc<std::sync::Mutex<Metrics>>>,
    /// While draining: when to stop waiting for in-flight requests.
    drain_until: Option<tokio::time::Instant>,
    /// The state link, when this broker is one of a pair.
    ha: Option<HaLink>,
    /// Whether the DEALER to the peer was connected at the last look.
    ha_connected: bool,
    /// Published whenever [`Broker::ha_status`] says serving changed.
    serving: watch::Sender<bool>,
}

impl Shell {
    async fn serve(
        &mut self,
        mut control: mpsc::Receiver<Control>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ShellError> {
        tokio::pin!(shutdown);
        let mut control_open = true;
        loop {
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
            let ha_connected = self.ha_connected;
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
                    self.drain_ha();
                    self.on_event(event?);
                    for _ in 1..BATCH {
                        match self.router.try_recv_event()? {
                            Some(event) => self.on_event(event),
                            None => break,
                        }
                    }
                }
                event = ha_router_event(self.ha.as_ref()) => self.on_ha_router_event(event),
                msg = ha_dealer_msg(self.ha.as_ref()) => {
                    if let Ok(frames) = msg {
                        let _ = self.core.handle_peer_state(now(), &frames, false);
                    }
                }
                () = ha_dealer_connected(self.ha.as_ref()), if !ha_connected => {
                    self.ha_connected = true;
                    debug!("Binary Star: connected to the peer's state endpoint");
                    self.core.peer_link_up();
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
        metrics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .refresh(&snapshot);
    }

    fn drain_events(&mut self) {
        let Some(metrics) = &self.metrics else {
            return;
        };
        let mut metrics = metrics.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(event) = self.core.poll_event() {
            metrics.on_event(event);
        }
    }

    fn on_event(&mut self, event: RouterEvent) {
        match event {
            RouterEvent::Message { peer, msg } => match to_mdp(&peer) {
                Some(id) => {
                    self.core.handle_message(now(), id, msg);
                    // Before the next message: a deferred request must be back in the router
                    // ahead of anything else its client sent.
                    self.apply_flow();
                }
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
                if let Some(id) = to_mdp(&peer) {
                    self.core.handle_disconnect(now(), &id);
                    self.apply_flow();
                }
            }
            RouterEvent::Writable { peer } => {
                if let Some(id) = to_mdp(&peer) {
                    self.core.handle_writable(&id);
                    self.apply_flow();
                }
            }
        }
    }

    /// Carries out the core's flow-control decisions on the router, in order.
    fn apply_flow(&mut self) {
        while let Some(flow) = self.core.poll_flow() {
            match flow {
                Flow::Defer { client, frames } => {
                    let peer = PeerId::from(client.into_bytes());
                    if self.router.defer(&peer, frames).is_err() {
                        // Gone in the meantime: its Disconnected event is on its way.
                        self.stats.replies_to_gone_clients += 1;
                    }
                }
                Flow::Pause { client } => {
                    debug!(client = %client, "Client paused");
                    self.router.pause(&PeerId::from(client.into_bytes()));
                }
                Flow::Resume { client } => {
                    debug!(client = %client, "Client resumed");
                    self.router.resume(&PeerId::from(client.into_bytes()));
                }
                Flow::Worker { peer } => {
                    self.router
                        .set_budgeted(&PeerId::from(peer.into_bytes()), false);
                }
            }
        }
    }

    /// A message on this broker's state endpoint: the peer's periodic state, answered with
    /// ours at once.
    fn on_ha_router_event(&mut self, event: Result<RouterEvent, domo_zmtp::Error>) {
        let Some(link) = &self.ha else { return };
        match event {
            Ok(RouterEvent::Message { peer, msg }) => {
                if let Some(answer) = self.core.handle_peer_state(now(), &msg, true) {
                    let _ = link.router.try_send(&peer, answer);
                }
            }
            Ok(RouterEvent::Connected { peer, addr, .. }) => {
                debug!(peer = %peer, peer.addr = %addr, "Binary Star: peer connected to the state endpoint");
            }
            Ok(_) => {}
            Err(error) => warn!(%error, "Binary Star: state endpoint failed"),
        }
    }

    /// Handles the state messages already waiting on both sockets of the state link (at most
    /// [`HA_BATCH`] on each).
    fn drain_ha(&mut self) {
        for _ in 0..HA_BATCH {
            let Some(link) = &self.ha else { return };
            match link.router.try_recv_event() {
                Ok(Some(event)) => self.on_ha_router_event(Ok(event)),
                Ok(None) => break,
                Err(error) => return self.on_ha_router_event(Err(error)),
            }
        }
        for _ in 0..HA_BATCH {
            let Some(link) = &self.ha else { return };
            let Ok(Some(frames)) = link.dealer.try_recv() else {
                return;
            };
            let _ = self.core.handle_peer_state(now(), &frames, false);
        }
    }

    /// Sends the due state message to the peer, while the link is up.
    fn flush_ha(&mut self) {
        let Some(link) = &self.ha else { return };
        let connected = link.dealer.is_connected();
        if self.ha_connected && !connected {
            debug!("Binary Star: lost the connection to the peer's state endpoint");
        }
        self.ha_connected = connected;
        while let Some(frames) = self.core.poll_peer_transmit() {
            if connected {
                let _ = link.dealer.try_send(frames);
            }
        }
        let serving = self.core.ha_status().is_none_or(|s| s.serving);
        self.serving.send_if_modified(|was| {
            let changed = *was != serving;
            *was = serving;
            changed
        });
    }

    /// Sends everything the core has produced.
    fn flush_core(&mut self) {
        self.flush_ha();
        self.drain_events();
        while let Some(Outbound {
            peer: id,
            kind,
            frames,
        }) = self.core.poll_outbound()
        {
            if kind == PeerKind::Client && self.core.is_reply_blocked(&id) {
                // Behind the replies the core already holds for this client.
                self.core.handle_send_blocked(id, frames);
                continue;
            }
            let peer = PeerId::from(id.clone().into_bytes());
            match (self.router.try_send(&peer, frames), kind) {
                (Ok(()), _) => {}
                (Err(TrySendError::Full(frames)), PeerKind::Client) => {
                    debug!(client = %peer, "Client not reading its replies; paused");
                    self.core.handle_send_blocked(id, frames);
                }
                (Err(TrySendError::Unroutable(_)), PeerKind::Client) => {
                    self.stats.replies_to_gone_clients += 1;
                }
                (Err(_), PeerKind::Worker) => self.stats.worker_commands_dropped += 1,
                (Err(TrySendError::Closed(_)), PeerKind::Client) => {}
            }
        }
        self.apply_flow();
    }
}

async fn ha_router_event(link: Option<&HaLink>) -> Result<RouterEvent, domo_zmtp::Error> {
    match link {
        Some(link) => link.router.recv_event().await,
        None => std::future::pending().await,
    }
}

async fn ha_dealer_msg(link: Option<&HaLink>) -> Result<Vec<Bytes>, domo_zmtp::Error> {
    match link {
        Some(link) => link.dealer.recv().await,
        None => std::future::pending().await,
    }
}

async fn ha_dealer_connected(link: Option<&HaLink>) {
    match link {
        Some(link) => {
            if link.dealer.connected().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

fn to_mdp(peer: &PeerId) -> Option<domo_mdp::PeerId> {
    domo_mdp::PeerId::new(peer.as_bytes().clone()).ok()
}
