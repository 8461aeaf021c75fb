//! Error types, one per layer.

use std::io;

use bytes::Bytes;

use crate::socket_type::SocketType;

/// A peer broke the framing rules after (or during) the handshake.
///
/// Each of these closes the connection and is counted in the socket's statistics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A message (all its frames together) is larger than the configured maximum. Detected from
    /// the frame header, before the body is read or any memory is allocated for it.
    #[error("message of at least {size} bytes exceeds the maximum of {max}")]
    MessageTooLarge {
        /// Announced size so far.
        size: u64,
        /// Configured maximum.
        max: u64,
    },
    /// A message has more frames than the configured maximum.
    #[error("message has more than {max} frames")]
    TooManyFrames {
        /// Configured maximum.
        max: usize,
    },
    /// A command frame is larger than commands may be.
    #[error("command of {size} bytes exceeds the maximum of {max}")]
    CommandTooLarge {
        /// Announced size.
        size: u64,
        /// Maximum command size.
        max: usize,
    },
    /// A command frame has the MORE flag set.
    #[error("command frame with the MORE flag")]
    CommandWithMore,
    /// A command frame arrived between two frames of one message.
    #[error("command frame inside a multipart message")]
    CommandInsideMessage,
    /// A command body does not parse.
    #[error("malformed command")]
    MalformedCommand,
    /// A metadata block does not parse.
    #[error("malformed metadata")]
    MalformedMetadata,
    /// CURVE: a frame of the data phase is not a well-formed `MESSAGE`.
    #[error("malformed CURVE MESSAGE")]
    CurveMalformed,
    /// CURVE: a `MESSAGE` nonce is not above the previous one (a replay).
    #[error("stale CURVE MESSAGE nonce")]
    CurveStaleNonce,
    /// CURVE: a `MESSAGE` box did not open (tampered with, or not from our peer).
    #[error("CURVE MESSAGE failed authentication")]
    CurveBadTag,
    /// A message frame arrived before the handshake finished.
    #[error("message frame before the handshake finished")]
    MessageBeforeHandshake,
}

/// Why a connection did not reach the data phase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The peer's first bytes are not a ZMTP signature.
    #[error("not a ZMTP peer (bad greeting signature)")]
    BadSignature,
    /// The peer speaks ZMTP 1.0 or 2.0.
    #[error("unsupported ZMTP major version {0}")]
    UnsupportedVersion(u8),
    /// The peer asked for another security mechanism.
    #[error("security mechanism mismatch: peer wants {theirs:?}")]
    MechanismMismatch {
        /// The peer's mechanism name, trailing zeros removed.
        theirs: Bytes,
    },
    /// The peer broke the framing rules.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The peer sent a command the mechanism did not expect at this point.
    #[error("unexpected command during handshake")]
    UnexpectedCommand,
    /// The peer's READY has no `Socket-Type` property.
    #[error("peer sent no Socket-Type")]
    MissingSocketType,
    /// The peer's socket type cannot talk to ours.
    #[error("socket type {theirs:?} cannot talk to {ours}")]
    IncompatibleSocketType {
        /// Our socket type.
        ours: SocketType,
        /// The peer's `Socket-Type` value.
        theirs: Bytes,
    },
    /// The peer sent an `Identity` that is longer than 255 bytes.
    #[error("invalid identity")]
    InvalidIdentity,
    /// The peer sent `ERROR`.
    #[error("peer refused the handshake: {0:?}")]
    PeerError(Bytes),
    /// CURVE: a command of the handshake has the wrong size or layout (checked before any
    /// cryptography).
    #[error("malformed CURVE {0}")]
    MalformedCurve(&'static str),
    /// CURVE: a box did not open (the peer used another key than ours, or the bytes were
    /// tampered with), or a vouch does not match. A server that cannot open `HELLO` is being
    /// called with a wrong server key.
    #[error("CURVE {0} did not open: wrong key")]
    WrongKey(&'static str),
    /// CURVE server: the client's key is not authorized (we sent `ERROR "400"`). CURVE
    /// client: the server refused our key (it sent `ERROR "400"`, libzmq's ZAP answer).
    #[error("handshake failed: not authorized")]
    NotAuthorized,
    /// CURVE client: the server closed the connection or answered `ERROR` right after our
    /// `HELLO`: it could not open it, so the server key we were given is not its key.
    #[error("handshake failed: server key mismatch")]
    ServerKeyMismatch,
    /// Too many failed handshakes from this address recently: refused before any
    /// cryptography (a client retrying with a wrong key must not cost a DH per attempt).
    #[error("too many failed handshakes from this address")]
    RateLimited,
    /// The handshake did not finish in time.
    #[error("handshake timed out")]
    Timeout,
    /// The connection closed during the handshake.
    #[error("connection closed during the handshake")]
    Closed,
}

impl HandshakeError {
    /// Whether the failure is the peer's answer (or ours) rather than bad luck: everything
    /// but a connection that closed or stalled mid-handshake. A refusal does not go away by
    /// retrying: keys, mechanism or configuration must change.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, Self::Closed | Self::Timeout)
    }
}

/// Errors of socket operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An endpoint string does not parse.
    #[error("invalid endpoint {0:?}: expected tcp://host:port, ipc://path or inproc://name")]
    InvalidEndpoint(String),
    /// An I/O error (bind, connect, resolve).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An option has a value the socket cannot use.
    #[error("invalid option: {0}")]
    InvalidOption(&'static str),
    /// The socket was shut down.
    #[error("socket is closed")]
    Closed,
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// Why [`crate::Router::try_send`] or [`crate::Dealer::try_send`] did not queue a message.
/// The message is handed back so the caller can keep it.
#[derive(Debug, thiserror::Error)]
pub enum TrySendError {
    /// The peer's send queue is at its high-water mark (messages or bytes). For a Router, a
    /// [`crate::RouterEvent::Writable`] event follows once it has drained.
    #[error("send queue is full")]
    Full(Vec<Bytes>),
    /// No connected peer has this routing id.
    #[error("no such peer")]
    Unroutable(Vec<Bytes>),
    /// The socket was shut down.
    #[error("socket is closed")]
    Closed(Vec<Bytes>),
}

impl TrySendError {
    /// Takes the message back.
    pub fn into_inner(self) -> Vec<Bytes> {
        match self {
            Self::Full(m) | Self::Unroutable(m) | Self::Closed(m) => m,
        }
    }
}
