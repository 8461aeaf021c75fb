//! The daemon's configuration: built-in defaults, a TOML file, a few environment variables and
//! flags, merged in that order (later wins) into one [`Settings`].
//!
//! Design: the file is read into structs that mirror it (`deny_unknown_fields`, every key
//! optional, values kept with their byte span), then checked and merged by hand, so every
//! error names the file, the line and the key. Environment variables are not scanned: the few
//! documented ones are `clap` `env` attributes on flags, which reach this module as
//! [`Overrides`]. Nothing here binds a socket or opens a file other than the configuration.
//! The documented example, `deploy/broker.toml`, is compiled in as [`DEFAULT_CONFIG`] and a
//! test checks that it parses to exactly the built-in defaults.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use domo_mdp::Heartbeat;
use serde::Deserialize;
use toml::Spanned;

use crate::core::ha::{HaConfig, Role};
use crate::core::{BrokerConfig, QueueLimits};
use crate::duration::parse_duration;

/// The documented example configuration (`deploy/broker.toml`); it holds the defaults.
pub const DEFAULT_CONFIG: &str = include_str!("../../deploy/broker.toml");

/// Default frontend endpoint.
pub const DEFAULT_BIND: &str = "tcp://127.0.0.1:5555";
/// Default metrics and health listener.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

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

/// The effective configuration of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Endpoints of the ROUTER socket.
    pub binds: Vec<String>,
    /// Settings of the broker core (heartbeat, queues, re-dispatch).
    pub core: BrokerConfig,
    /// The HTTP listener for `/metrics`, `/healthz`, `/readyz`; `None` when `off`.
    pub metrics_listen: Option<SocketAddr>,
    /// Services that get their own `service` label.
    pub metrics_max_services: usize,
    /// Log filter used when `RUST_LOG` is not set.
    pub log_level: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// How long a drain waits for in-flight requests.
    pub drain_timeout: Duration,
    /// The embedded Titanic service (`[titanic]`).
    pub titanic: TitanicSettings,
    /// The Binary Star pair (`[ha]`); `None`: the broker runs alone.
    pub ha: Option<HaSettings>,
    /// The file the settings came from, if any.
    pub file: Option<PathBuf>,
}

/// The `[titanic]` section: the embedded Titanic (RFC 9) service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TitanicSettings {
    /// Whether the broker runs Titanic.
    pub enabled: bool,
    /// The directory of the store; `None`: [`TitanicSettings::default_data_dir`].
    pub data_dir: Option<PathBuf>,
    /// Requests never closed are deleted this long after they were stored.
    pub expire_after: Duration,
    /// Most encoded bytes of stored requests and replies; past it `titanic.request` says 500.
    pub max_bytes: u64,
    /// How long the dispatcher waits for a service's reply before it retries.
    pub request_timeout: Duration,
    /// MDP worker sessions per Titanic service.
    pub sessions: usize,
}

impl Default for TitanicSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            data_dir: None,
            expire_after: Duration::from_secs(7 * 86_400),
            max_bytes: 1 << 30,
            request_timeout: Duration::from_secs(30),
            sessions: 16,
        }
    }
}

/// The `[ha]` section: this broker as one of a Binary Star primary/backup pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaSettings {
    /// `primary` or `backup`.
    pub role: Role,
    /// This broker's state endpoint, where the peer connects.
    pub bind: String,
    /// The peer's state endpoint.
    pub peer: String,
    /// Interval of the state exchange; the peer counts as silent after two.
    pub heartbeat: Duration,
}

impl HaSettings {
    /// The state machine's settings.
    pub fn machine(&self) -> HaConfig {
        HaConfig {
            role: self.role,
            heartbeat: self.heartbeat,
        }
    }

    /// What the shell needs to run the pair's state link.
    pub fn link(&self) -> crate::shell::PairLink {
        crate::shell::PairLink {
            machine: self.machine(),
            bind: self.bind.clone(),
            peer: self.peer.clone(),
        }
    }
}

