//! The daemon's configuration: the documented example (built-in defaults), a TOML file, a few
//! environment variables and flags, merged in that order (later wins) into one [`Settings`].
//!
//! Design: [`Settings`] is the file's shape, typed: one field per key, with its doc, and the
//! checks of a single key in the field's serde attributes (durations, ranges, endpoints...).
//! The defaults are the documented example, `deploy/broker.toml`, compiled in as
//! [`DEFAULT_CONFIG`]: the sources are merged as TOML tables (example < file < [`Overrides`])
//! and deserialized once, so a file value and a flag go through the same checks. An error
//! names its key (the serde path) and where that key's value came from: `FILE:LINE: key:`
//! (the line from the parser's spans), `--flag:` or `DOMO_...:` (from the flag's `clap`
//! attributes).
//! What needs a restart is [`RESTART_KEYS`]; SIGHUP applies every other key live.
//! Nothing here binds a socket or opens a file other than the configuration.
//!
//! Adding a key: its typed field, with its doc and, if it has one, its check
//! (`deserialize_with`), in its section struct; the key with its default and comment in
//! `deploy/broker.toml`. Then as needed: its line in [`Settings::core`] if the core uses it,
//! [`RESTART_KEYS`] if a reload cannot apply it, an [`Overrides`] field if it has a flag.
//! Parsing, `--print-config`, the errors and the reload need nothing more.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use clap::builder::{PossibleValue, TypedValueParser as _};
use domo_mdp::Heartbeat;
use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::core::ha::{HaConfig, Role};
use crate::core::{BrokerConfig, QueueLimits};
use crate::duration::parse_duration;

/// The documented example configuration (`deploy/broker.toml`); its values are the defaults.
pub const DEFAULT_CONFIG: &str = include_str!("../../deploy/broker.toml");

/// Default frontend endpoint.
pub const DEFAULT_BIND: &str = "tcp://127.0.0.1:5555";
/// Default metrics and health listener.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// Keys (or whole sections) that only take effect after a restart; a reload (SIGHUP) applies
/// every other key live and logs these as needing a restart when they changed.
pub const RESTART_KEYS: &[&str] = &[
    "broker.bind",
    "metrics.listen",
    "metrics.max_services",
    "log.format",
    "titanic",
    "topics",
    "gateway",
    "ha",
    "security.mechanism",
    "security.secret_key_file",
];

/// Where the daemon's settings come from: a file (if any) and the environment and flags
/// parsed into [`Overrides`]. Kept so that a reload reads the same sources again.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The configuration file.
    pub file: Option<PathBuf>,
    /// What the environment and flags set.
    pub overrides: Overrides,
}

impl ConfigSource {
    /// Reads the file and merges everything into settings.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, line and key (or the flag) that is wrong.
    pub fn load(&self) -> Result<Settings, ConfigError> {
        Settings::load(self.file.as_deref(), &self.overrides)
    }
}

// === the settings: the file's shape ===

/// The effective configuration of the daemon: one section per table of the file.
///
/// It deserializes from a complete table (every key: the defaults come from merging over
/// the example's), so read it with [`Settings::load`] or [`Settings::from_toml`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `[broker]`: endpoints and heartbeat.
    pub broker: BrokerSettings,
    /// `[queue]`: queue limits and re-dispatch.
    pub queue: QueueSettings,
    /// `[metrics]`: the HTTP listener.
    pub metrics: MetricsSettings,
    /// `[log]`.
    pub log: LogSettings,
    /// `[shutdown]`.
    pub shutdown: ShutdownSettings,
    /// `[titanic]`: the embedded Titanic service.
    pub titanic: TitanicSettings,
    /// `[topics]`: publish/subscribe.
    pub topics: TopicsSettings,
    /// `[gateway]`: HTTP in front of the broker.
    pub gateway: GatewaySettings,
    /// `[ha]`: the Binary Star pair; `None`: the broker runs alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha: Option<HaSettings>,
    /// `[security]`: the ZMTP security mechanism of the broker's endpoints.
    pub security: SecuritySettings,
    /// The file the settings came from, if any.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

/// The `[broker]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerSettings {
    /// Endpoints of the ROUTER socket.
    #[serde(deserialize_with = "check::endpoints")]
    pub bind: Vec<String>,
    /// Heartbeat interval towards workers.
    #[serde(with = "positive_duration")]
    pub heartbeat: Duration,
    /// Silent heartbeat intervals after which a worker is considered dead.
    #[serde(deserialize_with = "check::at_least_1")]
    pub liveness: u32,
}

/// The `[queue]` section: limits of the core's queues (see [`BrokerConfig`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// Longest wait of a request for a worker (`0s`: never wait); at most 365 days.
    #[serde(with = "duration_up_to_a_year")]
    pub request_timeout: Duration,
    /// Most requests in one service's queue.
    pub service_max_requests: usize,
    /// Most body bytes in one service's queue.
    pub service_max_bytes: usize,
    /// Most requests in all queues together.
    pub total_max_requests: usize,
    /// Most body bytes in all queues together.
    pub total_max_bytes: usize,
    /// Most requests one client may have accepted and not yet answered.
    pub client_max_requests: usize,
    /// Most bytes of those (body bytes + 256 each).
    pub client_max_bytes: usize,
    /// Re-dispatch a request whose worker was lost.
    pub redispatch: bool,
    /// At most this many times.
    pub max_redispatch: u32,
}

/// The `[metrics]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// The HTTP listener for `/metrics`, `/healthz`, `/readyz`; `None` when `off`.
    #[serde(with = "listen")]
    pub listen: Option<SocketAddr>,
    /// Services that get their own `service` label.
    pub max_services: usize,
}

/// The `[log]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Log filter used when `RUST_LOG` is not set.
    #[serde(deserialize_with = "check::log_filter")]
    pub level: String,
    /// Log line format.
    pub format: LogFormat,
}

/// The `[shutdown]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSettings {
    /// How long a drain waits for in-flight requests.
    #[serde(with = "positive_duration")]
    pub drain_timeout: Duration,
}

/// The `[titanic]` section: the embedded Titanic (RFC 9) service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TitanicSettings {
    /// Whether the broker runs Titanic.
    pub enabled: bool,
    /// The directory of the store; `None`: [`TitanicSettings::default_data_dir`].
    #[serde(
        default,
        deserialize_with = "check::non_empty_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub data_dir: Option<PathBuf>,
    /// Requests never closed are deleted this long after they were stored.
    #[serde(with = "positive_duration")]
    pub expire_after: Duration,
    /// Most encoded bytes of stored requests and replies; past it `titanic.request` says 500.
    #[serde(deserialize_with = "check::at_least_1")]
    pub max_bytes: u64,
    /// How long the dispatcher waits for a service's reply before it retries.
    #[serde(with = "positive_duration")]
    pub request_timeout: Duration,
    /// Concurrency of each Titanic service in units of 32 requests (1 to 1024): the broker
    /// serves `titanic.*` in process, `min(32 * sessions, 1024)` requests at once.
    #[serde(deserialize_with = "check::sessions")]
    pub sessions: usize,
    /// How long a group commit may wait for more submissions once it has one (0: it takes
    /// what is queued at once; at most 100 ms, whole milliseconds).
    #[serde(with = "commit_linger")]
    pub commit_linger: Duration,
    /// Where the requests are kept: `log` (segment files in `data_dir`), `redb` (a file in
    /// `data_dir`) or `postgres` (`url`).
    pub store: TitanicStore,
    /// PostgreSQL: the connection URL (several hosts and `target_session_attrs=read-write`
    /// follow a failover); never a password.
    pub url: String,
    /// PostgreSQL: a file holding the password; `None` when empty.
    #[serde(with = "optional_path")]
    pub password_file: Option<PathBuf>,
    /// PostgreSQL with `sslmode=require`: CA certificates (PEM); `None`: the system's.
    #[serde(with = "optional_path")]
    pub ca_file: Option<PathBuf>,
    /// PostgreSQL: refuse to start unless the server commits to a synchronous standby.
    pub require_sync_standby: bool,
    /// PostgreSQL: a commit not done within this is an error to the client, never a 200.
    #[serde(with = "positive_duration")]
    pub commit_timeout: Duration,
}

/// Where Titanic keeps its requests (and the topics their disk topics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TitanicStore {
    /// Log segments in the data directory (Titanic's default; not for topics).
    Log,
    /// An embedded redb file (the topics' default).
    Redb,
    /// A PostgreSQL database.
    Postgres,
}

