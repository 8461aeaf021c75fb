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
//! With CURVE, the router admits only the authorized keys (it asks [`AuthorizedKeys`] during
//! each handshake); when a peer connects the loop looks up the rights of its key and hands
//! them to the core ([`Broker::set_rights`]), and after a reload of the keys
//! ([`Control::KeysReloaded`]) it closes the connections whose key is gone and gives the
//! others their new rights.
//!
//! domo's MDP extensions (docs/extensions.md) are negotiated in the ZMTP handshake: the
//! router announces `X-Domo-Extensions: credit,mux`, and what a peer announces
//! (`X-Domo-Credit`, `X-Domo-Mux`) is kept here until its connection closes and passed to
//! the core with each of its messages ([`Broker::handle_message_from`]; the core uses the
//! credit at READY and the multiplexing flag for each client request).
//!
//! The outside talks to the loop through one bounded channel of [`Control`] messages (drain,
//! stop, reload, scrape), so the core keeps a single owner. A drain asks the core to refuse
//! new requests ([`Broker::begin_drain`]), waits until [`Broker::is_drained`] or the drain
//! timeout, then has the core DISCONNECT every worker and closes the socket after writing
//! what is queued. The loop wakes at least every [`TICK`] and stamps [`Health`], so a wedged
//! loop shows in `/healthz` and stops the systemd watchdog pings.

use foldhash::{HashMap, HashMapExt};
use std::future::Future;
use std::sync::Arc;

use domo_mdp::extensions::{CREDIT, EXTENSIONS_PROPERTY, MUX};
use domo_zmtp::{Dealer, Endpoint, Options, Router};
use tokio::sync::{mpsc, watch};
use tracing::info;

mod clock;
mod control;
mod event_loop;
mod flow;
mod local;
mod pair;
mod topics;

use self::clock::now;
pub use self::control::{Control, ShellError, CONTROL_CAPACITY, TICK};
use self::event_loop::Shell;
use self::local::Local;
pub use self::local::{LocalHandler, LocalReply};
use self::pair::{node_id, HaLink};
pub use self::pair::{PairKeys, PairLink};
pub use self::topics::{
    bind_topics, topic_transport_options, BoundTopics, TopicServices, TopicsLink,
};
use crate::core::{Broker, BrokerConfig};
pub use crate::health::Health;
use crate::metrics::Metrics;
pub use crate::metrics::{ShellStats, TopicMetrics};
use crate::security::AuthorizedKeys;

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
    pub ha: Option<PairLink>,
    /// With CURVE: the authorized keys, whose rights the core enforces for each peer (the
    /// transport's `security` must be the CURVE server admitting the same keys).
    pub keys: Option<Arc<AuthorizedKeys>>,
}

impl Default for ShellConfig {
    fn default() -> Self {
        Self {
            binds: vec!["tcp://127.0.0.1:5555".to_string()],
            core: BrokerConfig::default(),
            transport: broker_transport_options(),
            ha: None,
            keys: None,
        }
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

/// Adds the extensions this broker understands to its handshake metadata
/// ([`EXTENSIONS_PROPERTY`]: worker credit and multiplexed clients), unless the options
/// already announce a list. RFC 7 peers never read application properties, so they see
/// nothing new.
fn announce_extensions(mut options: Options) -> Options {
    if options.metadata.get(EXTENSIONS_PROPERTY).is_none() {
        options
            .metadata
            .insert(EXTENSIONS_PROPERTY, format!("{CREDIT},{MUX}"));
    }
    options
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
    keys: Option<Arc<AuthorizedKeys>>,
    local: Local,
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
    let router = Router::new(announce_extensions(config.transport));
    let mut endpoints = Vec::new();
    for ep in &config.binds {
        endpoints.push(router.bind(ep).await?);
    }
    let ha = match config.ha {
        Some(settings) => {
            let ha_router = Router::new(settings.router_options());
            let endpoint = ha_router.bind(&settings.bind).await?;
            let dealer = Dealer::connect(&settings.peer, settings.dealer_options())?;
            Some(HaLink {
                settings,
                router: ha_router,
                dealer,
                endpoint,
                connected: false,
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
        keys: config.keys,
        local: Local::default(),
    })
}

impl BoundBroker {
    /// The endpoints as bound (port 0 resolved).
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Binds the router to a new in-process endpoint (`inproc://domo-broker-N`, unique in
    /// this process) and returns it: the embedded Titanic reaches its broker there, through
    /// memory, with the same ZMTP (and CURVE) as over TCP. Not listed in
    /// [`BoundBroker::endpoints`], which are the ones peers outside the process can use.
    ///
    /// # Errors
    /// [`ShellError`] if it cannot be bound.
    pub async fn bind_in_process(&self) -> Result<Endpoint, ShellError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("inproc://domo-broker-{}-{n}", std::process::id());
        Ok(self.router.bind(&name).await?)
    }

    /// Serves `service` in process: the broker calls `handler` with each request body and
    /// sends the body it returns as the reply (`failed` if the handler panics), with up to
    /// `credit` requests at once. To the core it is one worker of the service like any other
    /// (queues, MMI, metrics, drain), with no connection: no ZMTP, no socket (see
    /// `local.rs`). The embedded Titanic serves its three services this way.
    pub fn serve_in_process(
        &mut self,
        service: domo_mdp::ServiceName,
        credit: domo_mdp::Credit,
        handler: LocalHandler,
        failed: Vec<bytes::Bytes>,
    ) {
        self.local.add(service, credit, handler, failed);
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
            keys,
            local,
        } = self;
        for ep in &endpoints {
            info!(endpoint = %ep, "Broker listening");
        }
        if let Some(link) = &ha {
            info!(
                role = %link.settings.machine.role,
                endpoint = %link.endpoint,
                peer = %link.settings.peer,
                heartbeat = ?link.settings.machine.heartbeat,
                "Binary Star: state endpoint bound; starting as {}",
                link.settings.machine.role
            );
            // Started here, not at bind: the machine takes a long gap before its first tick
            // (a slow store recovery) for a freeze.
            core.enable_ha(link.settings.machine, node_id(), now());
            health.set_ha_role(link.settings.machine.role);
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
            serving,
            keys,
            peer_keys: HashMap::new(),
            announced: HashMap::new(),
            local,
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

#[cfg(test)]
mod tests {
    use domo_mdp::extensions::lists;

    use super::*;

    #[test]
    fn the_broker_announces_credit_and_mux_unless_told_otherwise() {
        let options = announce_extensions(broker_transport_options());
        let announced = options.metadata.get(EXTENSIONS_PROPERTY).unwrap();
        assert!(lists(announced, CREDIT));
        assert!(lists(announced, MUX));
        let mut own = Options::default();
        own.metadata.insert(EXTENSIONS_PROPERTY, "");
        let kept = announce_extensions(own);
        assert_eq!(
            kept.metadata.get(EXTENSIONS_PROPERTY).unwrap().as_ref(),
            b""
        );
    }
}
