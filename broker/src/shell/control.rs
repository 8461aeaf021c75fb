//! How the outside talks to a running broker, and how it fails.

use std::time::Duration;

use tokio::sync::oneshot;

use crate::core::{BrokerConfig, ConfigError};

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
    /// over while this broker winds down (see [`crate::core::Broker::leave_pair`]).
    LeavePair,
    /// The authorized keys were reloaded: apply them to the connected peers (close those
    /// whose key is gone, give the others their new rights).
    KeysReloaded,
    /// Copy current figures into the metrics, then answer.
    Scrape(oneshot::Sender<()>),
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