/// The `[topics]` section: publish/subscribe with last values (`crate::core::topics`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicsSettings {
    /// Whether the broker serves topics.
    pub enabled: bool,
    /// The XPUB endpoint, where subscribers (`SUB` sockets) connect.
    #[serde(deserialize_with = "check::endpoint")]
    pub subscribe: String,
    /// The XSUB endpoint, where publishers (`PUB` sockets) connect.
    #[serde(deserialize_with = "check::endpoint")]
    pub publish: String,
    /// Most messages waiting for one subscriber; past it the oldest are dropped.
    #[serde(deserialize_with = "check::at_least_1")]
    pub subscriber_max_messages: usize,
    /// Most bytes waiting for one subscriber; past it the oldest are dropped.
    #[serde(deserialize_with = "check::at_least_1")]
    pub subscriber_max_bytes: usize,
    /// A subscriber lagging (dropping, and not back to half its queue) this long is
    /// disconnected.
    #[serde(with = "positive_duration")]
    pub slow_subscriber_timeout: Duration,
    /// Memory for the last value of every topic, least recently published evicted first.
    #[serde(deserialize_with = "check::at_least_1")]
    pub last_values_max_bytes: usize,
    /// The sum of the `max_bytes` of all created topics may not exceed this.
    #[serde(deserialize_with = "check::at_least_1")]
    pub retained_max_bytes: u64,
    /// The directory of the disk topics' store; `None`: [`TopicsSettings::data_dir`]'s
    /// default.
    #[serde(
        default,
        deserialize_with = "check::non_empty_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub data_dir: Option<PathBuf>,
    /// Where the disk topics are kept: `redb` (a file in `data_dir`) or `postgres` (`url`).
    pub store: TitanicStore,
    /// PostgreSQL: the connection URL; never a password.
    pub url: String,
    /// PostgreSQL: a file holding the password; `None` when empty.
    #[serde(with = "optional_path")]
    pub password_file: Option<PathBuf>,
    /// PostgreSQL with `sslmode=require`: CA certificates (PEM); `None`: the system's.
    #[serde(with = "optional_path")]
    pub ca_file: Option<PathBuf>,
}

impl TopicsSettings {
    /// The data directory: `data_dir` if set, else `$STATE_DIRECTORY` (its first entry),
    /// else `./topics-data`.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            state_directory_or(std::env::var_os("STATE_DIRECTORY"), "topics-data")
        })
    }

    /// The topic core's limits.
    pub fn core(&self) -> crate::core::topics::TopicsConfig {
        crate::core::topics::TopicsConfig {
            queue_messages: self.subscriber_max_messages,
            queue_bytes: self.subscriber_max_bytes,
            slow_timeout: self.slow_subscriber_timeout,
            last_values_bytes: self.last_values_max_bytes,
            retained_max_bytes: self.retained_max_bytes,
            ..crate::core::topics::TopicsConfig::default()
        }
    }
}

/// The `[gateway]` section: the HTTP gateway (`domo-gateway`) in the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettings {
    /// Where it listens; `None` (`off`, the default): no gateway.
    #[serde(with = "listen")]
    pub listen: Option<SocketAddr>,
    /// Serve on an address other than loopback without a tokens file (to anyone).
    pub allow_anonymous: bool,
    /// Bearer tokens (hashed) and their rights; `None` when empty: the gateway is open.
    #[serde(with = "optional_path")]
    pub tokens_file: Option<PathBuf>,
    /// The pre-shared key of the WebSocket challenge; `None` when empty.
    #[serde(with = "optional_path")]
    pub psk_file: Option<PathBuf>,
    /// Largest request body in bytes.
    #[serde(deserialize_with = "check::at_least_1")]
    pub body_limit: usize,
    /// Requests worked on at once; more are answered 503.
    #[serde(deserialize_with = "check::at_least_1")]
    pub max_in_flight: usize,
    /// How long a client may take to send its request headers before its connection is
    /// closed.
    #[serde(with = "positive_duration")]
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body once its headers are in (then
    /// 408).
    #[serde(with = "positive_duration")]
    pub body_timeout: Duration,
}

/// The `[ha]` section: this broker as one of a Binary Star primary/backup pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaSettings {
    /// `primary` or `backup`.
    #[serde(with = "role")]
    pub role: Role,
    /// This broker's state endpoint, where the peer connects.
    #[serde(deserialize_with = "check::endpoint")]
    pub bind: String,
    /// The peer's state endpoint (not `bind`).
    #[serde(deserialize_with = "check::endpoint")]
    pub peer: String,
    /// Interval of the state exchange (10ms to 60s); the peer counts as silent after two.
    #[serde(
        default = "ha_default_heartbeat",
        serialize_with = "positive_duration::serialize",
        deserialize_with = "check::ha_heartbeat"
    )]
    pub heartbeat: Duration,
    /// The peer's public certificate (`NAME.key`): with `security.mechanism = "curve"` the
    /// state link is CURVE and accepts this key only (required then).
    #[serde(default, with = "optional_path")]
    pub peer_key_file: Option<PathBuf>,
}

/// The `[security]` section: the ZMTP security mechanism of the broker's endpoints. The key
/// files themselves are read by [`crate::security`], after the settings are checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    /// `null` (no security) or `curve`.
    pub mechanism: Mechanism,
    /// CURVE: the broker's secret certificate (`NAME.key_secret`); `None` when empty.
    #[serde(with = "optional_path")]
    pub secret_key_file: Option<PathBuf>,
    /// CURVE: the directory of the public certificates (`*.key`) allowed to connect;
    /// `None` when empty.
    #[serde(with = "optional_path")]
    pub authorized_keys: Option<PathBuf>,
}

/// The ZMTP security mechanism of the broker's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mechanism {
    /// No security (ZMTP NULL), as libzmq by default.
    Null,
    /// CURVE (RFC 25/26): encrypted, and only the authorized keys may connect.
    Curve,
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Null => "null",
            Self::Curve => "curve",
        })
    }
}

/// Whether a PostgreSQL URL (or key=value string) carries a password.
fn url_has_password(url: &str) -> bool {
    let url = url.trim();
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let userinfo = authority.rsplit_once('@').map_or("", |(u, _)| u);
        return userinfo.contains(':')
            || rest
                .split('?')
                .nth(1)
                .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("password=")));
    }
    url.split_whitespace().any(|kv| kv.starts_with("password="))
}

/// The keys `[ha]` must have (from the file or the flags).
const HA_REQUIRED: [(&str, &str); 3] = [
    ("role", "(\"primary\" or \"backup\")"),
    ("bind", "(an endpoint, e.g. \"tcp://10.0.0.1:5556\")"),
    ("peer", "(an endpoint, e.g. \"tcp://10.0.0.1:5556\")"),
];

fn ha_default_heartbeat() -> Duration {
    HaConfig::DEFAULT_HEARTBEAT
}

impl HaSettings {
    /// The state machine's settings.
    pub fn machine(&self) -> HaConfig {
        HaConfig {
            role: self.role,
            heartbeat: self.heartbeat,
        }
    }

    /// What the shell needs to run the pair's state link; `keys` with CURVE.
    pub fn link(&self, keys: Option<crate::shell::PairKeys>) -> crate::shell::PairLink {
        crate::shell::PairLink {
            machine: self.machine(),
            bind: self.bind.clone(),
            peer: self.peer.clone(),
            security: keys,
        }
    }
}

/// `state_directory`'s first entry (systemd's `$STATE_DIRECTORY` separates several with
/// `:`), else `fallback` in the working directory.
fn state_directory_or(state_directory: Option<std::ffi::OsString>, fallback: &str) -> PathBuf {
    state_directory
        .and_then(|v| {
            let text = v.to_string_lossy().into_owned();
            text.split(':').find(|s| !s.is_empty()).map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(fallback))
}

/// The store file inside the Titanic data directory.
pub const TITANIC_STORE_FILE: &str = "titanic.redb";

impl TitanicSettings {
    /// The data directory: `data_dir` if set, else `$STATE_DIRECTORY` (its first entry; set
    /// by systemd's `StateDirectory=`), else `./titanic-data`.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| Self::default_data_dir(std::env::var_os("STATE_DIRECTORY")))
    }

    /// `$STATE_DIRECTORY`'s first entry (systemd separates several with `:`), else
    /// `./titanic-data`.
    pub fn default_data_dir(state_directory: Option<std::ffi::OsString>) -> PathBuf {
        state_directory_or(state_directory, "titanic-data")
    }
}

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

// === flags and environment variables ===

