use super::*;
use crate::proto::greeting::mechanism_name;

/// Moves everything `from` has queued into `to`'s input.
fn pump(from: &mut Handshake, to: &mut Handshake) {
    let bytes = from.output().take_all();
    to.read_buf().extend_from_slice(&bytes);
}

fn feed(hs: &mut Handshake, bytes: &[u8]) {
    hs.read_buf().extend_from_slice(bytes);
}

fn greeting(mechanism: &[u8]) -> [u8; GREETING_LEN] {
    Greeting::new(mechanism_name(mechanism), false).encode()
}

fn ready_frame(props: &[(&str, &[u8])]) -> Vec<u8> {
    let mut meta = Metadata::new();
    for (k, v) in props {
        meta.insert(k.to_string(), Bytes::copy_from_slice(v));
    }
    let mut enc = Encoder::new();
    enc.encode_command(&Command::Ready(meta));
    enc.take_all().to_vec()
}

/// Decodes the commands a handshake has queued after its greeting.
fn commands_after_greeting(hs: &mut Handshake) -> Vec<Command> {
    let bytes = hs.output().take_all();
    let mut dec = Decoder::new(Limits::default());
    dec.feed(&bytes[GREETING_LEN..]);
    let mut out = Vec::new();
    while let Ok(Some(Decoded::Command(c))) = dec.decode() {
        out.push(c);
    }
    out
}

#[test]
fn router_and_dealer_complete() {
    let mut router = Handshake::null(SocketType::Router, None);
    let mut dealer = Handshake::null(SocketType::Dealer, Some(Bytes::from_static(b"w1")));
    pump(&mut router, &mut dealer);
    pump(&mut dealer, &mut router);
    assert_eq!(router.process().unwrap(), HandshakeStatus::InProgress);
    assert_eq!(dealer.process().unwrap(), HandshakeStatus::InProgress);
    pump(&mut router, &mut dealer);
    pump(&mut dealer, &mut router);
    let HandshakeStatus::Done(peer) = router.process().unwrap() else {
        panic!()
    };
    assert_eq!(peer.socket_type, SocketType::Dealer);
    assert_eq!(peer.identity, Some(Bytes::from_static(b"w1")));
    assert_eq!(peer.minor_version, 1);
    let HandshakeStatus::Done(peer) = dealer.process().unwrap() else {
        panic!()
    };
    assert_eq!(peer.socket_type, SocketType::Router);
    assert_eq!(peer.identity, None);
}

#[test]
fn greeting_leaves_before_anything_is_read() {
    let mut hs = Handshake::null(SocketType::Router, None);
    assert_eq!(&hs.output().take_all()[..], &greeting(b"NULL")[..]);
}

#[test]
fn bytes_after_ready_are_kept_for_the_data_phase() {
    let mut hs = Handshake::null(SocketType::Router, None);
    let mut input = greeting(b"NULL").to_vec();
    input.extend(ready_frame(&[("Socket-Type", b"DEALER")]));
    input.extend_from_slice(b"\x00\x02hi");
    feed(&mut hs, &input);
    assert!(matches!(hs.process().unwrap(), HandshakeStatus::Done(_)));
    assert_eq!(&hs.into_leftover()[..], b"\x00\x02hi");
}

#[test]
fn zmtp_3_0_peer_is_accepted() {
    let mut hs = Handshake::null(SocketType::Router, None);
    let mut g = greeting(b"NULL");
    g[11] = 0;
    feed(&mut hs, &g);
    feed(&mut hs, &ready_frame(&[("Socket-Type", b"REQ")]));
    let HandshakeStatus::Done(peer) = hs.process().unwrap() else {
        panic!()
    };
    assert_eq!(peer.minor_version, 0);
}

#[test]
fn garbage_is_refused_on_the_first_byte() {
    let mut hs = Handshake::null(SocketType::Router, None);
    feed(&mut hs, b"GET / HTTP/1.1\r\n");
    assert_eq!(hs.process(), Err(HandshakeError::BadSignature));
}

#[test]
fn truncated_greeting_waits() {
    let mut hs = Handshake::null(SocketType::Router, None);
    feed(&mut hs, &greeting(b"NULL")[..30]);
    assert_eq!(hs.process(), Ok(HandshakeStatus::InProgress));
}

#[test]
fn mechanism_mismatch_sends_error() {
    let mut hs = Handshake::null(SocketType::Router, None);
    feed(&mut hs, &greeting(b"CURVE"));
    assert_eq!(
        hs.process(),
        Err(HandshakeError::MechanismMismatch {
            theirs: Bytes::from_static(b"CURVE")
        })
    );
    let cmds = commands_after_greeting(&mut hs);
    assert_eq!(
        cmds,
        vec![Command::Error(Bytes::from_static(
            b"security mechanism mismatch"
        ))]
    );
}

#[test]
fn wrong_socket_type_sends_error() {
    let mut hs = Handshake::null(SocketType::Router, None);
    feed(&mut hs, &greeting(b"NULL"));
    feed(&mut hs, &ready_frame(&[("Socket-Type", b"PUB")]));
    assert!(matches!(
        hs.process(),
        Err(HandshakeError::IncompatibleSocketType { .. })
    ));
    let cmds = commands_after_greeting(&mut hs);
    assert_eq!(cmds.len(), 2, "READY then ERROR: {cmds:?}");
    assert_eq!(
        cmds[1],
        Command::Error(Bytes::from_static(b"invalid socket type"))
    );
}

#[test]
fn missing_socket_type_sends_error() {
    let mut hs = Handshake::null(SocketType::Router, None);
    feed(&mut hs, &greeting(b"NULL"));
    feed(&mut hs, &ready_frame(&[("Identity", b"x")]));
    assert_eq!(hs.process(), Err(HandshakeError::MissingSocketType));
}

#[test]
fn message_before_ready_is_refused() {
    let mut hs = Handshake::null(SocketType::Router, None);
    feed(&mut hs, &greeting(b"NULL"));
    feed(&mut hs, b"\x00\x05hello");
    assert_eq!(
        hs.process(),
        Err(HandshakeError::Protocol(
            ProtocolError::MessageBeforeHandshake
        ))
    );
}

#[test]
fn peer_error_is_reported() {
    let mut hs = Handshake::null(SocketType::Router, None);
    feed(&mut hs, &greeting(b"NULL"));
    let mut enc = Encoder::new();
    enc.encode_command(&Command::Error(Bytes::from_static(b"go away")));
    feed(&mut hs, &enc.take_all());
    assert_eq!(
        hs.process(),
        Err(HandshakeError::PeerError(Bytes::from_static(b"go away")))
    );
}

#[test]
fn empty_identity_means_none() {
    let mut hs = Handshake::null(SocketType::Router, None);
    feed(&mut hs, &greeting(b"NULL"));
    feed(
        &mut hs,
        &ready_frame(&[("Socket-Type", b"DEALER"), ("Identity", b"")]),
    );
    let HandshakeStatus::Done(peer) = hs.process().unwrap() else {
        panic!()
    };
    assert_eq!(peer.identity, None);
}
