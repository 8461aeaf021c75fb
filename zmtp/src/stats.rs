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
}
