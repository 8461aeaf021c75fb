//! `domo-broker`: the Majordomo broker daemon.
//!
//! Exit codes: 0 after a clean shutdown (SIGINT/SIGTERM, after the drain) or a successful
//! `--check-config` / `--print-config`; 1 for a runtime failure (for example an endpoint or
//! the metrics address that cannot be bound); 2 for a usage or configuration error.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use domo_broker::config::{
    describe_heartbeat, HaRole, HaSettings, LogFormat, Overrides, Settings, DEFAULT_CONFIG,
};
use domo_broker::duration::parse_duration;
use domo_broker::http;
use domo_broker::metrics::Metrics;
use domo_broker::shell::{self, Control, Health, ShellConfig, CONTROL_CAPACITY};
use sd_notify::NotifyState;
use tokio::sync::mpsc;
use tracing::{error, info, warn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

/// Exit code for a configuration or usage error.
const EXIT_CONFIG: u8 = 2;
/// Exit code for a runtime failure.
const EXIT_RUNTIME: u8 = 1;

/// The domo Majordomo (MDP/0.1) broker.
///
/// Settings come from built-in defaults, then the --config file, then the environment
/// variables named below, then flags (later wins). Without --config the built-in defaults
/// are used; `--print-default-config` shows them, documented. Exit codes: 0 clean shutdown,
/// 1 runtime failure (e.g. cannot bind), 2 configuration or usage error.
#[derive(Debug, Parser)]
#[command(version = VERSION.as_str(), about, long_about)]
struct Cli {
    /// Configuration file (TOML). Unknown keys and bad values are errors.
    #[arg(long, short = 'c', value_name = "PATH", env = "DOMO_CONFIG")]
    config: Option<PathBuf>,
    /// Check the configuration (file, env, flags) and exit 0 if valid, 2 if not. Binds
    /// nothing.
    #[arg(long)]
    check_config: bool,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Print the documented default configuration file and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Endpoint to bind: tcp://host:port, tcp://*:port or ipc://path. Repeat for several
    /// [default: tcp://127.0.0.1:5555; config broker.bind]
    #[arg(
        long = "bind",
        value_name = "EP",
        env = "DOMO_BROKER__BIND",
        value_delimiter = ','
    )]
    binds: Option<Vec<String>>,
    /// Heartbeat interval towards workers, e.g. 2500ms, 1s. Workers must use the same value
    /// [default: 2500ms; config broker.heartbeat]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    heartbeat: Option<Duration>,
    /// Silent heartbeat intervals after which a worker is considered dead
    /// [default: 3; config broker.liveness]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    liveness: Option<u32>,
    /// Address of the /metrics, /healthz, /readyz listener; port 0 picks a free port (the
    /// address is logged); "off" disables it [default: 127.0.0.1:9464; config metrics.listen]
    #[arg(long, value_name = "ADDR|off", env = "DOMO_METRICS__LISTEN")]
    metrics_listen: Option<String>,
    /// Log filter when RUST_LOG is unset, e.g. info or "info,domo_zmtp=debug"
    /// [default: info; config log.level]
    #[arg(long, value_name = "FILTER", env = "DOMO_LOG__LEVEL")]
    log_level: Option<String>,
    /// Log line format on stderr [default: text; config log.format]
    #[arg(long, value_name = "FORMAT", env = "DOMO_LOG__FORMAT")]
    log_format: Option<LogFormat>,
    /// Directory of the Titanic store [default: $STATE_DIRECTORY if set, else
    /// ./titanic-data; config titanic.data_dir]
    #[arg(long, value_name = "PATH", env = "DOMO_TITANIC__DATA_DIR")]
    titanic_data_dir: Option<PathBuf>,
    /// Do not run the embedded Titanic (RFC 9) service [config titanic.enabled]
    #[arg(long)]
    no_titanic: bool,
    /// Binary Star: this broker's role in a primary/backup pair. Any --ha-* flag makes the
    /// broker one of a pair and needs role, bind and peer [config ha.role]
    #[arg(long, value_name = "ROLE", env = "DOMO_HA__ROLE")]
    ha_role: Option<HaRole>,
    /// Binary Star: this broker's state endpoint, where the peer connects, e.g.
    /// tcp://10.0.0.1:5556 [config ha.bind]
    #[arg(long, value_name = "EP", env = "DOMO_HA__BIND")]
    ha_bind: Option<String>,
    /// Binary Star: the peer's state endpoint [config ha.peer]
    #[arg(long, value_name = "EP", env = "DOMO_HA__PEER")]
    ha_peer: Option<String>,
    /// Binary Star: interval of the state exchange; the peer counts as silent after two
    /// [default: 1000ms; config ha.heartbeat]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    ha_heartbeat: Option<Duration>,
}