/// `primary` or `backup`, for flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HaRole {
    /// Starts in PRIMARY; active first when both start.
    Primary,
    /// Starts in BACKUP; takes over when the primary fails.
    Backup,
}

impl From<HaRole> for Role {
    fn from(role: HaRole) -> Self {
        match role {
            HaRole::Primary => Self::Primary,
            HaRole::Backup => Self::Backup,
        }
    }
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
        state_directory
            .and_then(|v| {
                let text = v.to_string_lossy().into_owned();
                text.split(':').find(|s| !s.is_empty()).map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from("titanic-data"))
    }
}

/// How log lines are written on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
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

/// Values given by flags or their environment variables; `None` leaves the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--bind` / `DOMO_BROKER__BIND`.
    pub binds: Option<Vec<String>>,
    /// `--heartbeat`.
    pub heartbeat: Option<Duration>,
    /// `--liveness`.
    pub liveness: Option<u32>,
    /// `--metrics-listen` / `DOMO_METRICS__LISTEN` (`off` or an address).
    pub metrics_listen: Option<String>,
    /// `--log-level` / `DOMO_LOG__LEVEL`.
    pub log_level: Option<String>,
    /// `--log-format` / `DOMO_LOG__FORMAT`.
    pub log_format: Option<LogFormat>,
    /// `--titanic-data-dir` / `DOMO_TITANIC__DATA_DIR`.
    pub titanic_data_dir: Option<PathBuf>,
    /// `--no-titanic`: `true` disables Titanic whatever the file says.
    pub no_titanic: bool,
    /// `--ha-role` / `DOMO_HA__ROLE`.
    pub ha_role: Option<Role>,
    /// `--ha-bind` / `DOMO_HA__BIND`.
    pub ha_bind: Option<String>,
    /// `--ha-peer` / `DOMO_HA__PEER`.
    pub ha_peer: Option<String>,
    /// `--ha-heartbeat`.
    pub ha_heartbeat: Option<Duration>,
}

