//! Binary Star: the failover rule of a primary/backup pair of brokers, as a pure state
//! machine.
//!
//! Design: like the rest of the core this does no I/O and reads no clock. The two brokers
//! tell each other their state with a [`StateMessage`] every heartbeat; every received
//! message is a *peer event* (`PEER_PRIMARY` … `PEER_PASSIVE`), every client request a
//! `CLIENT_REQUEST` event. The states, their wire numbers and the transition table are the
//! zguide's (`bstar.c` in the ZeroMQ guide's examples, chapter 4):
//!
//! | state    | peer primary | peer backup | peer active        | peer passive        | client request |
//! |----------|--------------|-------------|--------------------|---------------------|----------------|
//! | PRIMARY  | (same role)  | → ACTIVE    | → PASSIVE          | —                   | → ACTIVE if the peer is silent, else refuse |
//! | BACKUP   | —            | (same role) | → PASSIVE          | —                   | refuse |
//! | ACTIVE   | —            | —           | dual active: rank  | —                   | serve |
//! | PASSIVE  | → ACTIVE     | → ACTIVE    | —                  | dual passive: rank  | → ACTIVE if the peer is silent, else refuse |
//!
//! "The peer is silent" means no state message for the peer expiry, two heartbeats. Silence
//! alone never makes a broker active; a client must also vote for it with a request (the
//! reference's split-brain rule). Fail-back is manual: an active broker stays active until it
//! dies or loses a conflict.
//!
//! # Where domo departs from the reference
//!
//! The reference aborts both processes on dual active or dual passive, so a primary frozen
//! past the peer expiry and then resumed takes the whole pair down. Here no conflict ends a
//! process, and two rules keep two brokers from serving at once:
//!
//! * **Terms.** Every takeover sets `term = max(own term, highest peer term seen) + 1`, and every
//!   state message carries the sender's term. When both are ACTIVE (or both PASSIVE), both
//!   rank themselves and the peer by `(term, role, node)`: the higher term (the more recent
//!   takeover) wins, then the primary, then the larger incarnation id (only reachable when
//!   both are misconfigured alike). Both sides compute the same order from the same two
//!   messages, so exactly one yields: on dual active the lower goes PASSIVE, on dual passive
//!   the higher goes ACTIVE. The conflict is logged at ERROR, counted, and shown until the
//!   peer's state no longer conflicts.
//! * **Resync after a stall.** A broker that has not sent its state for a whole peer expiry
//!   (its process was frozen, or its loop stalled) knows the peer may have declared it dead
//!   and taken over; its own view of the peer is stale too. So it refuses client requests,
//!   and counts none as votes, until it holds a peer message that acknowledges a state it sent
//!   after the stall (the peer's answer, about one round trip), or a further peer expiry
//!   passes in which the peer stays silent. The peer's backlog, written while this broker was
//!   frozen, is recognised by its sequence numbers and ignored once a newer message was seen.
//!
//! Two brokers configured with the same role are a configuration error: the peer's state
//! events are ignored (neither becomes active because of the other) and the conflict stays
//! shown until it is fixed. A broker that hears its own messages (its peer endpoint points at
//! itself) ignores them the same way.

pub mod wire;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

pub use self::wire::{StateMessage, WireError};

/// Events kept for [`Ha::poll_event`].
const MAX_EVENTS: usize = 64;

/// A broker's configured place in the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Starts in PRIMARY; active first when both start.
    Primary,
    /// Starts in BACKUP; takes over when the primary dies.
    Backup,
}

impl Role {
    /// `"primary"` or `"backup"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Backup => "backup",
        }
    }

    /// The state a broker of this role starts in.
    pub fn initial_state(self) -> State {
        match self {
            Self::Primary => State::Primary,
            Self::Backup => State::Backup,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Binary Star state; the discriminants are the reference's wire numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum State {
    /// Primary, waiting for the peer (or a client vote).
    Primary = 1,
    /// Backup, waiting for the peer.
    Backup = 2,
    /// Serving clients.
    Active = 3,
    /// Standing by: keeps worker registrations, serves nothing.
    Passive = 4,
}

impl State {
    /// All states, in wire-number order.
    pub const ALL: [Self; 4] = [Self::Primary, Self::Backup, Self::Active, Self::Passive];

    /// Lower-case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Backup => "backup",
            Self::Active => "active",
            Self::Passive => "passive",
        }
    }

    /// Index 0..4 (the wire number minus one).
    pub fn index(self) -> usize {
        self as usize - 1
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Settings of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaConfig {
    /// This broker's role.
    pub role: Role,
    /// How often the state is sent; the peer is silent after two of these.
    pub heartbeat: Duration,
}

impl HaConfig {
    /// Default heartbeat of the state exchange: 1000 ms (the reference's).
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(1000);

    /// A configuration with the default heartbeat.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            heartbeat: Self::DEFAULT_HEARTBEAT,
        }
    }

    /// How long the peer may be silent before a client vote can take over: two heartbeats.
    pub fn peer_expiry(&self) -> Duration {
        self.heartbeat * 2
    }
}

