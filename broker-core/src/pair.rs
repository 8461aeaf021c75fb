//! The broker's side of Binary Star: feeding the [`Ha`] machine, gating client requests, and
//! the `mmi.ha` answer. The failover rules themselves live in [`super::ha`].

use std::time::Instant;

use bytes::Bytes;
use domo_mdp::mmi::{self, HaReport};
use domo_mdp::ServiceName;

use super::events::DropReason;
use super::ha::{Ha, HaConfig, HaEvent, HaStatus, State};
use super::Broker;

impl Broker {
    /// Makes this broker one of a Binary Star pair, starting in its role's initial state at
    /// `now`. `node` identifies this process to the peer: a random number per start. Call it
    /// when the loop starts running, since a machine not ticked for a peer expiry takes
    /// itself for frozen.
    pub fn enable_ha(&mut self, config: HaConfig, node: u64, now: Instant) {
        let now = self.begin(now);
        self.ha = Some(Ha::new(config, node, now));
    }

    /// Handles a message from the peer's state link. With `answer` (it came in on this
    /// broker's state endpoint), returns the frames to send straight back. Anything may
    /// arrive here; what is not a state message is counted and dropped.
    pub fn handle_peer_state(
        &mut self,
        now: Instant,
        frames: &[Bytes],
        answer: bool,
    ) -> Option<Vec<Bytes>> {
        let now = self.begin(now);
        let ha = self.ha.as_mut()?;
        let was_serving = ha.state() == State::Active;
        let reply = ha.handle_message(now, frames, answer);
        if was_serving && ha.state() != State::Active {
            self.stop_serving();
        }
        reply.map(|m| m.encode())
    }

    /// The next state message for the peer, if one is due.
    pub fn poll_peer_transmit(&mut self) -> Option<Vec<Bytes>> {
        let now = self.now;
        self.ha.as_mut()?.poll_transmit(now).map(|m| m.encode())
    }

    /// Leaves the pair for good, as the first step of a shutdown: no more state goes to the
    /// peer, which takes over on the next client vote once it has heard nothing for the peer
    /// expiry (see [`Ha::withdraw`]). Until then, or until it yields to the peer's newer
    /// takeover, this broker serves as before. [`Broker::begin_drain`] calls it too.
    pub fn leave_pair(&mut self, now: Instant) {
        self.begin(now);
        if let Some(ha) = &mut self.ha {
            ha.withdraw();
        }
    }

    /// The link to the peer's state endpoint came up: send the state at once.
    pub fn peer_link_up(&mut self) {
        if let Some(ha) = &mut self.ha {
            ha.send_now();
        }
    }

    /// The pair's state, if this broker is one of a pair.
    pub fn ha_status(&self) -> Option<HaStatus> {
        self.ha.as_ref().map(Ha::status)
    }

    /// The pair machine's counters, if this broker is one of a pair.
    pub fn ha_stats(&self) -> Option<&super::ha::HaStats> {
        self.ha.as_ref().map(Ha::stats)
    }

    /// Takes the next pair event (transitions, conflicts), for metrics.
    pub fn poll_ha_event(&mut self) -> Option<HaEvent> {
        self.ha.as_mut()?.poll_event()
    }

    /// Whether client requests are served: always on a lone broker.
    pub(super) fn is_serving(&self) -> bool {
        self.ha.as_ref().is_none_or(Ha::is_serving)
    }

    /// The `CLIENT_REQUEST` event: whether this request may be served. A refused ordinary
    /// request is counted as received and dropped (`not_active`).
    pub(super) fn pair_admits(&mut self, now: Instant, service: &ServiceName, mmi: bool) -> bool {
        let Some(ha) = &mut self.ha else {
            return true;
        };
        if ha.on_client_request(now) {
            return true;
        }
        if !mmi {
            self.stats.requests.received += 1;
            self.dropped(service, DropReason::NotActive);
        }
        false
    }

    /// The broker stopped being active: what is queued goes (clients retry at the peer).
    fn stop_serving(&mut self) {
        let mut names: Vec<_> = self.services.keys().cloned().collect();
        names.sort_unstable();
        for name in &names {
            self.drop_queued(name, DropReason::NotActive);
        }
    }

    /// The `mmi.ha` reply body: `404` on a lone broker, else `200` and `key=value` frames.
    pub(super) fn ha_reply(&self) -> Vec<Bytes> {
        let Some(status) = self.ha_status() else {
            return mmi::ha_reply(&HaReport::Alone);
        };
        let peer = status.peer;
        let since = |at: Instant| {
            format!(
                "{:.3}",
                self.now.saturating_duration_since(at).as_secs_f64()
            )
        };
        let fields = [
            ("role", status.role.as_str().to_string()),
            ("state", status.state.as_str().to_string()),
            ("term", status.term.to_string()),
            ("serving", u8::from(status.serving).to_string()),
            (
                "peer_state",
                peer.map_or("unknown", |p| p.state.as_str()).to_string(),
            ),
            ("peer_up", u8::from(status.peer_up).to_string()),
            (
                "peer_term",
                peer.map_or_else(String::new, |p| p.term.to_string()),
            ),
            (
                "peer_seen_s",
                peer.map_or_else(String::new, |p| since(p.heard_at)),
            ),
            (
                "conflict",
                status.conflict.map_or("none", |c| c.as_str()).to_string(),
            ),
            ("resyncing", u8::from(status.resyncing).to_string()),
        ];
        let fields = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        mmi::ha_reply(&HaReport::Pair(fields))
    }
}