/// A configuration that cannot be used; the message names where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn at(file: &Path, text: &str, span: Option<std::ops::Range<usize>>, msg: &str) -> Self {
        match span {
            Some(span) => {
                let line = line_of(text, span.start);
                match key_at(text, span.start) {
                    Some(key) => Self(format!("{}:{line}: {key}: {msg}", file.display())),
                    None => Self(format!("{}:{line}: {msg}", file.display())),
                }
            }
            None => Self(format!("{}: {msg}", file.display())),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            binds: vec![DEFAULT_BIND.to_string()],
            core: BrokerConfig::default(),
            metrics_listen: Some(default_listen()),
            metrics_max_services: 1000,
            log_level: "info".to_string(),
            log_format: LogFormat::Text,
            drain_timeout: Duration::from_secs(20),
            titanic: TitanicSettings::default(),
            ha: None,
            file: None,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

impl Settings {
    /// Loads the file (if any), then applies the overrides and checks the result.
    ///
    /// # Errors
    /// [`ConfigError`] naming file, line and key, or the flag, of the first bad value.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut settings = match file {
            Some(path) => Self::from_file(path)?,
            None => Self::default(),
        };
        settings.apply(overrides)?;
        Ok(settings)
    }

    /// Reads and checks a configuration file over the defaults.
    ///
    /// # Errors
    /// [`ConfigError`] if the file cannot be read or holds an unknown key or a bad value.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        let mut settings = Self::from_toml(path, &text)?;
        settings.file = Some(path.to_path_buf());
        Ok(settings)
    }

    /// Parses configuration text; `path` only names it in errors.
    ///
    /// # Errors
    /// [`ConfigError`] for an unknown key or a bad value.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file: FileConfig = toml::from_str(text)
            .map_err(|e| ConfigError::at(path, text, e.span(), first_line(e.message())))?;
        let mut settings = Self::default();
        file.merge_into(&mut settings, &|span, msg| {
            ConfigError::at(path, text, Some(span), msg)
        })?;
        Ok(settings)
    }

    fn apply(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        let flag = |name: &str, msg: String| ConfigError(format!("{name}: {msg}"));
        if let Some(binds) = &o.binds {
            check_binds(binds).map_err(|m| flag("--bind / DOMO_BROKER__BIND", m))?;
            self.binds.clone_from(binds);
        }
        if let Some(interval) = o.heartbeat {
            self.core.heartbeat.interval = interval;
        }
        if let Some(liveness) = o.liveness {
            self.core.heartbeat.liveness = liveness;
        }
        if let Some(listen) = &o.metrics_listen {
            self.metrics_listen = parse_listen(listen)
                .map_err(|m| flag("--metrics-listen / DOMO_METRICS__LISTEN", m))?;
        }
        if let Some(level) = &o.log_level {
            check_filter(level).map_err(|m| flag("--log-level / DOMO_LOG__LEVEL", m))?;
            self.log_level.clone_from(level);
        }
        if let Some(format) = o.log_format {
            self.log_format = format;
        }
        if let Some(dir) = &o.titanic_data_dir {
            if dir.as_os_str().is_empty() {
                return Err(flag(
                    "--titanic-data-dir / DOMO_TITANIC__DATA_DIR",
                    "empty path".into(),
                ));
            }
            self.titanic.data_dir = Some(dir.clone());
        }
        if o.no_titanic {
            self.titanic.enabled = false;
        }
        self.apply_ha(o)?;
        self.core
            .validate()
            .map_err(|e| ConfigError(format!("invalid configuration: {e}")))
    }

    /// Merges the `--ha-*` flags into `[ha]`: any of them makes the broker one of a pair, and
    /// then role, bind and peer must all be known (from the file or the flags).
    fn apply_ha(&mut self, o: &Overrides) -> Result<(), ConfigError> {
        let any = o.ha_role.is_some()
            || o.ha_bind.is_some()
            || o.ha_peer.is_some()
            || o.ha_heartbeat.is_some();
        if !any {
            return Ok(());
        }
        let flag = |name: &str, msg: String| ConfigError(format!("{name}: {msg}"));
        let base = self.ha.clone();
        let role = o.ha_role.or(base.as_ref().map(|h| h.role));
        let bind = o.ha_bind.clone().or(base.as_ref().map(|h| h.bind.clone()));
        let peer = o.ha_peer.clone().or(base.as_ref().map(|h| h.peer.clone()));
        let heartbeat = o
            .ha_heartbeat
            .or(base.as_ref().map(|h| h.heartbeat))
            .unwrap_or(HaConfig::DEFAULT_HEARTBEAT);
        let (Some(role), Some(bind), Some(peer)) = (role, bind, peer) else {
            return Err(ConfigError(
                "[ha] / --ha-*: a pair needs role, bind and peer (--ha-role, --ha-bind, --ha-peer)"
                    .to_string(),
            ));
        };
        check_ha_endpoint(&bind).map_err(|m| flag("--ha-bind / DOMO_HA__BIND", m))?;
        check_ha_endpoint(&peer).map_err(|m| flag("--ha-peer / DOMO_HA__PEER", m))?;
        check_ha_heartbeat(heartbeat).map_err(|m| flag("--ha-heartbeat", m))?;
        if peer == bind {
            return Err(flag(
                "--ha-peer / DOMO_HA__PEER",
                "names this broker's own state endpoint".into(),
            ));
        }
        self.ha = Some(HaSettings {
            role,
            bind,
            peer,
            heartbeat,
        });
        Ok(())
    }

    /// The settings as a configuration file that reads back to the same settings.
    pub fn to_toml(&self) -> String {
        let c = &self.core;
        let t = &self.titanic;
        let data_dir = t.data_dir.as_ref().map_or_else(String::new, |d| {
            format!("data_dir = {:?}\n", d.display().to_string())
        });
        let binds: Vec<String> = self.binds.iter().map(|b| format!("{b:?}")).collect();
        let listen = self
            .metrics_listen
            .map_or_else(|| "off".to_string(), |a| a.to_string());
        let source = self.file.as_ref().map_or_else(
            || "built-in defaults".to_string(),
            |p| p.display().to_string(),
        );
        format!(
            "# effective configuration (file: {source})\n\
             [broker]\nbind = [{}]\nheartbeat = \"{}\"\nliveness = {}\n\n\
             [queue]\nrequest_timeout = \"{}\"\nservice_max_requests = {}\n\
             service_max_bytes = {}\ntotal_max_requests = {}\ntotal_max_bytes = {}\n\
             client_max_requests = {}\nclient_max_bytes = {}\n\
             redispatch = {}\nmax_redispatch = {}\n\n\
             [metrics]\nlisten = \"{listen}\"\nmax_services = {}\n\n\
             [log]\nlevel = {:?}\nformat = \"{}\"\n\n\
             [shutdown]\ndrain_timeout = \"{}\"\n\n\
             [titanic]\nenabled = {}\n{data_dir}expire_after = \"{}\"\nmax_bytes = {}\n\
             request_timeout = \"{}\"\nsessions = {}\n{}",
            binds.join(", "),
            format_duration(c.heartbeat.interval),
            c.heartbeat.liveness,
            format_duration(c.request_timeout),
            c.service_queue.max_requests,
            c.service_queue.max_bytes,
            c.total_queue.max_requests,
            c.total_queue.max_bytes,
            c.client_limits.max_requests,
            c.client_limits.max_bytes,
            c.redispatch,
            c.max_redispatch,
            self.metrics_max_services,
            self.log_level,
            self.log_format,
            format_duration(self.drain_timeout),
            t.enabled,
            format_duration(t.expire_after),
            t.max_bytes,
            format_duration(t.request_timeout),
            t.sessions,
            self.ha.as_ref().map_or_else(String::new, |h| format!(
                "\n[ha]\nrole = \"{}\"\nbind = {:?}\npeer = {:?}\nheartbeat = \"{}\"\n",
                h.role,
                h.bind,
                h.peer,
                format_duration(h.heartbeat)
            )),
        )
    }

    /// Settings that differ from `new` and only take effect after a restart.
    pub fn restart_needed(&self, new: &Self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.binds != new.binds {
            keys.push("broker.bind");
        }
        if self.metrics_listen != new.metrics_listen {
            keys.push("metrics.listen");
        }
        if self.metrics_max_services != new.metrics_max_services {
            keys.push("metrics.max_services");
        }
        if self.log_format != new.log_format {
            keys.push("log.format");
        }
        if self.titanic != new.titanic {
            keys.push("titanic");
        }
        if self.ha != new.ha {
            keys.push("ha");
        }
        keys
    }
}

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

