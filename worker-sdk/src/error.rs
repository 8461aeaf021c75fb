//! The worker SDK's error: an [`ErrorKind`] saying what went wrong, plus the underlying
//! error (name check, endpoint parse) as its [`std::error::Error::source`].

use std::error::Error as StdError;
use std::fmt;

use domo_mdp::NameError;
use domo_zmtp::HandshakeError;

/// What went wrong, as [`Error::kind`] reports it. Match on this rather than on the
/// message; new kinds may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The service name is empty or longer than 255 bytes; the source is the
    /// [`domo_mdp::NameError`].
    InvalidService,
    /// The service name is in the `mmi.` namespace, which the broker answers itself (RFC 8).
    ReservedService,
    /// The options list no broker endpoint.
    NoEndpoints,
    /// An endpoint does not parse (expected `tcp://host:port` or `ipc://path`); the source
    /// is the transport's [`domo_zmtp::Error`].
    InvalidEndpoint,
    /// An option has a value that makes no sense (zero sessions, a zero heartbeat interval
    /// or liveness, a zero backoff delay); the message names it.
    InvalidOptions,
    /// The session that received the request lost its broker (or the worker shut down)
    /// before the reply: the reply cannot be delivered. The broker re-dispatches or drops
    /// the request; the client's timeout and retries apply.
    SessionLost,
    /// A broker refuses the sessions' handshake: a CURVE key it does not allow (`not
    /// authorized`), a wrong server key (`server key mismatch`), or another security
    /// mechanism (CURVE against NULL). Reported by [`crate::WorkerStatus::handshake_error`]
    /// while the sessions keep retrying; the source is the transport's
    /// [`domo_zmtp::HandshakeError`] (also [`Error::handshake_error`]).
    Handshake,
}

/// Why a worker could not start or a reply could not be delivered: [`Error::kind`] says
/// what happened, [`std::error::Error::source`] gives the underlying error if there is one.
pub struct Error {
    kind: ErrorKind,
    /// The endpoint or the option concerned, for the message.
    detail: Option<String>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl Error {
    fn new(kind: ErrorKind, detail: Option<String>) -> Self {
        Self {
            kind,
            detail,
            source: None,
        }
    }

    pub(crate) fn reserved_service() -> Self {
        Self::new(ErrorKind::ReservedService, None)
    }

    pub(crate) fn no_endpoints() -> Self {
        Self::new(ErrorKind::NoEndpoints, None)
    }

    pub(crate) fn invalid_endpoint(endpoint: &str, source: domo_zmtp::Error) -> Self {
        Self {
            source: Some(Box::new(source)),
            ..Self::new(ErrorKind::InvalidEndpoint, Some(format!("{endpoint:?}")))
        }
    }

    pub(crate) fn invalid_option(what: &'static str) -> Self {
        Self::new(ErrorKind::InvalidOptions, Some(what.into()))
    }

    pub(crate) fn session_lost() -> Self {
        Self::new(ErrorKind::SessionLost, None)
    }

    /// The handshake with `endpoint` failed, as the transport says.
    pub(crate) fn handshake(endpoint: &str, error: HandshakeError) -> Self {
        let reason = match &error {
            HandshakeError::NotAuthorized => "not authorized".to_string(),
            HandshakeError::ServerKeyMismatch => "server key mismatch".to_string(),
            other => other.to_string(),
        };
        Self {
            source: Some(Box::new(error)),
            ..Self::new(ErrorKind::Handshake, Some(format!("{reason} ({endpoint})")))
        }
    }

    /// For [`ErrorKind::Handshake`]: the transport's reason, to match on (for example
    /// [`HandshakeError::NotAuthorized`] or [`HandshakeError::ServerKeyMismatch`]).
    pub fn handshake_error(&self) -> Option<&HandshakeError> {
        self.source.as_deref()?.downcast_ref()
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl From<NameError> for Error {
    fn from(error: NameError) -> Self {
        Self {
            source: Some(Box::new(error)),
            ..Self::new(ErrorKind::InvalidService, None)
        }
    }
}

impl From<ErrorKind> for Error {
    /// An error of this kind with no details.
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind, None)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidService => "invalid service name",
            Self::ReservedService => {
                "service names starting with \"mmi.\" are reserved for the broker"
            }
            Self::NoEndpoints => "no broker endpoint given",
            Self::InvalidEndpoint => "invalid endpoint",
            Self::InvalidOptions => "invalid worker options",
            Self::SessionLost => "the session that received this request is gone",
            Self::Handshake => "handshake failed",
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(detail) if self.kind == ErrorKind::InvalidEndpoint => {
                write!(f, "{} {detail}", self.kind)?;
            }
            // The detail already says what the source says.
            Some(detail) if self.kind == ErrorKind::Handshake => {
                return write!(f, "{}: {detail}", self.kind);
            }
            Some(detail) => write!(f, "{}: {detail}", self.kind)?,
            None => write!(f, "{}", self.kind)?,
        }
        // The cause is part of the message too: most callers print only the top error.
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("detail", &self.detail)
            .field("source", &self.source)
            .finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn kinds_messages_and_sources() {
        let parse = "nonsense".parse::<domo_zmtp::Endpoint>().unwrap_err();
        let e = Error::invalid_endpoint("nonsense", parse);
        assert_eq!(e.kind(), ErrorKind::InvalidEndpoint);
        assert!(
            e.to_string().starts_with("invalid endpoint \"nonsense\": "),
            "{e}"
        );
        assert!(e
            .source()
            .and_then(|s| s.downcast_ref::<domo_zmtp::Error>())
            .is_some());

        let e = Error::invalid_option("sessions must not be zero");
        assert_eq!(
            e.to_string(),
            "invalid worker options: sessions must not be zero"
        );
        assert!(e.source().is_none());
        assert_eq!(Error::session_lost().kind(), ErrorKind::SessionLost);

        let e = Error::handshake("tcp://a:1", HandshakeError::ServerKeyMismatch);
        assert_eq!(e.kind(), ErrorKind::Handshake);
        assert_eq!(
            e.to_string(),
            "handshake failed: server key mismatch (tcp://a:1)"
        );
        assert_eq!(
            e.handshake_error(),
            Some(&HandshakeError::ServerKeyMismatch)
        );
        assert!(e.source().is_some());
    }

    #[test]
    fn errors_are_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