/// `--version`: the crate version and the git commit.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (git {})",
        env!("CARGO_PKG_VERSION"),
        domo_broker::GIT_SHA
    )
});

impl Cli {
    fn overrides(&self) -> Overrides {
        Overrides {
            binds: self.binds.clone(),
            heartbeat: self.heartbeat,
            liveness: self.liveness,
            metrics_listen: self.metrics_listen.clone(),
            log_level: self.log_level.clone(),
            log_format: self.log_format,
            titanic_data_dir: self.titanic_data_dir.clone(),
            no_titanic: self.no_titanic,
            ha_role: self.ha_role.map(Into::into),
            ha_bind: self.ha_bind.clone(),
            ha_peer: self.ha_peer.clone(),
            ha_heartbeat: self.ha_heartbeat,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_default_config {
        print!("{DEFAULT_CONFIG}");
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::load(cli.config.as_deref(), &cli.overrides()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("domo-broker: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.print_config {
        print!("{}", settings.to_toml());
        return ExitCode::SUCCESS;
    }
    if cli.check_config {
        let source = cli
            .config
            .as_ref()
            .map_or_else(|| "built-in defaults".into(), |p| p.display().to_string());
        println!("domo-broker: configuration OK ({source})");
        return ExitCode::SUCCESS;
    }
    let filter = init_logging(&settings);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("domo-broker: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    runtime.block_on(run(cli, settings, filter))
}

type FilterHandle = reload::Handle<EnvFilter, Registry>;

/// Sets up stderr logging; returns the handle that swaps the filter on reload.
fn init_logging(settings: &Settings) -> FilterHandle {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.log_level));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::stderr().is_terminal();
    let (text, json) = match settings.log_format {
        LogFormat::Text => (
            Some(fmt::layer().with_writer(std::io::stderr).with_ansi(ansi)),
            None,
        ),
        LogFormat::Json => (None, Some(fmt::layer().json().with_writer(std::io::stderr))),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .init();
    handle
}

async fn run(cli: Cli, settings: Settings, filter: FilterHandle) -> ExitCode {
    match &settings.file {
        Some(path) => info!(config = %path.display(), "Configuration loaded"),
        None => info!("No configuration file; using built-in defaults"),
    }
    info!(
        heartbeat = %describe_heartbeat(&settings.core.heartbeat),
        drain_timeout = ?settings.drain_timeout,
        "Starting domo-broker {}",
        VERSION.as_str()
    );
    log_fd_limit();
    let config = ShellConfig {
        binds: settings.binds.clone(),
        core: settings.core.clone(),
        ha: settings.ha.as_ref().map(HaSettings::link),
        ..ShellConfig::default()
    };
    let bound = match shell::bind(config).await {
        Ok(b) => b,
        Err(e) => {
            error!(error = %e, "Cannot start");
            eprintln!("domo-broker: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let (control, control_rx) = mpsc::channel(CONTROL_CAPACITY);
    let metrics = Arc::new(Mutex::new(Metrics::new(settings.metrics_max_services)));
    let bound = bound.with_metrics(metrics.clone());
    let health = bound.health();
    // Titanic's store opens before READY=1, so systemd sees a broker that is fully up.
    let titanic = if settings.titanic.enabled {
        let endpoint = local_endpoint(&bound.endpoints()[0]);
        let (commits, reopens) = {
            let m = metrics
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (m.titanic_commit_duration(), m.titanic_store_reopens())
        };
        let serving = settings.ha.as_ref().map(|_| bound.serving());
        Some(start_titanic(&settings, endpoint, (commits, reopens), serving).await)
    } else {
        info!("Titanic disabled");
        None
    };
    if let Some(addr) = settings.metrics_listen {
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
        };
        tokio::spawn(http::serve(listener, endpoints));
    }
    let (titanic_stop, titanic_task) = match titanic {
        Some(Titanic {
            stop,
            task: Some(t),
            ..
        }) => (Some(stop), Some(t)),
        _ => (None, None),
    };
    let signals = tokio::spawn(handle_signals(
        cli,
        settings,
        control,
        filter,
        titanic_stop.map(|stop| (stop, titanic_task)),
    ));
    let notifier = tokio::spawn(notify_systemd(health));
    let result = bound.run_with(control_rx).await;
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

/// Fewer open files than this is too few for a broker: every client and worker is a TCP
/// connection (the shipped unit sets `LimitNOFILE=65536`).
const FEW_FILES: u64 = 4096;

/// Logs the open-file limit, with a warning when it would cap the peers the broker can take.
fn log_fd_limit() {
    let Some((soft, hard)) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| open_files_limit(&text))
    else {
        return;
    };
    let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    let (soft_text, hard_text) = (show(soft), show(hard));
    match soft {
        Some(n) if n < FEW_FILES => warn!(
            soft = %soft_text,
            hard = %hard_text,
            "Open-file limit is low: each client and worker connection takes one; raise it \
             (ulimit -n, or LimitNOFILE= in the unit)"
        ),
        _ => {
            info!(soft = %soft_text, hard = %hard_text, "Open-file limit (one per connected peer)")
        }
    }
}

/// The "Max open files" soft and hard limits from `/proc/self/limits` text; `None` for
/// "unlimited".
fn open_files_limit(text: &str) -> Option<(Option<u64>, Option<u64>)> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let mut values = line["Max open files".len()..].split_whitespace();
    let mut next = || -> Option<Option<u64>> {
        let v = values.next()?;
        Some(if v == "unlimited" {
            None
        } else {
            Some(v.parse().ok()?)
        })
    };
    Some((next()?, next()?))
}

/// The embedded Titanic: its status for `/readyz` and metrics, and how to stop it.
struct Titanic {
    status: Arc<domo_titanic::server::Status>,
    stop: tokio::sync::oneshot::Sender<()>,
    /// `None` when the store could not be opened (nothing runs; `/readyz` says why).
    task: Option<tokio::task::JoinHandle<()>>,
}

/// The endpoint Titanic connects to: `bound` itself, with a wildcard host replaced by
/// loopback.
fn local_endpoint(bound: &domo_zmtp::Endpoint) -> String {
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
/// `metrics` are the commit latency histogram and the store reopen counter.
async fn start_titanic(
    settings: &Settings,
    endpoint: String,
    metrics: (prometheus::Histogram, prometheus::IntCounter),
    serving: Option<tokio::sync::watch::Receiver<bool>>,
) -> Titanic {
    let (commits, reopens) = metrics;
    let t = &settings.titanic;
    let dir = t.data_dir();
    let mut config = domo_titanic::server::TitanicConfig::new(
        [endpoint],
        dir.join(domo_broker::config::TITANIC_STORE_FILE),
    );
    config.heartbeat = settings.core.heartbeat;
    config.sessions = t.sessions;
    config.store.limits.max_bytes = t.max_bytes;
    config.store.on_commit = Some(Arc::new(move |d: Duration| {
        commits.observe(d.as_secs_f64())
    }));
    config.store.on_reopen = Some(Arc::new(move || reopens.inc()));
    config.dispatcher.expire_after = t.expire_after;
    config.dispatcher.expire_interval =
        (t.expire_after / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    config.dispatcher.request_timeout = t.request_timeout;
    // One of a pair: stored requests go out only while this broker is active (its own
    // dispatcher must not vote it active, and a passive broker would drop them anyway).
    config.dispatcher.active = serving;
    let status = Arc::new(domo_titanic::server::Status::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    if let Err(e) = std::fs::create_dir_all(&dir) {
        error!(error = %e, path = %dir.display(), "Cannot create the Titanic data directory");
        status.fail_with(&format!(
            "cannot create the Titanic data directory {}: {e}",
            dir.display()
        ));
        return Titanic {
            status,
            stop,
            task: None,
        };
    }
    match domo_titanic::server::open(config, status.clone()).await {
        Ok(opened) => {
            let task = tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.await;
                };
                if let Err(e) = opened.serve(shutdown).await {
                    error!(error = %e, "Titanic failed");
                }
            });
            Titanic {
                status,
                stop,
                task: Some(task),
            }
        }
        Err(e) => {
            error!(error = %e, path = %dir.display(), "Titanic not started");
            Titanic {
                status,
                stop,
                task: None,
            }
        }
    }
}

/// Tells systemd (when `NOTIFY_SOCKET` is set; a no-op otherwise) that the broker is ready,
/// then keeps `STATUS=` current and pings the watchdog, if one is enabled, only while the
/// loop keeps waking up.
async fn notify_systemd(health: Arc<Health>) {
    notify(&[NotifyState::Ready, NotifyState::Status(&health.status())]);
    let watchdog = sd_notify::watchdog_enabled();
    if let Some(period) = watchdog {
        info!(period = ?period, "systemd watchdog enabled");
    }
    let every = watchdog.map_or(Duration::from_secs(5), |p| {
        (p / 2).min(Duration::from_secs(5))
    });
    let mut last_stamp = health.tick_stamp();
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let stamp = health.tick_stamp();
        let status = health.status();
        if watchdog.is_some() && stamp != last_stamp {
            notify(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
        } else {
            if watchdog.is_some() {
                warn!("Main loop has not ticked; withholding the watchdog ping");
            }
            notify(&[NotifyState::Status(&status)]);
        }
        last_stamp = stamp;
    }
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        warn!(%error, "sd_notify failed");
    }
}

/// SIGTERM/SIGINT: drain (a second one stops at once). SIGHUP: reload the configuration.
async fn handle_signals(
    cli: Cli,
    mut settings: Settings,
    control: mpsc::Sender<Control>,
    filter: FilterHandle,
    mut titanic: Option<(
        tokio::sync::oneshot::Sender<()>,
        Option<tokio::task::JoinHandle<()>>,
    )>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        error!("Cannot install signal handlers");
        return;
    };
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = hup.recv() => {
                reload(&cli, &mut settings, &control, &filter).await;
                continue;
            }
        }
        if stopping {
            info!("Second signal: stopping without waiting for in-flight requests");
            let _ = control.send(Control::Stop).await;
            continue;
        }
        stopping = true;
        info!(timeout = ?settings.drain_timeout, "Shutting down: draining");
        notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
        if settings.ha.is_some() {
            // First of all, so the peer can take over while Titanic and the drain finish.
            let _ = control.send(Control::LeavePair).await;
        }
        if let Some((stop, task)) = titanic.take() {
            // Titanic first: it stops taking requests, finishes the ones it holds and
            // disconnects its workers while the broker still routes their replies.
            info!("Stopping Titanic");
            let _ = stop.send(());
            if let Some(task) = task {
                let interrupted = tokio::select! {
                    _ = task => false,
                    _ = term.recv() => true,
                    _ = int.recv() => true,
                };
                if interrupted {
                    info!("Second signal: stopping without waiting for in-flight requests");
                    let _ = control.send(Control::Stop).await;
                    continue;
                }
            }
        }
        let timeout = settings.drain_timeout;
        let _ = control.send(Control::Drain { timeout }).await;
    }
}

/// Re-reads the file, applies what can change live and logs what needs a restart.
async fn reload(
    cli: &Cli,
    settings: &mut Settings,
    control: &mpsc::Sender<Control>,
    filter: &FilterHandle,
) {
    notify(&[NotifyState::Reloading]);
    info!("SIGHUP: reloading the configuration");
    let new = match Settings::load(cli.config.as_deref(), &cli.overrides()) {
        Ok(new) => new,
        Err(error) => {
            error!(%error, "Reload failed; keeping the running configuration");
            notify(&[NotifyState::Ready]);
            return;
        }
    };
    if std::env::var_os("RUST_LOG").is_some() {
        if new.log_level != settings.log_level {
            warn!("RUST_LOG is set; log.level change ignored");
        }
    } else if let Err(error) = filter.reload(EnvFilter::new(&new.log_level)) {
        warn!(%error, "Cannot change the log filter");
    } else {
        info!(filter = %new.log_level, "Log filter applied");
    }
    let _ = control.send(Control::Reconfigure(new.core.clone())).await;
    for key in settings.restart_needed(&new) {
        warn!(key, "Changed setting needs a restart to apply");
    }
    let mut applied = new;
    // What needs a restart keeps running with the old value until then.
    applied.binds.clone_from(&settings.binds);
    applied.metrics_listen = settings.metrics_listen;
    applied.metrics_max_services = settings.metrics_max_services;
    applied.log_format = settings.log_format;
    applied.titanic = settings.titanic.clone();
    applied.ha = settings.ha.clone();
    *settings = applied;
    notify(&[NotifyState::Ready]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_files_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             95000                95000                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(open_files_limit(text), Some((Some(1024), Some(524_288))));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(open_files_limit(unlimited), Some((None, None)));
        assert_eq!(open_files_limit("Max processes 1 1 processes\n"), None);
        assert_eq!(open_files_limit("Max open files  lots  1 files\n"), None);
    }
}
