//! CURVE, four ways in from arbitrary bytes:
//! - 0: a peer's bytes against a CURVE server after a valid greeting (HELLO, INITIATE parsing);
//! - 1: a server's bytes against a CURVE client after a valid greeting (WELCOME, READY);
//! - 2: after a genuine handshake, arbitrary bytes as data-phase frames (MESSAGE checks);
//! - 3: after a genuine handshake, arbitrary frames *sealed by the genuine peer*, so the
//!   fuzzer reaches what is inside the boxes (inner flags, commands, reassembly, limits).
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use domo_zmtp::proto::{
    session_codec, Decoder, Encoder, Handshake, HandshakeStatus, Limits,
};
use domo_zmtp::curve::Session;
use domo_zmtp::{KeyPair, Security, SocketType};
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static (KeyPair, KeyPair) {
    static KEYS: OnceLock<(KeyPair, KeyPair)> = OnceLock::new();
    KEYS.get_or_init(|| (KeyPair::generate(), KeyPair::generate()))
}

fn server() -> Handshake {
    Handshake::with_security(
        SocketType::Router,
        None,
        &Security::curve_server(keys().0.secret.clone()),
    )
}

fn client() -> Handshake {
    Handshake::with_security(
        SocketType::Dealer,
        None,
        &Security::curve_client(keys().0.public, keys().1.clone()),
    )
}

fn greeting(as_server: u8) -> Vec<u8> {
    let mut g = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 1];
    g.extend_from_slice(b"CURVE");
    g.resize(32, 0);
    g.push(as_server);
    g.resize(64, 0);
    g
}

fn feed(hs: &mut Handshake, input: &[u8]) {
    for piece in input.chunks(13) {
        hs.read_buf().extend_from_slice(piece);
        match hs.process() {
            Ok(HandshakeStatus::InProgress) => {}
            _ => return,
        }
    }
}

/// The sessions of one genuine handshake, made once per process (a handshake per input
/// would spend the fuzzer's time in key exchanges).
fn sessions() -> &'static (Session, Session) {
    static SESSIONS: OnceLock<(Session, Session)> = OnceLock::new();
    SESSIONS.get_or_init(|| handshake().expect("a genuine handshake completes"))
}

/// A completed handshake: the client's encoder and the server's decoder.
fn established(limits: Limits) -> Option<(Encoder, Decoder)> {
    let (cs, ss) = sessions();
    let (c_enc, _) = session_codec(cs.duplicate_for_fuzzing(), limits);
    let (_, s_dec) = session_codec(ss.duplicate_for_fuzzing(), limits);
    Some((c_enc, s_dec))
}

fn handshake() -> Option<(Session, Session)> {
    let (mut c, mut s) = (client(), server());
    let (mut c_done, mut s_done) = (false, false);
    for _ in 0..4 {
        let bytes = c.output().take_all();
        s.read_buf().extend_from_slice(&bytes);
        let bytes = s.output().take_all();
        c.read_buf().extend_from_slice(&bytes);
        if !s_done {
            s_done = matches!(s.process().ok()?, HandshakeStatus::Done(_));
        }
        let bytes = s.output().take_all();
        c.read_buf().extend_from_slice(&bytes);
        if !c_done {
            c_done = matches!(c.process().ok()?, HandshakeStatus::Done(_));
        }
    }
    let (_, cs) = c.into_parts();
    let (_, ss) = s.into_parts();
    Some((cs?, ss?))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_message_size: 64 * 1024,
        max_frames: 64,
    };
    match mode % 4 {
        0 => {
            let mut hs = server();
            let mut input = greeting(0);
            input.extend_from_slice(rest);
            feed(&mut hs, &input);
        }
        1 => {
            let mut hs = client();
            let mut input = greeting(1);
            input.extend_from_slice(rest);
            feed(&mut hs, &input);
        }
        2 => {
            let Some((_, mut dec)) = established(limits) else {
                panic!("a genuine handshake failed");
            };
            dec.feed(rest);
            while let Ok(Some(_)) = dec.decode() {}
        }
        _ => {
            let Some((mut enc, mut dec)) = established(limits) else {
                panic!("a genuine handshake failed");
            };
            // Frames: flags byte, length byte, body.
            let mut rest = rest;
            while let [flags, len, tail @ ..] = rest {
                let n = usize::from(*len).min(tail.len());
                enc.put_any_frame(*flags, Bytes::copy_from_slice(&tail[..n]));
                rest = &tail[n..];
            }
            dec.feed(&enc.take_all());
            while let Ok(Some(_)) = dec.decode() {}
        }
    }
});
