//! `domo-titanic`: Titanic (RFC 9) as a standalone program, against any MDP/0.1 broker.
//!
//! Exit status: 0 after SIGINT/SIGTERM, 2 for bad flags, 1 when Titanic cannot run (the
//! store cannot be opened, for example because another process holds it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use domo_client::{Client, ClientOptions};
use domo_mdp::Heartbeat;
use domo_titanic::server::{self, TitanicConfig};
use domo_zmtp::curve::{readable_by_others, CurveClient};
use domo_zmtp::Security;
use tracing::{error, warn};

/// The redb store's file inside `--data-dir`.
const STORE_FILE: &str = "titanic.redb";
/// The log store's directory inside `--data-dir` (the broker's name for it too).
const LOG_DIR: &str = "titanic-log";

/// What `--store` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    /// Segment files in `DATA_DIR/titanic-log`, one synchronous write per group commit.
    Log,
    /// The file `DATA_DIR/titanic.redb` (the store of earlier versions).
    Redb,
}

/// Titanic (ZeroMQ RFC 9): durable, disconnected request/reply for any MDP broker.
///
/// Serves `titanic.request`, `titanic.reply` and `titanic.close` as MDP workers and sends
/// stored requests to their services as an MDP client. Delivery is at-least-once: the
/// services behind Titanic must be idempotent.
#[derive(Debug, Parser)]
#[command(name = "domo-titanic", version)]
struct Args {
    /// Broker endpoint (repeat the flag or give a comma list for failover).
    #[arg(
        long = "broker",
        env = "DOMO_BROKER",
        value_name = "EP",
        value_delimiter = ',',
        default_value = "tcp://127.0.0.1:5555"
    )]
    brokers: Vec<String>,

    /// Directory of the store (see --store); created if missing. Default:
    /// `$STATE_DIRECTORY` (systemd's `StateDirectory=`) if set, else `./titanic-data`.
    #[arg(long, value_name = "PATH")]
    data_dir: Option<PathBuf>,

    /// Where the requests are kept in --data-dir: `log`, segment files in `titanic-log` (a
    /// `titanic.redb` left there by an earlier version is moved into it at start and renamed
    /// `titanic.redb.imported`), or `redb`, the file `titanic.redb` (the earlier store).
    #[arg(
        long,
        value_enum,
        value_name = "STORE",
        env = "DOMO_TITANIC_STORE",
        default_value = "log"
    )]
    store: StoreKind,

    /// Requests never closed are deleted this long after they were submitted, answered or
    /// not (units: ms, s, m, h, d).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_duration)]
    expire_after: Duration,

    /// Heartbeat interval of the worker sessions; must match the broker's (liveness 3).
    #[arg(long, value_name = "DURATION", default_value = "2500ms", value_parser = parse_positive)]
    heartbeat: Duration,

    /// How long the dispatcher waits for a service's reply before it retries.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_positive)]
    request_timeout: Duration,

    /// MDP worker sessions per Titanic service (concurrent requests sharing a commit).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    sessions: u16,

    /// The broker's public CURVE certificate (`NAME.key`, from `domo keygen` or pyzmq):
    /// talk CURVE to a broker with `[security]`. Needs --key.
    #[arg(long, value_name = "FILE", env = "DOMO_TITANIC_SERVER_KEY")]
    server_key: Option<PathBuf>,

    /// Titanic's own secret CURVE certificate (`NAME.key_secret`); the broker checks its
    /// public key (its `call` and `serve` rights). Needs --server-key.
    #[arg(long, value_name = "FILE", env = "DOMO_TITANIC_KEY")]
    key: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing();
    let config = match config(&args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("domo-titanic: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(error = %e, "Cannot start the runtime");
            return ExitCode::from(1);
        }
    };
    if let Some(dir) = config.store_path.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            error!(error = %e, path = %dir.display(), "Cannot create the data directory");
            eprintln!("domo-titanic: --data-dir {}: {e}", dir.display());
            return ExitCode::from(1);
        }
    }
    match runtime.block_on(server::run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "Titanic failed");
            eprintln!("domo-titanic: {e}");
            ExitCode::from(1)
        }
    }
}

/// Checks the flags and builds the configuration (nothing is opened or created yet).
fn config(args: &Args) -> Result<TitanicConfig, String> {
    let brokers: Vec<String> = args
        .brokers
        .iter()
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect();
    if brokers.is_empty() {
        return Err("--broker: no endpoint given".into());
    }
    for ep in &brokers {
        // The client SDK parses endpoints without opening anything.
        Client::new(ClientOptions::new([ep.clone()]))
            .map_err(|e| format!("--broker {ep:?}: {e}"))?;
    }
    let dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => default_data_dir(std::env::var_os("STATE_DIRECTORY")),
    };
    let mut config = TitanicConfig::new(brokers, dir.join(STORE_FILE));
    if args.store == StoreKind::Log {
        config.store_path = dir.join(LOG_DIR);
        config.backend = server::Backend::Log {
            import: Some(dir.join(STORE_FILE)),
        };
    }
    if let Some(keys) = curve_keys(args.server_key.as_deref(), args.key.as_deref())? {
        config.transport.security = Security::CurveClient(keys);
    }
    config.heartbeat = Heartbeat {
        interval: args.heartbeat,
        liveness: Heartbeat::DEFAULT_LIVENESS,
    };
    config.sessions = usize::from(args.sessions);
    config.dispatcher.expire_after = args.expire_after;
    config.dispatcher.request_timeout = args.request_timeout;
    config.dispatcher.expire_interval =
        (args.expire_after / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    Ok(config)
}

