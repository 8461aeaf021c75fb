//! The client SDK's errors: one flat enum whose variants say what the caller can do.

use domo_mdp::NameError;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No reply within the timeout on any attempt, although the broker answered (or could
    /// not be asked) that the service has workers. Retrying later may help.
    #[error("no reply within the timeout after {attempts} attempts")]
    TimedOut {
        /// Attempts made (1 + retries).
        attempts: u32,
    },
    /// No reply, and the broker says no worker serves this service (`mmi.service` answered
    /// 404). Retrying is pointless until a worker registers.
    #[error("service {0:?} has no workers")]
    ServiceUnavailable(String),
    /// No connection to any broker endpoint could be made within the request's time.
    #[error("no broker reachable at {0}")]
    Disconnected(String),
    /// The client was closed with [`crate::Client::close`].
    #[error("client is closed")]
    Closed,
    /// The request body is larger than the client's `max_message_size`.
    #[error("request of {size} bytes exceeds the {limit}-byte limit")]
    MessageTooLarge {
        /// Body size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The service name is empty or longer than 255 bytes.
    #[error("invalid service name: {0}")]
    InvalidService(#[from] NameError),
    /// An endpoint does not parse (expected `tcp://host:port` or `ipc://path`).
    #[error("invalid endpoint: {0}")]
    InvalidEndpoint(#[source] domo_zmtp::Error),
    /// The options list no broker endpoint.
    #[error("no broker endpoint given")]
    NoEndpoints,
    /// An MMI reply had an unexpected body.
    #[error("unexpected MMI reply: {0}")]
    UnexpectedReply(String),
    /// Titanic answered with an error status (`500`: retry later; `400`: malformed or unknown)
    /// or an unexpected body; the text shows its reply.
    #[error("titanic: {0}")]
    Titanic(String),
    /// [`crate::Client::call_durable`] stopped waiting; the request is stored under this id and
    /// its reply can be fetched later with [`crate::Client::titanic_reply`].
    #[error("titanic request {0} is still pending")]
    TitanicPending(String),
}