/// Values given by flags or their environment variables; `None` leaves the file's value.
///
/// Each field's `clap` id and serde name is the key it sets (`broker.bind`): the flags are
/// merged into the file's table under those keys and checked with it, and an error in one
/// names the flag and its variable from these attributes.
#[derive(Debug, Clone, Default, clap::Args, Serialize)]
pub struct Overrides {
    /// Endpoint to bind: tcp://host:port, tcp://*:port or ipc://path. Repeat for several
    /// [default: tcp://127.0.0.1:5555; config broker.bind]
    #[arg(
        id = "broker.bind",
        long = "bind",
        value_name = "EP",
        env = "DOMO_BROKER__BIND",
        value_delimiter = ','
    )]
    #[serde(rename = "broker.bind", skip_serializing_if = "Option::is_none")]
    pub binds: Option<Vec<String>>,
    /// Heartbeat interval towards workers, e.g. 2500ms, 1s. Workers must use the same value
    /// [default: 2500ms; config broker.heartbeat]
    #[arg(id = "broker.heartbeat", long = "heartbeat", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(
        rename = "broker.heartbeat",
        serialize_with = "some_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub heartbeat: Option<Duration>,
    /// Silent heartbeat intervals after which a worker is considered dead
    /// [default: 3; config broker.liveness]
    #[arg(id = "broker.liveness", long = "liveness", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    #[serde(rename = "broker.liveness", skip_serializing_if = "Option::is_none")]
    pub liveness: Option<u32>,
    /// Address of the /metrics, /healthz, /readyz listener; port 0 picks a free port (the
    /// address is logged); "off" disables it [default: 127.0.0.1:9464; config metrics.listen]
    #[arg(
        id = "metrics.listen",
        long = "metrics-listen",
        value_name = "ADDR|off",
        env = "DOMO_METRICS__LISTEN"
    )]
    #[serde(rename = "metrics.listen", skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// Log filter when RUST_LOG is unset, e.g. info or "info,domo_zmtp=debug"
    /// [default: info; config log.level]
    #[arg(
        id = "log.level",
        long = "log-level",
        value_name = "FILTER",
        env = "DOMO_LOG__LEVEL"
    )]
    #[serde(rename = "log.level", skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Log line format on stderr [default: text; config log.format]
    #[arg(
        id = "log.format",
        long = "log-format",
        value_name = "FORMAT",
        env = "DOMO_LOG__FORMAT"
    )]
    #[serde(rename = "log.format", skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Directory of the Titanic store [default: $STATE_DIRECTORY if set, else
    /// ./titanic-data; config titanic.data_dir]
    #[arg(
        id = "titanic.data_dir",
        long = "titanic-data-dir",
        value_name = "PATH",
        env = "DOMO_TITANIC__DATA_DIR"
    )]
    #[serde(rename = "titanic.data_dir", skip_serializing_if = "Option::is_none")]
    pub titanic_data_dir: Option<PathBuf>,
    /// Do not run the embedded Titanic (RFC 9) service [config titanic.enabled]
    #[arg(id = "titanic.enabled", long = "no-titanic")]
    #[serde(
        rename = "titanic.enabled",
        serialize_with = "negated",
        skip_serializing_if = "is_false"
    )]
    pub no_titanic: bool,
    /// The HTTP gateway's address, e.g. 127.0.0.1:8080; port 0 picks a free port (logged)
    /// [default: off; config gateway.listen]
    #[arg(
        id = "gateway.listen",
        long = "gateway-listen",
        value_name = "ADDR|off",
        env = "DOMO_GATEWAY__LISTEN"
    )]
    #[serde(rename = "gateway.listen", skip_serializing_if = "Option::is_none")]
    pub gateway_listen: Option<String>,
    /// The gateway's bearer tokens (SHA-256 hashes) and their rights
    /// [config gateway.tokens_file]
    #[arg(
        id = "gateway.tokens_file",
        long = "gateway-tokens-file",
        value_name = "PATH",
        env = "DOMO_GATEWAY__TOKENS_FILE"
    )]
    #[serde(
        rename = "gateway.tokens_file",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway_tokens_file: Option<PathBuf>,
    /// The pre-shared key of the gateway's WebSocket challenge [config gateway.psk_file]
    #[arg(
        id = "gateway.psk_file",
        long = "gateway-psk-file",
        value_name = "PATH",
        env = "DOMO_GATEWAY__PSK_FILE"
    )]
    #[serde(rename = "gateway.psk_file", skip_serializing_if = "Option::is_none")]
    pub gateway_psk_file: Option<PathBuf>,
    /// Do not serve topics (publish/subscribe) [config topics.enabled]
    #[arg(id = "topics.enabled", long = "no-topics")]
    #[serde(
        rename = "topics.enabled",
        serialize_with = "negated",
        skip_serializing_if = "is_false"
    )]
    pub no_topics: bool,
    /// Directory of the store of topics kept on disk (created with the first one)
    /// [default: $STATE_DIRECTORY if set, else ./topics-data; config topics.data_dir]
    #[arg(
        id = "topics.data_dir",
        long = "topics-data-dir",
        value_name = "PATH",
        env = "DOMO_TOPICS__DATA_DIR"
    )]
    #[serde(rename = "topics.data_dir", skip_serializing_if = "Option::is_none")]
    pub topics_data_dir: Option<PathBuf>,
    /// Topics: the endpoint where subscribers (SUB sockets) connect
    /// [default: tcp://127.0.0.1:5557; config topics.subscribe]
    #[arg(
        id = "topics.subscribe",
        long = "topics-subscribe",
        value_name = "EP",
        env = "DOMO_TOPICS__SUBSCRIBE"
    )]
    #[serde(rename = "topics.subscribe", skip_serializing_if = "Option::is_none")]
    pub topics_subscribe: Option<String>,
    /// Topics: the endpoint where publishers (PUB sockets) connect
    /// [default: tcp://127.0.0.1:5558; config topics.publish]
    #[arg(
        id = "topics.publish",
        long = "topics-publish",
        value_name = "EP",
        env = "DOMO_TOPICS__PUBLISH"
    )]
    #[serde(rename = "topics.publish", skip_serializing_if = "Option::is_none")]
    pub topics_publish: Option<String>,
    /// Binary Star: this broker's role in a primary/backup pair. Any --ha-* flag makes the
    /// broker one of a pair and needs role, bind and peer [config ha.role]
    #[arg(
        id = "ha.role",
        long = "ha-role",
        value_name = "ROLE",
        env = "DOMO_HA__ROLE",
        value_parser = clap::builder::PossibleValuesParser::new([
            PossibleValue::new("primary").help("Starts in PRIMARY; active first when both start"),
            PossibleValue::new("backup").help("Starts in BACKUP; takes over when the primary fails"),
        ])
        .map(|r| if r == "primary" { Role::Primary } else { Role::Backup })
    )]
    #[serde(
        rename = "ha.role",
        serialize_with = "some_role",
        skip_serializing_if = "Option::is_none"
    )]
    pub ha_role: Option<Role>,
    /// Binary Star: this broker's state endpoint, where the peer connects, e.g.
    /// tcp://10.0.0.1:5556 [config ha.bind]
    #[arg(
        id = "ha.bind",
        long = "ha-bind",
        value_name = "EP",
        env = "DOMO_HA__BIND"
    )]
    #[serde(rename = "ha.bind", skip_serializing_if = "Option::is_none")]
    pub ha_bind: Option<String>,
    /// Binary Star: the peer's state endpoint [config ha.peer]
    #[arg(
        id = "ha.peer",
        long = "ha-peer",
        value_name = "EP",
        env = "DOMO_HA__PEER"
    )]
    #[serde(rename = "ha.peer", skip_serializing_if = "Option::is_none")]
    pub ha_peer: Option<String>,
    /// Binary Star: interval of the state exchange; the peer counts as silent after two
    /// [default: 1000ms; config ha.heartbeat]
    #[arg(id = "ha.heartbeat", long = "ha-heartbeat", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(
        rename = "ha.heartbeat",
        serialize_with = "some_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub ha_heartbeat: Option<Duration>,
    /// Binary Star with CURVE: the peer's public certificate (NAME.key); the state link
    /// accepts that key only [config ha.peer_key_file]
    #[arg(
        id = "ha.peer_key_file",
        long = "ha-peer-key-file",
        value_name = "PATH",
        env = "DOMO_HA__PEER_KEY_FILE"
    )]
    #[serde(rename = "ha.peer_key_file", skip_serializing_if = "Option::is_none")]
    pub ha_peer_key_file: Option<PathBuf>,
    /// Security of the broker's endpoints: null (none) or curve (needs the two keys below)
    /// [default: null; config security.mechanism]
    #[arg(
        id = "security.mechanism",
        long = "security-mechanism",
        value_name = "MECHANISM",
        env = "DOMO_SECURITY__MECHANISM"
    )]
    #[serde(rename = "security.mechanism", skip_serializing_if = "Option::is_none")]
    pub security_mechanism: Option<Mechanism>,
    /// CURVE: the broker's secret certificate (NAME.key_secret, mode 0600)
    /// [config security.secret_key_file]
    #[arg(
        id = "security.secret_key_file",
        long = "security-secret-key-file",
        value_name = "PATH",
        env = "DOMO_SECURITY__SECRET_KEY_FILE"
    )]
    #[serde(
        rename = "security.secret_key_file",
        skip_serializing_if = "Option::is_none"
    )]
    pub security_secret_key_file: Option<PathBuf>,
    /// CURVE: the directory of the public certificates (*.key) allowed to connect, with
    /// their rights; re-read on SIGHUP [config security.authorized_keys]
    #[arg(
        id = "security.authorized_keys",
        long = "security-authorized-keys",
        value_name = "DIR",
        env = "DOMO_SECURITY__AUTHORIZED_KEYS"
    )]
    #[serde(
        rename = "security.authorized_keys",
        skip_serializing_if = "Option::is_none"
    )]
    pub security_authorized_keys: Option<PathBuf>,
    /// The keys above whose value came from an environment variable rather than a flag
    /// ([`Overrides::keys_from_env`]); errors name the variable for these.
    #[arg(skip)]
    #[serde(skip)]
    pub from_env: Vec<String>,
}

