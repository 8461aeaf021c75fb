//! MDP/Worker 0.1: `[""][MDPW01][command][…]` between the broker and a worker.
//!
//! | command    | direction | frames                                    | count     |
//! |------------|-----------|-------------------------------------------|-----------|
//! | READY      | W → B     | `[""][MDPW01][0x01][service]`             | exactly 4 |
//! | REQUEST    | B → W     | `[""][MDPW01][0x02][client][""][body…]`   | ≥ 6       |
//! | REPLY      | W → B     | `[""][MDPW01][0x03][client][""][body…]`   | ≥ 6       |
//! | HEARTBEAT  | both      | `[""][MDPW01][0x04]`                      | exactly 3 |
//! | DISCONNECT | both      | `[""][MDPW01][0x05]`                      | exactly 3 |
//!
//! Strictness: frame counts are enforced as RFC 7 states them. Extra frames after READY,
//! HEARTBEAT or DISCONNECT are [`DecodeError::TrailingFrames`], not ignored, because a
//! peer that sends them speaks some other dialect and should be noticed. REQUEST and REPLY
//! carry precisely one client address; an address stack is [`DecodeError::MissingDelimiter`].
//! Each decoder accepts only the commands its side can receive, and rejects the others with
//! [`DecodeError::WrongDirection`].

use bytes::Bytes;

use crate::consts::{DISCONNECT, HEARTBEAT, READY, REPLY, REQUEST};
use crate::error::DecodeError;
use crate::frames::{self, Protocol, AFTER_HEADER};
use crate::names::{PeerId, ServiceName};

/// Index of the command frame.
const COMMAND: usize = AFTER_HEADER;
/// Index of the frame after the command: the service of READY, the client of REQUEST/REPLY.
const ARGUMENT: usize = COMMAND + 1;
/// Index of the empty delimiter after the client address.
const DELIMITER: usize = ARGUMENT + 1;
/// Index of the first body frame of REQUEST/REPLY.
const BODY: usize = DELIMITER + 1;
/// Frame count of READY: `[""][MDPW01][0x01][service]`.
const READY_LEN: usize = ARGUMENT + 1;
/// Frame count of HEARTBEAT and DISCONNECT: `[""][MDPW01][command]`.
const BARE_LEN: usize = COMMAND + 1;

/// One MDP/Worker 0.1 command, in the order of the wire codes 0x01 to 0x05.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerCommand {
    /// Worker to broker: serve `service` from now on. Sent once per session.
    Ready {
        /// The service to serve; the broker must refuse `mmi.*` names (RFC 8).
        service: ServiceName,
    },
    /// Broker to worker: process a request from `client`.
    Request {
        /// The client-address frame, opaque to the worker, to be echoed back in the REPLY
        /// (RFC 7 calls it the client's address; domo's broker puts a token naming the
        /// request there).
        client: PeerId,
        /// The opaque request body, at least one frame.
        body: Vec<Bytes>,
    },
    /// Worker to broker: the answer to the request from `client`.
    Reply {
        /// The client-address frame, as received in the REQUEST.
        client: PeerId,
        /// The opaque reply body, at least one frame.
        body: Vec<Bytes>,
    },
    /// Both ways: I am alive. Only needed while no other traffic flows.
    Heartbeat,
    /// Both ways: the session is over; the worker reconnects with a new socket.
    Disconnect,
}

impl WorkerCommand {
    /// The command byte on the wire.
    pub fn code(&self) -> u8 {
        match self {
            Self::Ready { .. } => READY,
            Self::Request { .. } => REQUEST,
            Self::Reply { .. } => REPLY,
            Self::Heartbeat => HEARTBEAT,
            Self::Disconnect => DISCONNECT,
        }
    }

    /// The command's name as RFC 7 spells it, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ready { .. } => "READY",
            Self::Request { .. } => "REQUEST",
            Self::Reply { .. } => "REPLY",
            Self::Heartbeat => "HEARTBEAT",
            Self::Disconnect => "DISCONNECT",
        }
    }

    /// Encodes the command, moving the body frames into the message.
    pub fn encode(self) -> Vec<Bytes> {
        match self {
            Self::Ready { service } => encode_ready(&service),
            Self::Request { client, body } => encode_request(&client, body),
            Self::Reply { client, body } => encode_reply(&client, body),
            Self::Heartbeat => encode_heartbeat(),
            Self::Disconnect => encode_disconnect(),
        }
    }
}

