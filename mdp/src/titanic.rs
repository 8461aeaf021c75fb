//! Titanic (RFC 9): the bodies of the three `titanic.*` services and the request id.
//!
//! Titanic runs as ordinary MDP services, so these are MDP request and reply *bodies*:
//!
//! | service           | request body            | reply body                                   |
//! |-------------------|-------------------------|----------------------------------------------|
//! | `titanic.request` | `[service][body...]`    | `["200"][id]` once stored                    |
//! | `titanic.reply`   | `[id]`                  | `["200"][reply...]`, `["300"]` pending, `["400"]` unknown |
//! | `titanic.close`   | `[id]`                  | `["200"]`, also for an unknown id            |
//!
//! Any of them may answer `["500"]` (the store failed; retry later), and `["400"]` for a
//! malformed body. Statuses are [`Status`] frames; domo sends the bare three digits, and
//! the reply decoders read only the first three bytes of the first frame, since RFC 9
//! allows text after the code.
//!
//! The id is sent as 32 hexadecimal characters with no dashes (the 128 bits of a UUID);
//! [`Id`] accepts either case and always writes lowercase. Which UUID version is used is the
//! Titanic server's business (domo's is v7); this crate only checks the text form.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use crate::mmi::Status;

/// Service name of `titanic.request`: store a request for later delivery.
pub const TITANIC_REQUEST: &[u8] = b"titanic.request";

/// Service name of `titanic.reply`: fetch the reply to a stored request.
pub const TITANIC_REPLY: &[u8] = b"titanic.reply";

/// Service name of `titanic.close`: forget a stored request and its reply.
pub const TITANIC_CLOSE: &[u8] = b"titanic.close";

/// Length of an id on the wire.
const ID_LEN: usize = 32;

/// A Titanic request id in its wire form: 32 lowercase hexadecimal characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id([u8; ID_LEN]);

/// The text was not 32 hexadecimal characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a Titanic request id is 32 hexadecimal characters")]
pub struct ParseIdError;

impl Id {
    /// Parses an id from a frame: exactly 32 hex digits, either case, nothing else.
    ///
    /// # Errors
    ///
    /// [`ParseIdError`] for any other length or character.
    pub fn parse(frame: &[u8]) -> Result<Self, ParseIdError> {
        let bytes: [u8; ID_LEN] = frame.try_into().map_err(|_| ParseIdError)?;
        if !bytes.iter().all(u8::is_ascii_hexdigit) {
            return Err(ParseIdError);
        }
        Ok(Self(bytes.map(|b| b.to_ascii_lowercase())))
    }

    /// The id whose 128 bits are `v`, big-endian.
    pub fn from_u128(v: u128) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; ID_LEN];
        for (i, byte) in out.iter_mut().enumerate() {
            let nibble = (v >> (4 * (ID_LEN - 1 - i))) & 0xF;
            *byte = HEX[nibble as usize];
        }
        Self(out)
    }

    /// The 128 bits of the id, big-endian.
    pub fn as_u128(&self) -> u128 {
        self.0.iter().fold(0u128, |acc, &b| {
            // Only hex digits are ever stored, so `to_digit` cannot fail.
            let digit = char::from(b).to_digit(16).unwrap_or(0);
            (acc << 4) | u128::from(digit)
        })
    }

    /// The 32 lowercase hex characters.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The 32 lowercase hex characters.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The id as a frame.
    pub fn frame(&self) -> Bytes {
        Bytes::copy_from_slice(&self.0)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.as_str())
    }
}

impl FromStr for Id {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s.as_bytes())
    }
}

/// What `titanic.reply` says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Stored, not answered yet (`300`): ask again later.
    Pending,
    /// The service's reply (`200`).
    Done(Vec<Bytes>),
    /// No such request, or it was closed (`400`).
    Unknown,
}

/// A Titanic reply body that is none of the expected answers (a `500`, a malformed reply,
/// another status); it carries the body for the caller to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected Titanic reply")]
pub struct UnexpectedReply(pub Vec<Bytes>);

