//! The CURVE handshake and data phase, sans-IO: two [`Handshake`]s pumping bytes into each
//! other, hostile bytes fed to one of them, and boxed frames through an [`Encoder`] and a
//! [`Decoder`].
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;

use super::{HELLO_SIZE, INITIATE_MAX, WELCOME_SIZE};
use crate::curve::{Authorizer, KeyPair, PublicKey, Security};
use crate::error::{HandshakeError, ProtocolError};
use crate::proto::frame::{Decoded, Decoder, Encoder, Limits};
use crate::proto::greeting::GREETING_LEN;
use crate::proto::{Command, Handshake, HandshakeStatus, PeerInfo};
use crate::SocketType;

#[derive(Debug)]
struct Only(PublicKey);

impl Authorizer for Only {
    fn authorize(&self, client: &PublicKey) -> bool {
        *client == self.0
    }
}

struct Keys {
    server: KeyPair,
    client: KeyPair,
}

fn keys() -> Keys {
    Keys {
        server: KeyPair::generate(),
        client: KeyPair::generate(),
    }
}

fn server(k: &Keys) -> Handshake {
    let sec = Security::curve_server_with(k.server.secret.clone(), Arc::new(Only(k.client.public)));
    Handshake::with_security(SocketType::Router, None, &sec)
}

fn client_as(k: &Keys, me: &KeyPair, server_key: PublicKey) -> Handshake {
    let _ = k;
    let sec = Security::curve_client(server_key, me.clone());
    Handshake::with_security(SocketType::Dealer, Some(Bytes::from_static(b"w1")), &sec)
}

fn client(k: &Keys) -> Handshake {
    client_as(k, &k.client, k.server.public)
}

/// Moves what `from` queued into `to`; returns the bytes.
fn pump(from: &mut Handshake, to: &mut Handshake) -> Bytes {
    let bytes = from.output().take_all();
    to.read_buf().extend_from_slice(&bytes);
    bytes
}

/// Runs both sides to the end; the client's bytes, and both results.
fn run(
    c: &mut Handshake,
    s: &mut Handshake,
) -> (
    Vec<u8>,
    Result<HandshakeStatus, HandshakeError>,
    Result<HandshakeStatus, HandshakeError>,
) {
    let mut sent = Vec::new();
    let (mut cr, mut sr) = (
        Ok(HandshakeStatus::InProgress),
        Ok(HandshakeStatus::InProgress),
    );
    for _ in 0..6 {
        sent.extend_from_slice(&pump(c, s));
        pump(s, c);
        if matches!(sr, Ok(HandshakeStatus::InProgress)) {
            sr = s.process();
        }
        pump(s, c);
        if matches!(cr, Ok(HandshakeStatus::InProgress)) {
            cr = c.process();
        }
    }
    (sent, cr, sr)
}

fn done(r: Result<HandshakeStatus, HandshakeError>) -> PeerInfo {
    match r {
        Ok(HandshakeStatus::Done(info)) => info,
        other => panic!("not done: {other:?}"),
    }
}

/// The commands in `bytes` after the greeting, undecoded.
fn commands(bytes: &[u8]) -> Vec<(Bytes, Bytes)> {
    let mut dec = Decoder::new(Limits::default());
    dec.set_raw_commands(true);
    dec.feed(&bytes[GREETING_LEN..]);
    let mut out = Vec::new();
    while let Ok(Some(Decoded::Command(Command::Other { name, data }))) = dec.decode() {
        out.push((name, data));
    }
    out
}

/// A command frame (short form when it fits).
fn frame(name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut enc = Encoder::new();
    enc.encode_command(&Command::Other {
        name: Bytes::copy_from_slice(name),
        data: Bytes::copy_from_slice(data),
    });
    enc.take_all().to_vec()
}