/// A conflict between the pair's states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Conflict {
    /// Both brokers active (split brain).
    DualActive,
    /// Both brokers passive (nobody serving).
    DualPassive,
    /// Both brokers configured with the same role.
    SameRole,
    /// The broker received its own state messages: its peer endpoint points at itself.
    Loopback,
}

impl Conflict {
    /// All kinds.
    pub const ALL: [Self; 4] = [
        Self::DualActive,
        Self::DualPassive,
        Self::SameRole,
        Self::Loopback,
    ];

    /// Snake-case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DualActive => "dual_active",
            Self::DualPassive => "dual_passive",
            Self::SameRole => "same_role",
            Self::Loopback => "loopback",
        }
    }
}

/// Why a transition happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The peer announced this state.
    Peer(State),
    /// A client request arrived while the peer was silent (the vote).
    ClientVote,
    /// A dual-active or dual-passive conflict was resolved by rank.
    Resolved(Conflict),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Peer(state) => write!(f, "peer {state}"),
            Self::ClientVote => f.write_str("client vote with the peer silent"),
            Self::Resolved(conflict) => write!(f, "{} resolved", conflict.as_str()),
        }
    }
}

/// Something that happened, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaEvent {
    /// The state changed.
    Transition {
        /// The old state.
        from: State,
        /// The new state.
        to: State,
        /// Why.
        cause: Cause,
    },
    /// A conflict was detected (once per episode).
    Conflict(Conflict),
}

/// Counters of the pair machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HaStats {
    /// Transitions by `[from][to]` state index.
    pub transitions: [[u64; 4]; 4],
    /// Conflict episodes detected, by [`Conflict`] in [`Conflict::ALL`] order.
    pub conflicts: [u64; 4],
    /// Takeovers by client vote (PRIMARY or PASSIVE to ACTIVE with the peer silent).
    pub votes_won: u64,
    /// Client requests refused because this broker is not serving.
    pub refused: u64,
    /// State messages from the peer that were used.
    pub peer_messages: u64,
    /// State messages that could not be decoded.
    pub malformed: u64,
    /// State messages older than one already seen (a backlog), ignored.
    pub stale: u64,
    /// Times this broker found it had not sent its state for a peer expiry.
    pub stalls: u64,
}

/// What is known of the peer from its last message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerView {
    /// Its state.
    pub state: State,
    /// Its term.
    pub term: u64,
    /// Its role.
    pub role: Role,
    /// Its incarnation.
    pub node: u64,
    /// Seq of its last message.
    seq: u64,
    /// When that message arrived.
    pub heard_at: Instant,
}

/// A snapshot for `/readyz`, metrics and `mmi.ha`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaStatus {
    /// This broker's role.
    pub role: Role,
    /// This broker's state.
    pub state: State,
    /// This broker's term.
    pub term: u64,
    /// Whether client requests are served now.
    pub serving: bool,
    /// Whether the peer was heard within the peer expiry.
    pub peer_up: bool,
    /// The peer's last announced state, if it was ever heard.
    pub peer: Option<PeerView>,
    /// A conflict not resolved yet.
    pub conflict: Option<Conflict>,
    /// The last conflict detected and when.
    pub last_conflict: Option<(Conflict, Instant)>,
    /// Whether the broker is resynchronising after a stall.
    pub resyncing: bool,
}

/// After a stall: refuse clients until the peer acknowledges a message from seq
/// `after_seq` on, or until `until`.
#[derive(Debug, Clone, Copy)]
struct Resync {
    after_seq: u64,
    until: Instant,
}