/// Encodes READY (worker to broker).
pub fn encode_ready(service: &ServiceName) -> Vec<Bytes> {
    let mut frames = command(&READY, 1);
    frames.push(service.clone().into_bytes());
    frames
}

/// Encodes REQUEST (broker to worker), forwarding a client's request body.
///
/// An empty `body` is sent as one empty frame, because RFC 7 requires at least one.
pub fn encode_request(client: &PeerId, body: impl IntoIterator<Item = Bytes>) -> Vec<Bytes> {
    routed(&REQUEST, client, body)
}

/// Encodes REPLY (worker to broker), answering the request from `client`.
///
/// An empty `body` is sent as one empty frame, because RFC 7 requires at least one.
pub fn encode_reply(client: &PeerId, body: impl IntoIterator<Item = Bytes>) -> Vec<Bytes> {
    routed(&REPLY, client, body)
}

/// Encodes HEARTBEAT (either direction).
pub fn encode_heartbeat() -> Vec<Bytes> {
    command(&HEARTBEAT, 0)
}

/// Encodes DISCONNECT (either direction).
pub fn encode_disconnect() -> Vec<Bytes> {
    command(&DISCONNECT, 0)
}

/// Decodes a command sent by a worker (broker side): READY, REPLY, HEARTBEAT or DISCONNECT.
///
/// A broker with one socket for clients and workers calls [`crate::decode`] instead.
///
/// # Errors
///
/// [`DecodeError`] if the message is not one of those commands, framed as RFC 7 says.
pub fn decode_from_worker(frames: Vec<Bytes>) -> Result<WorkerCommand, DecodeError> {
    frames::expect(&frames, Protocol::Worker)?;
    parse(frames, Sender::Worker)
}

/// Decodes a command sent by the broker (worker SDK side): REQUEST, HEARTBEAT or DISCONNECT.
///
/// # Errors
///
/// [`DecodeError`] if the message is not one of those commands, framed as RFC 7 says.
pub fn decode_from_broker(frames: Vec<Bytes>) -> Result<WorkerCommand, DecodeError> {
    frames::expect(&frames, Protocol::Worker)?;
    parse(frames, Sender::Broker)
}

/// Parses a command from a worker whose `[""][MDPW01]` prefix was already checked.
pub(crate) fn parse_from_worker(frames: Vec<Bytes>) -> Result<WorkerCommand, DecodeError> {
    parse(frames, Sender::Worker)
}

/// Which side sent a message, which decides the commands it may contain.
#[derive(Debug, Clone, Copy)]
enum Sender {
    Worker,
    Broker,
}

fn parse(frames: Vec<Bytes>, sender: Sender) -> Result<WorkerCommand, DecodeError> {
    let code = command_code(&frames)?;
    match (code, sender) {
        (READY, Sender::Worker) => parse_ready(&frames),
        (REQUEST, Sender::Broker) => {
            let (client, body) = parse_routed(frames)?;
            Ok(WorkerCommand::Request { client, body })
        }
        (REPLY, Sender::Worker) => {
            let (client, body) = parse_routed(frames)?;
            Ok(WorkerCommand::Reply { client, body })
        }
        (HEARTBEAT, _) => exact_len(&frames, BARE_LEN).map(|()| WorkerCommand::Heartbeat),
        (DISCONNECT, _) => exact_len(&frames, BARE_LEN).map(|()| WorkerCommand::Disconnect),
        (READY | REQUEST | REPLY, _) => Err(DecodeError::WrongDirection(code)),
        _ => Err(DecodeError::UnknownCommand(code)),
    }
}

fn command_code(frames: &[Bytes]) -> Result<u8, DecodeError> {
    let frame = frames.get(COMMAND).ok_or(DecodeError::MissingCommand)?;
    match frame.as_ref() {
        [code] => Ok(*code),
        other => Err(DecodeError::CommandFrameLength(other.len())),
    }
}

