//! The one error type of the codec.

use crate::names::NameError;

/// Why a multipart message is not a valid MDP/0.1 message.
///
/// One variant per distinct defect, so the broker can count malformed input by kind. RFC 7
/// says invalid messages SHOULD be dropped; none of these is ever a panic. Variants carry
/// only small diagnostics, never payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The message has no frames at all.
    #[error("message has no frames")]
    EmptyMessage,
    /// The first frame, which MDP/0.1 requires to be empty, has content. A peer speaking
    /// RFC 18 (MDP/0.2, which drops this frame) ends up here.
    #[error("first frame is not empty")]
    FirstFrameNotEmpty,
    /// The message ends after the leading empty frame.
    #[error("message ends before the protocol header")]
    MissingHeader,
    /// The header frame is not one the decoder accepts: `MDPC01` for client messages,
    /// `MDPW01` for worker messages. This includes MDP/0.2's `MDPC02` and `MDPW02`.
    #[error("unknown protocol header")]
    UnknownHeader,
    /// A client message or a READY ends before the service name frame.
    #[error("message ends before the service name")]
    MissingService,
    /// The service name frame is empty or longer than 255 bytes.
    #[error("invalid service name: {0}")]
    InvalidService(NameError),
    /// A client message or a worker REQUEST/REPLY has no body frame (RFC 7 requires one).
    #[error("message has no body frame")]
    MissingBody,
    /// A worker message ends after its header.
    #[error("worker message ends before the command frame")]
    MissingCommand,
    /// The command frame is not exactly one byte; holds its length.
    #[error("command frame is {0} bytes long, expected 1")]
    CommandFrameLength(usize),
    /// The command byte is not an MDP/0.1 worker command.
    #[error("unknown worker command {0:#04x}")]
    UnknownCommand(u8),
    /// The command exists but never travels in this direction, such as a REQUEST sent by a
    /// worker or a READY sent by a broker.
    #[error("worker command {0:#04x} is not valid in this direction")]
    WrongDirection(u8),
    /// A REQUEST or REPLY ends before the client address frame.
    #[error("message ends before the client address")]
    MissingClient,
    /// The client address frame is empty or longer than 255 bytes.
    #[error("invalid client address: {0}")]
    InvalidClient(NameError),
    /// The client address of a REQUEST or REPLY is not followed by an empty delimiter frame.
    /// A multi-hop address stack (more than one address frame) also ends up here: RFC 7
    /// allows precisely one.
    #[error("client address is not followed by an empty delimiter frame")]
    MissingDelimiter,
    /// A READY, HEARTBEAT or DISCONNECT has frames past its fixed length.
    #[error("command has unexpected trailing frames")]
    TrailingFrames,
    /// A multiplexed client message (domo's `mux` extension) has no tag frame of 1 to
    /// [`crate::extensions::MAX_TAG_LEN`] bytes after the service, or no body frame after
    /// the tag; holds the tag frame's length (0 when there is no body after it).
    #[error("invalid multiplexing tag ({0} bytes)")]
    InvalidTag(usize),
}
