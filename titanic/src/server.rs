//! The MDP side of Titanic: the three RFC 9 services as workers, the dispatcher, and [`run`],
//! which ties them to one store for the `domo-titanic` program (and for tests). An embedding
//! calls [`open`] then [`Opened::serve`] instead, and reads [`Status`] for readiness and
//! metrics.
//!
//! Design: every service is an MDP worker with several sessions (the worker SDK's
//! concurrency), so concurrent `titanic.request` calls wait for the same group commit; or,
//! in a broker that embeds Titanic ([`TitanicConfig::workers`] false), the broker calls the
//! same handlers itself ([`Opened::in_process`]). Writes
//! (`titanic.request`, `titanic.close`) queue for the store's writer and await their commit
//! ([`Store::put_request_async`]) without holding a thread; `titanic.reply` reads on a
//! blocking thread. A stored request reaches the [`Dispatcher`] at once, from the store's
//! writer (its feed), or by a wake-up when the store has no feed. The dispatcher's optional gate ([`DispatcherOptions::active`],
//! for Binary Star) pauses only the dispatcher: the services keep serving, since they are
//! workers and a passive broker refuses client requests by itself.
//!
//! # Shutdown
//!
//! [`run`]'s `shutdown` future first closes the gate: requests that arrive from then on are
//! answered `500` ("retry later", RFC 9) without touching the store, and the ones already in
//! a handler finish (within [`TitanicConfig::drain_grace`]), so an acknowledged request is
//! always stored and a stored request always acknowledged. The handlers then let go of the
//! store (in-process services answer `500` from then on), every worker session sends
//! DISCONNECT, the dispatcher stops (requests in flight to their services stay pending and
//! are sent again after the restart: at-least-once), and the store is closed once its
//! writer has finished the queued commits.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domo_mdp::{Heartbeat, LockExt};
use domo_worker::{Worker, WorkerOptions};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::dispatcher::{Dispatcher, DispatcherOptions};
use crate::service::{self, TitanicService};
use crate::store::redb::{RedbOptions, RedbStore};
use crate::store::Store;

/// Everything [`run`] needs.
#[derive(Debug, Clone)]
pub struct TitanicConfig {
    /// Broker endpoints, for the workers and the dispatcher's client alike.
    pub endpoints: Vec<String>,
    /// The redb store file.
    pub store_path: PathBuf,
    /// Store options (limits, group-commit sizes).
    pub store: RedbOptions,
    /// Worker heartbeat settings; must match the broker's.
    pub heartbeat: Heartbeat,
    /// MDP worker sessions per Titanic service (the concurrency of each service, and how
    /// many `titanic.request` calls can share one group commit).
    pub sessions: usize,
    /// How long shutdown waits for requests already in a handler.
    pub drain_grace: Duration,
    /// The dispatcher's settings. An embedding in a Binary Star pair sets
    /// [`DispatcherOptions::active`] to a receiver of "this broker is active", so the
    /// dispatcher sends nothing (and so casts no client vote) while its broker is passive;
    /// the three Titanic services are not gated by it.
    pub dispatcher: DispatcherOptions,
    /// Options of every ZMTP connection to the broker, the workers' and the dispatcher's
    /// client's (it replaces `dispatcher.transport`): for example CURVE security, which the
    /// broker embedding Titanic sets to its own keypair.
    pub transport: domo_zmtp::Options,
    /// Where the requests are kept: the redb file at `store_path` (the default), or
    /// PostgreSQL.
    pub backend: Backend,
    /// Whether the three services connect to the broker as MDP workers (the default, and
    /// what `domo-titanic` does). A broker embedding Titanic sets it to false and serves them
    /// itself, calling [`InProcess::handle`] from [`Opened::in_process`]: no worker
    /// sessions, no ZMTP, no socket between the broker and its Titanic.
    pub workers: bool,
}

