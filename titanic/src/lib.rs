//! Titanic (ZeroMQ RFC 9, TSP) for domo: durable, disconnected request/reply.
//!
//! A client hands a request to `titanic.request`; it gets `200 <uuid>` only once the request is
//! on disk. It polls `titanic.reply` with that id (`300` while pending, `200` plus the reply once
//! a worker answered) and finally tells `titanic.close` to forget it.
//!
//! The storage and protocol layer has no sockets and no async; [`server`] and [`dispatcher`]
//! put it on MDP (the `domo-titanic` program runs them against any MDP broker):
//!
//! # Layout
//!
//! - [`id`]: request ids (UUIDv7, 32 hex characters, FIFO by construction).
//! - [`clock`]: the [`TimeSource`] seam for wall-clock times (created, completed, expiry).
//! - [`record`]: the on-disk record encoding (postcard inside versioned enums).
//! - [`store`]: the synchronous [`Store`] trait, [`MemoryStore`] for unit tests and
//!   [`RedbStore`], the durable store with group commit.
//! - [`service`]: pure handlers for `titanic.request`, `titanic.reply` and `titanic.close` over
//!   MDP body frames.
//! - [`error`]: the [`Error`] type (every variant maps to status `500` in [`service`]).
//! - [`server`]: the three services as MDP workers (worker SDK) and [`server::run`], which
//!   serves them and runs the dispatcher over one store until shutdown.
//! - [`dispatcher`]: sends stored requests to their services through the client SDK, one
//!   lane per service, and stores the replies (at-least-once); it can be paused while its
//!   broker is the passive one of a Binary Star pair.
//!
//! # How the MDP side uses the store
//!
//! - **Workers**: one MDP worker per name in [`service::TitanicService::ALL`]; for each request
//!   call [`service::handle`] with the body frames and send the returned frames as the reply.
//!   Store calls block (a [`RedbStore`] call waits for the fsync of its group commit), so run
//!   them on blocking threads, or (as [`server`] does) use the async writes
//!   ([`Store::put_request_async`] and the like), which wait for the commit without holding
//!   a thread: the more requests wait at once, the more share one commit, with no cap but
//!   the store's batch bound. Several workers per service are fine; the store is
//!   `Send + Sync` and meant to be shared as `Arc<dyn Store>`.
//! - **Dispatcher**: page through [`Store::pending`] with the last id as cursor (ids grow in
//!   commit order, so nothing committed later is skipped; [`RedbOptions::feed`] hands over
//!   each commit's requests so they need not be read back), group by [`Request::service`] so one
//!   absent service blocks nothing else, send each through the client SDK, and store the answer
//!   with [`Store::complete`] (first reply wins, a closed id is ignored). Delivery is
//!   at-least-once: a crash between the service's answer and `complete` re-runs the request.
//!   After a restart, start again from `pending(None, ..)`.
//! - **Expiry**: call [`Store::expire`] periodically with the configured age.
//! - **Health**: [`Store::check_writes`] says whether the store takes writes; an [`Error`] with
//!   [`Error::is_write_failure`] means the disk is full or failing, and `/readyz` should say so
//!   (`Display` gives the reason). After such an error redb refuses writes on that handle, so
//!   [`RedbStore`] refuses writes at once and reopens its file by itself, with backoff, until
//!   it takes writes again (no restart); everything acknowledged before stays intact.
//!   [`server::open`] and [`server::Opened::serve`] split [`server::run`] so an embedding
//!   (`domo-broker`) opens the store before it reports ready, and [`server::Status`] gives it
//!   readiness (open failure, or the store refusing writes until it has reopened) and
//!   [`Store::stats`] for metrics; [`RedbOptions::on_reopen`] tells it of each reopen.
//! - **Metrics**: [`Store::stats`] gives requests by state, live and file bytes, and commits.

pub mod clock;
pub mod dispatcher;
pub mod error;
pub mod id;
pub mod pg;
pub mod record;
pub mod server;
pub mod service;
pub mod store;

pub use clock::{ManualClock, SystemClock, TimeSource};
/// The schedule of [`RedbOptions::reopen_backoff`] (the worker SDK's reconnect backoff).
pub use domo_mdp::BackoffOptions;
pub use error::Error;
pub use id::{Id, IdGenerator, ParseIdError};
pub use record::{Reply, Request};
pub use store::memory::MemoryStore;
pub use store::redb::{Linger, RedbOptions, RedbStore, StoredFeed};
pub use store::{Durable, Limits, Lookup, Stats, Store};
