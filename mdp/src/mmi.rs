//! MMI (RFC 8): the `mmi.*` services the broker answers itself.
//!
//! A client asks an MMI question with an ordinary REQUEST to an `mmi.*` service; the broker
//! answers with an ordinary REPLY from that same service name, e.g.
//! `[""][MDPC01][mmi.service]["200"]`. This module parses the question
//! ([`MmiRequest::parse`]) and builds reply bodies; looking the answer up is the broker's job.
//!
//! | service        | request body      | reply body                               | origin |
//! |----------------|-------------------|------------------------------------------|--------|
//! | `mmi.service`  | `[…][name]`       | `["200"]` if `name` has a worker, else `["404"]`; `["403"]` if the caller may not call `name` | RFC 8 (403: domo) |
//! | `mmi.services` | ignored           | one frame per service name               | domo   |
//! | `mmi.workers`  | `[…][name]`       | worker count in decimal ASCII, e.g. `["3"]`; `["403"]` if the caller may not call `name` | domo |
//! | `mmi.queued`   | `[…][name]`       | requests queued for a worker, in decimal ASCII, e.g. `["0"]`; `["403"]` if the caller may not call `name` | domo |
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
//!
//! With CURVE and rights per client key (the broker's `[security]`), a question about a
//! service the caller may not call is answered `["403"]` ([`forbidden_reply`]), and
//! `mmi.services` lists only the services the caller may call.

use bytes::Bytes;

use crate::consts::{
    MMI_HA, MMI_QUEUED, MMI_SERVICE, MMI_SERVICES, MMI_WORKERS, STATUS_BAD_REQUEST,
    STATUS_NOT_FOUND, STATUS_NOT_IMPLEMENTED, STATUS_OK,
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
    /// `mmi.queued`: how many requests wait for a worker of this service? (domo extension)
    Queued(ServiceName),
    /// `mmi.ha`: what is this broker's Binary Star role and state? (domo extension)
    Ha,
    /// An `mmi.*` service this broker does not implement; answer with
    /// [`not_implemented_reply`].
    Unknown,
    /// `mmi.service`, `mmi.workers` or `mmi.queued` whose argument is not a valid service
    /// name; answer with
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
            MMI_QUEUED => last_name(body).map_or(Self::BadRequest, Self::Queued),
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

/// Reply body to an MMI question about a service the caller may not call: `"403"`.
pub fn forbidden_reply() -> Vec<Bytes> {
    vec![Status::Forbidden.frame()]
}

/// Reply body to an MMI question with an invalid name argument: `"400"`.
pub fn bad_request_reply() -> Vec<Bytes> {
    vec![Bytes::from_static(STATUS_BAD_REQUEST)]
}

/// A three-digit status frame, as MMI (RFC 8) and Titanic (RFC 9) put first in a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// `200`: done; the answer follows.
    Ok,
    /// `300`: pending (Titanic: no reply yet).
    Pending,
    /// `400`: a malformed question, or (Titanic) an unknown request id.
    BadRequest,
    /// `403`: the caller may not call the service asked about (MMI with CURVE rights).
    Forbidden,
    /// `404`: not found (MMI: no worker; a broker that is not one of a pair, for `mmi.ha`).
    NotFound,
    /// `500`: the service failed (Titanic: its store refused the write).
    Error,
    /// `501`: not implemented.
    NotImplemented,
}

impl Status {
    /// The status as its frame.
    pub const fn as_bytes(self) -> &'static [u8] {
        match self {
            Self::Ok => STATUS_OK,
            Self::Pending => b"300",
            Self::BadRequest => STATUS_BAD_REQUEST,
            Self::Forbidden => b"403",
            Self::NotFound => STATUS_NOT_FOUND,
            Self::Error => b"500",
            Self::NotImplemented => STATUS_NOT_IMPLEMENTED,
        }
    }

    /// The status a frame names, if it is one of these.
    pub fn from_frame(frame: &[u8]) -> Option<Self> {
        [
            Self::Ok,
            Self::Pending,
            Self::BadRequest,
            Self::Forbidden,
            Self::NotFound,
            Self::Error,
            Self::NotImplemented,
        ]
        .into_iter()
        .find(|status| status.as_bytes() == frame)
    }

    /// The status as a frame that shares no memory.
    pub fn frame(self) -> Bytes {
        Bytes::from_static(self.as_bytes())
    }
}