impl TitanicConfig {
    /// Defaults for a store at `store_path` and the given broker endpoints.
    pub fn new<S: Into<String>>(
        endpoints: impl IntoIterator<Item = S>,
        store_path: impl Into<PathBuf>,
    ) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            store_path: store_path.into(),
            store: RedbOptions::default(),
            heartbeat: Heartbeat::default(),
            sessions: 16,
            drain_grace: Duration::from_secs(5),
            dispatcher: DispatcherOptions::default(),
            transport: domo_zmtp::Options::default(),
            backend: Backend::Redb,
            workers: true,
        }
    }
}

/// The store Titanic keeps its requests in.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The redb file at [`TitanicConfig::store_path`], with [`TitanicConfig::store`].
    Redb,
    /// A PostgreSQL database ([`crate::store::postgres`]).
    Postgres(Box<crate::store::postgres::PostgresOptions>),
    /// The log store ([`crate::store::log`]) in the directory [`TitanicConfig::store_path`],
    /// with [`TitanicConfig::store`]. `import`: a redb store file whose requests, replies
    /// and keys are moved into the log before it opens, if the file exists (it is renamed
    /// to `NAME.imported` once they are durable in the log).
    Log {
        /// The redb file to import from, if it exists.
        import: Option<PathBuf>,
    },
}

