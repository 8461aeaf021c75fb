//! Titanic (RFC 9) embedded in the broker: its store opened before the broker reports ready,
//! its services connected to the broker's own endpoint.

use std::sync::Arc;
use std::time::Duration;

use tracing::error;

use crate::config::Settings;

/// The log store's directory inside the Titanic data directory.
pub const TITANIC_LOG_DIR: &str = "titanic-log";

/// The embedded Titanic: its status for `/readyz` and metrics, its services for the broker
/// to serve in process, and how to stop it.
pub struct EmbeddedTitanic {
    /// `titanic.request`, `titanic.reply` and `titanic.close` as functions, when the store
    /// is open: the broker serves them itself ([`serve_in_process`]).
    pub services: Option<domo_titanic::server::InProcess>,
    /// Its state, for `/readyz` and metrics.
    pub status: Arc<domo_titanic::server::Status>,
    /// Tells it to stop.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// `None` when the store could not be opened (nothing runs; `/readyz` says why).
    pub task: Option<tokio::task::JoinHandle<()>>,
}

/// The endpoint Titanic connects to: `bound` itself, with a wildcard host replaced by
/// loopback.
pub fn local_endpoint(bound: &domo_zmtp::Endpoint) -> String {
    match bound {
        domo_zmtp::Endpoint::Tcp { host, port } if host == "*" || host == "0.0.0.0" => {
            format!("tcp://127.0.0.1:{port}")
        }
        domo_zmtp::Endpoint::Tcp { host, port } if host == "::" => format!("tcp://[::1]:{port}"),
        other => other.to_string(),
    }
}

/// Opens the Titanic store and starts its services against `endpoint`. A store that cannot
/// be opened is logged and reported by `/readyz`; the broker runs without Titanic then.
/// `metrics` are the commit latency and commit size histograms and the store reopen counter; `security` is
/// how its connections to the broker authenticate (with CURVE, the broker's own keypair).
pub async fn start(
    settings: &Settings,
    endpoint: String,
    metrics: (
        prometheus::Histogram,
        prometheus::Histogram,
        prometheus::IntCounter,
    ),
    serving: Option<tokio::sync::watch::Receiver<bool>>,
    security: domo_zmtp::Security,
) -> EmbeddedTitanic {
    let (commits, commit_writes, reopens) = metrics;
    let t = &settings.titanic;
    let dir = t.data_dir();
    let mut config = domo_titanic::server::TitanicConfig::new(
        [endpoint],
        dir.join(crate::config::TITANIC_STORE_FILE),
    );
    config.heartbeat = settings.core().heartbeat;
    config.sessions = t.sessions;
    // The broker serves the three services itself (serve_in_process): only the dispatcher
    // connects, as a client.
    config.workers = false;
    config.store.limits.max_bytes = t.max_bytes;
    // Steps of a tenth of the bound (at least the default 100 us): a slower machine has
    // longer gaps between arrivals, and a longer bound says the operator accepts the wait.
    config.store.linger.max = t.commit_linger;
    config.store.linger.step = (t.commit_linger / 10).max(config.store.linger.step);
    config.store.on_commit = Some(Arc::new(move |d: Duration, writes: usize| {
        commits.observe(d.as_secs_f64());
        commit_writes.observe(writes as f64);
    }));
    config.store.on_reopen = Some(Arc::new(move || reopens.inc()));
    if t.store == crate::config::TitanicStore::Log {
        config.store_path = dir.join(TITANIC_LOG_DIR);
        config.backend = domo_titanic::server::Backend::Log {
            import: Some(dir.join(crate::config::TITANIC_STORE_FILE)),
        };
    }
    if t.store == crate::config::TitanicStore::Postgres {
        let password = match &t.password_file {
            None => Ok(None),
            Some(path) => std::fs::read_to_string(path)
                .map(|p| Some(p.trim().to_string()))
                .map_err(|e| format!("titanic.password_file {}: {e}", path.display())),
        };
        match password {
            Ok(password) => {
                let mut pg = domo_titanic::store::postgres::PostgresOptions::new(t.url.clone());
                pg.password = password;
                pg.limits.max_bytes = t.max_bytes;
                pg.commit_timeout = t.commit_timeout;
                pg.require_sync_standby = t.require_sync_standby;
                pg.ca_file = t.ca_file.clone();
                config.backend = domo_titanic::server::Backend::Postgres(Box::new(pg));
            }
            Err(message) => {
                error!(error = %message, "Cannot read the Titanic database password");
                let status = Arc::new(domo_titanic::server::Status::default());
                status.fail_with(&message);
                let (stop, _) = tokio::sync::oneshot::channel::<()>();
                return EmbeddedTitanic {
                    services: None,
                    status,
                    stop,
                    task: None,
                };
            }
        }
    }
    config.dispatcher.expire_after = t.expire_after;
    config.dispatcher.expire_interval =
        (t.expire_after / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    config.dispatcher.request_timeout = t.request_timeout;
    // One of a pair: stored requests go out only while this broker is active (its own
    // dispatcher must not vote it active, and a passive broker would drop them anyway).
    config.dispatcher.active = serving;
    config.transport.security = security;
    let status = Arc::new(domo_titanic::server::Status::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    if let Err(e) = std::fs::create_dir_all(&dir) {
        error!(error = %e, path = %dir.display(), "Cannot create the Titanic data directory");
        status.fail_with(&format!(
            "cannot create the Titanic data directory {}: {e}",
            dir.display()
        ));
        return EmbeddedTitanic {
            services: None,
            status,
            stop,
            task: None,
        };
    }
    match domo_titanic::server::open(config, status.clone()).await {
        Ok(opened) => {
            let services = Some(opened.in_process());
            let task = tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.await;
                };
                if let Err(e) = opened.serve(shutdown).await {
                    error!(error = %e, "Titanic failed");
                }
            });
            EmbeddedTitanic {
                services,
                status,
                stop,
                task: Some(task),
            }
        }
        Err(e) => {
            error!(error = %e, path = %dir.display(), "Titanic not started");
            EmbeddedTitanic {
                services: None,
                status,
                stop,
                task: None,
            }
        }
    }
}

/// Requests each in-process Titanic service takes at once: the `sessions` setting counts what
/// used to be worker sessions of 32 requests each (the worker SDK's default credit), capped at
/// the largest worker credit.
pub fn in_process_credit(sessions: usize) -> domo_mdp::Credit {
    let n = u32::try_from(sessions.saturating_mul(32))
        .unwrap_or(u32::MAX)
        .min(domo_mdp::extensions::MAX_CREDIT);
    domo_mdp::Credit::new(n).unwrap_or(domo_mdp::Credit::ONE)
}

/// Has `broker` serve Titanic's three services itself, calling `services`.
pub fn serve_in_process(
    broker: &mut crate::shell::BoundBroker,
    services: &domo_titanic::server::InProcess,
    credit: domo_mdp::Credit,
) {
    for service in domo_titanic::service::TitanicService::ALL {
        let Ok(name) = domo_mdp::ServiceName::try_from(service.name()) else {
            continue;
        };
        let services = services.clone();
        let handler: crate::shell::LocalHandler =
            Arc::new(move |body| services.handle(service, body));
        let failed = vec![bytes::Bytes::from_static(domo_titanic::service::ERROR)];
        broker.serve_in_process(name, credit, handler, failed);
    }
}
