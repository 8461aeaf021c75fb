//! Counters a socket keeps about its peers, for metrics and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters (atomics, updated by connection tasks).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) handshake_failures: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) oversized: AtomicU64,
    pub(crate) identity_rejected: AtomicU64,
    pub(crate) dropped_outbound: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) handshakes_ok: AtomicU64,
    pub(crate) handshakes_wrong_key: AtomicU64,
    pub(crate) handshakes_not_authorized: AtomicU64,
    pub(crate) handshakes_malformed: AtomicU64,
    pub(crate) handshakes_timeout: AtomicU64,
    pub(crate) handshakes_rate_limited: AtomicU64,
    pub(crate) handshakes_closed: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self, peers: usize) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            peers,
            accepted: get(&self.accepted),
            connects: get(&self.connects),
            handshake_failures: get(&self.handshake_failures),
            protocol_errors: get(&self.protocol_errors),
            oversized: get(&self.oversized),
            identity_rejected: get(&self.identity_rejected),
            dropped_outbound: get(&self.dropped_outbound),
            recv_budget_used: 0,
            handshakes: HandshakeStats {
                ok: get(&self.handshakes_ok),
                wrong_key: get(&self.handshakes_wrong_key),
                not_authorized: get(&self.handshakes_not_authorized),
                malformed: get(&self.handshakes_malformed),
                timeout: get(&self.handshakes_timeout),
                rate_limited: get(&self.handshakes_rate_limited),
                closed: get(&self.handshakes_closed),
            },
        }
    }
}

/// A snapshot of a socket's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Peers connected now (past the handshake).
    pub peers: usize,
    /// Connections accepted (Router).
    pub accepted: u64,
    /// Successful connections made, reconnects included (Dealer).
    pub connects: u64,
    /// Connections that failed the handshake (bad greeting, mechanism, socket type, timeout).
    pub handshake_failures: u64,
    /// Connections closed for breaking the framing rules, handshake included.
    pub protocol_errors: u64,
    /// Of those, peers that announced a message over the size or frame limit.
    pub oversized: u64,
    /// Connections refused because their identity was in use.
    pub identity_rejected: u64,
    /// Queued outbound messages dropped because their connection closed.
    pub dropped_outbound: u64,
    /// Router: bytes counted against the receive budget now (see
    /// [`crate::Options::recv_budget_bytes`]).
    pub recv_budget_used: usize,
    /// Router: handshakes by result.
    pub handshakes: HandshakeStats,
}

/// Handshakes by result (Router). Every accepted connection ends in exactly one of these,
/// except those still in their handshake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandshakeStats {
    /// Completed.
    pub ok: u64,
    /// CURVE: a box did not open (the client used a wrong server key, or tampering).
    pub wrong_key: u64,
    /// CURVE: the client's key is not authorized (it got `ERROR "400"`).
    pub not_authorized: u64,
    /// Anything else the peer got wrong: not ZMTP 3, another mechanism or socket type, a
    /// malformed command.
    pub malformed: u64,
    /// Not finished within the handshake timeout.
    pub timeout: u64,
    /// Refused before starting: too many recent failures from the peer's address.
    pub rate_limited: u64,
    /// The peer closed the connection during the handshake.
    pub closed: u64,
}