/// Why Titanic could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(#[from] crate::Error),
    /// The worker options were refused (bad endpoint, zero sessions or heartbeat).
    #[error("{0}")]
    Worker(#[from] domo_worker::Error),
    /// The client options were refused (bad endpoint, zero request timeout or concurrency).
    #[error("{0}")]
    Client(#[from] domo_client::Error),
}

/// Opens the store, serves the three services and dispatches stored requests until
/// `shutdown` completes, then shuts down as the module docs say.
///
/// # Errors
///
/// [`RunError`] if the store cannot be opened or the endpoints are invalid; nothing runs
/// then.
pub async fn run(
    config: TitanicConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    open(config, Arc::new(Status::default()))
        .await?
        .serve(shutdown)
        .await
}

/// Opens the store of `config` (creating the file, not its directory), so an embedding can
/// report a failure before it says it is ready; [`Opened::serve`] then runs Titanic.
///
/// `status` is updated from then on: see [`Status`].
///
/// # Errors
///
/// [`RunError::Store`] if the store cannot be opened.
pub async fn open(config: TitanicConfig, status: Arc<Status>) -> Result<Opened, RunError> {
    let path = config.store_path.clone();
    let mut options = config.store.clone();
    // The store tells the dispatcher what each commit stored (unless the embedding takes
    // the feed itself).
    let (feed_tx, feed) = tokio::sync::mpsc::unbounded_channel();
    let feed = options.feed.is_none().then(|| {
        options.feed = Some(feed_tx);
        feed
    });
    let backend = config.backend.clone();
    let opened = tokio::task::spawn_blocking(move || -> crate::error::Result<Arc<dyn Store>> {
        let store: Arc<dyn Store> = match backend {
            Backend::Redb => Arc::new(RedbStore::open(path, options)?),
            Backend::Postgres(pg) => Arc::new(crate::store::postgres::PostgresStore::open(*pg)?),
            Backend::Log { import } => {
                if let Some(from) = import.filter(|f| f.exists()) {
                    let moved = crate::store::log::import_redb(&from, &path)?;
                    info!(from = %from.display(), requests = moved,
                        "Titanic: the redb store's requests moved into the log");
                }
                Arc::new(crate::store::log::LogStore::open(path, options)?)
            }
        };
        Ok(store)
    })
    .await;
    // The redb and log stores feed the dispatcher; with PostgreSQL it pages through
    // `pending`.
    let feed = if matches!(config.backend, Backend::Redb | Backend::Log { .. }) {
        feed
    } else {
        None
    };
    let store = match opened {
        Ok(Ok(store)) => store,
        Ok(Err(e)) => {
            status.fail(&format!("cannot open the store: {e}"));
            return Err(e.into());
        }
        Err(e) => {
            status.fail(&format!("cannot open the store: {e}"));
            return Err(crate::Error::Unavailable(e.to_string()).into());
        }
    };
    match &config.backend {
        Backend::Redb => info!(path = %config.store_path.display(), "Titanic store open"),
        Backend::Postgres(_) => info!("Titanic store open (PostgreSQL)"),
        Backend::Log { .. } => {
            info!(path = %config.store_path.display(), "Titanic store open (log)");
        }
    }
    *status.store.lock_unpoisoned() = Some(Arc::downgrade(&store));
    status.set_open(true);
    let gate = Arc::new(Gate::new(store.clone()));
    // With the feed the dispatcher learns of stored requests from the writer; waking it for
    // each one as well would cost a task wake-up per request for nothing.
    let wake = feed.is_none().then(|| Arc::new(Notify::new()));
    Ok(Opened {
        store,
        config,
        status,
        feed,
        services: InProcess { gate, wake },
    })
}

/// What each commit stored, from the store's writer to the dispatcher.
type Feed = tokio::sync::mpsc::UnboundedReceiver<Vec<(crate::Id, crate::Request)>>;

/// An open store, ready to serve.
pub struct Opened {
    store: Arc<dyn Store>,
    config: TitanicConfig,
    status: Arc<Status>,
    feed: Option<Feed>,
    services: InProcess,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Opened {
    /// The three services as functions, for a broker that serves them itself
    /// ([`TitanicConfig::workers`] false). They work from now on; after shutdown they
    /// answer `500` (and hold no handle on the store).
    pub fn in_process(&self) -> InProcess {
        self.services.clone()
    }

    /// Serves the three services (as MDP workers, unless [`TitanicConfig::workers`] is
    /// false) and dispatches stored requests until `shutdown`, then shuts down as the module
    /// docs say and closes the store.
    ///
    /// # Errors
    ///
    /// [`RunError`] if the endpoints are invalid; nothing runs then.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
        let result = serve_store(
            self.store.clone(),
            &self.config,
            self.feed,
            self.services,
            shutdown,
        )
        .await;
        close_store(self.store).await;
        self.status.set_open(false);
        result
    }
}

/// What an embedding shows of Titanic (readiness, metrics); updated by [`open`], and asks
/// the open store how it is.
#[derive(Debug, Default)]
pub struct Status {
    open: AtomicBool,
    problem: std::sync::Mutex<Option<String>>,
    store: std::sync::Mutex<Option<std::sync::Weak<dyn Store>>>,
}

impl Status {
    /// `Ok` while the store is open and takes writes; otherwise why not (the store could not
    /// be opened, or a write failed: disk full or failing). After a failed write the store
    /// reopens itself, and this is `Ok` again once it takes writes.
    ///
    /// # Errors
    ///
    /// The reason, for `/readyz`.
    pub fn readiness(&self) -> Result<(), String> {
        if let Some(problem) = self.lock_problem().clone() {
            return Err(problem);
        }
        if !self.open.load(Ordering::Relaxed) {
            return Err("Titanic store not open".to_string());
        }
        match self.current().map(|store| store.check_writes()) {
            Some(Err(e)) => Err(format!("Titanic write failed: {e} (reopening the store)")),
            _ => Ok(()),
        }
    }

    /// A line about the open store for `/readyz`, if it has one (see [`Store::describe`]).
    pub fn describe(&self) -> Option<String> {
        self.current()?.describe()
    }

    /// The store's current figures, while it is open.
    pub fn stats(&self) -> Option<crate::Stats> {
        self.current()?.stats().ok()
    }

    /// The open store.
    fn current(&self) -> Option<Arc<dyn Store>> {
        self.store.lock_unpoisoned().as_ref()?.upgrade()
    }

    fn lock_problem(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.problem.lock_unpoisoned()
    }

    fn fail(&self, reason: &str) {
        *self.lock_problem() = Some(reason.to_string());
    }

    /// Records a problem the embedding found before [`open`] (e.g. the data directory cannot
    /// be created); [`Status::readiness`] reports it.
    pub fn fail_with(&self, reason: &str) {
        self.fail(reason);
    }

    fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::Relaxed);
        if !open {
            *self.store.lock_unpoisoned() = None;
        }
    }
}

