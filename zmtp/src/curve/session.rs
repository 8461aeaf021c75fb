//! The CURVE data phase: every frame, commands included, travels boxed in a `MESSAGE`.
//!
//! ```text
//! MESSAGE = %x07 "MESSAGE" short-nonce(8) box(16 tag + ciphertext of flags(1) + payload)
//! flags   = bit 0 MORE, bit 1 COMMAND (PING, PONG, SUBSCRIBE... travel inside the box)
//! nonce   = "CurveZMQMESSAGEC" or "CurveZMQMESSAGES" (who sends it) + short-nonce
//! ```
//!
//! The outer frame is a data frame with flags 0 (LONG when over 255 bytes), as libzmq sends
//! it. Short nonces are one counter per direction that started in the handshake (`HELLO` 1,
//! `INITIATE` 2, so a client's first `MESSAGE` is 3; the server's `READY` 1, its first
//! `MESSAGE` 2); a received nonce must be above the last one (gaps allowed, as libzmq).

use super::crypto::{BoxKey, NONCE_LEN, TAG_LEN};

/// `\x07MESSAGE`.
pub(crate) const MESSAGE_NAME: &[u8; 8] = b"\x07MESSAGE";
/// Bytes before the ciphertext: name, short nonce, tag.
pub(crate) const MESSAGE_HEAD: usize = 8 + 8 + TAG_LEN;
/// Bytes a boxed frame adds to its payload: the head and the flags byte.
pub(crate) const MESSAGE_OVERHEAD: usize = MESSAGE_HEAD + 1;
/// Inner flag: more frames follow.
pub(crate) const INNER_MORE: u8 = 0x01;
/// Inner flag: the payload is a command.
pub(crate) const INNER_COMMAND: u8 = 0x02;

const FROM_CLIENT: &[u8; 16] = b"CurveZMQMESSAGEC";
const FROM_SERVER: &[u8; 16] = b"CurveZMQMESSAGES";

/// Boxes outgoing frames.
#[derive(Debug, Clone)]
pub(crate) struct Sealer {
    key: BoxKey,
    prefix: &'static [u8; 16],
    next: u64,
}

/// Opens incoming frames.
#[derive(Debug, Clone)]
pub(crate) struct Opener {
    key: BoxKey,
    prefix: &'static [u8; 16],
    last: u64,
}

/// Why a `MESSAGE` was refused (each closes the connection, with no `ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Too short, or not a `MESSAGE`.
    Malformed,
    /// The nonce is not above the last one (a replay or reordering).
    StaleNonce,
    /// The tag does not match.
    BadTag,
}

/// An established CURVE session: the keys and nonce counters of both directions. Opaque;
/// made by the handshake and handed to the connection's encoder and decoder.
#[derive(Debug)]
pub struct Session {
    pub(crate) sealer: Sealer,
    pub(crate) opener: Opener,
}

impl Session {
    /// A copy of this session, nonce counters included. Two copies that both send would
    /// reuse nonces, which breaks the encryption: for fuzzing only, where one handshake is
    /// replayed against many inputs.
    #[doc(hidden)]
    pub fn duplicate_for_fuzzing(&self) -> Self {
        Self {
            sealer: self.sealer.clone(),
            opener: self.opener.clone(),
        }
    }

    /// `key` is the session key (C' with S'); `is_server` picks the nonce prefixes;
    /// `sent` and `received` are the last short nonces of the handshake in each direction.
    pub(crate) fn new(key: BoxKey, is_server: bool, sent: u64, received: u64) -> Self {
        let (ours, theirs) = if is_server {
            (FROM_SERVER, FROM_CLIENT)
        } else {
            (FROM_CLIENT, FROM_SERVER)
        };
        Self {
            sealer: Sealer {
                key: key.clone(),
                prefix: ours,
                next: sent + 1,
            },
            opener: Opener {
                key,
                prefix: theirs,
                last: received,
            },
        }
    }
}

impl Sealer {
    /// Boxes a frame in place: `buf[start..]` holds [`MESSAGE_OVERHEAD`] bytes of room
    /// followed by the payload; the room is filled with the name, nonce, tag and flags.
    /// `false` once the nonce counter is exhausted (the connection must close).
    pub(crate) fn seal_in_place(&mut self, frame: &mut [u8], inner_flags: u8) -> bool {
        let Some(after) = self.next.checked_add(1) else {
            return false;
        };
        let short = self.next;
        self.next = after;
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..16].copy_from_slice(self.prefix);
        nonce[16..].copy_from_slice(&short.to_be_bytes());
        let (head, data) = frame.split_at_mut(MESSAGE_HEAD);
        data[0] = inner_flags;
        let tag = self.key.seal_in_place(&nonce, data);
        head[..8].copy_from_slice(MESSAGE_NAME);
        head[8..16].copy_from_slice(&short.to_be_bytes());
        head[16..].copy_from_slice(&tag);
        true
    }
}