/// Request body to `titanic.request`: `[service][body...]`. An empty `body` is sent as one
/// empty frame (Titanic answers `400` to a request with no body frame).
pub fn request_body(service: Bytes, body: Vec<Bytes>) -> Vec<Bytes> {
    let mut frames = Vec::with_capacity(body.len() + 1);
    frames.push(service);
    if body.is_empty() {
        // The stored request becomes an MDP request, which needs a body frame (RFC 7), as
        // `client::encode_request` does.
        frames.push(Bytes::new());
    }
    frames.extend(body);
    frames
}

/// How an idempotency key frame starts (domo's convention, docs/extensions.md section 6): a
/// `titanic.request` body `["Idempotency-Key:" key][service][body...]` asks domo's Titanic to
/// store the request only once per key; a retry with the same key is answered with the id of
/// the first.
pub const IDEMPOTENCY_KEY_PREFIX: &[u8] = b"Idempotency-Key:";

/// The longest idempotency key, in bytes (after the prefix). A key is 1 to this many bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 128;

/// Request body to `titanic.request` with an idempotency key: `["Idempotency-Key:" key]`
/// ahead of [`request_body`]. Only domo's Titanic reads the key (another RFC 9 server would
/// take the key frame for the service name).
///
/// # Panics
///
/// If `key` is empty or longer than [`MAX_IDEMPOTENCY_KEY`].
pub fn request_body_keyed(key: &[u8], service: Bytes, body: Vec<Bytes>) -> Vec<Bytes> {
    assert!(
        !key.is_empty() && key.len() <= MAX_IDEMPOTENCY_KEY,
        "an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY} bytes"
    );
    let mut frame = Vec::with_capacity(IDEMPOTENCY_KEY_PREFIX.len() + key.len());
    frame.extend_from_slice(IDEMPOTENCY_KEY_PREFIX);
    frame.extend_from_slice(key);
    let mut frames = vec![Bytes::from(frame)];
    frames.extend(request_body(service, body));
    frames
}

/// A `titanic.request` body as read: the idempotency key if there is one, the service name
/// and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The key of a first frame `"Idempotency-Key:" key`.
    pub key: Option<Bytes>,
    /// The service to deliver to.
    pub service: Bytes,
    /// The request's frames (at least one).
    pub body: Vec<Bytes>,
}

/// Reads a `titanic.request` body: an optional idempotency key frame, the service name and
/// its body; `None` if there is no body frame, the service name is empty, or the key frame
/// holds an empty or too long key.
pub fn decode_request(mut body: Vec<Bytes>) -> Option<Submission> {
    let key = match body.first() {
        Some(first) if first.starts_with(IDEMPOTENCY_KEY_PREFIX) => {
            let key = first.slice(IDEMPOTENCY_KEY_PREFIX.len()..);
            if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY {
                return None;
            }
            body.remove(0);
            Some(key)
        }
        _ => None,
    };
    if body.len() < 2 || body[0].is_empty() {
        return None;
    }
    let rest = body.split_off(1);
    let service = body.swap_remove(0);
    Some(Submission {
        key,
        service,
        body: rest,
    })
}

/// Request body to `titanic.reply` and `titanic.close`: `[id]`.
pub fn id_body(id: &Id) -> Vec<Bytes> {
    vec![id.frame()]
}

/// Reads a `titanic.reply` or `titanic.close` body: exactly one frame holding an id.
pub fn decode_id_body(body: &[Bytes]) -> Option<Id> {
    match body {
        [frame] => Id::parse(frame).ok(),
        _ => None,
    }
}

/// A reply body that is only a status: `[status]`.
pub fn status_reply(status: Status) -> Vec<Bytes> {
    vec![status.frame()]
}

/// Reply body to `titanic.request` once stored: `["200"][id]`.
pub fn request_reply(id: &Id) -> Vec<Bytes> {
    vec![Status::Ok.frame(), id.frame()]
}