fn some_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.map(format_duration).unwrap_or_default())
}

fn some_role<S: serde::Serializer>(r: &Option<Role>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&r.map_or_else(String::new, |r| r.to_string()))
}

fn negated<S: serde::Serializer>(b: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(!b)
}

fn is_false(b: &bool) -> bool {
    !b
}

impl Overrides {
    /// The keys set, with their values as the file would hold them.
    fn table(&self) -> Result<Table, ConfigError> {
        Table::try_from(self).map_err(|e| ConfigError(format!("flags: {e}")))
    }

    /// The arguments, with their ids (the keys), flags and variables.
    fn arguments() -> clap::Command {
        use clap::Args;
        Self::augment_args(clap::Command::new("domo-broker"))
    }

    /// The keys whose value `matches` took from an environment variable.
    pub fn keys_from_env(matches: &clap::ArgMatches) -> Vec<String> {
        Self::arguments()
            .get_arguments()
            .map(|a| a.get_id().as_str())
            .filter(|id| matches.value_source(id) == Some(clap::parser::ValueSource::EnvVariable))
            .map(str::to_string)
            .collect()
    }

    /// What set `key`, from the `clap` attributes: its environment variable (`DOMO_...`) if
    /// it came from there, else its flag (`--flag`).
    fn name_of(&self, key: &str) -> Option<String> {
        let command = Self::arguments();
        let arg = command.get_arguments().find(|a| a.get_id() == key)?;
        match arg.get_env() {
            Some(env) if self.from_env.iter().any(|k| k == key) => {
                Some(env.to_string_lossy().into_owned())
            }
            _ => Some(format!("--{}", arg.get_long()?)),
        }
    }
}

// === errors ===

/// A configuration that cannot be used; the message names where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// Where the value of each key came from, to name it in errors.
struct Origins<'a> {
    /// The file's name and text, and the line of each dotted key in it.
    file: Option<(&'a Path, HashMap<String, usize>)>,
    /// The keys that flags or environment variables set.
    flags: Vec<String>,
    /// Those flags and variables.
    overrides: &'a Overrides,
}

impl Origins<'_> {
    /// `FILE:LINE: key: problem`, `--flag: problem` or `DOMO_...: problem`; the key or its
    /// nearest enclosing table decides.
    fn error(&self, path: &str, problem: &str) -> ConfigError {
        let key = without_indices(path);
        let mut at = path;
        loop {
            let plain = without_indices(at);
            if self.flags.contains(&plain) {
                if let Some(flag) = self.overrides.name_of(&plain) {
                    return ConfigError(format!("{flag}: {problem}"));
                }
            }
            if let Some((file, lines)) = &self.file {
                if let Some(line) = lines.get(at) {
                    return ConfigError(format!("{}:{line}: {key}: {problem}", file.display()));
                }
            }
            match at.rfind(['.', '[']) {
                Some(end) => at = &at[..end],
                None => break,
            }
        }
        ConfigError(format!("{key}: {problem}"))
    }

    /// A value that failed to deserialize, named by its key path (`broker.bind[1]`).
    fn bad_value(&self, e: &serde_path_to_error::Error<toml::de::Error>) -> ConfigError {
        use serde_path_to_error::Segment;
        let message = e.inner().message().lines().next().unwrap_or("");
        let mut path = String::new();
        for segment in e.path().iter() {
            match segment {
                Segment::Map { key } if path.is_empty() => path.push_str(key),
                Segment::Map { key } => path = format!("{path}.{key}"),
                Segment::Seq { index } => path = format!("{path}[{index}]"),
                _ => {}
            }
        }
        // An unknown key fails before it is a step of the path: take it from serde's message.
        if let Some(unknown) = message
            .strip_prefix("unknown field `")
            .and_then(|m| m.split('`').next())
        {
            if !path.ends_with(unknown) {
                path = if path.is_empty() {
                    unknown.to_string()
                } else {
                    format!("{path}.{unknown}")
                };
            }
        }
        self.error(&path, message)
    }
}

/// `broker.bind[1]` without its element indices: `broker.bind`.
fn without_indices(path: &str) -> String {
    let mut key = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            c if !in_index => key.push(c),
            _ => {}
        }
    }
    key
}

/// 1-based line number of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line of every dotted key of the file (tables, keys in inline tables, array elements as
/// `key[i]`), from the parser's spans.
fn key_lines(text: &str) -> Result<HashMap<String, usize>, toml::de::Error> {
    use toml::de::{DeTable, DeValue};
    fn walk(text: &str, prefix: &str, table: &DeTable<'_>, out: &mut HashMap<String, usize>) {
        for (key, value) in table {
            let name = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            out.entry(name.clone())
                .or_insert_with(|| line_of(text, key.span().start));
            match value.get_ref() {
                DeValue::Table(inner) => walk(text, &name, inner, out),
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let element = format!("{name}[{i}]");
                        out.insert(element.clone(), line_of(text, item.span().start));
                        if let DeValue::Table(inner) = item.get_ref() {
                            walk(text, &element, inner, out);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let table = DeTable::parse(text)?;
    let mut lines = HashMap::new();
    walk(text, "", table.get_ref(), &mut lines);
    Ok(lines)
}

/// The key of a syntax error (a duplicate key, an unclosed table...) at `span`, from what the
/// parser could read: the key written there, in the inline table around it or else the last
/// `[table]` above it.
fn syntax_error_key(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    use toml::de::{DeTable, DeValue};
    /// (dotted name, key span, value span, value starts with `{`)
    type Entry = (String, std::ops::Range<usize>, std::ops::Range<usize>, bool);
    fn walk(text: &str, prefix: &str, table: &DeTable<'_>, out: &mut Vec<Entry>) {
        for (key, value) in table {
            let name = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            if let DeValue::Table(inner) = value.get_ref() {
                let inline = text
                    .get(value.span().start..)
                    .is_some_and(|t| t.starts_with('{'));
                out.push((name.clone(), key.span(), value.span(), inline));
                walk(text, &name, inner, out);
            } else {
                out.push((name, key.span(), value.span(), false));
            }
        }
    }
    let (table, _) = DeTable::parse_recoverable(text);
    let mut entries = Vec::new();
    walk(text, "", table.get_ref(), &mut entries);
    if let Some((name, ..)) = entries.iter().find(|e| e.1 == span) {
        return Some(name.clone());
    }
    let around = entries
        .iter()
        .filter(|(_, _, value, inline)| *inline && value.contains(&span.start))
        .max_by_key(|(_, _, value, _)| value.start)
        .or_else(|| {
            entries
                .iter()
                .filter(|(_, key, value, inline)| {
                    !inline
                        && text.get(value.start..).is_some_and(|t| t.starts_with('['))
                        && key.start <= span.start
                })
                .max_by_key(|(_, key, _, _)| key.start)
        })
        .map(|(name, ..)| name.as_str());
    let written = text.get(span).filter(|w| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    });
    match (around, written) {
        (Some(table), Some(key)) => Some(format!("{table}.{key}")),
        (Some(table), None) => Some(table.to_string()),
        (None, key) => key.map(str::to_string),
    }
}

// === loading ===

/// The example's table: every key with its default.
static DEFAULT_TABLE: LazyLock<Table> = LazyLock::new(|| {
    DEFAULT_CONFIG
        .parse()
        .expect("deploy/broker.toml is valid TOML (tested)")
});

static DEFAULTS: LazyLock<Settings> = LazyLock::new(|| {
    Settings::deserialize(Value::Table(DEFAULT_TABLE.clone()))
        .expect("deploy/broker.toml holds valid settings (tested)")
});

impl Default for Settings {
    /// The values of the documented example, `deploy/broker.toml`.
    fn default() -> Self {
        DEFAULTS.clone()
    }
}

/// `over` merged into `base`: tables key by key, anything else replaced.
fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// `value` at dotted `key` of `table`.
fn lookup<'a>(table: &'a Table, key: &str) -> Option<&'a Value> {
    let (section, rest) = key.split_once('.').unwrap_or((key, ""));
    let value = table.get(section)?;
    match (rest, value) {
        ("", value) => Some(value),
        (rest, Value::Table(t)) => lookup(t, rest),
        _ => None,
    }
}

/// Sets dotted `key` of `table` (creating tables on the way); `None` removes it.
fn set(table: &mut Table, key: &str, value: Option<Value>) {
    match key.split_once('.') {
        None => {
            match value {
                Some(v) => table.insert(key.to_string(), v),
                None => table.remove(key),
            };
        }
        Some((section, rest)) => {
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| Value::Table(Table::new()));
            if let Value::Table(inner) = entry {
                set(inner, rest, value);
            }
        }
    }
}