/// The Binary Star machine of one broker. See the [module documentation](self).
#[derive(Debug)]
pub struct Ha {
    config: HaConfig,
    /// This incarnation's id (random per process start; never 0).
    node: u64,
    state: State,
    term: u64,
    peer: Option<PeerView>,
    /// The highest term any peer message carried (a restarted peer starts from 0 again, so
    /// its last term is not enough).
    max_peer_term: u64,
    /// The peer counts as silent from this moment (seeded one expiry after start, as the
    /// reference's `bstar_start` does, so a lone primary waits that long for its peer).
    peer_expiry: Instant,
    /// Whether the peer was up at the last look (for logging changes).
    peer_up: bool,
    /// Seq of the last message built.
    seq: u64,
    /// When the periodic message is next due.
    next_send: Instant,
    /// When the last message (periodic or answer) was built.
    last_sent: Instant,
    /// A periodic message is due (or a transition wants the peer told at once).
    send_pending: bool,
    resync: Option<Resync>,
    conflict: Option<Conflict>,
    last_conflict: Option<(Conflict, Instant)>,
    events: VecDeque<HaEvent>,
    stats: HaStats,
    /// Set by [`Ha::withdraw`]: no more state messages go out.
    withdrawn: bool,
}

impl Ha {
    /// A machine in its role's initial state at `now`; its first state message is due at
    /// once. `node` identifies this incarnation (use a random non-zero number per start).
    pub fn new(config: HaConfig, node: u64, now: Instant) -> Self {
        Self {
            config,
            node: node.max(1),
            state: config.role.initial_state(),
            term: 0,
            peer: None,
            max_peer_term: 0,
            peer_expiry: now + config.peer_expiry(),
            peer_up: false,
            seq: 0,
            next_send: now,
            last_sent: now,
            send_pending: false,
            resync: None,
            conflict: None,
            last_conflict: None,
            events: VecDeque::new(),
            stats: HaStats::default(),
            withdrawn: false,
        }
    }

    /// Leaves the pair for good (the broker is shutting down): from now on no state message
    /// goes out, periodic or answer, so the peer sees this broker fall silent and can take
    /// over on the next client vote after the peer expiry, while this broker finishes what
    /// it holds. Peer messages are still handled (a newer takeover is still yielded to).
    pub fn withdraw(&mut self) {
        if !self.withdrawn {
            info!(state = %self.state, "Binary Star: leaving the pair (shutting down); the peer may take over");
        }
        self.withdrawn = true;
        self.send_pending = false;
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The settings.
    pub fn config(&self) -> &HaConfig {
        &self.config
    }

    /// This incarnation's id.
    pub fn node(&self) -> u64 {
        self.node
    }

    /// Counters.
    pub fn stats(&self) -> &HaStats {
        &self.stats
    }

    /// Whether a client request would be served now without a vote.
    pub fn is_serving(&self) -> bool {
        self.state == State::Active && self.resync.is_none()
    }

    /// A snapshot of the state.
    pub fn status(&self) -> HaStatus {
        HaStatus {
            role: self.config.role,
            state: self.state,
            term: self.term,
            serving: self.is_serving(),
            peer_up: self.peer_up,
            peer: self.peer,
            conflict: self.conflict,
            last_conflict: self.last_conflict,
            resyncing: self.resync.is_some(),
        }
    }

    /// Takes the next event.
    pub fn poll_event(&mut self) -> Option<HaEvent> {
        self.events.pop_front()
    }

    /// When [`Ha::tick`] must next run: the next periodic message, the end of a resync, or
    /// the peer's expiry while it is up; after [`Ha::withdraw`] only the latter.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let peer = self.peer_up.then_some(self.peer_expiry);
        if self.withdrawn {
            return peer;
        }
        let mut at = self.next_send;
        if let Some(resync) = self.resync {
            at = at.min(resync.until);
        }
        Some(peer.map_or(at, |p| at.min(p)))
    }