/// Reply body to `titanic.reply`: `["200"][reply...]`, `["300"]` or `["400"]`.
pub fn reply_reply(reply: Reply) -> Vec<Bytes> {
    match reply {
        Reply::Done(frames) => {
            let mut out = Vec::with_capacity(frames.len() + 1);
            out.push(Status::Ok.frame());
            out.extend(frames);
            out
        }
        Reply::Pending => status_reply(Status::Pending),
        Reply::Unknown => status_reply(Status::BadRequest),
    }
}

/// The status at the start of a reply's first frame (RFC 9 allows text after the code).
pub fn reply_status(body: &[Bytes]) -> Option<Status> {
    body.first()
        .and_then(|f| f.get(..3))
        .and_then(Status::from_frame)
}

/// Reads a `titanic.request` reply: the id of the stored request.
///
/// # Errors
///
/// [`UnexpectedReply`] unless the status is `200` and a valid id follows.
pub fn decode_request_reply(body: Vec<Bytes>) -> Result<Id, UnexpectedReply> {
    match (reply_status(&body), body.get(1).map(|f| Id::parse(f))) {
        (Some(Status::Ok), Some(Ok(id))) => Ok(id),
        _ => Err(UnexpectedReply(body)),
    }
}

/// Reads a `titanic.reply` reply.
///
/// # Errors
///
/// [`UnexpectedReply`] for a status other than `200`, `300` or `400` (such as `500`).
pub fn decode_reply_reply(mut body: Vec<Bytes>) -> Result<Reply, UnexpectedReply> {
    match reply_status(&body) {
        Some(Status::Ok) => Ok(Reply::Done(body.split_off(1))),
        Some(Status::Pending) => Ok(Reply::Pending),
        Some(Status::BadRequest) => Ok(Reply::Unknown),
        _ => Err(UnexpectedReply(body)),
    }
}