/// The CURVE keys of --server-key and --key: both or neither. A secret certificate others
/// may read is used, with a warning (pyzmq writes them 0644).
fn curve_keys(
    server_key: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<CurveClient>, String> {
    let Some(keys) = CurveClient::from_flags(server_key, key, "Titanic's")? else {
        return Ok(None);
    };
    let ours = key.unwrap_or(Path::new(""));
    if readable_by_others(ours).unwrap_or(false) {
        warn!(path = %ours.display(), "Secret certificate readable by group or others; chmod 600 it");
    }
    Ok(Some(keys))
}

/// `$STATE_DIRECTORY` (its first entry: systemd lists several separated by `:`), else
/// `./titanic-data`.
fn default_data_dir(state_directory: Option<std::ffi::OsString>) -> PathBuf {
    state_directory
        .and_then(|v| {
            let text = v.to_string_lossy().into_owned();
            text.split(':').find(|s| !s.is_empty()).map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from("titanic-data"))
}

/// Parses `1500ms`, `30s`, `10m`, `2h` or `7d`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        format!("invalid duration {text:?}: expected a number and a unit, e.g. 30s or 7d")
    })?;
    let unit_secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "invalid duration {text:?}: the unit must be ms, s, m, h or d"
            ))
        }
    };
    n.checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("invalid duration {text:?}: too large"))
}

/// A duration greater than zero.
fn parse_positive(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!(
            "invalid duration {text:?}: must be greater than zero"
        )),
        d => Ok(d),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_ms_s_m_h_and_d() {
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "7", "d", "1w", "-1s", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_positive("0s").is_err());
    }

    #[test]
    fn brokers_come_from_repeated_flags_or_a_comma_list() {
        let args = Args::parse_from([
            "domo-titanic",
            "--broker",
            "tcp://a:1,tcp://b:2",
            "--broker",
            "ipc:///tmp/c",
            "--data-dir",
            "/nonexistent/titanic",
        ]);
        assert_eq!(args.brokers, ["tcp://a:1", "tcp://b:2", "ipc:///tmp/c"]);
        assert!(config(&args).is_ok(), "nothing is created while checking");
        let bad = Args::parse_from(["domo-titanic", "--broker", "udp://x:1"]);
        assert!(config(&bad).is_err());
    }

    #[test]
    fn curve_keys_come_in_pairs_and_errors_name_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let cert = domo_zmtp::curve::Certificate::new(domo_zmtp::KeyPair::generate().secret);
        cert.save(dir.path(), "t").unwrap();
        let public = dir.path().join("t.key");
        let secret = dir.path().join("t.key_secret");
        let missing = dir.path().join("missing.key");
        assert!(curve_keys(None, None).unwrap().is_none());
        let keys = curve_keys(Some(&public), Some(&secret)).unwrap().unwrap();
        assert_eq!(keys.server_key, cert.public);
        let err = curve_keys(Some(&public), None).unwrap_err();
        assert!(err.starts_with("--server-key needs --key"), "{err}");
        let err = curve_keys(None, Some(&secret)).unwrap_err();
        assert!(err.starts_with("--key needs --server-key"), "{err}");
        let err = curve_keys(Some(&missing), Some(&secret)).unwrap_err();
        assert!(err.starts_with("--server-key "), "{err}");
        let err = curve_keys(Some(&public), Some(&public)).unwrap_err();
        assert!(
            err.starts_with("--key ") && err.contains("secret-key"),
            "{err}"
        );
        let args = Args::parse_from([
            "domo-titanic",
            "--server-key",
            public.to_str().unwrap(),
            "--key",
            secret.to_str().unwrap(),
        ]);
        let security = config(&args).unwrap().transport.security;
        assert!(matches!(security, Security::CurveClient(_)), "{security:?}");
    }

    #[test]
    fn the_store_is_the_log_unless_redb_is_asked_for() {
        let args = Args::parse_from(["domo-titanic", "--data-dir", "/srv/t"]);
        let log = config(&args).unwrap();
        assert_eq!(log.store_path, PathBuf::from("/srv/t/titanic-log"));
        match log.backend {
            server::Backend::Log { import } => {
                assert_eq!(import, Some(PathBuf::from("/srv/t/titanic.redb")));
            }
            other => panic!("{other:?}"),
        }
        let args = Args::parse_from(["domo-titanic", "--data-dir", "/srv/t", "--store", "redb"]);
        let redb = config(&args).unwrap();
        assert_eq!(redb.store_path, PathBuf::from("/srv/t/titanic.redb"));
        assert!(matches!(redb.backend, server::Backend::Redb));
        assert!(Args::try_parse_from(["domo-titanic", "--store", "postgres"]).is_err());
    }

    #[test]
    fn the_data_dir_defaults_to_the_systemd_state_directory() {
        assert_eq!(default_data_dir(None), PathBuf::from("titanic-data"));
        assert_eq!(
            default_data_dir(Some("/var/lib/domo:/var/lib/other".into())),
            PathBuf::from("/var/lib/domo")
        );
    }
}