#[test]
fn a_handshake_completes_with_exact_command_sizes_and_proved_keys() {
    let k = keys();
    let (mut c, mut s) = (client(&k), server(&k));
    let (sent, cr, sr) = run(&mut c, &mut s);
    let at_client = done(cr);
    let at_server = done(sr);
    assert_eq!(at_server.key, Some(k.client.public));
    assert_eq!(at_server.identity, Some(Bytes::from_static(b"w1")));
    assert_eq!(at_server.socket_type, SocketType::Dealer);
    assert_eq!(at_client.key, Some(k.server.public));
    assert_eq!(at_client.socket_type, SocketType::Router);
    let cmds = commands(&sent);
    assert_eq!(&cmds[0].0[..], b"HELLO");
    assert_eq!(1 + 5 + cmds[0].1.len(), HELLO_SIZE);
    assert_eq!(&cmds[0].1[..2], &[1, 0], "version 1.0");
    assert!(cmds[0].1[2..74].iter().all(|&b| b == 0), "72 zero bytes");
    assert_eq!(&cmds[0].1[106..114], &1u64.to_be_bytes(), "HELLO nonce 1");
    assert_eq!(&cmds[1].0[..], b"INITIATE");
    assert_eq!(&cmds[1].1[96..104], &2u64.to_be_bytes(), "INITIATE nonce 2");
    assert!(1 + 8 + cmds[1].1.len() >= 257);
}

#[test]
fn the_server_greeting_says_as_server_and_the_welcome_is_168_bytes() {
    let k = keys();
    let (mut c, mut s) = (client(&k), server(&k));
    let greeting = s.output().take_all();
    assert_eq!(&greeting[12..17], b"CURVE");
    assert_eq!(greeting[32], 1, "as-server set by the server");
    c.read_buf().extend_from_slice(&greeting);
    assert_eq!(c.process().unwrap(), HandshakeStatus::InProgress);
    s.read_buf().extend_from_slice(&c.output().take_all());
    assert_eq!(s.process().unwrap(), HandshakeStatus::InProgress);
    let mut out = greeting.to_vec();
    out.extend_from_slice(&s.output().take_all());
    let cmds = commands(&out);
    assert_eq!(&cmds[0].0[..], b"WELCOME");
    assert_eq!(1 + 7 + cmds[0].1.len(), WELCOME_SIZE);
}

fn server_after_greeting(k: &Keys) -> Handshake {
    let mut s = server(k);
    let _ = s.output().take_all();
    let mut c = client(k);
    let greeting = c.output().take_all();
    s.read_buf().extend_from_slice(&greeting[..GREETING_LEN]);
    assert_eq!(s.process().unwrap(), HandshakeStatus::InProgress);
    s
}

fn hostile(k: &Keys, bytes: &[u8]) -> (HandshakeError, Vec<(Bytes, Bytes)>) {
    let mut s = server_after_greeting(k);
    s.read_buf().extend_from_slice(bytes);
    let err = s.process().unwrap_err();
    let mut out = vec![0u8; GREETING_LEN];
    out.extend_from_slice(&s.output().take_all());
    (err, commands(&out))
}

#[test]
fn truncated_and_oversized_hello_are_refused_before_any_crypto() {
    let k = keys();
    for len in [0usize, 1, 193, 195, 400] {
        let (err, out) = hostile(&k, &frame(b"HELLO", &vec![0u8; len]));
        assert_eq!(err, HandshakeError::MalformedCurve("HELLO"), "len {len}");
        assert_eq!(&out[0].0[..], b"ERROR");
    }
    // Right size, garbage box: does not open.
    let (err, out) = hostile(&k, &frame(b"HELLO", &[1u8; HELLO_SIZE - 6]));
    assert_eq!(err, HandshakeError::WrongKey("HELLO"));
    assert_eq!(&out[0].1[1..], b"wrong server key");
    // A command other than HELLO first.
    let (err, _) = hostile(&k, &frame(b"INITIATE", &[0u8; 300]));
    assert_eq!(err, HandshakeError::UnexpectedCommand);
}

/// A server that got a good HELLO, and the client that sent it.
fn server_after_hello(k: &Keys) -> (Handshake, Handshake) {
    let (mut c, mut s) = (client(k), server(k));
    pump(&mut s, &mut c);
    assert_eq!(c.process().unwrap(), HandshakeStatus::InProgress);
    pump(&mut c, &mut s);
    assert_eq!(s.process().unwrap(), HandshakeStatus::InProgress);
    let _welcome = s.output().take_all();
    (c, s)
}

