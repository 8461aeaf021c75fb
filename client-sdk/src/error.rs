//! The client SDK's error: an [`ErrorKind`] saying what the caller can do, plus the
//! underlying error (transport, name check) as its [`std::error::Error::source`].

use std::error::Error as StdError;
use std::fmt;

use bytes::Bytes;
use domo_mdp::NameError;
use domo_zmtp::HandshakeError;

/// What went wrong, as [`Error::kind`] reports it. Match on this rather than on the
/// message; new kinds may be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No reply within the timeout on any attempt, although the broker answered (or could
    /// not be asked) that the service has workers. Retrying later may help.
    /// [`Error::attempts`] says how many attempts were made.
    TimedOut,
    /// No reply, and the broker says no worker serves this service (`mmi.service` answered
    /// 404). Retrying is pointless until a worker registers.
    ServiceUnavailable,
    /// No connection to any broker endpoint could be made within the request's time.
    Disconnected,
    /// No reply, and the broker says this client's key may not call this service
    /// (`mmi.service` answered 403: the key's `call` rights do not cover it, so the broker
    /// drops its requests). Retrying does not help until the rights change.
    Forbidden,
    /// The broker refused the connection's handshake, or we refused the broker's: a CURVE
    /// key that is not allowed (`not authorized`), a wrong server key (`server key
    /// mismatch`), or a security mechanism other than the broker's (CURVE against NULL).
    /// Retrying does not help until the keys or the broker's configuration change. The
    /// source is the transport's [`domo_zmtp::HandshakeError`] (also
    /// [`Error::handshake_error`]).
    Handshake,
    /// The client was closed with [`crate::Client::close`], or its connection was shut down.
    Closed,
    /// The request body is larger than the client's `max_message_size`.
    MessageTooLarge,
    /// The service name is empty or longer than 255 bytes; the source is the
    /// [`domo_mdp::NameError`].
    InvalidService,
    /// An endpoint does not parse (expected `tcp://host:port` or `ipc://path`); the source
    /// is the transport's [`domo_zmtp::Error`].
    InvalidEndpoint,
    /// The options list no broker endpoint.
    NoEndpoints,
    /// An option has a value that makes no sense (a zero timeout, pool size or message
    /// size); the message names it.
    InvalidOptions,
    /// An MMI reply had an unexpected body; the message shows it.
    UnexpectedReply,
    /// Titanic answered with an error status (`500`: retry later; `400`: malformed or
    /// unknown) or an unexpected body; the message shows its reply.
    Titanic,
    /// [`crate::Client::call_durable`] stopped waiting; the request is stored under
    /// [`Error::pending_id`] and its reply can be fetched later with
    /// [`crate::Client::titanic_reply`].
    TitanicPending,
    /// A `topic.*` service answered with an error status ([`Error::topic_status`]: `400`
    /// malformed, `404` no such topic, `409` exists with other options, `413` too large,
    /// `500` store failure, `501` not available, `507` no room) or an unexpected body; the
    /// message shows the reason.
    Topic,
}

/// Why a request got no answer, or a client could not be made: [`Error::kind`] says what
/// happened, [`std::error::Error::source`] gives the underlying error if there is one, and
/// the message (`Display`) shows the details.
pub struct Error {
    kind: ErrorKind,
    detail: Detail,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// The data behind the message.
#[derive(Debug)]
enum Detail {
    None,
    /// Attempts made (1 + retries).
    Attempts(u32),
    /// Body size and the configured limit, in bytes.
    Size {
        size: usize,
        limit: usize,
    },
    /// A service name, endpoints, a reply shown as text, a request id, or an option.
    Text(String),
    /// A `topic.*` error status and its reason.
    Topic(domo_mdp::topic::Status, String),
    /// A refused handshake: the endpoint, and what follows "handshake failed: ".
    Refused {
        endpoint: String,
        reason: String,
    },
}

impl Error {
    fn new(kind: ErrorKind, detail: Detail) -> Self {
        Self {
            kind,
            detail,
            source: None,
        }
    }

    fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub(crate) fn timed_out(attempts: u32) -> Self {
        Self::new(ErrorKind::TimedOut, Detail::Attempts(attempts))
    }

    pub(crate) fn service_unavailable(service: impl fmt::Display) -> Self {
        Self::new(
            ErrorKind::ServiceUnavailable,
            Detail::Text(service.to_string()),
        )
    }

    pub(crate) fn forbidden(service: impl fmt::Display) -> Self {
        Self::new(ErrorKind::Forbidden, Detail::Text(service.to_string()))
    }

    pub(crate) fn disconnected(endpoints: &[String]) -> Self {
        Self::new(ErrorKind::Disconnected, Detail::Text(endpoints.join(", ")))
    }

