//! Request tokens: what the broker puts in the client-address frame of a worker REQUEST.
//!
//! RFC 7 workers treat that frame as opaque and echo it in their REPLY, so the broker may put
//! anything there that is a valid, non-empty frame. It puts a token naming one dispatch of
//! one request, not the client's routing id: a reply is then matched to the exact request it
//! answers, and a reply to a request that meanwhile went to another worker (its first worker
//! was declared dead) or was dropped is recognised and dropped, so a client never gets two
//! replies for one request. Several requests outstanding at one worker need the same match.
//!
//! Format: 8 bytes, the big-endian value of a per-broker sequence number that starts at 1 and
//! is never reused while the broker runs. That is the shape of what RFC 7 workers already see
//! from the zguide broker, a short binary frame usually starting with a zero byte (libzmq's
//! generated routing ids are `0x00` and 4 bytes); the zguide's C and Python workers and
//! pyzmq-based ones keep the frame as bytes up to the empty delimiter and send it back
//! unchanged. A token is never empty, so a worker that splits on the first empty frame finds
//! the delimiter where it expects it.
//!
//! Tokens are unique within one run of the broker, not across restarts; a reply is matched
//! on its token *and* on the worker that sent it, and a worker reconnecting to a restarted
//! broker does so on a new connection, with a new routing id.

use bytes::Bytes;
use domo_mdp::PeerId;

/// Bytes in a token on the wire.
const LEN: usize = 8;

/// One dispatch of one request: the key of [`crate::Broker`]'s requests at workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct Token(u64);

impl Token {
    /// The first token a broker hands out.
    pub(super) const FIRST: Self = Self(1);

    /// The token handed out after this one.
    pub(super) fn next(self) -> Self {
        Self(self.0.wrapping_add(1).max(1))
    }

    /// The token as the client-address frame of a worker REQUEST. Always `Some` (eight
    /// bytes make a valid frame); an `Option` only so that no code path can panic.
    pub(super) fn to_address(self) -> Option<PeerId> {
        PeerId::new(Bytes::copy_from_slice(&self.0.to_be_bytes())).ok()
    }

    /// Reads the address frame a worker echoed; `None` if it cannot be a token at all.
    pub(super) fn parse(frame: &[u8]) -> Option<Self> {
        let bytes: [u8; LEN] = frame.try_into().ok()?;
        Some(Self(u64::from_be_bytes(bytes))).filter(|token| token.0 != 0)
    }

    /// Whether this token was handed out by a broker whose next token is `next`.
    pub(super) fn issued_before(self, next: Self) -> bool {
        self.0 < next.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_eight_bytes_and_reads_back() {
        let token = Token::FIRST.next().next();
        let address = token.to_address().unwrap();
        assert_eq!(address.as_bytes(), [0, 0, 0, 0, 0, 0, 0, 3]);
        assert_eq!(Token::parse(address.as_bytes()), Some(token));
        assert!(Token::FIRST.issued_before(token));
        assert!(!token.issued_before(token));
    }

    #[test]
    fn frames_that_are_no_token_do_not_parse() {
        for frame in [&b""[..], b"c1", &[0; 8], &[1; 7], &[1; 9]] {
            assert_eq!(Token::parse(frame), None, "{frame:?}");
        }
    }

    #[test]
    fn the_sequence_never_hands_out_zero() {
        assert_eq!(Token(u64::MAX).next(), Token::FIRST);
    }
}