/// `off` or a socket address (`127.0.0.1:9464`, `[::1]:0`).
fn parse_listen(text: &str) -> Result<Option<SocketAddr>, String> {
    if text.trim() == "off" {
        return Ok(None);
    }
    text.trim().parse().map(Some).map_err(|_| {
        format!("invalid listen address {text:?}: expected host:port (IP address) or \"off\"")
    })
}

fn check_binds(binds: &[String]) -> Result<(), String> {
    if binds.is_empty() {
        return Err("no endpoint to bind".to_string());
    }
    for bind in binds {
        bind.parse::<domo_zmtp::Endpoint>()
            .map_err(|e| format!("invalid endpoint {bind:?}: {e}"))?;
    }
    Ok(())
}

/// A state endpoint: like a bind endpoint, but one, and TCP or IPC.
fn check_ha_endpoint(ep: &str) -> Result<(), String> {
    ep.parse::<domo_zmtp::Endpoint>()
        .map(|_| ())
        .map_err(|e| format!("invalid endpoint {ep:?}: {e}"))
}

/// The pair heartbeat: 10 ms to 60 s. Shorter would flood the link, longer would make
/// failover take minutes.
fn check_ha_heartbeat(d: Duration) -> Result<(), String> {
    if d < Duration::from_millis(10) || d > Duration::from_secs(60) {
        return Err("must be between 10ms and 60s".to_string());
    }
    Ok(())
}

