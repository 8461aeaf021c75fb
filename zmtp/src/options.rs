//! Socket options and their defaults.

use std::time::Duration;

use bytes::Bytes;

use crate::curve::Security;
use crate::proto::{Limits, Metadata};

/// What a Router does when a peer announces an `Identity` that a connected peer already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DuplicateIdentity {
    /// Refuse the newcomer: its connection is closed and the existing peer keeps the id
    /// (libzmq's default).
    #[default]
    Reject,
    /// Hand the id over to the newcomer and close the old connection (libzmq's
    /// `ZMQ_ROUTER_HANDOVER`). The old peer's undelivered messages are dropped and its
    /// `Disconnected` event comes before the newcomer's `Connected`.
    Handover,
}

/// Options shared by [`crate::Router`] and [`crate::Dealer`].
///
/// Every field has a default suited to a server that faces untrusted peers.
#[derive(Debug, Clone)]
pub struct Options {
    /// Largest message a peer may send (sum of frame bodies). A peer that announces more is
    /// disconnected before anything is allocated for it. Default 64 MiB.
    pub max_message_size: u64,
    /// Most frames in one message. Default 4096.
    pub max_frames: usize,
    /// Per-peer send queue limit in messages. Default 1000 (libzmq's `ZMQ_SNDHWM`).
    pub send_hwm: usize,
    /// Per-peer send queue limit in bytes (frame bodies). Default 16 MiB. A queue below this
    /// limit accepts one more message of any size, so a single large message always fits.
    pub send_hwm_bytes: usize,
    /// Per-peer receive queue limit in messages; at the limit the socket stops reading from
    /// that peer (TCP pushes back on it alone). Default 1000.
    pub recv_hwm: usize,
    /// Per-peer receive queue limit in bytes. Default 16 MiB.
    pub recv_hwm_bytes: usize,
    /// Router only: most bytes received from all peers together and not yet taken by the
    /// owner: messages in the receive queues, plus each large frame (over 16 KiB) being read,
    /// counted in full from its header. Past it, a connection reads a large frame only once
    /// the total is back under the budget, and small frames only while nothing of its own
    /// waits in its receive queue; TCP pushes back on the rest. So the memory a burst of
    /// large messages from many peers can take is bounded for the whole socket, not per
    /// peer. Peers taken off the budget with [`crate::Router::set_budgeted`] are neither
    /// counted nor held back. Default `usize::MAX` (no budget, only the per-peer limits).
    pub recv_budget_bytes: usize,
    /// A connection that has not completed the ZMTP handshake in this time is closed.
    /// Default 10 s.
    pub handshake_timeout: Duration,
    /// First delay before a Dealer reconnects. Default 100 ms.
    pub reconnect_interval: Duration,
    /// Cap on the Dealer's exponential reconnect backoff. Default 10 s.
    pub reconnect_interval_max: Duration,
    /// Dealer only: how long one TCP connect attempt may take. Default 5 s.
    pub connect_timeout: Duration,
    /// On shutdown or an explicit disconnect, how long queued outbound messages may still be
    /// written before the connection is dropped. Default 1 s.
    pub linger: Duration,
    /// Router only: duplicate `Identity` policy. Default [`DuplicateIdentity::Reject`].
    pub duplicate_identity: DuplicateIdentity,
    /// Dealer only: the `Identity` announced to the peer (1 to 255 bytes, not starting with a
    /// zero byte). Default none: the peer assigns a routing id.
    pub identity: Option<Bytes>,
    /// The security mechanism: NULL (default, as libzmq) or CURVE in the server or client
    /// role. Both peers must use the same mechanism; a peer with another is refused with an
    /// `ERROR` during the handshake.
    pub security: Security,
    /// Properties announced to every peer in the handshake, besides `Socket-Type` and
    /// `Identity` (RFC 23 metadata; application properties are named `X-...`). Peers that do
    /// not know a property ignore it, as libzmq does; the peer's own properties arrive in
    /// [`crate::RouterEvent::Connected`] and [`crate::Dealer::peer_metadata`]. Default none.
    pub metadata: Metadata,
    /// Coalesce writes: when output arrives on a connection with nothing left to write, the
    /// connection's task lets the other ready tasks run once before writing, so that the
    /// messages their owners queue meanwhile go out in the same vectored write. For a
    /// connection that carries many messages in flight at once (a multiplexed client, a
    /// worker with credit); it costs a scheduler round per idle-to-busy turn, which a
    /// connection with one message in flight at a time pays in latency for nothing.
    /// Default off.
    pub coalesce_writes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_message_size: 64 * 1024 * 1024,
            max_frames: 4096,
            send_hwm: 1000,
            send_hwm_bytes: 16 * 1024 * 1024,
            recv_hwm: 1000,
            recv_hwm_bytes: 16 * 1024 * 1024,
            recv_budget_bytes: usize::MAX,
            handshake_timeout: Duration::from_secs(10),
            reconnect_interval: Duration::from_millis(100),
            reconnect_interval_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            linger: Duration::from_secs(1),
            duplicate_identity: DuplicateIdentity::Reject,
            identity: None,
            security: Security::Null,
            metadata: Metadata::new(),
            coalesce_writes: false,
        }
    }
}

impl Options {
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_message_size: self.max_message_size,
            max_frames: self.max_frames,
        }
    }
}

/// Body bytes of a message, the unit of the byte high-water marks.
pub(crate) fn message_bytes(msg: &[Bytes]) -> usize {
    msg.iter().map(Bytes::len).sum()
}

/// A per-peer queue's fill level against its two limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hwm {
    pub(crate) msgs: usize,
    pub(crate) bytes: usize,
}

impl Hwm {
    /// At or over either limit.
    pub(crate) fn full(self, len: usize, bytes: usize) -> bool {
        len >= self.msgs || bytes >= self.bytes
    }

    /// At or below half of both limits: where a blocked sender is told to go on.
    pub(crate) fn low(self, len: usize, bytes: usize) -> bool {
        len <= self.msgs / 2 && bytes <= self.bytes / 2
    }
}
