//! domo-broker: the domo Majordomo (MDP/0.1, ZeroMQ RFC 7) broker.
//!
//! # Layout
//!
//! * [`core`]: the broker as a synchronous state machine (routing, worker sessions,
//!   heartbeats, queues, MMI) driven by messages and a clock, with no I/O; tested without
//!   sockets.
//!
//! The tokio shell that drives the core from a ZMTP ROUTER socket comes next.

pub mod core;
pub mod duration;
pub mod shell;

pub use crate::core::{Broker, BrokerConfig, ConfigError, Outbound, PeerKind, QueueLimits, Stats};
