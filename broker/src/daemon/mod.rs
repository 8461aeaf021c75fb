//! The daemon around the shell: logging, resource checks, the embedded Titanic, systemd,
//! signals and reload, and [`run`], which puts them together. `main.rs` only parses flags.

pub mod limits;
pub mod logging;
pub mod signals;
pub mod systemd;
pub mod titanic;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use domo_mdp::LockExt;
use tokio::sync::mpsc;
use tracing::{error, info};

use self::logging::FilterHandle;
use crate::config::{describe_heartbeat, ConfigSource, Settings};
use crate::http;
use crate::metrics::Metrics;
use crate::security::BrokerKeys;
use crate::shell::{self, ShellConfig, CONTROL_CAPACITY};
use crate::topic_store::StoreAt;

/// Exit code for a configuration or usage error.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for a runtime failure.
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code for a CURVE key file that cannot be used (`[security]`: missing, unreadable,
/// malformed, or a secret key readable by group or others).
pub const EXIT_KEYS: u8 = 3;

/// The version string: the crate version and the git commit.
pub fn version() -> &'static str {
    static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("{} (git {})", env!("CARGO_PKG_VERSION"), crate::GIT_SHA)
    });
    VERSION.as_str()
}

/// Runs the broker with `settings` until it is stopped (signals, drain) and returns the
/// process's exit code. `source` is where a reload reads the configuration again; `keys`
/// are the CURVE keys `settings.security` names (`None`: no security).
pub async fn run(
    source: ConfigSource,
    settings: Settings,
    keys: Option<BrokerKeys>,
    filter: FilterHandle,
) -> ExitCode {
    match &settings.file {
        Some(path) => info!(config = %path.display(), "Configuration loaded"),
        None => info!("No configuration file; using built-in defaults"),
    }
    info!(
        heartbeat = %describe_heartbeat(&settings.core().heartbeat),
        drain_timeout = ?settings.shutdown.drain_timeout,
        "Starting domo-broker {}",
        version()
    );
    limits::log_fd_limit();
    let mut config = ShellConfig {
        binds: settings.broker.bind.clone(),
        core: settings.core(),
        ha: settings
            .ha
            .as_ref()
            .map(|ha| ha.link(keys.as_ref().and_then(BrokerKeys::pair_keys))),
        keys: keys.as_ref().map(|k| k.authorized.clone()),
        ..ShellConfig::default()
    };
    match &keys {
        Some(k) => {
            config.transport.security = k.server();
            info!(
                key = %k.keypair.public,
                authorized = k.authorized.len(),
                "CURVE security: only authorized keys may connect"
            );
        }
        None => info!("No security (mechanism null): any peer may connect"),
    }
    let transport = config.transport.clone();
    let bound = match shell::bind(config).await {
        Ok(b) => b,
        Err(e) => {
            error!(error = %e, "Cannot start");
            eprintln!("domo-broker: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let (control, control_rx) = mpsc::channel(CONTROL_CAPACITY);
    let metrics = Arc::new(Mutex::new(Metrics::new(settings.metrics.max_services)));
    let mut bound = bound.with_metrics(metrics.clone());
    let health = bound.health();
    // Titanic's store opens before READY=1, so systemd sees a broker that is fully up.
    let titanic = if settings.titanic.enabled {
        // Titanic's three services are served by the broker itself (no connection at all);
        // its dispatcher, a client, connects in process: no loopback TCP between Titanic and
        // its own broker. Loopback TCP only if that bind fails, which it should not.
        let endpoint = match bound.bind_in_process().await {
            Ok(endpoint) => endpoint.to_string(),
            Err(e) => {
                error!(error = %e, "Cannot bind the in-process endpoint; Titanic uses loopback TCP");
                titanic::local_endpoint(&bound.endpoints()[0])
            }
        };
        let (commits, commit_writes, reopens) = {
            let m = metrics.lock_unpoisoned();
            (
                m.titanic_commit_duration(),
                m.titanic_commit_requests(),
                m.titanic_store_reopens(),
            )
        };
        let serving = settings.ha.as_ref().map(|_| bound.serving());
        let security = keys
            .as_ref()
            .map_or_else(domo_zmtp::Security::default, BrokerKeys::own_client);
        let metrics = (commits, commit_writes, reopens);
        let titanic = titanic::start(&settings, endpoint, metrics, serving, security).await;
        if let Some(services) = &titanic.services {
            let credit = titanic::in_process_credit(settings.titanic.sessions);
            titanic::serve_in_process(&mut bound, services, credit);
        }
        Some(titanic)
    } else {
        info!("Titanic disabled");
        None
    };
    let mut topic_status = None;
    let mut topics_endpoint = None;
    let topics = if settings.topics.enabled {
        let t = &settings.topics;
        let link = shell::TopicsLink {
            subscribe: t.subscribe.clone(),
            publish: t.publish.clone(),
            core: t.core(),
            transport: shell::topic_transport_options(&transport),
            store: Some(match t.store {
                // (`log` is refused for topics when the configuration is read.)
                crate::config::TitanicStore::Redb | crate::config::TitanicStore::Log => {
                    StoreAt::Dir(t.data_dir())
                }
                crate::config::TitanicStore::Postgres => StoreAt::Postgres {
                    url: t.url.clone(),
                    // Unreadable: no password, and the database says why it refuses.
                    password: t.password_file.as_ref().and_then(|path| {
                        std::fs::read_to_string(path)
                            .map_err(|e| {
                                error!(error = %e, path = %path.display(), "Cannot read topics.password_file");
                            })
                            .ok()
                            .map(|p| p.trim().to_string())
                    }),
                    ca_file: t.ca_file.clone(),
                    timeout: std::time::Duration::from_secs(5),
                },
            }),
        };
        match shell::bind_topics(link).await {
            Ok(topics) => {
                // The topic.* services: served by the broker itself, answered by the
                // topics task.
                let services = topics.services();
                for service in crate::core::topics::TopicService::ALL {
                    let Ok(name) = domo_mdp::ServiceName::try_from(service.name()) else {
                        continue;
                    };
                    let failed = domo_mdp::topic::error_reply(
                        domo_mdp::topic::Status::Error,
                        "topic service failed",
                    );
                    bound.serve_in_process(
                        name,
                        domo_mdp::Credit::new(domo_mdp::extensions::MAX_CREDIT)
                            .unwrap_or(domo_mdp::Credit::ONE),
                        services.handler(service),
                        failed,
                    );
                }
                topic_status = Some(topics.store_status());
                topics_endpoint = Some(reachable(&topics.subscribe_endpoint().to_string()));
                let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                let bound = topics.with_metrics(metrics.lock_unpoisoned().topics());
                let task = tokio::spawn(bound.run(async move {
                    let _ = stopped.await;
                }));
                Some((stop, task))
            }
            Err(e) => {
                error!(error = %e, subscribe = %t.subscribe, publish = %t.publish, "Cannot bind the topic endpoints");
                eprintln!("domo-broker: topics ({} / {}): {e}", t.subscribe, t.publish);
                return ExitCode::from(EXIT_RUNTIME);
            }
        }
    } else {
        info!("Topics disabled");
        None
    };
    let gateway_metrics = metrics.lock_unpoisoned().gateway();
    let gateway = match settings.gateway.listen {
        Some(addr) => {
            let extras = GatewayExtras {
                keys: keys.as_ref(),
                metrics: gateway_metrics,
                topics: topics_endpoint.clone(),
            };
            match start_gateway(&mut bound, &settings, addr, extras).await {
                Ok(stop) => Some(stop),
                Err(message) => {
                    error!(error = %message, addr = %addr, "Cannot start the gateway");
                    eprintln!("domo-broker: gateway {addr}: {message}");
                    return ExitCode::from(EXIT_RUNTIME);
                }
            }
        }
        None => None,
    };
    if let Some(addr) = settings.metrics.listen {
        let listener = match http::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                error!(error = %e, addr = %addr, "Cannot bind the metrics listener");
                eprintln!("domo-broker: metrics listener {addr}: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        let local = listener.local_addr().unwrap_or(addr);
        info!(addr = %local, "Metrics listening on http://{local}/metrics");
        let endpoints = http::Endpoints {
            health: health.clone(),
            metrics,
            control: control.clone(),
            titanic: titanic.as_ref().map(|t| t.status.clone()),
            topics: topic_status.clone(),
            overview: Arc::default(),
        };
        tokio::spawn(http::serve(listener, endpoints));
    }
    let (titanic_stop, titanic_task) = match titanic {
        Some(titanic::EmbeddedTitanic {
            stop,
            task: Some(t),
            ..
        }) => (Some(stop), Some(t)),
        _ => (None, None),
    };
    let signals = tokio::spawn(signals::handle(
        source,
        settings,
        control,
        filter,
        keys.map(|k| k.authorized),
        titanic_stop.map(|stop| (stop, titanic_task)),
    ));
    let notifier = tokio::spawn(systemd::keep_notified(health));
    let result = bound.run_with(control_rx).await;
    if let Some((stop, task)) = gateway {
        let _ = stop.send(());
        if tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .is_err()
        {
            error!("The gateway did not stop within 5 s");
        }
    }
    if let Some((stop, task)) = topics {
        let _ = stop.send(());
        if tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .is_err()
        {
            error!("Topics did not stop within 5 s");
        }
    }
    signals.abort();
    notifier.abort();
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "Broker failed");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// An endpoint bound on every address (`0.0.0.0`, `[::]`), as this host connects to it.
fn reachable(endpoint: &str) -> String {
    endpoint
        .replace("tcp://0.0.0.0:", "tcp://127.0.0.1:")
        .replace("tcp://[::]:", "tcp://[::1]:")
}

/// What the gateway gets besides the settings.
struct GatewayExtras<'a> {
    keys: Option<&'a BrokerKeys>,
    metrics: Option<domo_gateway::GatewayMetrics>,
    /// The topics subscribe endpoint as bound, reachable from this host.
    topics: Option<String>,
}

/// Starts the HTTP gateway on `addr`, talking to `bound` through its in-process endpoint;
/// returns how to stop it.
async fn start_gateway(
    bound: &mut shell::BoundBroker,
    settings: &Settings,
    addr: std::net::SocketAddr,
    extras: GatewayExtras<'_>,
) -> Result<
    (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ),
    String,
> {
    let endpoint = bound
        .bind_in_process()
        .await
        .map_err(|e| format!("cannot bind the in-process endpoint: {e}"))?;
    let config = domo_gateway::GatewayConfig {
        body_limit: settings.gateway.body_limit,
        max_in_flight: settings.gateway.max_in_flight,
        header_timeout: settings.gateway.header_timeout,
        body_timeout: settings.gateway.body_timeout,
        ..domo_gateway::GatewayConfig::default()
    };
    let access = domo_gateway::Access::from_files(
        settings.gateway.tokens_file.as_deref(),
        settings.gateway.psk_file.as_deref(),
    )?;
    let keys = extras.keys;
    let mut options = domo_client::ClientOptions::new([endpoint.to_string()])
        .timeout(config.max_timeout + std::time::Duration::from_secs(1))
        .retries(0)
        .pool_size(64);
    if let Some(k) = keys {
        if let domo_zmtp::Security::CurveClient(curve) = k.own_client() {
            options.curve = Some(curve);
        }
    }
    let client = domo_client::Client::new(options).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| e.to_string())?;
    let local = listener.local_addr().unwrap_or(addr);
    info!(addr = %local, "Gateway listening on http://{local}/v1/");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        let closing = domo_gateway::Closing::default();
        let router = domo_gateway::router(domo_gateway::Setup {
            config,
            access,
            topics: extras.topics,
            metrics: extras.metrics,
            closing: closing.clone(),
            ..domo_gateway::Setup::new(client)
        });
        let header_timeout = config.header_timeout;
        if let Err(e) =
            domo_gateway::serve(listener, router, header_timeout, closing, shutdown).await
        {
            error!(error = %e, "The gateway failed");
        }
    });
    Ok((stop, task))
}
