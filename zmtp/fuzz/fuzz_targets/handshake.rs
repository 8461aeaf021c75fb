//! Arbitrary bytes as a peer's side of the handshake against a ROUTER, then the data phase.
#![no_main]

use domo_zmtp::proto::{Decoder, Handshake, HandshakeStatus, Limits};
use domo_zmtp::SocketType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Give the fuzzer a valid greeting prefix half of the time so it reaches the mechanism.
    let mut input = Vec::new();
    if data.first().is_some_and(|b| b & 1 == 1) {
        input.extend_from_slice(&[0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 3, 1]);
        input.extend_from_slice(b"NULL");
        input.resize(64, 0);
    }
    input.extend_from_slice(data.get(1..).unwrap_or_default());
    let mut hs = Handshake::null(SocketType::Router, None);
    for piece in input.chunks(7) {
        hs.read_buf().extend_from_slice(piece);
        match hs.process() {
            Ok(HandshakeStatus::InProgress) => {}
            Ok(HandshakeStatus::Done(_)) => {
                let mut dec = Decoder::with_buffer(Limits::default(), hs.into_leftover());
                while let Ok(Some(_)) = dec.decode() {}
                return;
            }
            Err(_) => return,
        }
    }
});
