//! MMI (RFC 8): the `mmi.*` services the broker answers itself.
//!
//! A client asks an MMI question with an ordinary REQUEST to an `mmi.*` service; the broker
//! answers with an ordinary REPLY from that same service name, e.g.
//! `[""][MDPC01][mmi.service]["200"]`. This module parses the question
//! ([`MmiRequest::parse`]) and builds reply bodies; looking the answer up is the broker's job.
//!
//! | service        | request body      | reply body                               | origin |
//! |----------------|-------------------|------------------------------------------|--------|
//! | `mmi.service`  | `[…][name]`       | `["200"]` if `name` has a worker, else `["404"]` | RFC 8 |
//! | `mmi.services` | ignored           | one frame per service name               | domo   |
//! | `mmi.workers`  | `[…][name]`       | worker count in decimal ASCII, e.g. `["3"]` | domo |
//! | `mmi.ha`       | ignored           | `["200"]` then `key=value` frames (role, state, term, peer…); `["404"]` on a broker that is not in a pair | domo |
//! | other `mmi.*`  | ignored           | `["501"]`                                | RFC 8  |
//!
//! A broker of a Binary Star pair that is not active drops every client request unanswered,
//! `mmi.*` included, so that clients move to the active one; `mmi.ha` is the exception, so
//! an operator can ask either broker what it is.
//!
//! As in the zguide C broker, the name argument is the *last* body frame. Unlike it, the reply
//! is always a fresh body: leading request frames are not echoed. A name argument that is
//! empty or longer than 255 bytes gets `["400"]`, a domo extension (RFC 8 defines no code for
//! a malformed question).

use bytes::Bytes;

use crate::consts::{
    MMI_HA, MMI_SERVICE, MMI_SERVICES, MMI_WORKERS, STATUS_BAD_REQUEST, STATUS_NOT_FOUND,
    STATUS_NOT_IMPLEMENTED, STATUS_OK,
};
use crate::names::ServiceName;

/// A question to the broker's management interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MmiRequest {
    /// `mmi.service`: does this service have at least one worker? (RFC 8)
    Service(ServiceName),
    /// `mmi.services`: which services have workers? (domo extension)
    Services,
    /// `mmi.workers`: how many workers does this service have? (domo extension)
    Workers(ServiceName),
    /// `mmi.ha`: what is this broker's Binary Star role and state? (domo extension)
    Ha,
    /// An `mmi.*` service this broker does not implement; answer with
    /// [`not_implemented_reply`].
    Unknown,
    /// `mmi.service` or `mmi.workers` whose argument is not a valid service name; answer with
    /// [`bad_request_reply`].
    BadRequest,
}

impl MmiRequest {
    /// Parses a client request to `service` with `body`, or returns `None` if `service` is
    /// not in the `mmi.` namespace (an ordinary request the broker must route).
    pub fn parse(service: &ServiceName, body: &[Bytes]) -> Option<Self> {
        if !service.is_mmi() {
            return None;
        }
        let request = match service.as_bytes() {
            MMI_SERVICE => last_name(body).map_or(Self::BadRequest, Self::Service),
            MMI_SERVICES => Self::Services,
            MMI_WORKERS => last_name(body).map_or(Self::BadRequest, Self::Workers),
            MMI_HA => Self::Ha,
            _ => Self::Unknown,
        };
        Some(request)
    }
}

/// The service name argument: the last body frame, as the zguide C broker reads it.
fn last_name(body: &[Bytes]) -> Option<ServiceName> {
    ServiceName::new(body.last()?.clone()).ok()
}

/// Reply body to `mmi.service`: `"200"` if the service has at least one worker, else `"404"`.
pub fn service_reply(has_workers: bool) -> Vec<Bytes> {
    let status = if has_workers {
        STATUS_OK
    } else {
        STATUS_NOT_FOUND
    };
    vec![Bytes::from_static(status)]
}

/// Reply body to `mmi.services`: one frame per name, in the order given.
///
/// With no names the body is one empty frame, since MDP requires at least one body frame;
/// an empty frame is never a valid service name, so it cannot be mistaken for one.
pub fn services_reply(names: impl IntoIterator<Item = ServiceName>) -> Vec<Bytes> {
    let mut body: Vec<Bytes> = names.into_iter().map(ServiceName::into_bytes).collect();
    if body.is_empty() {
        body.push(Bytes::new());
    }
    body
}

