//! MDP/Client 0.1: `[""][MDPC01][service][body…]`, the same shape in both directions.
//!
//! There is no command byte: a message from a client is a REQUEST and a message from the
//! broker is a REPLY. The leading empty frame is what a REQ socket adds and strips by itself;
//! our client SDK uses a DEALER socket, so these functions always include it.
//!
//! Strictness: RFC 7 gives REQUEST and REPLY at least four frames, so a message with a
//! service but no body frame is [`DecodeError::MissingBody`]. A body of one empty frame is
//! fine. Frames after the service are all body; there is nothing to be strict about.

use bytes::Bytes;

use crate::error::DecodeError;
use crate::extensions::MAX_TAG_LEN;
use crate::frames::{self, Protocol, AFTER_HEADER};
use crate::names::ServiceName;

/// Index of the service frame.
const SERVICE: usize = AFTER_HEADER;
/// Index of the first body frame.
const BODY: usize = SERVICE + 1;

/// A request from a client: what the broker decodes from the client side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    /// The service the client asks for; may be an `mmi.*` service the broker answers itself.
    pub service: ServiceName,
    /// The opaque request body, at least one frame (frames may be empty).
    pub body: Vec<Bytes>,
}

/// A reply from the broker: what the client SDK decodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientReply {
    /// The service that answered (the broker echoes the worker's service name).
    pub service: ServiceName,
    /// The opaque reply body, at least one frame (frames may be empty).
    pub body: Vec<Bytes>,
}

/// Encodes a client REQUEST (client SDK to broker).
///
/// An empty `body` is sent as one empty frame, because RFC 7 requires at least one.
pub fn encode_request(service: &ServiceName, body: impl IntoIterator<Item = Bytes>) -> Vec<Bytes> {
    encode(service, body)
}

/// Encodes a client REPLY (broker to client).
///
/// An empty `body` is sent as one empty frame, because RFC 7 requires at least one.
pub fn encode_reply(service: &ServiceName, body: impl IntoIterator<Item = Bytes>) -> Vec<Bytes> {
    encode(service, body)
}

/// Encodes a multiplexed client REQUEST (domo's `mux` extension, for a broker that lists
/// [`crate::extensions::MUX`] on a connection that announced
/// [`crate::extensions::MUX_PROPERTY`]): `[""][MDPC01][service][tag][body…]`. The tag must
/// be 1 to [`MAX_TAG_LEN`] bytes; the broker drops a request whose tag is not.
///
/// An empty `body` is sent as one empty frame, because RFC 7 requires at least one.
pub fn encode_tagged_request(
    service: &ServiceName,
    tag: Bytes,
    body: impl IntoIterator<Item = Bytes>,
) -> Vec<Bytes> {
    encode_tagged(service, tag, body)
}

/// Encodes a multiplexed client REPLY (broker to a multiplexed client):
/// `[""][MDPC01][service][tag][body…]`, the tag copied from the request.
pub fn encode_tagged_reply(
    service: &ServiceName,
    tag: Bytes,
    body: impl IntoIterator<Item = Bytes>,
) -> Vec<Bytes> {
    encode_tagged(service, tag, body)
}

/// Splits the tag off the body of a multiplexed REQUEST or REPLY (what [`decode_request`] or
/// [`decode_reply`] returned as the body): the first frame is the tag, the rest the body.
///
/// # Errors
///
/// [`DecodeError::InvalidTag`] if the first frame is empty or longer than [`MAX_TAG_LEN`], or
/// if no body frame follows it.
pub fn split_tag(mut body: Vec<Bytes>) -> Result<(Bytes, Vec<Bytes>), DecodeError> {
    match body.first().map(Bytes::len) {
        Some(len @ 1..=MAX_TAG_LEN) if body.len() >= 2 => {
            let tag = body.remove(0);
            debug_assert_eq!(tag.len(), len);
            Ok((tag, body))
        }
        Some(len) if body.len() >= 2 => Err(DecodeError::InvalidTag(len)),
        _ => Err(DecodeError::InvalidTag(0)),
    }
}

/// Decodes a client REQUEST, for a broker that reads clients on their own socket. A broker
/// with one socket for both sub-protocols calls [`crate::decode`] instead.
///
/// # Errors
///
/// [`DecodeError`] if the message is not `[""][MDPC01][service][body…]` with a valid service
/// name and at least one body frame.
pub fn decode_request(frames: Vec<Bytes>) -> Result<ClientRequest, DecodeError> {
    frames::expect(&frames, Protocol::Client)?;
    parse_request(frames)
}

/// Decodes a client REPLY (client SDK side).
///
/// # Errors
///
/// [`DecodeError`] if the message is not `[""][MDPC01][service][body…]` with a valid service
/// name and at least one body frame.
pub fn decode_reply(frames: Vec<Bytes>) -> Result<ClientReply, DecodeError> {
    frames::expect(&frames, Protocol::Client)?;
    let (service, body) = parse(frames)?;
    Ok(ClientReply { service, body })
}

/// Parses a REQUEST whose `[""][MDPC01]` prefix was already checked.
pub(crate) fn parse_request(frames: Vec<Bytes>) -> Result<ClientRequest, DecodeError> {
    let (service, body) = parse(frames)?;
    Ok(ClientRequest { service, body })
}

fn parse(frames: Vec<Bytes>) -> Result<(ServiceName, Vec<Bytes>), DecodeError> {
    let service = frames::service_at(&frames, SERVICE)?;
    let body = frames::body_from(frames, BODY)?;
    Ok((service, body))
}

