//! The test kit of the domo workspace, and (in `tests/`) the end-to-end scenarios that use it:
//! the broker with the SDKs, the `domo` tool, Titanic, Binary Star pairs and unchanged libzmq
//! peers, in this process or as real child processes. Nothing here is published.
//!
//! # Layout
//!
//! - `wait`: [`eventually`] and [`poll_until`] (and their async twins): every bounded wait.
//! - `peers`: MDP peers on plain libzmq sockets, written from RFC 7: [`ReqClient`],
//!   [`ZWorker`], [`wait_for_service`].
//! - `broker`: [`TestBroker`], a broker in this process on an ephemeral port.
//! - `process`: the workspace's binaries ([`DOMO_BROKER`], [`DOMO`], [`DOMO_TITANIC`]),
//!   [`BrokerProcess`], [`LoggedChild`], and reading a metrics listener ([`http_get`],
//!   [`sample`]).
//! - `pg`: [`fresh_pg_database`] on the tests' PostgreSQL, and [`present_or_skip`] for
//!   the tools a test needs.
//! - `temp`: [`TempDir`], a scratch directory from `tempfile`.
//! - `keys`: [`CurveKeys`], a broker's CURVE keypair and authorized-keys directory on disk.
//! - [`pair`]: the Binary Star harness (two broker processes of a pair).
//!
//! Tests import the kit with `use domo_tests::*;`. Every wait is bounded, every process is
//! killed on drop, every port is ephemeral.

// A failed step of a test harness should panic, with the error in the message.
#![allow(clippy::unwrap_used)]

mod broker;
mod keys;
pub mod pair;
mod peers;
mod pg;
mod process;
mod rng;
mod temp;
mod wait;

pub use broker::*;
pub use keys::*;
pub use peers::*;
pub use pg::*;
pub use process::*;
pub use rng::*;
pub use temp::*;
pub use wait::*;
