//! Arbitrary bytes, delivered in arbitrary chunks, into the frame decoder.
//!
//! Invariants checked: no panic; no decoded message exceeds the limits; the decoder never
//! holds a buffer much larger than the limits allow.
#![no_main]

use domo_zmtp::proto::{Decoded, Decoder, Limits};
use libfuzzer_sys::fuzz_target;

const MAX: u64 = 64 * 1024;
const FRAMES: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&chunking, data)) = data.split_first() else { return };
    let chunk = usize::from(chunking % 64) + 1;
    let mut dec = Decoder::new(Limits { max_message_size: MAX, max_frames: FRAMES });
    for piece in data.chunks(chunk) {
        dec.feed(piece);
        loop {
            match dec.decode() {
                Ok(Some(Decoded::Message(msg))) => {
                    assert!(!msg.is_empty() && msg.len() <= FRAMES);
                    let size: usize = msg.iter().map(|f| f.len()).sum();
                    assert!(size as u64 <= MAX);
                }
                Ok(Some(Decoded::Command(_))) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(dec.read_buf().capacity() <= MAX as usize + 64 * 1024);
    }
});