impl Opener {
    /// Opens a `MESSAGE` frame body in place; returns the inner flags. The payload is then
    /// `body[MESSAGE_OVERHEAD..]`.
    pub(crate) fn open_in_place(&mut self, body: &mut [u8]) -> Result<u8, OpenError> {
        if body.len() < MESSAGE_OVERHEAD || &body[..8] != MESSAGE_NAME {
            return Err(OpenError::Malformed);
        }
        let mut short = [0u8; 8];
        short.copy_from_slice(&body[8..16]);
        let value = u64::from_be_bytes(short);
        if value <= self.last {
            return Err(OpenError::StaleNonce);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..16].copy_from_slice(self.prefix);
        nonce[16..].copy_from_slice(&short);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&body[16..MESSAGE_HEAD]);
        if !self
            .key
            .open_in_place(&nonce, &mut body[MESSAGE_HEAD..], &tag)
        {
            return Err(OpenError::BadTag);
        }
        self.last = value;
        Ok(body[MESSAGE_HEAD])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Session, Session) {
        let key = BoxKey::random();
        (
            Session::new(key.clone(), false, 2, 1),
            Session::new(key, true, 1, 2),
        )
    }

    fn boxed(sealer: &mut Sealer, payload: &[u8], flags: u8) -> Vec<u8> {
        let mut frame = vec![0u8; MESSAGE_OVERHEAD];
        frame.extend_from_slice(payload);
        assert!(sealer.seal_in_place(&mut frame, flags));
        frame
    }

    #[test]
    fn frames_open_on_the_other_side_with_their_flags() {
        let (mut client, mut server) = pair();
        let mut frame = boxed(&mut client.sealer, b"hello", INNER_MORE);
        assert_eq!(&frame[..8], b"\x07MESSAGE");
        assert_eq!(
            &frame[8..16],
            &3u64.to_be_bytes(),
            "the client's first MESSAGE is 3"
        );
        assert_eq!(server.opener.open_in_place(&mut frame), Ok(INNER_MORE));
        assert_eq!(&frame[MESSAGE_OVERHEAD..], b"hello");
        let mut frame = boxed(&mut server.sealer, b"", INNER_COMMAND);
        assert_eq!(
            &frame[8..16],
            &2u64.to_be_bytes(),
            "the server's first MESSAGE is 2"
        );
        assert_eq!(client.opener.open_in_place(&mut frame), Ok(INNER_COMMAND));
    }

    #[test]
    fn replays_tampering_and_reflection_are_refused() {
        let (mut client, mut server) = pair();
        let first = boxed(&mut client.sealer, b"one", 0);
        let mut copy = first.clone();
        assert_eq!(server.opener.open_in_place(&mut copy), Ok(0));
        let mut replay = first.clone();
        assert_eq!(
            server.opener.open_in_place(&mut replay),
            Err(OpenError::StaleNonce)
        );
        let mut bad = boxed(&mut client.sealer, b"two", 0);
        bad[MESSAGE_HEAD + 1] ^= 0x80;
        assert_eq!(
            server.opener.open_in_place(&mut bad),
            Err(OpenError::BadTag)
        );
        // A frame the server sent, reflected back to it, has the server's nonce prefix.
        let mut reflected = boxed(&mut server.sealer, b"three", 0);
        reflected[8..16].copy_from_slice(&100u64.to_be_bytes());
        assert_eq!(
            server.opener.open_in_place(&mut reflected),
            Err(OpenError::BadTag)
        );
        let mut short = vec![0u8; MESSAGE_OVERHEAD - 1];
        assert_eq!(
            server.opener.open_in_place(&mut short),
            Err(OpenError::Malformed)
        );
        // Gaps are allowed.
        let _skipped = boxed(&mut client.sealer, b"four", 0);
        let mut five = boxed(&mut client.sealer, b"five", 0);
        assert_eq!(server.opener.open_in_place(&mut five), Ok(0));
    }

    #[test]
    fn the_sealer_stops_before_its_counter_wraps() {
        let (mut client, _) = pair();
        client.sealer.next = u64::MAX;
        let mut frame = vec![0u8; MESSAGE_OVERHEAD];
        assert!(!client.sealer.seal_in_place(&mut frame, 0));
    }
}
