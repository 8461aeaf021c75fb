//! ZeroMQ socket types and which pairs may talk (RFC 23 "Socket-Type").

use std::fmt;

/// The socket types of RFC 23 / RFC 37, as announced in the `Socket-Type` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the names are the spec's
pub enum SocketType {
    Pair,
    Pub,
    Sub,
    Req,
    Rep,
    Dealer,
    Router,
    Pull,
    Push,
    XPub,
    XSub,
}

impl SocketType {
    /// The property value on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pair => "PAIR",
            Self::Pub => "PUB",
            Self::Sub => "SUB",
            Self::Req => "REQ",
            Self::Rep => "REP",
            Self::Dealer => "DEALER",
            Self::Router => "ROUTER",
            Self::Pull => "PULL",
            Self::Push => "PUSH",
            Self::XPub => "XPUB",
            Self::XSub => "XSUB",
        }
    }

    /// Parses a `Socket-Type` value. Matching is exact, as libzmq does.
    pub fn parse(value: &[u8]) -> Option<Self> {
        Some(match value {
            b"PAIR" => Self::Pair,
            b"PUB" => Self::Pub,
            b"SUB" => Self::Sub,
            b"REQ" => Self::Req,
            b"REP" => Self::Rep,
            b"DEALER" => Self::Dealer,
            b"ROUTER" => Self::Router,
            b"PULL" => Self::Pull,
            b"PUSH" => Self::Push,
            b"XPUB" => Self::XPub,
            b"XSUB" => Self::XSub,
            _ => return None,
        })
    }

    /// Whether a socket of this type may talk to a peer of type `peer` (RFC 23 table).
    pub const fn accepts(self, peer: Self) -> bool {
        use SocketType::*;
        matches!(
            (self, peer),
            (Pair, Pair)
                | (Pub | XPub, Sub | XSub)
                | (Sub | XSub, Pub | XPub)
                | (Req, Rep | Router)
                | (Rep, Req | Dealer)
                | (Dealer, Rep | Dealer | Router)
                | (Router, Req | Dealer | Router)
                | (Pull, Push)
                | (Push, Pull)
        )
    }
}

impl fmt::Display for SocketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::SocketType::*;
    use super::*;

    #[test]
    fn router_and_dealer_pairings_follow_the_rfc() {
        for peer in [Req, Dealer, Router] {
            assert!(Router.accepts(peer), "{peer}");
        }
        for peer in [Rep, Dealer, Router] {
            assert!(Dealer.accepts(peer), "{peer}");
        }
        for peer in [Pair, Pub, Sub, Rep, Pull, Push, XPub, XSub] {
            assert!(!Router.accepts(peer), "{peer}");
        }
        assert!(!Dealer.accepts(Req));
    }

    #[test]
    fn names_round_trip() {
        for t in [
            Pair, Pub, Sub, Req, Rep, Dealer, Router, Pull, Push, XPub, XSub,
        ] {
            assert_eq!(SocketType::parse(t.as_str().as_bytes()), Some(t));
        }
        assert_eq!(SocketType::parse(b"dealer"), None);
    }
}
