//! Frame-level helpers shared by the client and worker codecs: the `[""][header]` prefix
//! every MDP/0.1 message starts with, and the body that follows the fixed frames.
//!
//! Tested through the public decoders in `client`, `worker` and `incoming`.

use bytes::Bytes;

use crate::consts::{MDPC01, MDPW01};
use crate::error::DecodeError;
use crate::names::ServiceName;

/// Index of the first frame after `[""][header]`.
pub(crate) const AFTER_HEADER: usize = 2;

/// The MDP/0.1 sub-protocol a message belongs to, read from its header frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// `MDPC01`.
    Client,
    /// `MDPW01`.
    Worker,
}

impl Protocol {
    fn header(self) -> &'static [u8] {
        match self {
            Self::Client => MDPC01,
            Self::Worker => MDPW01,
        }
    }
}

/// Checks the `[""][header]` prefix and says which sub-protocol follows.
///
/// Looks at no frame past the header: MDP/0.1 and 0.2 give the same command bytes different
/// meanings, so nothing else may be read before the version is known.
pub(crate) fn protocol(frames: &[Bytes]) -> Result<Protocol, DecodeError> {
    let first = frames.first().ok_or(DecodeError::EmptyMessage)?;
    if !first.is_empty() {
        return Err(DecodeError::FirstFrameNotEmpty);
    }
    match frames.get(1).ok_or(DecodeError::MissingHeader)?.as_ref() {
        MDPC01 => Ok(Protocol::Client),
        MDPW01 => Ok(Protocol::Worker),
        _ => Err(DecodeError::UnknownHeader),
    }
}

/// Like [`protocol`], for a decoder that accepts only one sub-protocol.
pub(crate) fn expect(frames: &[Bytes], expected: Protocol) -> Result<(), DecodeError> {
    if protocol(frames)? == expected {
        Ok(())
    } else {
        Err(DecodeError::UnknownHeader)
    }
}

/// Parses the service name in frame `index`.
pub(crate) fn service_at(frames: &[Bytes], index: usize) -> Result<ServiceName, DecodeError> {
    let frame = frames.get(index).ok_or(DecodeError::MissingService)?;
    ServiceName::new(frame.clone()).map_err(DecodeError::InvalidService)
}

/// Drops the `start` fixed frames and returns the body, at least one frame, in the same
/// vector (no frame is copied).
pub(crate) fn body_from(mut frames: Vec<Bytes>, start: usize) -> Result<Vec<Bytes>, DecodeError> {
    if frames.len() <= start {
        return Err(DecodeError::MissingBody);
    }
    frames.drain(..start);
    Ok(frames)
}

/// Starts an outgoing message with `[""][header]`, with room for `more` frames.
pub(crate) fn start(protocol: Protocol, more: usize) -> Vec<Bytes> {
    let mut frames = Vec::with_capacity(AFTER_HEADER + more);
    frames.push(Bytes::new());
    frames.push(Bytes::from_static(protocol.header()));
    frames
}

/// Appends a body. RFC 7 requires at least one body frame, so an empty body is sent as one
/// empty frame: encoders never produce a message the peer must reject.
pub(crate) fn push_body(frames: &mut Vec<Bytes>, body: impl IntoIterator<Item = Bytes>) {
    let before = frames.len();
    frames.extend(body);
    if frames.len() == before {
        frames.push(Bytes::new());
    }
}