/// Reads a `titanic.close` reply.
///
/// # Errors
///
/// [`UnexpectedReply`] for a status other than `200`.
pub fn decode_close_reply(body: Vec<Bytes>) -> Result<(), UnexpectedReply> {
    match reply_status(&body) {
        Some(Status::Ok) => Ok(()),
        _ => Err(UnexpectedReply(body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef";

    fn frames(body: &[&'static [u8]]) -> Vec<Bytes> {
        body.iter().copied().map(Bytes::from_static).collect()
    }

    #[test]
    fn ids_parse_in_either_case_and_print_lowercase() {
        let id: Id = HEX.parse().unwrap();
        assert_eq!(id.to_string(), HEX);
        assert_eq!(id.as_bytes(), HEX.as_bytes());
        assert_eq!(HEX.to_uppercase().parse::<Id>(), Ok(id));
        assert_eq!(Id::parse(b"0123456789ABCDEF0123456789abcdef"), Ok(id));
        assert_eq!(id.as_u128(), 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(Id::from_u128(id.as_u128()), id);
        assert_eq!(Id::from_u128(1).to_string(), format!("{:032x}", 1));
        assert_eq!(Id::from_u128(u128::MAX).as_u128(), u128::MAX);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            "01234567-89ab-cdef-0123-456789abcdef",
            "0123456789abcdef0123456789abcdeg",
            "+123456789abcdef0123456789abcdef",
            " 123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(bad.parse::<Id>(), Err(ParseIdError), "{bad:?}");
        }
        assert_eq!(Id::parse(&[0xff; 32]), Err(ParseIdError));
    }

    #[test]
    fn id_order_is_numeric_order() {
        let (a, b) = (Id::from_u128(9), Id::from_u128(10));
        assert!(a < b);
    }

    #[test]
    fn request_bodies_round_trip() {
        let body = request_body(Bytes::from_static(b"echo"), frames(&[b"a", b""]));
        assert_eq!(body, frames(&[b"echo", b"a", b""]));
        assert_eq!(
            decode_request(body),
            Some(Submission {
                key: None,
                service: Bytes::from_static(b"echo"),
                body: frames(&[b"a", b""])
            })
        );
        assert_eq!(decode_request(frames(&[b"echo"])), None);
        assert_eq!(decode_request(frames(&[b"", b"x"])), None);
        let id: Id = HEX.parse().unwrap();
        assert_eq!(decode_id_body(&id_body(&id)), Some(id));
        assert_eq!(decode_id_body(&frames(&[b"xyz"])), None);
        assert_eq!(decode_id_body(&[id.frame(), id.frame()]), None);
    }

    #[test]
    fn an_idempotency_key_frame_goes_ahead_of_the_service() {
        let body = request_body_keyed(b"k-1", Bytes::from_static(b"echo"), vec![]);
        assert_eq!(body, frames(&[b"Idempotency-Key:k-1", b"echo", b""]));
        assert_eq!(
            decode_request(body),
            Some(Submission {
                key: Some(Bytes::from_static(b"k-1")),
                service: Bytes::from_static(b"echo"),
                body: frames(&[b""])
            })
        );
        // An empty or too long key, or no service after the key: malformed.
        assert_eq!(
            decode_request(frames(&[b"Idempotency-Key:", b"echo", b"x"])),
            None
        );
        let long = [b"Idempotency-Key:".as_slice(), &[b'k'; 129]].concat();
        let with = |key: Vec<u8>| vec![Bytes::from(key), Bytes::from("echo"), Bytes::from("x")];
        assert_eq!(decode_request(with(long)), None);
        let longest = [b"Idempotency-Key:".as_slice(), &[b'k'; 128]].concat();
        assert!(decode_request(with(longest)).is_some());
        assert_eq!(
            decode_request(frames(&[b"Idempotency-Key:k", b"echo"])),
            None
        );
        // The prefix is case-sensitive: anything else is a service name, as RFC 9 reads it.
        let other = decode_request(frames(&[b"idempotency-key:k", b"x"])).unwrap();
        assert_eq!(
            (other.key, other.service),
            (None, Bytes::from_static(b"idempotency-key:k"))
        );
    }

    #[test]
    fn replies_round_trip_with_their_exact_frames() {
        let id: Id = HEX.parse().unwrap();
        let stored = request_reply(&id);
        assert_eq!(stored, [Bytes::from_static(b"200"), Bytes::from(HEX)]);
        assert_eq!(decode_request_reply(stored), Ok(id));
        let failed = frames(&[b"500"]);
        assert_eq!(
            decode_request_reply(failed.clone()),
            Err(UnexpectedReply(failed))
        );
        assert!(decode_request_reply(frames(&[b"200", b"nope"])).is_err());

        for reply in [
            Reply::Done(frames(&[b"a", b""])),
            Reply::Pending,
            Reply::Unknown,
        ] {
            assert_eq!(decode_reply_reply(reply_reply(reply.clone())), Ok(reply));
        }
        assert_eq!(reply_reply(Reply::Pending), frames(&[b"300"]));
        assert_eq!(reply_reply(Reply::Unknown), frames(&[b"400"]));
        assert_eq!(
            decode_reply_reply(frames(&[b"200 OK", b"x"])),
            Ok(Reply::Done(frames(&[b"x"])))
        );
        assert!(decode_reply_reply(frames(&[b"500"])).is_err());
        assert!(decode_reply_reply(Vec::new()).is_err());

        assert_eq!(decode_close_reply(status_reply(Status::Ok)), Ok(()));
        assert!(decode_close_reply(frames(&[b"400"])).is_err());
    }

    #[test]
    fn a_request_without_body_frames_gets_one_empty_frame() {
        let body = request_body(Bytes::from_static(b"echo"), Vec::new());
        assert_eq!(body, [Bytes::from_static(b"echo"), Bytes::new()]);
        assert_eq!(
            decode_request(body),
            Some(Submission {
                key: None,
                service: Bytes::from_static(b"echo"),
                body: vec![Bytes::new()]
            })
        );
    }
}