fn check_filter(level: &str) -> Result<(), String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map(|_| ())
        .map_err(|e| format!("invalid log filter {level:?}: {e}"))
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message)
}

/// 1-based line number of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key whose line holds byte `offset`: the `[table]` above it plus the name before
/// `=` on that line (or just the table, for an error on a table header).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next().unwrap_or("").trim();
    let table = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    if line.starts_with('[') {
        return Some(
            line.trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string(),
        );
    }
    let name = line.split('=').next()?.trim();
    if name.is_empty() || line.starts_with('#') {
        return table;
    }
    Some(match table {
        Some(t) => format!("{t}.{name}"),
        None => name.to_string(),
    })
}

// === the file's shape ===

type Span = std::ops::Range<usize>;
type ErrAt<'a> = &'a dyn Fn(Span, &str) -> ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    broker: Option<BrokerSection>,
    queue: Option<QueueSection>,
    metrics: Option<MetricsSection>,
    log: Option<LogSection>,
    shutdown: Option<ShutdownSection>,
    titanic: Option<TitanicSection>,
    ha: Option<Spanned<HaSection>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HaSection {
    role: Option<Spanned<String>>,
    bind: Option<Spanned<String>>,
    peer: Option<Spanned<String>>,
    heartbeat: Option<Spanned<String>>,
}

