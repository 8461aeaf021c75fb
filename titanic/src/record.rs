//! Records as stored on disk: postcard inside versioned enums.
//!
//! Each stored value is an enum whose variant is the layout version ([`StoredRequest::V1`]);
//! postcard writes the variant index as a varint before the fields, so a new layout is a new
//! variant and old files stay readable. Existing variants must never change: the golden-bytes
//! tests below pin their encoding. postcard's format is documented and stable since 1.0; it is
//! not self-describing, which is why the version tag is explicit. redb checksums its pages, so
//! the records carry no CRC of their own.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// A request as the store hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The MDP service the request is for.
    pub service: Bytes,
    /// The request body frames (at least one).
    pub body: Vec<Bytes>,
    /// When the request was stored, in Unix milliseconds.
    pub created_millis: u64,
    /// Delivery attempts recorded so far (reserved for the dispatcher; 0 when stored).
    pub attempts: u32,
}

/// A reply as the store hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply frames from the service.
    pub frames: Vec<Bytes>,
    /// When the reply was stored, in Unix milliseconds.
    pub completed_millis: u64,
}

/// Layout 1 of a stored request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestV1 {
    /// Service name bytes.
    pub service: Vec<u8>,
    /// Body frames.
    pub body: Vec<Vec<u8>>,
    /// Creation time, Unix milliseconds.
    pub created_millis: u64,
    /// Delivery attempts.
    pub attempts: u32,
}

/// Layout 1 of a stored reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyV1 {
    /// Reply frames.
    pub frames: Vec<Vec<u8>>,
    /// Completion time, Unix milliseconds.
    pub completed_millis: u64,
}

/// A stored request of any layout version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredRequest {
    /// Layout 1.
    V1(RequestV1),
}

/// A stored reply of any layout version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredReply {
    /// Layout 1.
    V1(ReplyV1),
}

fn to_vecs(frames: &[Bytes]) -> Vec<Vec<u8>> {
    frames.iter().map(|f| f.to_vec()).collect()
}

fn to_bytes(frames: Vec<Vec<u8>>) -> Vec<Bytes> {
    frames.into_iter().map(Bytes::from).collect()
}

impl From<&Request> for StoredRequest {
    fn from(r: &Request) -> Self {
        Self::V1(RequestV1 {
            service: r.service.to_vec(),
            body: to_vecs(&r.body),
            created_millis: r.created_millis,
            attempts: r.attempts,
        })
    }
}

impl From<StoredRequest> for Request {
    fn from(r: StoredRequest) -> Self {
        match r {
            StoredRequest::V1(v) => Self {
                service: Bytes::from(v.service),
                body: to_bytes(v.body),
                created_millis: v.created_millis,
                attempts: v.attempts,
            },
        }
    }
}

impl From<&Reply> for StoredReply {
    fn from(r: &Reply) -> Self {
        Self::V1(ReplyV1 {
            frames: to_vecs(&r.frames),
            completed_millis: r.completed_millis,
        })
    }
}

impl From<StoredReply> for Reply {
    fn from(r: StoredReply) -> Self {
        match r {
            StoredReply::V1(v) => Self {
                frames: to_bytes(v.frames),
                completed_millis: v.completed_millis,
            },
        }
    }
}

/// Encodes a request in the current layout.
pub fn encode_request(r: &Request) -> Vec<u8> {
    let size = 16 + r.service.len() + r.body.iter().map(|f| f.len() + 5).sum::<usize>();
    encode(
        &StoredRequestRef::V1(RequestV1Ref {
            service: Frame(&r.service),
            body: FramesRef(&r.body),
            created_millis: r.created_millis,
            attempts: r.attempts,
        }),
        size,
    )
}

/// [`encode_request`], appended to `out` (no buffer of its own).
pub fn encode_request_into(r: &Request, out: &mut Vec<u8>) {
    let value = StoredRequestRef::V1(RequestV1Ref {
        service: Frame(&r.service),
        body: FramesRef(&r.body),
        created_millis: r.created_millis,
        attempts: r.attempts,
    });
    *out = postcard::to_extend(&value, std::mem::take(out)).unwrap_or_default();
}

/// [`encode_reply`], appended to `out` (no buffer of its own).
pub fn encode_reply_into(r: &Reply, out: &mut Vec<u8>) {
    let value = StoredReplyRef::V1(ReplyV1Ref {
        frames: FramesRef(&r.frames),
        completed_millis: r.completed_millis,
    });
    *out = postcard::to_extend(&value, std::mem::take(out)).unwrap_or_default();
}

/// Encodes a reply in the current layout.
pub fn encode_reply(r: &Reply) -> Vec<u8> {
    let size = 16 + r.frames.iter().map(|f| f.len() + 5).sum::<usize>();
    encode(
        &StoredReplyRef::V1(ReplyV1Ref {
            frames: FramesRef(&r.frames),
            completed_millis: r.completed_millis,
        }),
        size,
    )
}

// Borrowing twins of the stored layouts, so encoding copies each frame once, into the
// record, instead of into a `Vec` first. They write the same bytes as `StoredRequest` and
// `StoredReply`: postcard writes a byte string (`serialize_bytes`) and a sequence of `u8`
// (how serde writes a `Vec<u8>`) alike, as a varint length and the bytes. A test checks it.

#[derive(Serialize)]
enum StoredRequestRef<'a> {
    V1(RequestV1Ref<'a>),
}

#[derive(Serialize)]
struct RequestV1Ref<'a> {
    service: Frame<'a>,
    body: FramesRef<'a>,
    created_millis: u64,
    attempts: u32,
}

#[derive(Serialize)]
enum StoredReplyRef<'a> {
    V1(ReplyV1Ref<'a>),
}

#[derive(Serialize)]
struct ReplyV1Ref<'a> {
    frames: FramesRef<'a>,
    completed_millis: u64,
}

struct Frame<'a>(&'a [u8]);

impl Serialize for Frame<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

struct FramesRef<'a>(&'a [Bytes]);

impl Serialize for FramesRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for frame in self.0 {
            seq.serialize_element(&Frame(frame))?;
        }
        seq.end()
    }
}

/// Decodes a request of any known layout.
///
/// # Errors
///
/// The postcard error if the bytes are not a known request layout.
pub fn decode_request(bytes: &[u8]) -> Result<Request, postcard::Error> {
    postcard::from_bytes::<StoredRequest>(bytes).map(Request::from)
}

/// Decodes a reply of any known layout.
///
/// # Errors
///
/// The postcard error if the bytes are not a known reply layout.
pub fn decode_reply(bytes: &[u8]) -> Result<Reply, postcard::Error> {
    postcard::from_bytes::<StoredReply>(bytes).map(Reply::from)
}

fn encode<T: Serialize>(value: &T, size: usize) -> Vec<u8> {
    // Serializing these plain structs into a growable Vec cannot fail: postcard only errors on
    // unsupported serde types (none here) or a full fixed-size buffer (not used).
    postcard::to_extend(value, Vec::with_capacity(size)).unwrap_or_default()
}

#[cfg(test)]
mod tests;
