//! The broker's entry point: one ROUTER socket carries both sub-protocols, and the header
//! frame says which one a message speaks.

use bytes::Bytes;

use crate::client::{self, ClientRequest};
use crate::error::DecodeError;
use crate::frames::{self, Protocol};
use crate::worker::{self, WorkerCommand};

/// A message the broker received, by sub-protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A REQUEST from a client (`MDPC01`).
    Client(ClientRequest),
    /// A command from a worker (`MDPW01`): READY, REPLY, HEARTBEAT or DISCONNECT.
    Worker(WorkerCommand),
}

/// Decodes a message the broker received, given the frames after the routing id.
///
/// Dispatches on the header frame before reading anything else, because MDP/0.1 and 0.2
/// give the same command bytes different meanings; any header other than `MDPC01` or
/// `MDPW01` is [`DecodeError::UnknownHeader`].
///
/// # Errors
///
/// [`DecodeError`] says what is wrong; RFC 7 says to drop such messages.
pub fn decode(frames: Vec<Bytes>) -> Result<Incoming, DecodeError> {
    match frames::protocol(&frames)? {
        Protocol::Client => client::parse_request(frames).map(Incoming::Client),
        Protocol::Worker => worker::parse_from_worker(frames).map(Incoming::Worker),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::names::ServiceName;

    fn frames(parts: &[&'static [u8]]) -> Vec<Bytes> {
        parts.iter().copied().map(Bytes::from_static).collect()
    }

    fn decode_err(parts: &[&'static [u8]]) -> DecodeError {
        decode(frames(parts)).unwrap_err()
    }

    #[test]
    fn client_request_is_decoded() {
        let incoming = decode(frames(&[b"", b"MDPC01", b"echo", b"hi"])).unwrap();
        let service = ServiceName::from_static("echo");
        let expected = ClientRequest {
            service,
            body: frames(&[b"hi"]),
        };
        assert_eq!(incoming, Incoming::Client(expected));
    }

    #[test]
    fn worker_command_is_decoded() {
        let incoming = decode(frames(&[b"", b"MDPW01", b"\x04"])).unwrap();
        assert_eq!(incoming, Incoming::Worker(WorkerCommand::Heartbeat));
    }

    #[test]
    fn empty_message_is_rejected() {
        assert_eq!(decode(Vec::new()), Err(DecodeError::EmptyMessage));
    }

    #[test]
    fn first_frame_must_be_empty() {
        assert_eq!(
            decode_err(&[b"MDPC01", b"echo", b"x"]),
            DecodeError::FirstFrameNotEmpty
        );
        assert_eq!(decode_err(&[b"x"]), DecodeError::FirstFrameNotEmpty);
    }

    #[test]
    fn one_frame_message_has_no_header() {
        assert_eq!(decode_err(&[b""]), DecodeError::MissingHeader);
    }

    #[test]
    fn unknown_headers_are_rejected_before_any_command_byte() {
        use DecodeError::UnknownHeader;
        assert_eq!(
            decode_err(&[b"", b"MDPC02", b"\x01", b"echo", b"x"]),
            UnknownHeader
        );
        assert_eq!(decode_err(&[b"", b"MDPW02", b"\x06"]), UnknownHeader);
        assert_eq!(decode_err(&[b"", b""]), UnknownHeader);
        assert_eq!(decode_err(&[b"", b"mdpc01", b"echo", b"x"]), UnknownHeader);
    }

    #[test]
    fn broker_rejects_commands_only_brokers_send() {
        let request = decode_err(&[b"", b"MDPW01", b"\x02", b"c", b"", b"x"]);
        assert_eq!(request, DecodeError::WrongDirection(0x02));
    }

    #[test]
    fn client_errors_pass_through() {
        assert_eq!(decode_err(&[b"", b"MDPC01"]), DecodeError::MissingService);
        assert_eq!(
            decode_err(&[b"", b"MDPC01", b"echo"]),
            DecodeError::MissingBody
        );
    }

    /// Frames shaped like MDP often enough to reach the deep branches of the decoder.
    fn message() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let frame = prop_oneof![
            3 => proptest::collection::vec(any::<u8>(), 0..300),
            1 => Just(Vec::new()),
            1 => Just(b"MDPC01".to_vec()),
            1 => Just(b"MDPW01".to_vec()),
            1 => (1u8..=6).prop_map(|code| vec![code]),
        ];
        proptest::collection::vec(frame, 0..8)
    }

    proptest! {
        #[test]
        fn arbitrary_frames_never_panic_any_decoder(message in message()) {
            let frames: Vec<Bytes> = message.into_iter().map(Bytes::from).collect();
            let _ = crate::client::decode_request(frames.clone());
            let _ = crate::client::decode_reply(frames.clone());
            let _ = crate::worker::decode_from_worker(frames.clone());
            let _ = crate::worker::decode_from_broker(frames.clone());
            let _ = decode(frames);
        }

        #[test]
        fn arbitrary_frames_after_an_mdp_prefix_never_panic(
            header in prop_oneof![Just(b"MDPC01"), Just(b"MDPW01")],
            rest in message(),
        ) {
            let mut frames = vec![Bytes::new(), Bytes::from_static(header)];
            frames.extend(rest.into_iter().map(Bytes::from));
            let _ = decode(frames);
        }
    }
}