impl HaSection {
    /// `[ha]` present means a pair: role, bind and peer are required. `span` is the table's.
    fn into_settings(self, span: Span, err: ErrAt<'_>) -> Result<HaSettings, ConfigError> {
        let role = match &self.role {
            None => return Err(err(span, "role is required (\"primary\" or \"backup\")")),
            Some(role) => match role.get_ref().as_str() {
                "primary" => Role::Primary,
                "backup" => Role::Backup,
                other => {
                    let msg = format!("unknown role {other:?}: expected \"primary\" or \"backup\"");
                    return Err(err(role.span(), &msg));
                }
            },
        };
        let endpoint = |value: &Option<Spanned<String>>, key: &str| match value {
            None => Err(err(
                span.clone(),
                &format!("{key} is required (an endpoint, e.g. \"tcp://10.0.0.1:5556\")"),
            )),
            Some(ep) => check_ha_endpoint(ep.get_ref())
                .map(|()| ep.get_ref().clone())
                .map_err(|m| err(ep.span(), &m)),
        };
        let bind = endpoint(&self.bind, "bind")?;
        let peer = endpoint(&self.peer, "peer")?;
        if bind == peer {
            let at = self.peer.as_ref().map_or(span, Spanned::span);
            return Err(err(at, "names this broker's own state endpoint (bind)"));
        }
        let heartbeat = match &self.heartbeat {
            None => HaConfig::DEFAULT_HEARTBEAT,
            Some(hb) => {
                let d = duration(hb, err)?;
                check_ha_heartbeat(d).map_err(|m| err(hb.span(), &m))?;
                d
            }
        };
        Ok(HaSettings {
            role,
            bind,
            peer,
            heartbeat,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TitanicSection {
    enabled: Option<bool>,
    data_dir: Option<Spanned<String>>,
    expire_after: Option<Spanned<String>>,
    max_bytes: Option<Spanned<u64>>,
    request_timeout: Option<Spanned<String>>,
    sessions: Option<Spanned<usize>>,
}

impl TitanicSection {
    fn merge_into(self, t: &mut TitanicSettings, err: ErrAt<'_>) -> Result<(), ConfigError> {
        if let Some(enabled) = self.enabled {
            t.enabled = enabled;
        }
        if let Some(dir) = self.data_dir {
            if dir.get_ref().trim().is_empty() {
                return Err(err(dir.span(), "empty path"));
            }
            t.data_dir = Some(PathBuf::from(dir.into_inner()));
        }
        if let Some(expire) = self.expire_after {
            t.expire_after = positive(&expire, err)?;
        }
        if let Some(max) = self.max_bytes {
            if *max.get_ref() == 0 {
                return Err(err(max.span(), "must be at least 1"));
            }
            t.max_bytes = max.into_inner();
        }
        if let Some(timeout) = self.request_timeout {
            t.request_timeout = positive(&timeout, err)?;
        }
        if let Some(sessions) = self.sessions {
            if !(1..=1024).contains(sessions.get_ref()) {
                return Err(err(sessions.span(), "must be between 1 and 1024"));
            }
            t.sessions = sessions.into_inner();
        }
        Ok(())
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BrokerSection {
    bind: Option<Spanned<Vec<String>>>,
    heartbeat: Option<Spanned<String>>,
    liveness: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueSection {
    request_timeout: Option<Spanned<String>>,
    service_max_requests: Option<usize>,
    service_max_bytes: Option<usize>,
    total_max_requests: Option<usize>,
    total_max_bytes: Option<usize>,
    client_max_requests: Option<usize>,
    client_max_bytes: Option<usize>,
    redispatch: Option<bool>,
    max_redispatch: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsSection {
    listen: Option<Spanned<String>>,
    max_services: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    level: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShutdownSection {
    drain_timeout: Option<Spanned<String>>,
}

fn duration(value: &Spanned<String>, err: ErrAt<'_>) -> Result<Duration, ConfigError> {
    parse_duration(value.get_ref()).map_err(|m| err(value.span(), &m))
}

fn positive(value: &Spanned<String>, err: ErrAt<'_>) -> Result<Duration, ConfigError> {
    let d = duration(value, err)?;
    if d.is_zero() || d > crate::core::MAX_DURATION {
        return Err(err(
            value.span(),
            "must be more than 0 and at most 365 days",
        ));
    }
    Ok(d)
}

impl FileConfig {
    fn merge_into(self, s: &mut Settings, err: ErrAt<'_>) -> Result<(), ConfigError> {
        let broker = self.broker.unwrap_or_default();
        if let Some(bind) = broker.bind {
            check_binds(bind.get_ref()).map_err(|m| err(bind.span(), &m))?;
            s.binds = bind.into_inner();
        }
        if let Some(hb) = broker.heartbeat {
            s.core.heartbeat.interval = positive(&hb, err)?;
        }
        if let Some(liveness) = broker.liveness {
            if *liveness.get_ref() == 0 {
                return Err(err(liveness.span(), "must be at least 1"));
            }
            s.core.heartbeat.liveness = liveness.into_inner();
        }
        if let Some(queue) = self.queue {
            queue.merge_into(&mut s.core, err)?;
        }
        let metrics = self.metrics.unwrap_or_default();
        if let Some(listen) = metrics.listen {
            s.metrics_listen =
                parse_listen(listen.get_ref()).map_err(|m| err(listen.span(), &m))?;
        }
        if let Some(max) = metrics.max_services {
            s.metrics_max_services = max;
        }
        let log = self.log.unwrap_or_default();
        if let Some(level) = log.level {
            check_filter(level.get_ref()).map_err(|m| err(level.span(), &m))?;
            s.log_level = level.into_inner();
        }
        if let Some(format) = log.format {
            s.log_format = match format.get_ref().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    let msg =
                        format!("unknown log format {other:?}: expected \"text\" or \"json\"");
                    return Err(err(format.span(), &msg));
                }
            };
        }
        if let Some(drain) = self.shutdown.and_then(|sd| sd.drain_timeout) {
            s.drain_timeout = positive(&drain, err)?;
        }
        if let Some(titanic) = self.titanic {
            titanic.merge_into(&mut s.titanic, err)?;
        }
        if let Some(ha) = self.ha {
            let span = ha.span();
            s.ha = Some(ha.into_inner().into_settings(span, err)?);
        }
        Ok(())
    }
}

impl QueueSection {
    fn merge_into(self, core: &mut BrokerConfig, err: ErrAt<'_>) -> Result<(), ConfigError> {
        if let Some(timeout) = self.request_timeout {
            core.request_timeout = duration(&timeout, err)?;
            if core.request_timeout > crate::core::MAX_DURATION {
                return Err(err(timeout.span(), "must be at most 365 days"));
            }
        }
        let limits =
            |requests: Option<usize>, bytes: Option<usize>, base: QueueLimits| QueueLimits {
                max_requests: requests.unwrap_or(base.max_requests),
                max_bytes: bytes.unwrap_or(base.max_bytes),
            };
        core.service_queue = limits(
            self.service_max_requests,
            self.service_max_bytes,
            core.service_queue,
        );
        core.total_queue = limits(
            self.total_max_requests,
            self.total_max_bytes,
            core.total_queue,
        );
        core.client_limits = limits(
            self.client_max_requests,
            self.client_max_bytes,
            core.client_limits,
        );
        if let Some(redispatch) = self.redispatch {
            core.redispatch = redispatch;
        }
        if let Some(max) = self.max_redispatch {
            core.max_redispatch = max;
        }
        Ok(())
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
    }

    #[test]
    fn printed_config_reads_back_to_the_same_settings() {
        let text = "[broker]\nbind = [\"tcp://*:6000\", \"ipc:///tmp/x\"]\nheartbeat = \"1500ms\"\n\
                    [metrics]\nlisten = \"off\"\n[log]\nformat = \"json\"\nlevel = \"debug,h2=off\"\n";
        let settings = parse(text).unwrap();
        assert_eq!(parse(&settings.to_toml()), Ok(settings.clone()));
        assert_eq!(settings.metrics_listen, None);
        assert_eq!(
            settings.core.heartbeat.interval,
            Duration::from_millis(1500)
        );
        let defaults = Settings::default();
        assert_eq!(parse(&defaults.to_toml()), Ok(defaults));
        let text = "[titanic]\nenabled = false\ndata_dir = \"/var/lib/x\"\nexpire_after = \"2d\"\n\
                    max_bytes = 1000\nrequest_timeout = \"5s\"\nsessions = 4\n";
        let settings = parse(text).unwrap();
        assert_eq!(parse(&settings.to_toml()), Ok(settings.clone()));
        assert!(!settings.titanic.enabled);
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
                "[queue]\nrequest_timeout = \"1 day\"\n",
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
                "[titanic]\nrequest_timeout = \"1x\"\n",
                "broker.toml:2: titanic.request_timeout: ",
                "unit",
            ),
            (
                "[titanic]\ndatadir = \"x\"\n",
                "broker.toml:2: titanic.datadir: ",
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
        assert_eq!(s.core.heartbeat.liveness, 5);
        assert_eq!(s.core.heartbeat.interval, Duration::from_millis(300));
        assert_eq!(s.metrics_listen, None);
        let bad = Overrides {
            metrics_listen: Some("nowhere".into()),
            ..Overrides::default()
        };
        let e = Settings::load(None, &bad).unwrap_err().to_string();
        assert!(e.starts_with("--metrics-listen"), "{e}");
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
        new.core.heartbeat.interval = Duration::from_secs(1);
        new.log_level = "debug".into();
        assert!(old.restart_needed(&new).is_empty());
        new.binds = vec!["tcp://*:1".into()];
        new.metrics_listen = None;
        assert_eq!(old.restart_needed(&new), ["broker.bind", "metrics.listen"]);
    }
}