fn parse_ready(frames: &[Bytes]) -> Result<WorkerCommand, DecodeError> {
    let service = frames::service_at(frames, ARGUMENT)?;
    exact_len(frames, READY_LEN)?;
    Ok(WorkerCommand::Ready { service })
}

/// Parses `[client][""][body…]` after the command frame.
fn parse_routed(frames: Vec<Bytes>) -> Result<(PeerId, Vec<Bytes>), DecodeError> {
    let client = frames.get(ARGUMENT).ok_or(DecodeError::MissingClient)?;
    let client = PeerId::new(client.clone()).map_err(DecodeError::InvalidClient)?;
    if !frames.get(DELIMITER).is_some_and(Bytes::is_empty) {
        return Err(DecodeError::MissingDelimiter);
    }
    Ok((client, frames::body_from(frames, BODY)?))
}

/// Checks that a fixed-length command has no frames past its last one (the frames before
/// it were already checked).
fn exact_len(frames: &[Bytes], len: usize) -> Result<(), DecodeError> {
    if frames.len() > len {
        return Err(DecodeError::TrailingFrames);
    }
    Ok(())
}

/// Starts `[""][MDPW01][code]`, with room for `more` frames. `code` is `&'static` so the
/// command frame borrows the constant instead of allocating.
fn command(code: &'static u8, more: usize) -> Vec<Bytes> {
    let mut frames = frames::start(Protocol::Worker, 1 + more);
    frames.push(Bytes::from_static(std::slice::from_ref(code)));
    frames
}

