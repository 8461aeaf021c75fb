//! domo's negotiated extensions to MDP/0.1, announced as ZMTP handshake metadata so that
//! RFC 7 peers, which never look at application properties, see nothing new.
//!
//! * A broker that understands an extension lists it in [`EXTENSIONS_PROPERTY`], a
//!   comma-separated list of names ([`CREDIT`] for worker credit).
//! * A worker that takes up to `N` requests at once announces [`CREDIT_PROPERTY`] = `N` in
//!   decimal ASCII, `1..=`[`MAX_CREDIT`]. A worker without the property has credit 1, as
//!   RFC 7 has it; any other value also counts as 1 ([`Credit::parse`]).
//! * A client of a broker that lists [`MUX`] may announce [`MUX_PROPERTY`] = `1`; it then
//!   puts a tag frame (1 to [`MAX_TAG_LEN`] bytes) right after the service frame of every
//!   REQUEST, and the broker puts the same frame at the same place in the REPLY
//!   ([`crate::client::encode_tagged_request`], [`crate::client::split_tag`]).

use std::fmt;

/// The broker's metadata property listing the extensions it understands.
pub const EXTENSIONS_PROPERTY: &str = "X-Domo-Extensions";

/// The name of worker credit in [`EXTENSIONS_PROPERTY`].
pub const CREDIT: &str = "credit";

/// The worker's metadata property announcing its credit.
pub const CREDIT_PROPERTY: &str = "X-Domo-Credit";

/// The name of multiplexed clients in [`EXTENSIONS_PROPERTY`].
pub const MUX: &str = "mux";

/// The client's metadata property asking for multiplexing; its one valid value is `1`.
pub const MUX_PROPERTY: &str = "X-Domo-Mux";

/// The longest tag a multiplexed client may put in a request.
pub const MAX_TAG_LEN: usize = 16;

/// Whether a [`MUX_PROPERTY`] value turns multiplexing on: exactly `1`.
pub fn mux_requested(value: &[u8]) -> bool {
    value == b"1"
}

/// The largest credit a worker may announce.
pub const MAX_CREDIT: u32 = 1024;

/// How many requests a worker may hold at once: `1..=`[`MAX_CREDIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Credit(u32);

impl Credit {
    /// An RFC 7 worker's credit: one request at a time.
    pub const ONE: Self = Self(1);

    /// A credit of `n` requests, if `n` is in `1..=`[`MAX_CREDIT`].
    pub fn new(n: u32) -> Option<Self> {
        (1..=MAX_CREDIT).contains(&n).then_some(Self(n))
    }

    /// Reads the value of [`CREDIT_PROPERTY`]: decimal ASCII digits only (no sign, no
    /// spaces), in range. `None` for anything else; the caller treats that as credit 1.
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.is_empty() || value.len() > 4 || !value.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = value
            .iter()
            .fold(0u32, |n, digit| n * 10 + u32::from(digit - b'0'));
        Self::new(n)
    }

    /// The number of requests.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Credit {
    fn default() -> Self {
        Self::ONE
    }
}

impl fmt::Display for Credit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a peer announced in its handshake, as a broker keeps it per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Announced {
    /// Its worker credit ([`CREDIT_PROPERTY`]); 1 when it announced none.
    pub credit: Credit,
    /// Whether it asked for multiplexing ([`MUX_PROPERTY`] = `1`).
    pub mux: bool,
}

impl Announced {
    /// An RFC 7 peer's: credit 1, no multiplexing.
    pub const RFC7: Self = Self {
        credit: Credit::ONE,
        mux: false,
    };
}

/// Whether a comma-separated [`EXTENSIONS_PROPERTY`] value lists `name` (spaces around
/// names are ignored, case is not).
pub fn lists(value: &[u8], name: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii() == name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_parses_decimal_in_range_only() {
        assert_eq!(Credit::parse(b"4"), Credit::new(4));
        assert_eq!(Credit::parse(b"1024").map(Credit::get), Some(1024));
        assert_eq!(Credit::parse(b"0001").map(Credit::get), Some(1));
        for bad in [
            &b""[..],
            b"0",
            b"1025",
            b"99999",
            b"-1",
            b"+4",
            b" 4",
            b"4x",
            b"\xff",
        ] {
            assert_eq!(Credit::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Credit::default(), Credit::ONE);
    }

    #[test]
    fn only_a_1_asks_for_multiplexing() {
        assert!(mux_requested(b"1"));
        for other in [&b""[..], b"0", b"01", b"1 ", b"yes", b"true"] {
            assert!(!mux_requested(other), "{other:?}");
        }
    }

    #[test]
    fn extension_lists_are_comma_separated() {
        assert!(lists(b"credit", CREDIT));
        assert!(lists(b"tags, credit", CREDIT));
        assert!(lists(b"credit,mux", MUX));
        assert!(!lists(b"credits,Credit", CREDIT));
        assert!(!lists(b"", CREDIT));
    }
}