impl Settings {
    /// Loads the file (if any), then applies the overrides and checks the result.
    ///
    /// # Errors
    /// [`ConfigError`] naming file, line and key, or the flag, of the first bad value.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let text = file
            .map(|path| {
                std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))
            })
            .transpose()?;
        let mut settings = Self::merge(file.zip(text.as_deref()), overrides)?;
        settings.file = file.map(Path::to_path_buf);
        Ok(settings)
    }

    /// Reads and checks a configuration file over the defaults.
    ///
    /// # Errors
    /// [`ConfigError`] if the file cannot be read or holds an unknown key or a bad value.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::load(Some(path), &Overrides::default())
    }

    /// Parses configuration text; `path` only names it in errors.
    ///
    /// # Errors
    /// [`ConfigError`] for an unknown key or a bad value.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::merge(Some((path, text)), &Overrides::default())
    }

    /// The one pass: the example's table, the file's over it, the flags' over that, then
    /// deserialized (the checks of each key) and the checks across keys.
    fn merge<'a>(
        file: Option<(&'a Path, &'a str)>,
        overrides: &'a Overrides,
    ) -> Result<Self, ConfigError> {
        let mut table = DEFAULT_TABLE.clone();
        let mut origins = Origins {
            file: None,
            flags: Vec::new(),
            overrides,
        };
        if let Some((path, text)) = file {
            let syntax = |e: toml::de::Error| {
                let span = e.span().unwrap_or(0..0);
                let line = line_of(text, span.start);
                let message = e.message().lines().next().unwrap_or("");
                match syntax_error_key(text, span) {
                    Some(key) => {
                        ConfigError(format!("{}:{line}: {key}: {message}", path.display()))
                    }
                    None => ConfigError(format!("{}:{line}: {message}", path.display())),
                }
            };
            let lines = key_lines(text).map_err(syntax)?;
            merge(&mut table, text.parse::<Table>().map_err(syntax)?);
            origins.file = Some((path, lines));
        }
        for (key, value) in overrides.table()? {
            set(&mut table, &key, Some(value));
            origins.flags.push(key);
        }
        if let Some(Value::Table(ha)) = table.get("ha") {
            for (key, what) in HA_REQUIRED {
                if !ha.contains_key(key) {
                    if origins.flags.iter().any(|f| f.starts_with("ha.")) {
                        return Err(ConfigError(
                            "[ha] / --ha-*: a pair needs role, bind and peer \
                             (--ha-role, --ha-bind, --ha-peer)"
                                .to_string(),
                        ));
                    }
                    return Err(origins.error("ha", &format!("{key} is required {what}")));
                }
            }
        }
        let settings: Self = serde_path_to_error::deserialize(Value::Table(table))
            .map_err(|e| origins.bad_value(&e))?;
        settings.check(&origins)?;
        Ok(settings)
    }

    /// The checks across keys.
    fn check(&self, origins: &Origins<'_>) -> Result<(), ConfigError> {
        let security = &self.security;
        if security.mechanism == Mechanism::Curve {
            for (key, value, what) in [
                (
                    "security.secret_key_file",
                    &security.secret_key_file,
                    "the broker's secret certificate, e.g. \"/etc/domo/broker.key_secret\"",
                ),
                (
                    "security.authorized_keys",
                    &security.authorized_keys,
                    "a directory of public certificates, e.g. \"/etc/domo/authorized_keys\"",
                ),
            ] {
                if value.is_none() {
                    return Err(origins.error(
                        key,
                        &format!("required with mechanism = \"curve\" ({what})"),
                    ));
                }
            }
        }
        if self.topics.enabled && self.topics.store == TitanicStore::Log {
            return Err(origins.error(
                "topics.store",
                "\"log\" is a Titanic store; topics are kept in \"redb\" or \"postgres\"",
            ));
        }
        for (section, enabled, store, url) in [
            (
                "titanic",
                self.titanic.enabled,
                self.titanic.store,
                &self.titanic.url,
            ),
            (
                "topics",
                self.topics.enabled,
                self.topics.store,
                &self.topics.url,
            ),
        ] {
            if !enabled || store != TitanicStore::Postgres {
                continue;
            }
            let key = format!("{section}.url");
            if url.trim().is_empty() {
                return Err(origins.error(
                    &key,
                    "required with store = \"postgres\" (e.g. \"postgres://domo@db1:5432/domo\")",
                ));
            }
            if url_has_password(url) {
                return Err(origins.error(
                    &key,
                    &format!("holds a password: put it in {section}.password_file instead"),
                ));
            }
        }
        if let Some(addr) = self.gateway.listen {
            if !addr.ip().is_loopback()
                && !self.gateway.allow_anonymous
                && self.gateway.tokens_file.is_none()
            {
                return Err(origins.error(
                    "gateway.listen",
                    &format!(
                        "{addr} is not a loopback address and there is no gateway.tokens_file: \
                         set one, or gateway.allow_anonymous = true to serve anyone"
                    ),
                ));
            }
        }
        if let Some(ha) = &self.ha {
            match (security.mechanism, &ha.peer_key_file) {
                (Mechanism::Curve, None) => {
                    return Err(origins.error(
                        "ha.peer_key_file",
                        "required with security.mechanism = \"curve\" (the peer's public \
                         certificate, e.g. \"/etc/domo/peer.key\")",
                    ));
                }
                (Mechanism::Null, Some(_)) => {
                    return Err(origins.error(
                        "ha.peer_key_file",
                        "needs security.mechanism = \"curve\" (and the broker's own keys)",
                    ));
                }
                _ => {}
            }
            // Compared parsed, so `tcp://a:01` and `tcp://a:1` are the same endpoint.
            let parsed = |ep: &str| ep.parse::<domo_zmtp::Endpoint>().ok();
            if parsed(&ha.peer) == parsed(&ha.bind) {
                return Err(
                    origins.error("ha.peer", "names this broker's own state endpoint (bind)")
                );
            }
        }
        self.core()
            .validate()
            .map_err(|e| ConfigError(format!("invalid configuration: {e}")))
    }

    /// The settings of the broker core (`[broker]` heartbeat and liveness, `[queue]`).
    pub fn core(&self) -> BrokerConfig {
        let q = &self.queue;
        BrokerConfig {
            heartbeat: Heartbeat {
                interval: self.broker.heartbeat,
                liveness: self.broker.liveness,
            },
            request_timeout: q.request_timeout,
            service_queue: QueueLimits {
                max_requests: q.service_max_requests,
                max_bytes: q.service_max_bytes,
            },
            total_queue: QueueLimits {
                max_requests: q.total_max_requests,
                max_bytes: q.total_max_bytes,
            },
            client_limits: QueueLimits {
                max_requests: q.client_max_requests,
                max_bytes: q.client_max_bytes,
            },
            redispatch: q.redispatch,
            max_redispatch: q.max_redispatch,
        }
    }

    fn to_table(&self) -> Table {
        // Every value here was read from TOML, so it writes back (a test checks it).
        Table::try_from(self).unwrap_or_default()
    }

    /// The settings as a configuration file that reads back to the same settings.
    pub fn to_toml(&self) -> String {
        let source = self.file.as_ref().map_or_else(
            || "built-in defaults".to_string(),
            |p| p.display().to_string(),
        );
        let body = toml::to_string(self).unwrap_or_else(|e| format!("# cannot print: {e}\n"));
        format!("# effective configuration (file: {source})\n{body}")
    }

    /// The [`RESTART_KEYS`] whose value differs in `new`.
    pub fn restart_needed(&self, new: &Self) -> Vec<&'static str> {
        let (old, new) = (self.to_table(), new.to_table());
        RESTART_KEYS
            .iter()
            .copied()
            .filter(|key| lookup(&old, key) != lookup(&new, key))
            .collect()
    }

    /// `self` with the [`RESTART_KEYS`] of `running`: what a reload applies.
    pub fn live_part_over(&self, running: &Self) -> Self {
        let (mut table, old) = (self.to_table(), running.to_table());
        for key in RESTART_KEYS {
            set(&mut table, key, lookup(&old, key).cloned());
        }
        let mut applied =
            Self::deserialize(Value::Table(table)).unwrap_or_else(|_| running.clone());
        applied.file.clone_from(&self.file);
        applied
    }
}

// === the values' forms and checks ===

/// `2500ms` or `30s`: the shortest exact form that [`parse_duration`] reads back.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms > 0 && ms.is_multiple_of(86_400_000) {
        format!("{}d", ms / 86_400_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The heartbeat settings of `settings`, for logs.
pub fn describe_heartbeat(heartbeat: &Heartbeat) -> String {
    format!(
        "{} x {}",
        format_duration(heartbeat.interval),
        heartbeat.liveness
    )
}

/// A duration of [`parse_duration`]'s form, more than 0 and at most 365 days.
mod positive_duration {
    use super::{check, Duration};

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        let value = check::duration(d)?;
        if value.is_zero() || value > crate::core::MAX_DURATION {
            return Err(check::fail("must be more than 0 and at most 365 days"));
        }
        Ok(value)
    }
}

/// A duration of [`parse_duration`]'s form, at most 365 days (0 allowed).
mod duration_up_to_a_year {
    use super::{check, Duration};

    pub(super) use super::positive_duration::serialize;

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        let value = check::duration(d)?;
        if value > crate::core::MAX_DURATION {
            return Err(check::fail("must be at most 365 days"));
        }
        Ok(value)
    }
}

/// A duration of [`parse_duration`]'s form in whole milliseconds, at most 100 ms (0 allowed).
mod commit_linger {
    use super::{check, Duration};