    /// The handshake with `endpoint` failed, as the transport says.
    pub(crate) fn handshake(endpoint: &str, error: HandshakeError) -> Self {
        let reason = match &error {
            HandshakeError::NotAuthorized => "not authorized".to_string(),
            HandshakeError::ServerKeyMismatch => "server key mismatch".to_string(),
            other => other.to_string(),
        };
        let detail = Detail::Refused {
            endpoint: endpoint.to_string(),
            reason,
        };
        Self::new(ErrorKind::Handshake, detail).with_source(error)
    }

    pub(crate) fn closed() -> Self {
        Self::new(ErrorKind::Closed, Detail::None)
    }

    /// The connection the request was using was shut down under it.
    pub(crate) fn connection_closed(source: domo_zmtp::Error) -> Self {
        Self::closed().with_source(source)
    }

    /// The blocking client's runtime could not start.
    pub(crate) fn runtime(source: std::io::Error) -> Self {
        Self::closed().with_source(source)
    }

    pub(crate) fn too_large(size: usize, limit: usize) -> Self {
        Self::new(ErrorKind::MessageTooLarge, Detail::Size { size, limit })
    }

    pub(crate) fn invalid_endpoint(endpoint: &str, source: domo_zmtp::Error) -> Self {
        Self::new(ErrorKind::InvalidEndpoint, Detail::Text(endpoint.into())).with_source(source)
    }

    pub(crate) fn no_endpoints() -> Self {
        Self::new(ErrorKind::NoEndpoints, Detail::None)
    }

    pub(crate) fn invalid_option(what: &'static str) -> Self {
        Self::new(ErrorKind::InvalidOptions, Detail::Text(what.into()))
    }

    pub(crate) fn unexpected_reply(shown: String) -> Self {
        Self::new(ErrorKind::UnexpectedReply, Detail::Text(shown))
    }

    pub(crate) fn titanic(shown: String) -> Self {
        Self::new(ErrorKind::Titanic, Detail::Text(shown))
    }

    pub(crate) fn topic(status: domo_mdp::topic::Status, reason: String) -> Self {
        Self::new(ErrorKind::Topic, Detail::Topic(status, reason))
    }

    pub(crate) fn topic_reply(reply: &[Bytes]) -> Self {
        let shown: Vec<String> = reply
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect();
        Self::new(
            ErrorKind::Topic,
            Detail::Text(format!("unexpected reply: {}", shown.join(" | "))),
        )
    }