#[test]
fn truncated_oversized_and_forged_initiates_are_refused() {
    let k = keys();
    for len in [0usize, 100, 247, INITIATE_MAX + 1] {
        let (_c, mut s) = server_after_hello(&k);
        s.read_buf()
            .extend_from_slice(&frame(b"INITIATE", &vec![0u8; len]));
        assert_eq!(
            s.process().unwrap_err(),
            HandshakeError::MalformedCurve("INITIATE"),
            "len {len}"
        );
    }
    // Right size, but a cookie this server never sent.
    let (_c, mut s) = server_after_hello(&k);
    s.read_buf()
        .extend_from_slice(&frame(b"INITIATE", &[3u8; 300]));
    assert_eq!(
        s.process().unwrap_err(),
        HandshakeError::WrongKey("INITIATE cookie")
    );
}

#[test]
fn a_replayed_hello_and_initiate_do_not_get_in() {
    let k = keys();
    let (mut c, mut s) = (client(&k), server(&k));
    let (sent, cr, sr) = run(&mut c, &mut s);
    done(cr);
    done(sr);
    // Everything the client sent, replayed on a new connection: HELLO opens (it is
    // genuine), but the INITIATE carries the old connection's cookie.
    let mut s2 = server(&k);
    s2.read_buf().extend_from_slice(&sent);
    assert_eq!(
        s2.process().unwrap_err(),
        HandshakeError::WrongKey("INITIATE cookie")
    );
}

#[test]
fn an_unlisted_client_gets_error_400_after_proving_its_key() {
    let k = keys();
    let stranger = KeyPair::generate();
    let (mut c, mut s) = (client_as(&k, &stranger, k.server.public), server(&k));
    let (_, cr, sr) = run(&mut c, &mut s);
    assert_eq!(sr.unwrap_err(), HandshakeError::NotAuthorized);
    assert_eq!(cr.unwrap_err(), HandshakeError::NotAuthorized);
}

#[test]
fn a_client_with_a_wrong_server_key_hears_so() {
    let k = keys();
    let wrong = KeyPair::generate().public;
    let (mut c, mut s) = (client_as(&k, &k.client, wrong), server(&k));
    let (_, cr, sr) = run(&mut c, &mut s);
    assert_eq!(sr.unwrap_err(), HandshakeError::WrongKey("HELLO"));
    assert_eq!(cr.unwrap_err(), HandshakeError::ServerKeyMismatch);
    // A libzmq server closes silently instead: the same error.
    let mut c = client_as(&k, &k.client, wrong);
    let _ = c.output().take_all();
    let s_greeting = server(&k).output().take_all();
    c.read_buf().extend_from_slice(&s_greeting);
    assert_eq!(c.process().unwrap(), HandshakeStatus::InProgress);
    assert_eq!(c.closed_error(), HandshakeError::ServerKeyMismatch);
}

#[test]
fn a_null_peer_is_refused_by_a_curve_server() {
    let k = keys();
    let mut s = server(&k);
    let mut null = Handshake::null(SocketType::Dealer, None);
    pump(&mut null, &mut s);
    assert!(matches!(
        s.process().unwrap_err(),
        HandshakeError::MechanismMismatch { .. }
    ));
}

/// Both sessions of a completed handshake: (client encoder, server decoder) and back.
fn sessions(k: &Keys) -> (Encoder, Decoder, Encoder, Decoder) {
    sessions_with(k, Limits::default())
}

fn sessions_with(k: &Keys, server_limits: Limits) -> (Encoder, Decoder, Encoder, Decoder) {
    let (mut c, mut s) = (client(k), server(k));
    let (_, cr, sr) = run(&mut c, &mut s);
    done(cr);
    done(sr);
    let (_, cs) = c.into_parts();
    let (_, ss) = s.into_parts();
    let (cs, ss) = (cs.unwrap(), ss.unwrap());
    let (mut c_enc, mut c_dec) = (Encoder::new(), Decoder::new(Limits::default()));
    c_enc.set_sealer(cs.sealer);
    c_dec.set_opener(cs.opener);
    let (mut s_enc, mut s_dec) = (Encoder::new(), Decoder::new(server_limits));
    s_enc.set_sealer(ss.sealer);
    s_dec.set_opener(ss.opener);
    (c_enc, s_dec, s_enc, c_dec)
}