fn encode_tagged(
    service: &ServiceName,
    tag: Bytes,
    body: impl IntoIterator<Item = Bytes>,
) -> Vec<Bytes> {
    let body = body.into_iter();
    let mut frames = frames::start(Protocol::Client, 2 + body.size_hint().0.max(1));
    frames.push(service.clone().into_bytes());
    frames.push(tag);
    frames::push_body(&mut frames, body);
    frames
}

fn encode(service: &ServiceName, body: impl IntoIterator<Item = Bytes>) -> Vec<Bytes> {
    let body = body.into_iter();
    let mut frames = frames::start(Protocol::Client, 1 + body.size_hint().0.max(1));
    frames.push(service.clone().into_bytes());
    frames::push_body(&mut frames, body);
    frames
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn frames(parts: &[&'static [u8]]) -> Vec<Bytes> {
        parts.iter().copied().map(Bytes::from_static).collect()
    }

    fn echo() -> ServiceName {
        ServiceName::from_static("echo")
    }

    #[test]
    fn tagged_messages_put_the_tag_after_the_service() {
        let tag = Bytes::from_static(b"\x00\x00\x00\x07");
        let request = encode_tagged_request(&echo(), tag.clone(), frames(&[b"hi"]));
        assert_eq!(
            request,
            frames(&[b"", b"MDPC01", b"echo", b"\x00\x00\x00\x07", b"hi"])
        );
        let reply = encode_tagged_reply(&echo(), tag.clone(), Vec::new());
        assert_eq!(
            reply,
            frames(&[b"", b"MDPC01", b"echo", b"\x00\x00\x00\x07", b""])
        );
        let decoded = decode_request(request).unwrap();
        assert_eq!(split_tag(decoded.body).unwrap(), (tag, frames(&[b"hi"])));
    }

    #[test]
    fn a_tag_is_1_to_16_bytes_and_followed_by_a_body() {
        let ok = split_tag(frames(&[b"0123456789abcdef", b""])).unwrap();
        assert_eq!(ok.0.len(), 16);
        assert_eq!(
            split_tag(frames(&[b"0123456789abcdefg", b"x"])),
            Err(DecodeError::InvalidTag(17))
        );
        assert_eq!(
            split_tag(frames(&[b"", b"x"])),
            Err(DecodeError::InvalidTag(0))
        );
        assert_eq!(
            split_tag(frames(&[b"tag"])),
            Err(DecodeError::InvalidTag(0))
        );
        assert_eq!(split_tag(Vec::new()), Err(DecodeError::InvalidTag(0)));
    }

    #[test]
    fn request_encodes_byte_exact() {
        let message = encode_request(&echo(), frames(&[b"hello", b""]));
        assert_eq!(message, frames(&[b"", b"MDPC01", b"echo", b"hello", b""]));
    }

    #[test]
    fn reply_encodes_byte_exact() {
        let message = encode_reply(&echo(), [Bytes::from_static(b"world")]);
        assert_eq!(message, frames(&[b"", b"MDPC01", b"echo", b"world"]));
    }

    #[test]
    fn empty_body_is_encoded_as_one_empty_frame() {
        let message = encode_request(&echo(), []);
        assert_eq!(message, frames(&[b"", b"MDPC01", b"echo", b""]));
        let request = decode_request(message).unwrap();
        assert_eq!(request.body, frames(&[b""]));
    }

    #[test]
    fn request_decodes_service_and_body() {
        let request = decode_request(frames(&[b"", b"MDPC01", b"echo", b"a", b"b"])).unwrap();
        assert_eq!(request.service, echo());
        assert_eq!(request.body, frames(&[b"a", b"b"]));
    }

    #[test]
    fn reply_decodes_service_and_body() {
        let reply = decode_reply(frames(&[b"", b"MDPC01", b"mmi.service", b"200"])).unwrap();
        assert_eq!(reply.service, ServiceName::from_static("mmi.service"));
        assert_eq!(reply.body, frames(&[b"200"]));
    }

    #[test]
    fn request_without_service_is_rejected() {
        let err = decode_request(frames(&[b"", b"MDPC01"])).unwrap_err();
        assert_eq!(err, DecodeError::MissingService);
    }

    #[test]
    fn request_with_empty_service_is_rejected() {
        let err = decode_request(frames(&[b"", b"MDPC01", b"", b"x"])).unwrap_err();
        assert_eq!(err, DecodeError::InvalidService(crate::NameError::Empty));
    }

    #[test]
    fn request_without_body_is_rejected() {
        let err = decode_request(frames(&[b"", b"MDPC01", b"echo"])).unwrap_err();
        assert_eq!(err, DecodeError::MissingBody);
        let err = decode_reply(frames(&[b"", b"MDPC01", b"echo"])).unwrap_err();
        assert_eq!(err, DecodeError::MissingBody);
    }

    #[test]
    fn worker_message_is_not_a_client_message() {
        let err = decode_reply(frames(&[b"", b"MDPW01", b"\x04"])).unwrap_err();
        assert_eq!(err, DecodeError::UnknownHeader);
    }

    fn service() -> impl Strategy<Value = ServiceName> {
        proptest::collection::vec(any::<u8>(), 1..=255)
            .prop_map(|name| ServiceName::new(name).unwrap())
    }

    fn body() -> impl Strategy<Value = Vec<Bytes>> {
        let frame = proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
        proptest::collection::vec(frame, 1..8)
    }

    proptest! {
        #[test]
        fn request_round_trips(service in service(), body in body()) {
            let request = decode_request(encode_request(&service, body.clone())).unwrap();
            prop_assert_eq!(request, ClientRequest { service, body });
        }

        #[test]
        fn reply_round_trips(service in service(), body in body()) {
            let reply = decode_reply(encode_reply(&service, body.clone())).unwrap();
            prop_assert_eq!(reply, ClientReply { service, body });
        }
    }
}
