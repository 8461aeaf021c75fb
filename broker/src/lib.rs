//! domo-broker: the domo Majordomo (MDP/0.1, ZeroMQ RFC 7) broker.
//!
//! # Layout
//!
//! * [`core`]: the broker as a synchronous state machine (routing, worker sessions,
//!   heartbeats, queues, admission, MMI, Binary Star) driven by messages and a clock, with no
//!   I/O; tested without sockets. It is its own crate, `domo-broker-core`, which links no
//!   runtime, socket or metrics library; re-exported here as `domo_broker::core`.
//! * [`shell`]: the tokio loop that drives the core from a ZMTP ROUTER socket, with drain
//!   and reload controls and the health state.
//! * [`health`]: liveness, readiness and status shared by the loop with the outside.
//! * [`config`]: the daemon's configuration (TOML file, env, flags) and its checks.
//! * [`metrics`]: the `domo_*` Prometheus metrics; [`http`]: `/metrics`, `/healthz`,
//!   `/readyz`.
//! * [`daemon`]: logging, resource checks, the embedded Titanic, systemd, signals and
//!   reload, and `daemon::run`, which puts the daemon together (`main.rs` parses flags).
//! * [`security`]: CURVE: the broker's keypair and the authorized keys with their rights.
//! * [`duration`]: `"2500ms"`-style durations.

pub mod config;
pub mod daemon;
pub mod duration;
pub mod health;
pub mod http;
pub mod metrics;
pub mod overview;
pub mod security;
pub mod shell;
pub mod topic_store;

pub use domo_broker_core as core;

pub use crate::core::{Broker, BrokerConfig, ConfigError, Outbound, PeerKind, QueueLimits, Stats};

/// The git commit the binary was built from, if the build set `DOMO_GIT_SHA`.
pub const GIT_SHA: &str = match option_env!("DOMO_GIT_SHA") {
    Some(sha) => sha,
    None => "unknown",
};
