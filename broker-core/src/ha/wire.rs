//! The state message the two brokers of a pair exchange.
//!
//! ```text
//! frame 0   "DOMO-HA1"          protocol tag and version
//! frame 1   "1" | "2" | "3" | "4"   Binary Star state: PRIMARY, BACKUP, ACTIVE, PASSIVE
//!                                   (the reference's numbers, decimal ASCII)
//! frame 2   term                 decimal u64: bumped by every takeover
//! frame 3   "primary" | "backup" the sender's configured role
//! frame 4   node                 decimal u64: the sender's incarnation (random per start)
//! frame 5   seq                  decimal u64: this message's number, per incarnation
//! frame 6   ack node             decimal u64: incarnation of the last message received
//!                                from the peer, 0 if none
//! frame 7   ack seq              decimal u64: that message's seq, 0 if none
//! ```
//!
//! Decimal text, as the reference sends its state, keeps the message readable in a packet
//! capture. Anything else (other frame counts, a different tag, bad numbers) is refused.

use bytes::Bytes;

use super::{Role, State};

/// The protocol tag of frame 0.
pub const TAG: &[u8] = b"DOMO-HA1";

/// One state message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateMessage {
    /// The sender's state.
    pub state: State,
    /// The sender's term.
    pub term: u64,
    /// The sender's configured role.
    pub role: Role,
    /// The sender's incarnation.
    pub node: u64,
    /// Number of this message within the sender's incarnation (from 1).
    pub seq: u64,
    /// The last message the sender received from its peer: `(node, seq)`, or `(0, 0)`.
    pub ack: (u64, u64),
}

/// Why a state message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not eight frames.
    #[error("expected 8 frames")]
    FrameCount,
    /// Frame 0 is not [`TAG`].
    #[error("not a DOMO-HA1 message")]
    Tag,
    /// Frame 1 is not a state number from 1 to 4.
    #[error("bad state")]
    State,
    /// Frame 3 is not a role.
    #[error("bad role")]
    Role,
    /// A number frame is not a decimal u64.
    #[error("bad number")]
    Number,
    /// State PRIMARY from a backup, or BACKUP from a primary.
    #[error("state does not match role")]
    Inconsistent,
}

impl StateMessage {
    /// The message as frames.
    pub fn encode(&self) -> Vec<Bytes> {
        vec![
            Bytes::from_static(TAG),
            Bytes::from((self.state as u8).to_string()),
            Bytes::from(self.term.to_string()),
            Bytes::from_static(self.role.as_str().as_bytes()),
            Bytes::from(self.node.to_string()),
            Bytes::from(self.seq.to_string()),
            Bytes::from(self.ack.0.to_string()),
            Bytes::from(self.ack.1.to_string()),
        ]
    }

    /// Parses frames from the peer.
    ///
    /// # Errors
    /// [`WireError`] for anything but a well-formed message.
    pub fn decode(frames: &[Bytes]) -> Result<Self, WireError> {
        let [tag, state, term, role, node, seq, ack_node, ack_seq] = frames else {
            return Err(WireError::FrameCount);
        };
        if tag.as_ref() != TAG {
            return Err(WireError::Tag);
        }
        let state = match state.as_ref() {
            b"1" => State::Primary,
            b"2" => State::Backup,
            b"3" => State::Active,
            b"4" => State::Passive,
            _ => return Err(WireError::State),
        };
        let role = match role.as_ref() {
            b"primary" => Role::Primary,
            b"backup" => Role::Backup,
            _ => return Err(WireError::Role),
        };
        if matches!(
            (state, role),
            (State::Primary, Role::Backup) | (State::Backup, Role::Primary)
        ) {
            return Err(WireError::Inconsistent);
        }
        Ok(Self {
            state,
            term: number(term)?,
            role,
            node: number(node)?,
            seq: number(seq)?,
            ack: (number(ack_node)?, number(ack_seq)?),
        })
    }
}

/// A decimal u64 with no sign, no spaces and no leading zeros (except "0" itself), so every
/// value has exactly one encoding.
fn number(frame: &Bytes) -> Result<u64, WireError> {
    let digits = frame.as_ref();
    let canonical = !digits.is_empty()
        && digits.len() <= 20
        && digits.iter().all(u8::is_ascii_digit)
        && (digits.len() == 1 || digits[0] != b'0');
    if !canonical {
        return Err(WireError::Number);
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(WireError::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StateMessage {
        StateMessage {
            state: State::Passive,
            term: 7,
            role: Role::Backup,
            node: 12_345,
            seq: 99,
            ack: (678, 3),
        }
    }

    #[test]
    fn golden_bytes() {
        let frames = sample().encode();
        let text: Vec<&[u8]> = frames.iter().map(AsRef::as_ref).collect();
        assert_eq!(
            text,
            [
                &b"DOMO-HA1"[..],
                b"4",
                b"7",
                b"backup",
                b"12345",
                b"99",
                b"678",
                b"3"
            ]
        );
        assert_eq!(StateMessage::decode(&frames), Ok(sample()));
    }

    #[test]
    fn state_numbers_are_the_reference_ones() {
        for (state, role, n) in [
            (State::Primary, Role::Primary, "1"),
            (State::Backup, Role::Backup, "2"),
            (State::Active, Role::Backup, "3"),
            (State::Passive, Role::Primary, "4"),
        ] {
            let m = StateMessage {
                state,
                role,
                ..sample()
            };
            assert_eq!(m.encode()[1], n.as_bytes());
            assert_eq!(StateMessage::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn malformed_messages_are_refused() {
        let good = sample().encode();
        let with = |i: usize, v: &'static [u8]| {
            let mut f = good.clone();
            f[i] = Bytes::from_static(v);
            StateMessage::decode(&f)
        };
        assert_eq!(StateMessage::decode(&good[..7]), Err(WireError::FrameCount));
        assert_eq!(StateMessage::decode(&[]), Err(WireError::FrameCount));
        let mut long = good.clone();
        long.push(Bytes::new());
        assert_eq!(StateMessage::decode(&long), Err(WireError::FrameCount));
        assert_eq!(with(0, b"DOMO-HA2"), Err(WireError::Tag));
        assert_eq!(with(1, b"5"), Err(WireError::State));
        assert_eq!(with(1, b"0"), Err(WireError::State));
        assert_eq!(with(1, b"ACTIVE"), Err(WireError::State));
        assert_eq!(with(3, b"Primary"), Err(WireError::Role));
        assert_eq!(with(1, b"1"), Err(WireError::Inconsistent));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b" 1",
            b"01",
            b"1x",
            b"18446744073709551616",
            b"999999999999999999999",
        ] {
            let mut f = good.clone();
            f[2] = Bytes::copy_from_slice(bad);
            assert_eq!(StateMessage::decode(&f), Err(WireError::Number), "{bad:?}");
        }
        assert_eq!(
            with(2, b"18446744073709551615").map(|m| m.term),
            Ok(u64::MAX)
        );
    }
}