/// Runs services and dispatcher over an open store until `shutdown`.
async fn serve_store(
    store: Arc<dyn Store>,
    config: &TitanicConfig,
    feed: Option<Feed>,
    services: InProcess,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let wake = services.wake.clone().unwrap_or_default();
    let dispatcher_options = DispatcherOptions {
        transport: config.transport.clone(),
        ..config.dispatcher.clone()
    };
    let mut dispatcher = Dispatcher::new(
        store.clone(),
        &config.endpoints,
        dispatcher_options,
        wake.clone(),
    )?;
    if let Some(feed) = feed {
        dispatcher = dispatcher.with_feed(feed);
    }
    let worker_options = WorkerOptions::new(config.endpoints.clone())
        .sessions(config.sessions)
        .heartbeat(config.heartbeat)
        .transport(config.transport.clone());
    let services = Services::start(services, config.workers.then_some(&worker_options))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let dispatching = tokio::spawn(dispatcher.run(stop_rx));
    info!(endpoints = ?config.endpoints, "Titanic serving");
    shutdown.await;
    info!("Titanic shutting down");
    services.stop(config.drain_grace).await;
    let _ = stop_tx.send(true);
    if let Err(e) = dispatching.await {
        warn!(error = %e, "Dispatcher task failed");
    }
    Ok(())
}