/// What `mmi.ha` says about a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaReport {
    /// `["404"]`: the broker is not one of a Binary Star pair.
    Alone,
    /// `["200"]` then one `key=value` frame per field, in order (`role`, `state`, `term`,
    /// `serving`, `peer_state`, `peer_up`, `peer_term`, `peer_seen_s`, `conflict`,
    /// `resyncing`; readers must accept fields they do not know).
    Pair(Vec<(String, String)>),
}

/// Why an `mmi.ha` reply could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HaReplyError {
    /// The broker answered `501`: it has no `mmi.ha`.
    #[error("the broker does not implement mmi.ha")]
    NotImplemented,
    /// Anything else.
    #[error("unexpected mmi.ha reply")]
    Unexpected,
}

/// Reply body to `mmi.ha`.
pub fn ha_reply(report: &HaReport) -> Vec<Bytes> {
    match report {
        HaReport::Alone => vec![Status::NotFound.frame()],
        HaReport::Pair(fields) => {
            let mut body = Vec::with_capacity(fields.len() + 1);
            body.push(Status::Ok.frame());
            body.extend(fields.iter().map(|(k, v)| Bytes::from(format!("{k}={v}"))));
            body
        }
    }
}

/// Reads an `mmi.ha` reply body. A field frame without `=` is a key with an empty value.
///
/// # Errors
/// [`HaReplyError`] for `501` or anything that is not `200`/`404`.
pub fn decode_ha_reply(body: &[Bytes]) -> Result<HaReport, HaReplyError> {
    match body.first().and_then(|f| Status::from_frame(f)) {
        Some(Status::Ok) => Ok(HaReport::Pair(
            body[1..]
                .iter()
                .map(|f| {
                    let text = String::from_utf8_lossy(f);
                    match text.split_once('=') {
                        Some((k, v)) => (k.to_string(), v.to_string()),
                        None => (text.to_string(), String::new()),
                    }
                })
                .collect(),
        )),
        Some(Status::NotFound) => Ok(HaReport::Alone),
        Some(Status::NotImplemented) => Err(HaReplyError::NotImplemented),
        _ => Err(HaReplyError::Unexpected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_frames() {
        for status in [
            Status::Ok,
            Status::Pending,
            Status::BadRequest,
            Status::Forbidden,
            Status::NotFound,
            Status::Error,
            Status::NotImplemented,
        ] {
            assert_eq!(Status::from_frame(status.as_bytes()), Some(status));
        }
        assert_eq!(Status::Forbidden.as_bytes(), b"403");
        assert_eq!(forbidden_reply(), [Bytes::from_static(b"403")]);
        assert_eq!(Status::Ok.as_bytes(), b"200");
        assert_eq!(Status::Pending.as_bytes(), b"300");
        assert_eq!(Status::from_frame(b"201"), None);
    }

    #[test]
    fn ha_reports_round_trip_with_their_exact_frames() {
        let pair = HaReport::Pair(vec![
            ("role".into(), "primary".into()),
            ("peer_term".into(), String::new()),
        ]);
        let body = ha_reply(&pair);
        let frames: Vec<&[u8]> = body.iter().map(|f| f.as_ref()).collect();
        assert_eq!(frames, [&b"200"[..], b"role=primary", b"peer_term="]);
        assert_eq!(decode_ha_reply(&body), Ok(pair));
        assert_eq!(ha_reply(&HaReport::Alone), [Bytes::from_static(b"404")]);
        assert_eq!(
            decode_ha_reply(&[Bytes::from_static(b"404")]),
            Ok(HaReport::Alone)
        );
        assert_eq!(
            decode_ha_reply(&[Bytes::from_static(b"501")]),
            Err(HaReplyError::NotImplemented)
        );
        assert_eq!(decode_ha_reply(&[]), Err(HaReplyError::Unexpected));
    }

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
