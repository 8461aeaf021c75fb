//! Flow control on the router, as the core decides it ([`crate::core::Flow`]): deferred
//! requests go back to the router and their clients are paused, workers are exempted from
//! the receive budget, and replies the router cannot take go back to the core.

use domo_zmtp::{PeerId, Router, TrySendError};
use tracing::debug;

use super::local::Local;
use crate::core::{Broker, Flow, Outbound, PeerKind};
use crate::metrics::ShellStats;

/// Carries out the core's flow-control decisions on the router, in order.
pub(super) fn apply(router: &Router, core: &mut Broker, stats: &mut ShellStats) {
    while let Some(flow) = core.poll_flow() {
        match flow {
            Flow::Defer { client, frames } => {
                let peer = PeerId::from(client.into_bytes());
                if router.defer(&peer, frames).is_err() {
                    // Gone in the meantime: its Disconnected event is on its way.
                    stats.replies_to_gone_clients += 1;
                }
            }
            Flow::Pause { client } => {
                debug!(client = %client, "Client paused");
                router.pause(&PeerId::from(client.into_bytes()));
            }
            Flow::Resume { client } => {
                debug!(client = %client, "Client resumed");
                router.resume(&PeerId::from(client.into_bytes()));
            }
            Flow::Worker { peer } => {
                router.set_budgeted(&PeerId::from(peer.into_bytes()), false);
            }
        }
    }
}

/// Sends every message the core has produced (those for in-process services go to them);
/// a reply the router has no room for goes back to the core (with the client's later
/// replies behind it). Then applies the flow control that caused.
pub(super) fn send_outbound(
    router: &Router,
    core: &mut Broker,
    stats: &mut ShellStats,
    local: &mut Local,
) {
    let mut batch = Vec::new();
    while let Some(Outbound {
        peer: id,
        kind,
        frames,
    }) = core.poll_outbound()
    {
        if kind == PeerKind::Worker && local.owns(&id) {
            local.deliver(&id, frames);
            continue;
        }
        if kind == PeerKind::Client && core.is_reply_blocked(&id) {
            // Behind the replies the core already holds for this client.
            core.handle_send_blocked(id, frames);
            continue;
        }
        batch.push((PeerId::from(id.into_bytes()), frames, kind));
    }
    // One lock and one wake-up per connection for the whole batch: a peer that gets several
    // messages writes them together.
    for (peer, error, kind) in router.try_send_batch(batch) {
        match (error, kind) {
            (TrySendError::Full(frames), PeerKind::Client) => {
                debug!(client = %peer, "Client not reading its replies; paused");
                if let Some(id) = to_mdp(&peer) {
                    core.handle_send_blocked(id, frames);
                }
            }
            (TrySendError::Unroutable(_), PeerKind::Client) => {
                stats.replies_to_gone_clients += 1;
            }
            (_, PeerKind::Worker) => stats.worker_commands_dropped += 1,
            (TrySendError::Closed(_), PeerKind::Client) => {}
        }
    }
    apply(router, core, stats);
}

/// The core's peer id for a router peer id (MDP ids are at most 255 bytes).
pub(super) fn to_mdp(peer: &PeerId) -> Option<domo_mdp::PeerId> {
    domo_mdp::PeerId::new(peer.as_bytes().clone()).ok()
}