/// Drops the last handle on the store, once the blocking calls that still hold one are done,
/// so its writer finishes the queued commits and the file lock is released.
async fn close_store(store: Arc<dyn Store>) {
    for _ in 0..500 {
        if Arc::strong_count(&store) == 1 {
            // The last handle: dropping a RedbStore joins its writer thread, so do it off the
            // runtime.
            let _ = tokio::task::spawn_blocking(move || drop(store)).await;
            info!("Titanic store closed");
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    warn!("Titanic store still in use after 5 s; leaving it to the process exit");
}

/// The three services as functions: what the MDP workers run, and what a broker embedding
/// Titanic calls itself (see [`TitanicConfig::workers`]).
#[derive(Clone)]
pub struct InProcess {
    gate: Arc<Gate>,
    /// Told when a request was stored (only for a dispatcher without the store's feed).
    wake: Option<Arc<Notify>>,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess").finish_non_exhaustive()
    }
}

/// What a handler returns: the reply body.
pub type ReplyFuture = Pin<Box<dyn Future<Output = Vec<Bytes>> + Send>>;

impl InProcess {
    /// Answers one request to `service` with the MDP reply body, exactly as Titanic's worker
    /// for it would: writes (`titanic.request`, `titanic.close`) queue for the store's
    /// group commit and await it without holding a thread; `titanic.reply` reads on a
    /// blocking thread. Once Titanic is shutting down: `[500]` ("retry later", RFC 9).
    pub fn handle(&self, service: TitanicService, body: Vec<Bytes>) -> ReplyFuture {
        let Some(pass) = Gate::enter(&self.gate) else {
            return Box::pin(std::future::ready(vec![Bytes::from_static(service::ERROR)]));
        };
        // Writes are queued for the store's group commit here, at the call, not at the
        // future's first poll: the requests a broker hands over together reach one commit
        // however late their futures are first polled. The future holds the pass (the gate
        // waits for it at shutdown) until it has the outcome.
        match service {
            TitanicService::Request => match service::decode_request(body) {
                Ok(submission) => {
                    let stored = match submission.key {
                        Some(key) => {
                            pass.store
                                .put_keyed_async(key, submission.service, submission.body)
                        }
                        None => pass
                            .store
                            .put_request_async(submission.service, submission.body),
                    };
                    let wake = self.wake.clone();
                    Box::pin(async move {
                        let stored = stored.await;
                        if let (Ok(_), Some(wake)) = (&stored, &wake) {
                            wake.notify_one();
                        }
                        drop(pass);
                        service::request_outcome(stored)
                    })
                }
                Err(reply) => Box::pin(std::future::ready(reply)),
            },
            TitanicService::Close => match service::decode_close(&body) {
                Ok(id) => {
                    let closed = pass.store.close_async(id);
                    Box::pin(async move {
                        let closed = closed.await;
                        drop(pass);
                        service::close_outcome(closed)
                    })
                }
                Err(reply) => Box::pin(std::future::ready(reply)),
            },
            TitanicService::Reply => Box::pin(async move {
                let store = pass.store.clone();
                let reply =
                    tokio::task::spawn_blocking(move || service::handle(&*store, service, body))
                        .await
                        .unwrap_or_else(|e| {
                            warn!(error = %e, "titanic.reply failed");
                            vec![Bytes::from_static(service::ERROR)]
                        });
                drop(pass);
                reply
            }),
        }
    }
}

/// The services' gate, and their workers if they run as such.
struct Services {
    gate: Arc<Gate>,
    stop: watch::Sender<bool>,
    workers: JoinSet<()>,
}

impl Services {
    /// Registers a worker for each Titanic service, with `options` (none: the broker calls
    /// the services itself).
    fn start(
        services: InProcess,
        options: Option<&WorkerOptions>,
    ) -> Result<Self, domo_worker::Error> {
        let (stop, _) = watch::channel(false);
        let mut workers = JoinSet::new();
        for service in TitanicService::ALL {
            let Some(options) = options else {
                break;
            };
            let worker = Worker::new(service.name(), options.clone())?;
            let handler = {
                let services = services.clone();
                move |body| {
                    let reply = services.handle(service, body);
                    async move { Ok::<_, std::convert::Infallible>(reply.await) }
                }
            };
            let mut stopped = stop.subscribe();
            workers.spawn(worker.serve(handler, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }));
        }
        Ok(Self {
            gate: services.gate,
            stop,
            workers,
        })
    }

    /// Answers new requests with 500, waits up to `grace` for the running ones, lets go of
    /// the store, then has every worker session send DISCONNECT.
    async fn stop(mut self, grace: Duration) {
        self.gate.close();
        let drained = tokio::time::timeout(grace, async {
            while self.gate.busy() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        if drained.is_err() {
            warn!(?grace, "Titanic requests still running at shutdown");
        }
        self.gate.release();
        let _ = self.stop.send(true);
        while self.workers.join_next().await.is_some() {}
    }
}

/// Counts the requests inside a handler, refuses new ones once closed, and holds the store
/// for them until released.
struct Gate {
    closed: AtomicBool,
    inside: AtomicUsize,
    store: std::sync::Mutex<Option<Arc<dyn Store>>>,
}

/// One request inside the gate, with the store; leaves the gate when dropped.
struct Pass {
    gate: Arc<Gate>,
    store: Arc<dyn Store>,
}

impl Gate {
    fn new(store: Arc<dyn Store>) -> Self {
        Self {
            closed: AtomicBool::new(false),
            inside: AtomicUsize::new(0),
            store: std::sync::Mutex::new(Some(store)),
        }
    }

    fn enter(gate: &Arc<Self>) -> Option<Pass> {
        gate.inside.fetch_add(1, Ordering::SeqCst);
        // Leaves the gate again if refused (dropped below).
        let entered = Entered(Some(gate.clone()));
        // Checked after counting ourselves in, so `stop` either sees us or we see `closed`.
        if gate.closed.load(Ordering::SeqCst) {
            return None;
        }
        let store = gate.store.lock_unpoisoned().clone()?;
        let gate = entered.keep()?;
        Some(Pass { gate, store })
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Drops the gate's handle on the store (after `close`, once nothing is inside).
    fn release(&self) {
        self.store.lock_unpoisoned().take();
    }

    fn busy(&self) -> bool {
        self.inside.load(Ordering::SeqCst) > 0
    }
}

/// Counted in, not yet a [`Pass`]: leaves the gate if dropped.
struct Entered(Option<Arc<Gate>>);

impl Entered {
    /// Stays counted in: the [`Pass`] leaves the gate instead.
    fn keep(mut self) -> Option<Arc<Gate>> {
        self.0.take()
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        if let Some(gate) = self.0.take() {
            gate.inside.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.gate.inside.fetch_sub(1, Ordering::SeqCst);
    }
}