fn routed(code: &'static u8, client: &PeerId, body: impl IntoIterator<Item = Bytes>) -> Vec<Bytes> {
    let body = body.into_iter();
    let mut frames = command(code, 2 + body.size_hint().0.max(1));
    frames.push(client.clone().into_bytes());
    frames.push(Bytes::new());
    frames::push_body(&mut frames, body);
    frames
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::names::NameError;

    fn frames(parts: &[&'static [u8]]) -> Vec<Bytes> {
        parts.iter().copied().map(Bytes::from_static).collect()
    }

    fn client() -> PeerId {
        PeerId::new(&b"\x00\x80\x1b"[..]).unwrap()
    }

    #[test]
    fn every_command_encodes_byte_exact() {
        let echo = ServiceName::from_static("echo");
        let body = || frames(&[b"x", b""]);
        assert_eq!(
            encode_ready(&echo),
            frames(&[b"", b"MDPW01", b"\x01", b"echo"])
        );
        assert_eq!(
            encode_request(&client(), body()),
            frames(&[b"", b"MDPW01", b"\x02", b"\x00\x80\x1b", b"", b"x", b""])
        );
        assert_eq!(
            encode_reply(&client(), body()),
            frames(&[b"", b"MDPW01", b"\x03", b"\x00\x80\x1b", b"", b"x", b""])
        );
        assert_eq!(encode_heartbeat(), frames(&[b"", b"MDPW01", b"\x04"]));
        assert_eq!(encode_disconnect(), frames(&[b"", b"MDPW01", b"\x05"]));
    }

    #[test]
    fn enum_encode_matches_the_free_functions() {
        let reply = WorkerCommand::Reply {
            client: client(),
            body: frames(&[b"ok"]),
        };
        assert_eq!(reply.encode(), encode_reply(&client(), frames(&[b"ok"])));
        assert_eq!(WorkerCommand::Heartbeat.encode(), encode_heartbeat());
    }

    #[test]
    fn empty_body_is_encoded_as_one_empty_frame() {
        let message = encode_request(&client(), []);
        assert_eq!(
            message,
            frames(&[b"", b"MDPW01", b"\x02", b"\x00\x80\x1b", b"", b""])
        );
    }

    #[test]
    fn codes_and_names_follow_rfc_7() {
        let ready = WorkerCommand::Ready {
            service: ServiceName::from_static("echo"),
        };
        assert_eq!((ready.code(), ready.name()), (0x01, "READY"));
        assert_eq!(WorkerCommand::Disconnect.code(), 0x05);
        assert_eq!(WorkerCommand::Heartbeat.name(), "HEARTBEAT");
    }

    #[test]
    fn broker_decodes_every_worker_command() {
        let decode = |parts: &[&'static [u8]]| decode_from_worker(frames(parts)).unwrap();
        let service = ServiceName::from_static("echo");
        let ready = decode(&[b"", b"MDPW01", b"\x01", b"echo"]);
        assert_eq!(ready, WorkerCommand::Ready { service });
        let reply = decode(&[b"", b"MDPW01", b"\x03", b"\x00\x80\x1b", b"", b"a", b"b"]);
        let body = frames(&[b"a", b"b"]);
        assert_eq!(
            reply,
            WorkerCommand::Reply {
                client: client(),
                body
            }
        );
        assert_eq!(decode(&[b"", b"MDPW01", b"\x04"]), WorkerCommand::Heartbeat);
        assert_eq!(
            decode(&[b"", b"MDPW01", b"\x05"]),
            WorkerCommand::Disconnect
        );
    }

    #[test]
    fn worker_decodes_every_broker_command() {
        let decode = |parts: &[&'static [u8]]| decode_from_broker(frames(parts)).unwrap();
        let request = decode(&[b"", b"MDPW01", b"\x02", b"\x00\x80\x1b", b"", b""]);
        let body = frames(&[b""]);
        assert_eq!(
            request,
            WorkerCommand::Request {
                client: client(),
                body
            }
        );
        assert_eq!(decode(&[b"", b"MDPW01", b"\x04"]), WorkerCommand::Heartbeat);
        assert_eq!(
            decode(&[b"", b"MDPW01", b"\x05"]),
            WorkerCommand::Disconnect
        );
    }

    fn from_worker(parts: &[&'static [u8]]) -> DecodeError {
        decode_from_worker(frames(parts)).unwrap_err()
    }

    #[test]
    fn command_frame_must_be_present_and_one_byte() {
        use DecodeError::{CommandFrameLength, MissingCommand};
        assert_eq!(from_worker(&[b"", b"MDPW01"]), MissingCommand);
        assert_eq!(from_worker(&[b"", b"MDPW01", b""]), CommandFrameLength(0));
        assert_eq!(
            from_worker(&[b"", b"MDPW01", b"\x04\x00"]),
            CommandFrameLength(2)
        );
    }

    #[test]
    fn unknown_command_bytes_are_rejected() {
        assert_eq!(
            from_worker(&[b"", b"MDPW01", b"\x00"]),
            DecodeError::UnknownCommand(0)
        );
        assert_eq!(
            from_worker(&[b"", b"MDPW01", b"\x06"]),
            DecodeError::UnknownCommand(6)
        );
        let err = decode_from_broker(frames(&[b"", b"MDPW01", b"\xff"])).unwrap_err();
        assert_eq!(err, DecodeError::UnknownCommand(0xff));
    }

    #[test]
    fn commands_in_the_wrong_direction_are_rejected() {
        let request = [b"" as &[u8], b"MDPW01", b"\x02", b"\x00\x80\x1b", b"", b"x"];
        assert_eq!(from_worker(&request), DecodeError::WrongDirection(REQUEST));
        let from_broker = |parts: &[&'static [u8]]| decode_from_broker(frames(parts));
        let ready = from_broker(&[b"", b"MDPW01", b"\x01", b"echo"]);
        assert_eq!(ready, Err(DecodeError::WrongDirection(READY)));
        let reply = from_broker(&[b"", b"MDPW01", b"\x03", b"\x00\x80\x1b", b"", b"x"]);
        assert_eq!(reply, Err(DecodeError::WrongDirection(REPLY)));
    }

    #[test]
    fn ready_needs_exactly_one_valid_service() {
        assert_eq!(
            from_worker(&[b"", b"MDPW01", b"\x01"]),
            DecodeError::MissingService
        );
        let empty = from_worker(&[b"", b"MDPW01", b"\x01", b""]);
        assert_eq!(empty, DecodeError::InvalidService(NameError::Empty));
        let extra = from_worker(&[b"", b"MDPW01", b"\x01", b"echo", b""]);
        assert_eq!(extra, DecodeError::TrailingFrames);
    }

    #[test]
    fn heartbeat_and_disconnect_reject_trailing_frames() {
        let heartbeat = from_worker(&[b"", b"MDPW01", b"\x04", b""]);
        assert_eq!(heartbeat, DecodeError::TrailingFrames);
        let disconnect = decode_from_broker(frames(&[b"", b"MDPW01", b"\x05", b"x"]));
        assert_eq!(disconnect, Err(DecodeError::TrailingFrames));
    }

    #[test]
    fn reply_needs_one_valid_client_address() {
        assert_eq!(
            from_worker(&[b"", b"MDPW01", b"\x03"]),
            DecodeError::MissingClient
        );
        let empty = from_worker(&[b"", b"MDPW01", b"\x03", b"", b"", b"x"]);
        assert_eq!(empty, DecodeError::InvalidClient(NameError::Empty));
        let long = Bytes::from(vec![1; 256]);
        let mut message = frames(&[b"", b"MDPW01", b"\x03"]);
        message.extend([long, Bytes::new(), Bytes::from_static(b"x")]);
        let err = decode_from_worker(message).unwrap_err();
        assert_eq!(err, DecodeError::InvalidClient(NameError::TooLong(256)));
    }

    #[test]
    fn reply_needs_a_delimiter_after_the_address() {
        let missing = from_worker(&[b"", b"MDPW01", b"\x03", b"\x00\x80\x1b"]);
        assert_eq!(missing, DecodeError::MissingDelimiter);
        let stacked = from_worker(&[b"", b"MDPW01", b"\x03", b"hop1", b"hop2", b"", b"x"]);
        assert_eq!(stacked, DecodeError::MissingDelimiter);
    }

    #[test]
    fn request_and_reply_need_a_body() {
        let reply = from_worker(&[b"", b"MDPW01", b"\x03", b"\x00\x80\x1b", b""]);
        assert_eq!(reply, DecodeError::MissingBody);
        let request = decode_from_broker(frames(&[b"", b"MDPW01", b"\x02", b"c", b""]));
        assert_eq!(request, Err(DecodeError::MissingBody));
    }

    #[test]
    fn other_protocol_versions_are_unknown_headers() {
        assert_eq!(
            from_worker(&[b"", b"MDPW02", b"\x01", b"echo"]),
            DecodeError::UnknownHeader
        );
        assert_eq!(
            from_worker(&[b"", b"MDPC01", b"echo", b"x"]),
            DecodeError::UnknownHeader
        );
    }

    fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
    }

    fn body() -> impl Strategy<Value = Vec<Bytes>> {
        proptest::collection::vec(bytes(64), 1..8)
    }

    fn peer() -> impl Strategy<Value = PeerId> {
        proptest::collection::vec(any::<u8>(), 1..=255).prop_map(|id| PeerId::new(id).unwrap())
    }

    fn service() -> impl Strategy<Value = ServiceName> {
        proptest::collection::vec(any::<u8>(), 1..=255)
            .prop_map(|name| ServiceName::new(name).unwrap())
    }

    /// Commands a worker sends.
    fn from_worker_command() -> impl Strategy<Value = WorkerCommand> {
        prop_oneof![
            service().prop_map(|service| WorkerCommand::Ready { service }),
            (peer(), body()).prop_map(|(client, body)| WorkerCommand::Reply { client, body }),
            Just(WorkerCommand::Heartbeat),
            Just(WorkerCommand::Disconnect),
        ]
    }

    /// Commands the broker sends.
    fn from_broker_command() -> impl Strategy<Value = WorkerCommand> {
        prop_oneof![
            (peer(), body()).prop_map(|(client, body)| WorkerCommand::Request { client, body }),
            Just(WorkerCommand::Heartbeat),
            Just(WorkerCommand::Disconnect),
        ]
    }

    proptest! {
        #[test]
        fn worker_commands_round_trip(command in from_worker_command()) {
            prop_assert_eq!(decode_from_worker(command.clone().encode()), Ok(command));
        }

        #[test]
        fn broker_commands_round_trip(command in from_broker_command()) {
            prop_assert_eq!(decode_from_broker(command.clone().encode()), Ok(command));
        }

        #[test]
        fn decode_from_broker_never_panics(
            code in any::<u8>(),
            rest in proptest::collection::vec(bytes(8), 0..6),
        ) {
            let mut message = frames(&[b"", b"MDPW01"]);
            message.push(Bytes::copy_from_slice(&[code]));
            message.extend(rest);
            let _ = decode_from_broker(message);
        }
    }
}