#[test]
fn boxed_messages_and_commands_cross_both_ways() {
    let k = keys();
    let (mut c_enc, mut s_dec, mut s_enc, mut c_dec) = sessions(&k);
    let msg = vec![
        Bytes::new(),
        Bytes::from_static(b"MDPW01"),
        Bytes::from(vec![5u8; 70_000]),
    ];
    c_enc.encode_message(msg.clone());
    c_enc.encode_command(&Command::Ping {
        ttl: 30,
        context: Bytes::from_static(b"ctx"),
    });
    let wire = c_enc.take_all();
    // The client's first MESSAGE has nonce 3, in a data frame with flags 0.
    assert_eq!(wire[0], 0, "outer flags 0");
    assert_eq!(&wire[2..10], b"\x07MESSAGE");
    assert_eq!(&wire[10..18], &3u64.to_be_bytes());
    s_dec.feed(&wire);
    assert_eq!(s_dec.decode().unwrap(), Some(Decoded::Message(msg)));
    assert_eq!(
        s_dec.decode().unwrap(),
        Some(Decoded::Command(Command::Ping {
            ttl: 30,
            context: Bytes::from_static(b"ctx")
        }))
    );
    s_enc.encode_message(vec![Bytes::from_static(b"reply")]);
    let wire = s_enc.take_all();
    assert_eq!(
        &wire[10..18],
        &2u64.to_be_bytes(),
        "the server's first MESSAGE is 2"
    );
    c_dec.feed(&wire);
    assert_eq!(
        c_dec.decode().unwrap(),
        Some(Decoded::Message(vec![Bytes::from_static(b"reply")]))
    );
}

#[test]
fn a_replayed_message_and_a_flipped_bit_close_the_connection() {
    let k = keys();
    let (mut c_enc, mut s_dec, _, _) = sessions(&k);
    c_enc.encode_message(vec![Bytes::from_static(b"pay 100")]);
    let wire = c_enc.take_all();
    s_dec.feed(&wire);
    assert!(s_dec.decode().unwrap().is_some());
    s_dec.feed(&wire);
    assert_eq!(s_dec.decode(), Err(ProtocolError::CurveStaleNonce));

    let (mut c_enc, mut s_dec, _, _) = sessions(&k);
    c_enc.encode_message(vec![Bytes::from_static(b"pay 100")]);
    let mut wire = c_enc.take_all().to_vec();
    let last = wire.len() - 1;
    wire[last] ^= 1;
    s_dec.feed(&wire);
    assert_eq!(s_dec.decode(), Err(ProtocolError::CurveBadTag));

    // A clear (unboxed) frame in the data phase.
    let (_, mut s_dec, _, _) = sessions(&k);
    s_dec.feed(&[0, 5, b'h', b'e', b'l', b'l', b'o']);
    assert_eq!(s_dec.decode(), Err(ProtocolError::CurveMalformed));
}

#[test]
fn the_message_limits_apply_to_the_boxed_payloads() {
    let k = keys();
    let (mut c_enc, _, _, _) = sessions_with(&k, Limits::default());
    c_enc.encode_message(vec![Bytes::from(vec![0u8; 1000])]);
    let exact = c_enc.take_all();
    // The same session again, its server decoder limited to 1000 bytes per message.
    let (mut c_enc, mut s_dec, _, _) = sessions_with(
        &k,
        Limits {
            max_message_size: 1000,
            max_frames: 2,
        },
    );
    let _ = exact;
    c_enc.encode_message(vec![Bytes::from(vec![0u8; 1000])]);
    s_dec.feed(&c_enc.take_all());
    assert!(
        matches!(s_dec.decode(), Ok(Some(Decoded::Message(_)))),
        "1000 fits"
    );
    c_enc.encode_message(vec![Bytes::from(vec![0u8; 1001])]);
    s_dec.feed(&c_enc.take_all());
    assert!(matches!(
        s_dec.decode(),
        Err(ProtocolError::MessageTooLarge { .. })
    ));
    let (mut c_enc, mut s_dec, _, _) = sessions_with(
        &k,
        Limits {
            max_message_size: 1000,
            max_frames: 2,
        },
    );
    c_enc.encode_message(vec![Bytes::new(), Bytes::new(), Bytes::new()]);
    s_dec.feed(&c_enc.take_all());
    assert!(matches!(
        s_dec.decode(),
        Err(ProtocolError::TooManyFrames { .. })
    ));
}