    pub(super) use super::positive_duration::serialize;

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        let value = check::duration(d)?;
        if value > Duration::from_millis(100) || value.subsec_nanos() % 1_000_000 != 0 {
            return Err(check::fail("must be whole milliseconds, at most 100ms"));
        }
        Ok(value)
    }
}

/// `off` or a socket address (`127.0.0.1:9464`, `[::1]:0`).
mod listen {
    use super::{check, SocketAddr};
    use serde::Deserialize;

    pub(super) fn serialize<S: serde::Serializer>(
        a: &Option<SocketAddr>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(&a.map_or_else(|| "off".to_string(), |a| a.to_string()))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim() == "off" {
            return Ok(None);
        }
        text.trim().parse().map(Some).map_err(|_| {
            check::fail(format!(
                "invalid listen address {text:?}: expected host:port (IP address) or \"off\""
            ))
        })
    }
}

/// `primary` or `backup`.
mod role {
    use super::{check, Role};
    use serde::Deserialize;

    pub(super) fn serialize<S: serde::Serializer>(r: &Role, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(r)
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        match String::deserialize(d)?.as_str() {
            "primary" => Ok(Role::Primary),
            "backup" => Ok(Role::Backup),
            other => Err(check::fail(format!(
                "unknown role {other:?}: expected \"primary\" or \"backup\""
            ))),
        }
    }
}

/// A path that may be empty: `""` is `None`.
mod optional_path {
    use std::path::PathBuf;

    use serde::Deserialize;

    pub(super) fn serialize<S: serde::Serializer>(
        p: &Option<PathBuf>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match p {
            Some(path) => s.collect_str(&path.display()),
            None => s.serialize_str(""),
        }
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<PathBuf>, D::Error> {
        let text = String::deserialize(d)?;
        Ok((!text.trim().is_empty()).then(|| PathBuf::from(text)))
    }
}

/// The checks of single values, as `deserialize_with` functions.
mod check {
    use std::path::PathBuf;
    use std::time::Duration;

    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};

    pub(super) fn fail<E: serde::de::Error>(msg: impl std::fmt::Display) -> E {
        E::custom(msg)
    }

    pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        crate::duration::parse_duration(&String::deserialize(d)?).map_err(D::Error::custom)
    }

    pub(super) fn at_least_1<'de, D, N>(d: D) -> Result<N, D::Error>
    where
        D: Deserializer<'de>,
        N: Deserialize<'de> + Default + PartialEq,
    {
        let n = N::deserialize(d)?;
        if n == N::default() {
            return Err(fail("must be at least 1"));
        }
        Ok(n)
    }

    pub(super) fn sessions<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        let n = usize::deserialize(d)?;
        if !(1..=1024).contains(&n) {
            return Err(fail("must be between 1 and 1024"));
        }
        Ok(n)
    }

    pub(super) fn endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let ep = String::deserialize(d)?;
        match ep.parse::<domo_zmtp::Endpoint>() {
            Ok(_) => Ok(ep),
            Err(e) => Err(fail(format!("invalid endpoint {ep:?}: {e}"))),
        }
    }

    pub(super) fn endpoints<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        /// One endpoint, checked as an element (so an error names its line).
        struct Endpoint(String);
        impl<'de> Deserialize<'de> for Endpoint {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                endpoint(d).map(Self)
            }
        }
        let binds = Vec::<Endpoint>::deserialize(d)?;
        if binds.is_empty() {
            return Err(fail("no endpoint to bind"));
        }
        Ok(binds.into_iter().map(|e| e.0).collect())
    }

    /// The pair heartbeat: 10 ms to 60 s. Shorter would flood the link, longer would make
    /// failover take minutes.
    pub(super) fn ha_heartbeat<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let value = duration(d)?;
        if value < Duration::from_millis(10) || value > Duration::from_secs(60) {
            return Err(fail("must be between 10ms and 60s"));
        }
        Ok(value)
    }

    pub(super) fn log_filter<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let level = String::deserialize(d)?;
        tracing_subscriber::EnvFilter::builder()
            .parse(&level)
            .map_err(|e| fail(format!("invalid log filter {level:?}: {e}")))?;
        Ok(level)
    }

    pub(super) fn non_empty_path<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<PathBuf>, D::Error> {
        let path = PathBuf::deserialize(d)?;
        if path.as_os_str().to_string_lossy().trim().is_empty() {
            return Err(fail("empty path"));
        }
        Ok(Some(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml(Path::new("broker.toml"), text)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn shipped_example_is_exactly_the_defaults() {
        assert_eq!(parse(DEFAULT_CONFIG), Ok(Settings::default()));
        assert_eq!(parse(""), Ok(Settings::default()));
        // The example's values are the core's and the documented built-in ones.
        let d = Settings::default();
        assert_eq!(d.core(), BrokerConfig::default());
        assert_eq!(d.broker.bind, [DEFAULT_BIND]);
        assert_eq!(
            d.metrics.listen,
            Some(DEFAULT_METRICS_LISTEN.parse().unwrap())
        );
        assert_eq!(
            (d.metrics.max_services, d.log.level.as_str()),
            (1000, "info")
        );
        assert_eq!(d.log.format, LogFormat::Text);
        assert_eq!(d.shutdown.drain_timeout, Duration::from_secs(20));
        let t = &d.titanic;
        assert!(t.enabled && t.data_dir.is_none());
        assert_eq!(t.expire_after, Duration::from_secs(7 * 86_400));
        assert_eq!((t.max_bytes, t.sessions), (1 << 30, 16));
        assert_eq!(t.request_timeout, Duration::from_secs(30));
        assert_eq!((d.ha, d.file), (None, None));
        let security = SecuritySettings {
            mechanism: Mechanism::Null,
            secret_key_file: None,
            authorized_keys: None,
        };
        assert_eq!(d.security, security);
    }

    #[test]
    fn security_section_reads_and_prints_back() {
        let text = "[security]\nmechanism = \"curve\"\n\
                    secret_key_file = \"/etc/domo/broker.key_secret\"\n\
                    authorized_keys = \"/etc/domo/authorized_keys\"\n";
        let s = parse(text).unwrap();
        assert_eq!(s.security.mechanism, Mechanism::Curve);
        assert_eq!(
            s.security.secret_key_file.as_deref(),
            Some(Path::new("/etc/domo/broker.key_secret"))
        );
        assert_eq!(
            s.security.authorized_keys.as_deref(),
            Some(Path::new("/etc/domo/authorized_keys"))
        );
        assert_eq!(parse(&s.to_toml()), Ok(s.clone()));
        // NULL needs no file; files given with it are kept (and unused).
        let null = parse("[security]\nsecret_key_file = \"/x\"\n").unwrap();
        assert_eq!(null.security.mechanism, Mechanism::Null);
        assert_eq!(parse(&null.to_toml()), Ok(null));
    }

    #[test]
    fn security_errors_name_file_line_and_key() {
        let cases = [
            (
                "[security]\nmechanism = \"plain\"\n",
                "broker.toml:2: security.mechanism: unknown variant `plain`, expected `null` or \
                 `curve`",
            ),
            (
                "[security]\nmechanism = \"curve\"\nauthorized_keys = \"/k\"\n",
                "broker.toml:1: security.secret_key_file: required with mechanism = \"curve\" \
                 (the broker's secret certificate, e.g. \"/etc/domo/broker.key_secret\")",
            ),
            (
                "[security]\nmechanism = \"curve\"\nsecret_key_file = \"/s\"\n\
                 authorized_keys = \" \"\n",
                "broker.toml:4: security.authorized_keys: required with mechanism = \"curve\" \
                 (a directory of public certificates, e.g. \"/etc/domo/authorized_keys\")",
            ),
            (
                "[security]\nsecret_key = \"/s\"\n",
                "broker.toml:2: security.secret_key: unknown field `secret_key`, expected one \
                 of `mechanism`, `secret_key_file`, `authorized_keys`",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(error(text), expected, "{text:?}");
        }
        let flags = Overrides {
            security_mechanism: Some(Mechanism::Curve),
            security_secret_key_file: Some("/s".into()),
            security_authorized_keys: Some("/k".into()),
            ..Overrides::default()
        };
        let s = Settings::load(None, &flags).unwrap();
        assert_eq!(s.security.mechanism, Mechanism::Curve);
        assert_eq!(s.security.authorized_keys, Some(PathBuf::from("/k")));
    }

    #[test]
    fn titanic_keeps_its_requests_in_the_log_by_default_and_topics_cannot() {
        assert_eq!(Settings::default().titanic.store, TitanicStore::Log);
        assert_eq!(Settings::default().topics.store, TitanicStore::Redb);
        let redb = parse("[titanic]\nstore = \"redb\"\n").unwrap();
        assert_eq!(redb.titanic.store, TitanicStore::Redb);
        let e = error("[topics]\nstore = \"log\"\n");
        assert!(e.contains("topics.store"), "{e}");
        assert!(e.contains("Titanic store"), "{e}");
        let e = error("[titanic]\nstore = \"lsm\"\n");
        assert!(e.contains("titanic.store"), "{e}");
    }

    #[test]
    fn a_postgres_url_with_a_password_is_recognised_in_both_forms() {
        for url in [
            "postgres://domo:pw@db1:5432/domo",
            "postgresql://domo:pw@db1,db2/domo?target_session_attrs=read-write",
            "postgres://domo@db1/domo?sslmode=require&password=pw",
            "host=db1 user=domo password=pw dbname=domo",
        ] {
            assert!(url_has_password(url), "{url}");
        }
        for url in [
            "postgres://domo@db1:5432,db2:5432/domo?target_session_attrs=read-write",
            "postgres://db1/domo",
            "host=db1 user=domo dbname=domo",
            "postgres://[::1]:5432/domo",
        ] {
            assert!(!url_has_password(url), "{url}");
        }
    }

    #[test]
    fn a_reload_applies_the_authorized_keys_but_not_the_mechanism_or_secret() {
        let running = Settings::default();
        let mut new = running.clone();
        new.security.mechanism = Mechanism::Curve;
        new.security.secret_key_file = Some("/s".into());
        new.security.authorized_keys = Some("/k".into());
        assert_eq!(
            running.restart_needed(&new),
            ["security.mechanism", "security.secret_key_file"]
        );
        let applied = new.live_part_over(&running);
        assert_eq!(applied.security.mechanism, Mechanism::Null);
        assert_eq!(applied.security.secret_key_file, None);
        assert_eq!(applied.security.authorized_keys, Some(PathBuf::from("/k")));
    }

    #[test]
    fn printed_config_reads_back_to_the_same_settings() {
        let text = "[broker]\nbind = [\"tcp://*:6000\", \"ipc:///tmp/x\"]\nheartbeat = \"1500ms\"\n\
                    [metrics]\nlisten = \"off\"\n[log]\nformat = \"json\"\nlevel = \"debug,h2=off\"\n";
        let settings = parse(text).unwrap();
        assert_eq!(parse(&settings.to_toml()), Ok(settings.clone()));
        assert_eq!(settings.metrics.listen, None);
        assert_eq!(settings.broker.heartbeat, Duration::from_millis(1500));
        let defaults = Settings::default();
        assert_eq!(parse(&defaults.to_toml()), Ok(defaults));
        let text = "[titanic]\nenabled = false\ndata_dir = \"/var/lib/x\"\nexpire_after = \"2d\"\n\
                    max_bytes = 1000\nrequest_timeout = \"5s\"\nsessions = 4\n\
                    commit_linger = \"5ms\"\n";
        let settings = parse(text).unwrap();
        assert_eq!(parse(&settings.to_toml()), Ok(settings.clone()));
        assert!(!settings.titanic.enabled);
        assert_eq!(settings.titanic.commit_linger, Duration::from_millis(5));
        assert_eq!(Settings::default().titanic.commit_linger, Duration::ZERO);
        assert_eq!(settings.titanic.data_dir(), PathBuf::from("/var/lib/x"));
        assert_eq!(
            settings.titanic.expire_after,
            Duration::from_secs(2 * 86_400)
        );
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = error("[broker]\nheartbeat = \"1s\"\nheartbeet = \"2s\"\n");
        assert!(e.starts_with("broker.toml:3: broker.heartbeet: "), "{e}");
        assert!(e.contains("unknown field"), "{e}");
        let e = error("[brokr]\nx = 1\n");
        assert!(e.starts_with("broker.toml:1: brokr: "), "{e}");
    }

    #[test]
    fn bad_values_name_file_line_and_key() {
        let cases = [
            (
                "[broker]\nheartbeat = \"2500\"\n",
                "broker.toml:2: broker.heartbeat: ",
                "missing unit",
            ),
            (
                "[broker]\n\nheartbeat = \"0ms\"\n",
                "broker.toml:3: broker.heartbeat: ",
                "more than 0",
            ),
            (
                "[broker]\nliveness = 0\n",
                "broker.toml:2: broker.liveness: ",
                "at least 1",
            ),
            (
                "[broker]\nliveness = \"3\"\n",
                "broker.toml:2: broker.liveness: ",
                "invalid type",
            ),
            (
                "[broker]\nbind = [\"tcp://nope\"]\n",
                "broker.toml:2: broker.bind: ",
                "invalid endpoint",
            ),
            (
                "[metrics]\nlisten = \"localhost\"\n",
                "broker.toml:2: metrics.listen: ",
                "host:port",
            ),
            (
                "[log]\nformat = \"xml\"\n",
                "broker.toml:2: log.format: ",
                "text",
            ),
            (
                "[log]\nlevel = \"info,=[\"\n",
                "broker.toml:2: log.level: ",
                "invalid log filter",
            ),
            (
                "[shutdown]\ndrain_timeout = \"20\"\n",
                "broker.toml:2: shutdown.drain_timeout: ",
                "unit",
            ),
            (
                "[queue]\nrequest_timeout = \"1 parsec\"\n",
                "broker.toml:2: queue.request_timeout: ",
                "unit",
            ),
        ];
        for (text, prefix, words) in cases {
            let e = error(text);
            assert!(
                e.starts_with(prefix) && e.contains(words),
                "{text:?} gave {e:?}"
            );
        }
        assert!(error("[broker\n").starts_with("broker.toml:1"));
        let syntax = [
            (
                "[broker]\nliveness = 3\nliveness = 4\n",
                "broker.toml:3: broker.liveness: duplicate key",
            ),
            (
                "[log]\n[queue]\nredispatch = true\n[queue]\n",
                "broker.toml:4: queue: duplicate key",
            ),
            (
                "[log]\nformat = \"text\"\nbroker = { liveness = 1, liveness = 2 }\n",
                "broker.toml:3: log.broker.liveness: duplicate key",
            ),
        ];
        for (text, expected) in syntax {
            assert_eq!(error(text), expected, "{text:?}");
        }
        let titanic = [
            (
                "[titanic]\nenabled = \"yes\"\n",
                "broker.toml:2: titanic.enabled: ",
                "invalid type",
            ),
            (
                "[titanic]\n\nexpire_after = \"7\"\n",
                "broker.toml:3: titanic.expire_after: ",
                "unit",
            ),
            (
                "[titanic]\nexpire_after = \"0s\"\n",
                "broker.toml:2: titanic.expire_after: ",
                "more than 0",
            ),
            (
                "[titanic]\ndata_dir = \"\"\n",
                "broker.toml:2: titanic.data_dir: ",
                "empty",
            ),
            (
                "[titanic]\nmax_bytes = 0\n",
                "broker.toml:2: titanic.max_bytes: ",
                "at least 1",
            ),
            (
                "[titanic]\nsessions = 0\n",
                "broker.toml:2: titanic.sessions: ",
                "between",
            ),
            (
                "[titanic]\ncommit_linger = \"101ms\"\n",
                "broker.toml:2: titanic.commit_linger: ",
                "at most 100ms",
            ),
            (
                "[titanic]\ncommit_linger = \"1500us\"\n",
                "broker.toml:2: titanic.commit_linger: ",
                "whole milliseconds",
            ),
            (
                "[titanic]\nrequest_timeout = \"1x\"\n",
                "broker.toml:2: titanic.request_timeout: ",
                "unit",
            ),
            (
                "[titanic]\ndatadir = \"x\"\n",
                "broker.toml:2: titanic.datadir: ",
                "unknown field",
            ),
            (
                "[topics]\nsubscribe = \"udp://x\"\n",
                "broker.toml:2: topics.subscribe: ",
                "endpoint",
            ),
            (
                "[topics]\nsubscriber_max_messages = 0\n",
                "broker.toml:2: topics.subscriber_max_messages: ",
                "",
            ),
            (
                "[topics]\nslow_subscriber_timeout = \"0s\"\n",
                "broker.toml:2: topics.slow_subscriber_timeout: ",
                "",
            ),
            (
                "[topics]\nlast_values = 1\n",
                "broker.toml:2: topics.last_values: ",
                "unknown field",
            ),
        ];
        for (text, prefix, words) in titanic {
            let e = error(text);
            assert!(
                e.starts_with(prefix) && e.contains(words),
                "{text:?} gave {e:?}"
            );
        }
    }

    #[test]
    fn errors_name_the_line_of_an_element_or_an_inline_key() {
        let e = error("[broker]\nbind = [\n  \"tcp://*:1\",\n  \"tcp://nope\",\n]\n");
        assert!(
            e.starts_with("broker.toml:4: broker.bind: invalid endpoint"),
            "{e}"
        );
        let e = error("\nbroker = { liveness = 3, heartbeat = \"0ms\" }\n");
        assert!(
            e.starts_with("broker.toml:2: broker.heartbeat: must be more than 0"),
            "{e}"
        );
        let e = error("queue = { max = 1 }\n");
        assert!(
            e.starts_with("broker.toml:1: queue.max: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn flag_errors_name_the_flag_or_its_variable() {
        let mut bad = Overrides {
            metrics_listen: Some("nowhere".into()),
            ..Overrides::default()
        };
        let e = Settings::load(None, &bad).unwrap_err().to_string();
        assert!(
            e.starts_with("--metrics-listen: invalid listen address"),
            "{e}"
        );
        bad.from_env = vec!["metrics.listen".into()];
        let e = Settings::load(None, &bad).unwrap_err().to_string();
        assert!(e.starts_with("DOMO_METRICS__LISTEN: invalid listen"), "{e}");
        let zero = Overrides {
            ha_heartbeat: Some(Duration::from_millis(1)),
            ha_role: Some(Role::Primary),
            ha_bind: Some("tcp://*:1".into()),
            ha_peer: Some("tcp://a:1".into()),
            ..Overrides::default()
        };
        let e = Settings::load(None, &zero).unwrap_err().to_string();
        assert!(e.starts_with("--ha-heartbeat: must be between"), "{e}");
    }

    #[test]
    fn a_reload_keeps_the_running_value_of_restart_keys() {
        let running = Settings::default();
        let mut new = running.clone();
        new.broker.heartbeat = Duration::from_secs(1);
        new.queue.max_redispatch = 7;
        new.broker.bind = vec!["tcp://*:1".into()];
        new.titanic.sessions = 3;
        let applied = new.live_part_over(&running);
        assert_eq!(applied.broker.heartbeat, Duration::from_secs(1));
        assert_eq!(applied.queue.max_redispatch, 7);
        assert_eq!(applied.broker.bind, running.broker.bind);
        assert_eq!(applied.titanic, running.titanic);
        assert_eq!(running.restart_needed(&new), ["broker.bind", "titanic"]);
    }

    #[test]
    fn overrides_win_over_the_file() {
        let path = std::env::temp_dir().join(format!("domo-cfg-{}.toml", std::process::id()));
        std::fs::write(&path, "[broker]\nliveness = 5\nheartbeat = \"1s\"\n").unwrap();
        let overrides = Overrides {
            heartbeat: Some(Duration::from_millis(300)),
            metrics_listen: Some("off".into()),
            ..Overrides::default()
        };
        let s = Settings::load(Some(&path), &overrides).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(s.broker.liveness, 5);
        assert_eq!(s.broker.heartbeat, Duration::from_millis(300));
        assert_eq!(s.metrics.listen, None);
        let bad = Overrides {
            metrics_listen: Some("nowhere".into()),
            ..Overrides::default()
        };
        let e = Settings::load(None, &bad).unwrap_err().to_string();
        assert!(e.starts_with("--metrics-listen"), "{e}");
    }

    #[test]
    fn topics_are_on_by_default_on_loopback_and_no_topics_turns_them_off() {
        let d = Settings::default().topics;
        assert!(d.enabled);
        assert_eq!(d.subscribe, "tcp://127.0.0.1:5557");
        assert_eq!(d.publish, "tcp://127.0.0.1:5558");
        let overrides = Overrides {
            no_topics: true,
            topics_subscribe: Some("tcp://127.0.0.1:0".into()),
            ..Overrides::default()
        };
        let s = Settings::load(None, &overrides).unwrap();
        assert!(!s.topics.enabled);
        assert_eq!(s.topics.subscribe, "tcp://127.0.0.1:0");
        assert_eq!(s.topics.core().queue_bytes, 33_554_432);
    }

    #[test]
    fn titanic_data_dir_defaults_to_the_systemd_state_directory() {
        assert_eq!(
            TitanicSettings::default_data_dir(None),
            PathBuf::from("titanic-data")
        );
        assert_eq!(
            TitanicSettings::default_data_dir(Some("/var/lib/domo:/var/lib/other".into())),
            PathBuf::from("/var/lib/domo")
        );
        let overrides = Overrides {
            titanic_data_dir: Some("/tmp/t".into()),
            no_titanic: true,
            ..Overrides::default()
        };
        let s = Settings::load(None, &overrides).unwrap();
        assert_eq!(s.titanic.data_dir, Some(PathBuf::from("/tmp/t")));
        assert!(!s.titanic.enabled);
    }

    #[test]
    fn ha_section_makes_a_pair_member_and_prints_back() {
        let text = "[ha]\nrole = \"backup\"\nbind = \"tcp://*:5556\"\n\
                    peer = \"tcp://10.0.0.1:5556\"\nheartbeat = \"250ms\"\n";
        let s = parse(text).unwrap();
        let ha = s.ha.clone().unwrap();
        assert_eq!(ha.role, Role::Backup);
        assert_eq!(ha.bind, "tcp://*:5556");
        assert_eq!(ha.peer, "tcp://10.0.0.1:5556");
        assert_eq!(ha.heartbeat, Duration::from_millis(250));
        assert_eq!(ha.machine().peer_expiry(), Duration::from_millis(500));
        assert_eq!(parse(&s.to_toml()), Ok(s));
        let s =
            parse("[ha]\nrole = \"primary\"\nbind = \"ipc:///a\"\npeer = \"ipc:///b\"\n").unwrap();
        assert_eq!(s.ha.unwrap().heartbeat, Duration::from_millis(1000));
        assert_eq!(
            Settings::default().ha,
            None,
            "no [ha]: the broker runs alone"
        );
    }

    #[test]
    fn ha_section_errors_name_file_line_and_key() {
        let cases = [
            ("[ha]\nbind = \"tcp://*:1\"\npeer = \"tcp://a:1\"\n", "role is required"),
            ("[ha]\nrole = \"primary\"\npeer = \"tcp://a:1\"\n", "bind is required"),
            ("[ha]\nrole = \"primary\"\nbind = \"tcp://*:1\"\n", "peer is required"),
            (
                "[ha]\nrole = \"master\"\nbind = \"tcp://*:1\"\npeer = \"tcp://a:1\"\n",
                "broker.toml:2: ha.role: unknown role",
            ),
            (
                "[ha]\nrole = \"backup\"\nbind = \"tcp://nope\"\npeer = \"tcp://a:1\"\n",
                "broker.toml:3: ha.bind: invalid endpoint",
            ),
            (
                "[ha]\nrole = \"backup\"\nbind = \"tcp://a:1\"\npeer = \"tcp://a:1\"\n",
                "broker.toml:4: ha.peer: names this broker's own",
            ),
            (
                "[ha]\nrole = \"backup\"\nbind = \"tcp://a:1\"\npeer = \"tcp://a:01\"\n",
                "broker.toml:4: ha.peer: names this broker's own",
            ),
            (
                "[ha]\nrole = \"backup\"\nbind = \"tcp://*:1\"\npeer = \"tcp://a:1\"\nheartbeat = \"1ms\"\n",
                "broker.toml:5: ha.heartbeat: must be between",
            ),
            (
                "[ha]\nrole = \"backup\"\nbind = \"tcp://*:1\"\npeer = \"tcp://a:1\"\nexpiry = \"2s\"\n",
                "broker.toml:5: ha.expiry: unknown field",
            ),
        ];
        for (text, words) in cases {
            let e = error(text);
            assert!(e.contains(words), "{text:?} gave {e:?}");
        }
    }

    #[test]
    fn ha_flags_complete_or_override_the_section() {
        let flags = Overrides {
            ha_role: Some(Role::Primary),
            ha_bind: Some("tcp://127.0.0.1:7001".into()),
            ha_peer: Some("tcp://127.0.0.1:7002".into()),
            ..Overrides::default()
        };
        let s = Settings::load(None, &flags).unwrap();
        let ha = s.ha.unwrap();
        assert_eq!(
            (ha.role, ha.heartbeat),
            (Role::Primary, Duration::from_secs(1))
        );
        let partial = Overrides {
            ha_role: Some(Role::Backup),
            ..Overrides::default()
        };
        let e = Settings::load(None, &partial).unwrap_err().to_string();
        assert!(e.contains("needs role, bind and peer"), "{e}");
        let path = std::env::temp_dir().join(format!("domo-ha-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "[ha]\nrole = \"primary\"\nbind = \"tcp://*:1\"\npeer = \"tcp://a:1\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&path), &partial).unwrap();
        std::fs::remove_file(&path).unwrap();
        let ha = s.ha.unwrap();
        assert_eq!(ha.role, Role::Backup, "the flag wins");
        assert_eq!(ha.peer, "tcp://a:1", "the file fills in the rest");
        let same = Overrides {
            ha_peer: Some("tcp://127.0.0.1:7001".into()),
            ..flags
        };
        assert!(Settings::load(None, &same).is_err());
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let e = Settings::load(
            Some(Path::new("/nonexistent/domo.toml")),
            &Overrides::default(),
        );
        assert!(e
            .unwrap_err()
            .to_string()
            .starts_with("/nonexistent/domo.toml: cannot read"));
    }

    #[test]
    fn restart_needed_lists_only_fixed_settings() {
        let old = Settings::default();
        let mut new = old.clone();
        new.broker.heartbeat = Duration::from_secs(1);
        new.log.level = "debug".into();
        assert!(old.restart_needed(&new).is_empty());
        new.broker.bind = vec!["tcp://*:1".into()];
        new.metrics.listen = None;
        assert_eq!(old.restart_needed(&new), ["broker.bind", "metrics.listen"]);
    }
}