    /// Advances time: notices a stall, ends a resync that timed out, notices the peer going
    /// silent, and makes the periodic state message due. Every other entry point calls it.
    pub fn tick(&mut self, now: Instant) {
        if self.withdrawn {
            self.update_peer_up(now);
            return;
        }
        if now.saturating_duration_since(self.last_sent) > self.config.peer_expiry() {
            self.stats.stalls += 1;
            warn!(
                silent_for = ?now.saturating_duration_since(self.last_sent),
                state = %self.state,
                "Binary Star: this broker sent no state for a peer expiry (frozen or stalled); \
                 refusing clients until the peer's state is known again"
            );
            self.resync = Some(Resync {
                after_seq: self.seq + 1,
                until: now + self.config.peer_expiry(),
            });
            // The stall was ours: the peer's silence during it proves nothing, so no vote
            // counts until the resync ends (the peer heard from, or silent for a whole
            // expiry while this broker was running).
            self.next_send = now;
            // Not sent yet, but due now: do not count the same stall again.
            self.last_sent = now;
        }
        if let Some(resync) = self.resync {
            if now >= resync.until {
                self.resync = None;
                info!(state = %self.state, "Binary Star: peer still silent after the resync wait; normal rules again");
            }
        }
        self.update_peer_up(now);
        if now >= self.next_send {
            self.send_pending = true;
            self.next_send = now + self.config.heartbeat;
        }
    }

    /// Asks for a state message at once (the link to the peer just came up).
    pub fn send_now(&mut self) {
        self.send_pending = true;
    }