/// Reply body to `mmi.workers`: the count in decimal ASCII.
pub fn workers_reply(count: usize) -> Vec<Bytes> {
    vec![Bytes::from(count.to_string())]
}

/// Reply body to an `mmi.*` service the broker does not implement: `"501"`.
pub fn not_implemented_reply() -> Vec<Bytes> {
    vec![Bytes::from_static(STATUS_NOT_IMPLEMENTED)]
}

/// Reply body to an MMI question with an invalid name argument: `"400"`.
pub fn bad_request_reply() -> Vec<Bytes> {
    vec![Bytes::from_static(STATUS_BAD_REQUEST)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(service: &'static str, body: &[&'static [u8]]) -> Option<MmiRequest> {
        let body: Vec<Bytes> = body.iter().copied().map(Bytes::from_static).collect();
        MmiRequest::parse(&ServiceName::from_static(service), &body)
    }

    fn echo() -> ServiceName {
        ServiceName::from_static("echo")
    }

    #[test]
    fn ordinary_services_are_not_mmi() {
        assert_eq!(parse("echo", &[b"x"]), None);
        assert_eq!(parse("echo.mmi.service", &[b"echo"]), None);
    }

    #[test]
    fn mmi_service_takes_the_last_body_frame() {
        assert_eq!(
            parse("mmi.service", &[b"echo"]),
            Some(MmiRequest::Service(echo()))
        );
        let with_prefix = parse("mmi.service", &[b"ignored", b"echo"]);
        assert_eq!(with_prefix, Some(MmiRequest::Service(echo())));
    }

    #[test]
    fn mmi_workers_takes_the_last_body_frame() {
        assert_eq!(
            parse("mmi.workers", &[b"echo"]),
            Some(MmiRequest::Workers(echo()))
        );
    }

    #[test]
    fn mmi_services_ignores_the_body() {
        assert_eq!(parse("mmi.services", &[b""]), Some(MmiRequest::Services));
    }

    #[test]
    fn mmi_ha_ignores_the_body() {
        assert_eq!(parse("mmi.ha", &[b""]), Some(MmiRequest::Ha));
        assert_eq!(parse("mmi.ha", &[b"x", b"y"]), Some(MmiRequest::Ha));
        assert_eq!(parse("mmi.hax", &[b""]), Some(MmiRequest::Unknown));
    }

    #[test]
    fn other_mmi_names_are_unknown() {
        assert_eq!(parse("mmi.filter", &[b"x"]), Some(MmiRequest::Unknown));
        assert_eq!(parse("mmi.", &[b"x"]), Some(MmiRequest::Unknown));
    }

    #[test]
    fn invalid_or_missing_name_argument_is_a_bad_request() {
        assert_eq!(parse("mmi.service", &[b""]), Some(MmiRequest::BadRequest));
        assert_eq!(
            parse("mmi.workers", &[b"echo", b""]),
            Some(MmiRequest::BadRequest)
        );
        assert_eq!(parse("mmi.service", &[]), Some(MmiRequest::BadRequest));
    }

    #[test]
    fn status_replies_are_byte_exact() {
        assert_eq!(service_reply(true), vec![Bytes::from_static(b"200")]);
        assert_eq!(service_reply(false), vec![Bytes::from_static(b"404")]);
        assert_eq!(not_implemented_reply(), vec![Bytes::from_static(b"501")]);
        assert_eq!(bad_request_reply(), vec![Bytes::from_static(b"400")]);
    }

    #[test]
    fn services_reply_has_one_frame_per_name() {
        let names = [echo(), ServiceName::from_static("titanic.request")];
        let body = services_reply(names);
        let expected = [
            Bytes::from_static(b"echo"),
            Bytes::from_static(b"titanic.request"),
        ];
        assert_eq!(body, expected);
    }

    #[test]
    fn services_reply_without_names_is_one_empty_frame() {
        assert_eq!(services_reply([]), vec![Bytes::new()]);
    }

    #[test]
    fn workers_reply_is_decimal_ascii() {
        assert_eq!(workers_reply(0), vec![Bytes::from_static(b"0")]);
        assert_eq!(workers_reply(42), vec![Bytes::from_static(b"42")]);
    }
}