    /// For [`ErrorKind::Topic`]: the status the service answered with.
    pub fn topic_status(&self) -> Option<domo_mdp::topic::Status> {
        match &self.detail {
            Detail::Topic(status, _) => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn titanic_pending(id: crate::TitanicId) -> Self {
        Self::new(ErrorKind::TitanicPending, Detail::Text(id.to_string()))
    }

    /// What went wrong.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: domo_client::Client) {
    /// use domo_client::ErrorKind;
    /// match client.request("echo", vec![]).await {
    ///     Ok(reply) => println!("{reply:?}"),
    ///     Err(e) if e.kind() == ErrorKind::ServiceUnavailable => eprintln!("no echo worker"),
    ///     Err(e) => eprintln!("{e}"),
    /// }
    /// # }
    /// ```
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// For [`ErrorKind::TimedOut`]: how many attempts were made (1 + retries).
    pub fn attempts(&self) -> Option<u32> {
        match (self.kind, &self.detail) {
            (ErrorKind::TimedOut, Detail::Attempts(n)) => Some(*n),
            _ => None,
        }
    }

    /// For [`ErrorKind::Handshake`]: the transport's reason, to match on (for example
    /// [`HandshakeError::NotAuthorized`] or [`HandshakeError::ServerKeyMismatch`]).
    pub fn handshake_error(&self) -> Option<&HandshakeError> {
        self.source.as_deref()?.downcast_ref()
    }

    /// For [`ErrorKind::TitanicPending`]: the id the request is stored under, to ask for
    /// its reply later with [`crate::Client::titanic_reply`].
    pub fn pending_id(&self) -> Option<crate::TitanicId> {
        match (self.kind, &self.detail) {
            (ErrorKind::TitanicPending, Detail::Text(id)) => id.parse().ok(),
            _ => None,
        }
    }
}

impl From<NameError> for Error {
    fn from(error: NameError) -> Self {
        Self::new(ErrorKind::InvalidService, Detail::None).with_source(error)
    }
}

impl From<ErrorKind> for Error {
    /// An error of this kind with no details.
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind, Detail::None)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TimedOut => "no reply within the timeout",
            Self::ServiceUnavailable => "service has no workers",
            Self::Forbidden => "not allowed to call this service",
            Self::Disconnected => "no broker reachable",
            Self::Handshake => "handshake failed",
            Self::Closed => "client is closed",
            Self::MessageTooLarge => "request exceeds the size limit",
            Self::InvalidService => "invalid service name",
            Self::InvalidEndpoint => "invalid endpoint",
            Self::NoEndpoints => "no broker endpoint given",
            Self::InvalidOptions => "invalid client options",
            Self::UnexpectedReply => "unexpected MMI reply",
            Self::Titanic => "titanic error",
            Self::TitanicPending => "titanic request is still pending",
            Self::Topic => "topic service error",
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, &self.detail) {
            (ErrorKind::TimedOut, Detail::Attempts(n)) => {
                write!(f, "no reply within the timeout after {n} attempts")
            }
            (ErrorKind::ServiceUnavailable, Detail::Text(s)) => {
                write!(f, "service {s:?} has no workers")
            }
            (ErrorKind::Forbidden, Detail::Text(s)) => {
                write!(
                    f,
                    "not allowed to call service {s:?} (the broker answered 403)"
                )
            }
            (ErrorKind::Disconnected, Detail::Text(eps)) => {
                write!(f, "no broker reachable at {eps}")
            }
            (ErrorKind::MessageTooLarge, Detail::Size { size, limit }) => {
                write!(f, "request of {size} bytes exceeds the {limit}-byte limit")
            }
            (ErrorKind::InvalidEndpoint, Detail::Text(ep)) => write!(f, "invalid endpoint {ep:?}"),
            (ErrorKind::InvalidOptions, Detail::Text(what)) => {
                write!(f, "invalid client options: {what}")
            }
            (ErrorKind::UnexpectedReply, Detail::Text(shown)) => {
                write!(f, "unexpected MMI reply: {shown}")
            }
            (ErrorKind::Titanic, Detail::Text(shown)) => write!(f, "titanic: {shown}"),
            (ErrorKind::Topic, Detail::Topic(status, reason)) => {
                let code = String::from_utf8_lossy(status.as_bytes());
                write!(f, "topic service answered {code}: {reason}")
            }
            (ErrorKind::Topic, Detail::Text(shown)) => write!(f, "topic service: {shown}"),
            (ErrorKind::TitanicPending, Detail::Text(id)) => {
                write!(f, "titanic request {id} is still pending")
            }
            // The reason is the source's message: not repeated below.
            (ErrorKind::Handshake, Detail::Refused { endpoint, reason }) => {
                return write!(f, "handshake failed: {reason} ({endpoint})");
            }
            (kind, _) => write!(f, "{kind}"),
        }?;
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
    fn kinds_details_and_sources() {
        let e = Error::timed_out(3);
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        assert_eq!(e.attempts(), Some(3));
        assert_eq!(
            e.to_string(),
            "no reply within the timeout after 3 attempts"
        );
        assert!(e.source().is_none());

        let id: crate::TitanicId = "0123456789abcdef0123456789abcdef".parse().unwrap();
        let e = Error::titanic_pending(id);
        assert_eq!(e.pending_id(), Some(id));
        assert_eq!(e.attempts(), None);

        let parse = "bogus".parse::<domo_zmtp::Endpoint>().unwrap_err();
        let e = Error::invalid_endpoint("bogus", parse);
        assert_eq!(e.kind(), ErrorKind::InvalidEndpoint);
        let source = e.source().expect("the parse error is the source");
        assert!(source.downcast_ref::<domo_zmtp::Error>().is_some());
        assert!(
            e.to_string().starts_with("invalid endpoint \"bogus\": "),
            "{e}"
        );

        let e = Error::from(domo_mdp::ServiceName::new(bytes::Bytes::new()).unwrap_err());
        assert_eq!(e.kind(), ErrorKind::InvalidService);
        assert!(e
            .source()
            .and_then(|s| s.downcast_ref::<NameError>())
            .is_some());
    }

    #[test]
    fn handshake_errors_say_handshake_failed_and_why() {
        let ep = "tcp://127.0.0.1:5555";
        for (error, text) in [
            (HandshakeError::NotAuthorized, "not authorized"),
            (HandshakeError::ServerKeyMismatch, "server key mismatch"),
            (
                HandshakeError::MechanismMismatch {
                    theirs: bytes::Bytes::from_static(b"CURVE"),
                },
                "security mechanism mismatch: peer wants b\"CURVE\"",
            ),
        ] {
            let e = Error::handshake(ep, error.clone());
            assert_eq!(e.kind(), ErrorKind::Handshake);
            assert_eq!(e.to_string(), format!("handshake failed: {text} ({ep})"));
            assert_eq!(e.handshake_error(), Some(&error));
            assert!(e.source().is_some());
        }
        assert_eq!(Error::timed_out(1).handshake_error(), None);
    }

    #[test]
    fn errors_are_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