    /// The next state message to send to the peer, if one is due.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<StateMessage> {
        if !self.send_pending || self.withdrawn {
            return None;
        }
        self.send_pending = false;
        Some(self.build(now))
    }

    /// Handles a state message from the peer. With `answer`, returns this broker's state
    /// message to send straight back (for a message that came in on the state endpoint, so
    /// a peer that just started hears the state without waiting for a heartbeat).
    /// Malformed, stale and looped-back messages are counted and ignored.
    pub fn handle_message(
        &mut self,
        now: Instant,
        frames: &[bytes::Bytes],
        answer: bool,
    ) -> Option<StateMessage> {
        self.tick(now);
        let msg = match StateMessage::decode(frames) {
            Ok(msg) => msg,
            Err(error) => {
                self.stats.malformed += 1;
                tracing::debug!(%error, "Binary Star: malformed state message dropped");
                return None;
            }
        };
        if msg.node == self.node {
            self.detect(now, Conflict::Loopback);
            return None;
        }
        if let Some(peer) = &self.peer {
            if peer.node == msg.node && msg.seq <= peer.seq {
                self.stats.stale += 1;
                return None;
            }
        }
        self.stats.peer_messages += 1;
        self.max_peer_term = self.max_peer_term.max(msg.term);
        self.peer = Some(PeerView {
            state: msg.state,
            term: msg.term,
            role: msg.role,
            node: msg.node,
            seq: msg.seq,
            heard_at: now,
        });
        self.peer_expiry = now + self.config.peer_expiry();
        self.update_peer_up(now);
        if let Some(resync) = self.resync {
            if msg.ack.0 == self.node && msg.ack.1 >= resync.after_seq {
                self.resync = None;
                info!(state = %self.state, peer = %msg.state, "Binary Star: peer state known again after the stall");
            }
        }
        self.on_peer_state(now, msg);
        (answer && !self.withdrawn).then(|| self.build(now))
    }

    /// Handles a client request (the `CLIENT_REQUEST` event): whether to serve it. A refused
    /// request is to be dropped without an answer, so its client tries the other broker.
    pub fn on_client_request(&mut self, now: Instant) -> bool {
        self.tick(now);
        let serve = if self.resync.is_some() {
            false
        } else {
            match self.state {
                State::Active => true,
                State::Primary | State::Passive if now >= self.peer_expiry => {
                    self.stats.votes_won += 1;
                    self.become_state(State::Active, Cause::ClientVote);
                    true
                }
                State::Primary | State::Passive | State::Backup => false,
            }
        };
        if !serve {
            self.stats.refused += 1;
        }
        serve
    }

    /// The peer event: the transition table of the module documentation.
    fn on_peer_state(&mut self, now: Instant, peer: StateMessage) {
        use State::{Active, Backup, Passive, Primary};
        if peer.role == self.config.role {
            self.detect(now, Conflict::SameRole);
            return;
        }
        if matches!(self.conflict, Some(Conflict::SameRole | Conflict::Loopback)) {
            self.conflict = None;
        }
        match (self.state, peer.state) {
            (Primary, Backup) => self.become_state(Active, Cause::Peer(Backup)),
            (Primary | Backup, Active) => self.become_state(Passive, Cause::Peer(Active)),
            (Primary | Backup, _) => {}
            (Active, Active) => {
                self.detect(now, Conflict::DualActive);
                if self.outranked_by(&peer) {
                    self.become_state(Passive, Cause::Resolved(Conflict::DualActive));
                    self.conflict = None;
                }
            }
            (Passive, Primary | Backup) => self.become_state(Active, Cause::Peer(peer.state)),
            (Passive, Passive) => {
                self.detect(now, Conflict::DualPassive);
                if !self.outranked_by(&peer) {
                    self.become_state(Active, Cause::Resolved(Conflict::DualPassive));
                    self.conflict = None;
                }
            }
            (Active, Primary | Backup | Passive) | (Passive, Active) => {
                if let Some(conflict @ (Conflict::DualActive | Conflict::DualPassive)) =
                    self.conflict
                {
                    info!(conflict = conflict.as_str(), state = %self.state, peer = %peer.state, "Binary Star: conflict resolved");
                    self.conflict = None;
                }
            }
        }
    }

    /// Whether the peer ranks above this broker: higher term, then primary, then larger
    /// incarnation id.
    fn outranked_by(&self, peer: &StateMessage) -> bool {
        let rank = |term: u64, role: Role, node: u64| (term, role == Role::Primary, node);
        rank(peer.term, peer.role, peer.node) > rank(self.term, self.config.role, self.node)
    }

    /// Records a conflict once per episode.
    fn detect(&mut self, now: Instant, conflict: Conflict) {
        self.last_conflict = Some((conflict, now));
        if self.conflict == Some(conflict) {
            return;
        }
        self.conflict = Some(conflict);
        let index = Conflict::ALL
            .iter()
            .position(|c| *c == conflict)
            .unwrap_or(0);
        self.stats.conflicts[index] += 1;
        self.push_event(HaEvent::Conflict(conflict));
        let peer = self.peer.map(|p| (p.state, p.term));
        match conflict {
            Conflict::SameRole => error!(
                role = %self.config.role,
                "Binary Star: the peer is configured with the same role; fix [ha] role on one broker \
                 (the peer's state is ignored until then)"
            ),
            Conflict::Loopback => error!(
                "Binary Star: received this broker's own state; [ha] peer must name the other broker"
            ),
            Conflict::DualActive | Conflict::DualPassive => error!(
                conflict = conflict.as_str(),
                state = %self.state,
                term = self.term,
                peer = ?peer,
                "Binary Star: conflict detected; resolving by term, then role"
            ),
        }
    }

    fn become_state(&mut self, to: State, cause: Cause) {
        let from = self.state;
        if from == to {
            return;
        }
        if to == State::Active {
            self.term = self.term.max(self.max_peer_term) + 1;
        }
        self.state = to;
        self.stats.transitions[from.index()][to.index()] += 1;
        self.push_event(HaEvent::Transition { from, to, cause });
        self.send_pending = true;
        if cause == Cause::ClientVote && from == State::Passive {
            warn!(
                term = self.term,
                "Binary Star: failover, {from} -> {to} ({cause})"
            );
        } else {
            info!(term = self.term, "Binary Star: {from} -> {to} ({cause})");
        }
    }

    /// Keeps the last [`MAX_EVENTS`] events: nobody may be reading them (the counters in
    /// [`HaStats`] are what metrics use).
    fn push_event(&mut self, event: HaEvent) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn update_peer_up(&mut self, now: Instant) {
        let up = self.peer.is_some() && now < self.peer_expiry;
        if up != self.peer_up {
            self.peer_up = up;
            if up {
                let peer = self.peer.map_or("unknown", |p| p.state.as_str());
                info!(peer, "Binary Star: peer up");
            } else {
                warn!(state = %self.state, "Binary Star: peer silent for the peer expiry");
            }
        }
    }

    fn build(&mut self, now: Instant) -> StateMessage {
        self.seq += 1;
        self.last_sent = now;
        StateMessage {
            state: self.state,
            term: self.term,
            role: self.config.role,
            node: self.node,
            seq: self.seq,
            ack: self.peer.map_or((0, 0), |p| (p.node, p.seq)),
        }
    }
}
