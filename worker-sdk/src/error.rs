//! The worker SDK's errors.

use domo_mdp::NameError;

/// Why a worker could not start or a reply could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service name is empty or longer than 255 bytes.
    #[error("invalid service name: {0}")]
    InvalidService(#[from] NameError),
    /// The service name is in the `mmi.` namespace, which the broker answers itself (RFC 8).
    #[error("service names starting with \"mmi.\" are reserved for the broker")]
    ReservedService,
    /// The options list no broker endpoint.
    #[error("no broker endpoint given")]
    NoEndpoints,
    /// An endpoint does not parse (expected `tcp://host:port` or `ipc://path`).
    #[error("invalid endpoint: {0}")]
    InvalidEndpoint(#[source] domo_zmtp::Error),
    /// The session that received the request lost its broker (or the worker shut down)
    /// before the reply: the reply cannot be delivered. The broker re-dispatches or drops
    /// the request; the client's timeout and retries apply.
    #[error("the session that received this request is gone")]
    SessionLost,
}
