//! The Binary Star machine: every state x event pair, conflicts, stalls, exact times.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;

const HB: Duration = Duration::from_millis(1000);
const EXPIRY: Duration = Duration::from_millis(2000);
const ME: u64 = 100;
const PEER: u64 = 200;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A machine under test and a scripted peer, with one clock.
struct Pair {
    t0: Instant,
    now: Instant,
    ha: Ha,
    peer_role: Role,
    peer_seq: u64,
}

impl Pair {
    fn new(role: Role) -> Self {
        let t0 = Instant::now();
        let config = HaConfig {
            role,
            heartbeat: HB,
        };
        let peer_role = match role {
            Role::Primary => Role::Backup,
            Role::Backup => Role::Primary,
        };
        Self {
            t0,
            now: t0,
            ha: Ha::new(config, ME, t0),
            peer_role,
            peer_seq: 0,
        }
    }

    /// A machine brought into `state` by the reference's path, at t0.
    fn in_state(state: State) -> Self {
        let mut p = match state {
            State::Primary | State::Active => Self::new(Role::Primary),
            State::Backup | State::Passive => Self::new(Role::Backup),
        };
        match state {
            State::Active => p.peer(State::Backup, 0),
            State::Passive => p.peer(State::Active, 1),
            _ => {}
        }
        assert_eq!(p.ha.state(), state);
        while p.ha.poll_event().is_some() {}
        p
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.ha.tick(self.now);
        // The shell sends what is due after every wake-up.
        let _ = self.ha.poll_transmit(self.now);
    }

    fn frames(&mut self, state: State, term: u64) -> Vec<Bytes> {
        self.peer_seq += 1;
        let role = self.peer_role;
        StateMessage {
            state,
            term,
            role,
            node: PEER,
            seq: self.peer_seq,
            ack: (ME, self.ha.seq),
        }
        .encode()
    }

    /// The peer announces `state` with `term`.
    fn peer(&mut self, state: State, term: u64) {
        let frames = self.frames(state, term);
        self.ha.handle_message(self.now, &frames, false);
    }

    fn client(&mut self) -> bool {
        self.ha.on_client_request(self.now)
    }

    fn transitions(&mut self) -> Vec<(State, State, Cause)> {
        let mut out = Vec::new();
        while let Some(event) = self.ha.poll_event() {
            if let HaEvent::Transition { from, to, cause } = event {
                out.push((from, to, cause));
            }
        }
        out
    }
}

use State::{Active, Backup, Passive, Primary};

// === The transition table: each state x each event ===

#[test]
fn primary_on_peer_primary_is_a_same_role_conflict_and_no_change() {
    let mut p = Pair::in_state(Primary);
    p.peer_role = Role::Primary;
    p.peer(Primary, 0);
    assert_eq!(p.ha.state(), Primary);
    assert_eq!(p.ha.status().conflict, Some(Conflict::SameRole));
    assert_eq!(p.ha.stats().conflicts, [0, 0, 1, 0]);
}

#[test]
fn primary_on_peer_backup_goes_active_with_term_one() {
    let mut p = Pair::in_state(Primary);
    p.peer(Backup, 0);
    assert_eq!(p.ha.state(), Active);
    assert_eq!(p.ha.status().term, 1);
    assert_eq!(p.transitions(), [(Primary, Active, Cause::Peer(Backup))]);
    assert!(p.client());
}

#[test]
fn primary_on_peer_active_goes_passive() {
    let mut p = Pair::in_state(Primary);
    p.peer(Active, 4);
    assert_eq!(p.ha.state(), Passive);
    assert_eq!(p.transitions(), [(Primary, Passive, Cause::Peer(Active))]);
    assert!(!p.client(), "passive with the peer up refuses clients");
}

#[test]
fn primary_on_peer_passive_stays_primary() {
    let mut p = Pair::in_state(Primary);
    p.peer(Passive, 3);
    assert_eq!(p.ha.state(), Primary);
    assert!(p.transitions().is_empty());
    assert!(!p.client(), "peer up: no vote");
}

#[test]
fn primary_on_client_request_waits_one_expiry_from_start() {
    let mut p = Pair::in_state(Primary);
    assert!(!p.client(), "at start the peer is not yet silent");
    p.advance(EXPIRY - ms(1));
    assert!(!p.client());
    assert_eq!(p.ha.state(), Primary);
    p.advance(ms(1));
    assert!(
        p.client(),
        "lone primary takes over on a vote after the expiry"
    );
    assert_eq!(p.ha.state(), Active);
    assert_eq!(p.transitions(), [(Primary, Active, Cause::ClientVote)]);
    assert_eq!(p.ha.stats().votes_won, 1);
    assert_eq!(p.ha.stats().refused, 2);
}

#[test]
fn primary_on_client_request_refuses_while_the_peer_speaks() {
    let mut p = Pair::in_state(Primary);
    for _ in 0..5 {
        p.advance(HB);
        p.peer(Passive, 1);
        assert!(!p.client());
    }
    assert_eq!(p.ha.state(), Primary);
}

#[test]
fn backup_on_peer_primary_stays_backup() {
    let mut p = Pair::in_state(Backup);
    p.peer(Primary, 0);
    assert_eq!(p.ha.state(), Backup);
    assert!(p.ha.status().conflict.is_none());
}

#[test]
fn backup_on_peer_backup_is_a_same_role_conflict() {
    let mut p = Pair::in_state(Backup);
    p.peer_role = Role::Backup;
    p.peer(Backup, 0);
    assert_eq!(p.ha.state(), Backup);
    assert_eq!(p.ha.status().conflict, Some(Conflict::SameRole));
}

#[test]
fn backup_on_peer_active_goes_passive() {
    let mut p = Pair::in_state(Backup);
    p.peer(Active, 1);
    assert_eq!(p.transitions(), [(Backup, Passive, Cause::Peer(Active))]);
}

#[test]
fn backup_on_peer_passive_stays_backup() {
    let mut p = Pair::in_state(Backup);
    p.peer(Passive, 1);
    assert_eq!(p.ha.state(), Backup);
}

#[test]
fn backup_on_client_request_always_refuses() {
    let mut p = Pair::in_state(Backup);
    assert!(!p.client());
    p.advance(EXPIRY * 10);
    assert!(
        !p.client(),
        "a backup never heard an active peer: it never takes over"
    );
    assert_eq!(p.ha.state(), Backup);
}

#[test]
fn active_on_peer_primary_or_backup_or_passive_stays_active() {
    for peer in [Backup, Passive] {
        let mut p = Pair::in_state(Active);
        p.peer(peer, 0);
        assert_eq!(p.ha.state(), Active, "{peer:?}");
        assert!(p.client());
    }
    // A backup-role broker that is active sees the primary restart.
    let mut p = Pair::in_state(Passive);
    p.advance(EXPIRY);
    assert!(p.client());
    assert_eq!(p.ha.state(), Active);
    p.peer(Primary, 0);
    assert_eq!(p.ha.state(), Active);
}

#[test]
fn active_on_peer_active_with_a_higher_term_yields() {
    let mut p = Pair::in_state(Active);
    assert_eq!(p.ha.status().term, 1);
    p.peer(Active, 2);
    assert_eq!(p.ha.state(), Passive);
    assert_eq!(
        p.transitions(),
        [(Active, Passive, Cause::Resolved(Conflict::DualActive))]
    );
    assert_eq!(p.ha.stats().conflicts, [1, 0, 0, 0]);
    assert!(p.ha.status().conflict.is_none(), "resolved by yielding");
    assert!(!p.client());
}

#[test]
fn active_on_peer_active_with_a_lower_term_stays_until_the_peer_yields() {
    let mut p = Pair::in_state(Active);
    p.advance(EXPIRY);
    p.peer(Active, 0);
    assert_eq!(p.ha.state(), Active);
    assert_eq!(p.ha.status().conflict, Some(Conflict::DualActive));
    // Detected once per episode, however many messages say so.
    p.peer(Active, 0);
    assert_eq!(p.ha.stats().conflicts, [1, 0, 0, 0]);
    p.peer(Passive, 0);
    assert!(p.ha.status().conflict.is_none());
    assert_eq!(
        p.ha.status().last_conflict.map(|c| c.0),
        Some(Conflict::DualActive)
    );
}

#[test]
fn dual_active_with_equal_terms_is_won_by_the_primary() {
    let mut primary = Pair::in_state(Active);
    primary.peer(Active, 1);
    assert_eq!(primary.ha.state(), Active);
    let mut backup = Pair::in_state(Passive);
    backup.advance(EXPIRY);
    assert!(backup.client());
    assert_eq!(backup.ha.status().term, 2);
    backup.peer(Active, 2);
    assert_eq!(backup.ha.state(), Passive, "backup yields on a tie");
}

#[test]
fn active_on_client_request_serves() {
    let mut p = Pair::in_state(Active);
    for _ in 0..10 {
        assert!(p.client());
        p.advance(HB);
    }
    assert_eq!(p.ha.state(), Active, "peer silence never ends ACTIVE");
}

#[test]
fn passive_on_peer_primary_or_backup_takes_over() {
    for peer in [Primary, Backup] {
        let mut p = Pair::new(if peer == Primary {
            Role::Backup
        } else {
            Role::Primary
        });
        p.peer(Active, 5);
        assert_eq!(p.ha.state(), Passive);
        p.transitions();
        p.peer(peer, 0);
        assert_eq!(p.ha.state(), Active, "peer {peer:?} restarted");
        assert_eq!(
            p.ha.status().term,
            6,
            "a takeover outranks the peer's old term"
        );
        assert_eq!(p.transitions(), [(Passive, Active, Cause::Peer(peer))]);
    }
}

#[test]
fn passive_on_peer_active_stays_passive() {
    let mut p = Pair::in_state(Passive);
    p.peer(Active, 1);
    assert_eq!(p.ha.state(), Passive);
    assert!(p.transitions().is_empty());
}

#[test]
fn passive_on_peer_passive_takes_over_only_if_it_outranks_the_peer() {
    // Backup-role, term 0, against a primary with term 0: the primary ranks higher.
    let mut p = Pair::in_state(Passive);
    p.peer(Passive, 0);
    assert_eq!(p.ha.state(), Passive);
    assert_eq!(p.ha.status().conflict, Some(Conflict::DualPassive));
    p.peer(Active, 1);
    assert!(p.ha.status().conflict.is_none(), "the peer took over");
    // Higher term than the peer: take over.
    let mut p = Pair::in_state(Passive);
    p.advance(EXPIRY);
    assert!(p.client());
    p.peer(Active, 3);
    assert_eq!(p.ha.state(), Passive);
    assert_eq!(p.ha.status().term, 2);
    p.peer(Passive, 1);
    assert_eq!(p.ha.state(), Active);
    assert_eq!(p.ha.status().term, 4);
    assert_eq!(p.ha.stats().conflicts, [1, 1, 0, 0]);
}

#[test]
fn passive_on_client_request_fails_over_only_after_the_peer_expiry() {
    let mut p = Pair::in_state(Passive);
    assert!(!p.client(), "peer just heard");
    p.advance(EXPIRY - ms(1));
    assert!(
        !p.client(),
        "silence alone is not enough, and not long enough yet"
    );
    assert_eq!(p.ha.state(), Passive);
    p.advance(ms(1));
    assert_eq!(p.ha.state(), Passive, "silence alone never fails over");
    assert!(!p.ha.status().peer_up);
    assert!(p.client());
    assert_eq!(p.transitions(), [(Passive, Active, Cause::ClientVote)]);
    assert_eq!(p.ha.status().term, 2);
}

// === Messages: malformed, stale, looped back ===

#[test]
fn malformed_messages_are_counted_and_change_nothing() {
    let mut p = Pair::in_state(Passive);
    p.advance(EXPIRY);
    let before = p.ha.status();
    for frames in [
        vec![],
        vec![Bytes::from_static(b"3")],
        vec![Bytes::from_static(b"DOMO-HA1"); 8],
    ] {
        assert_eq!(p.ha.handle_message(p.now, &frames, true), None);
    }
    assert_eq!(p.ha.stats().malformed, 3);
    assert_eq!(
        p.ha.status(),
        before,
        "a malformed message is no sign of life"
    );
    assert!(p.client(), "the peer is still silent");
}

#[test]
fn older_messages_than_one_seen_are_ignored() {
    let mut p = Pair::in_state(Passive);
    let old = p.frames(Passive, 0);
    let new = p.frames(Active, 1);
    p.ha.handle_message(p.now, &new, false);
    p.ha.handle_message(p.now, &old, false);
    assert_eq!(p.ha.stats().stale, 1);
    assert_eq!(
        p.ha.status().conflict,
        None,
        "the stale PASSIVE was not applied"
    );
    assert_eq!(p.ha.status().peer.map(|v| v.state), Some(Active));
}

#[test]
fn own_messages_are_a_loopback_conflict() {
    let mut p = Pair::in_state(Primary);
    p.advance(HB);
    let own = StateMessage {
        state: Primary,
        term: 0,
        role: Role::Primary,
        node: ME,
        seq: 1,
        ack: (0, 0),
    }
    .encode();
    assert_eq!(p.ha.handle_message(p.now, &own, true), None);
    assert_eq!(p.ha.status().conflict, Some(Conflict::Loopback));
    assert!(!p.ha.status().peer_up);
}

#[test]
fn a_message_on_the_state_endpoint_is_answered_with_the_current_state() {
    let mut p = Pair::in_state(Primary);
    let frames = p.frames(Backup, 0);
    let answer = p.ha.handle_message(p.now, &frames, true).unwrap();
    assert_eq!(
        answer.state, Active,
        "the answer carries the state after the event"
    );
    assert_eq!(answer.term, 1);
    assert_eq!(answer.ack, (PEER, 1));
    assert_eq!(answer.role, Role::Primary);
    assert_eq!(answer.node, ME);
}

// === Heartbeats and peer expiry ===

#[test]
fn state_is_sent_at_start_then_every_heartbeat() {
    let t0 = Instant::now();
    let mut ha = Ha::new(HaConfig::new(Role::Backup), 7, t0);
    ha.tick(t0);
    let first = ha.poll_transmit(t0).unwrap();
    assert_eq!((first.state, first.seq, first.node), (Backup, 1, 7));
    assert_eq!(ha.poll_transmit(t0), None);
    assert_eq!(ha.poll_timeout(), Some(t0 + HB));
    ha.tick(t0 + HB - ms(1));
    assert_eq!(ha.poll_transmit(t0 + HB - ms(1)), None);
    ha.tick(t0 + HB);
    assert_eq!(ha.poll_transmit(t0 + HB).map(|m| m.seq), Some(2));
}

#[test]
fn a_transition_sends_the_new_state_at_once() {
    let mut p = Pair::in_state(Primary);
    p.advance(ms(10));
    assert!(p.ha.poll_transmit(p.now).is_none());
    p.peer(Backup, 0);
    assert_eq!(p.ha.poll_transmit(p.now).map(|m| m.state), Some(Active));
}

#[test]
fn peer_up_follows_messages_and_expiry() {
    let mut p = Pair::in_state(Passive);
    assert!(p.ha.status().peer_up);
    assert_eq!(p.ha.poll_timeout(), Some(p.t0 + HB), "next send first");
    p.advance(HB);
    assert_eq!(
        p.ha.poll_timeout(),
        Some(p.t0 + EXPIRY),
        "then the peer's expiry"
    );
    p.advance(HB);
    assert!(!p.ha.status().peer_up);
    p.peer(Active, 1);
    assert!(p.ha.status().peer_up);
}

// === Stalls: a frozen broker does not trust its own view ===

#[test]
fn a_frozen_active_refuses_clients_until_the_peer_acknowledges_it() {
    let mut p = Pair::in_state(Active);
    p.advance(HB);
    // Frozen for five seconds: no tick, no send.
    p.now += ms(5000);
    assert!(!p.client(), "first event after the freeze: refused");
    assert!(p.ha.status().resyncing);
    assert_eq!(p.ha.stats().stalls, 1);
    assert_eq!(p.ha.state(), Active);
    // Its first message after the freeze.
    let sent = p.ha.poll_transmit(p.now).unwrap();
    // The backlog the peer wrote during the freeze (acknowledging old messages) does not end
    // the resync.
    let backlog = StateMessage {
        state: Passive,
        term: 0,
        role: Role::Backup,
        node: PEER,
        seq: 10,
        ack: (ME, sent.seq - 1),
    }
    .encode();
    p.ha.handle_message(p.now, &backlog, false);
    assert!(p.ha.status().resyncing);
    assert!(!p.client());
    // The peer's answer to the fresh message: it took over meanwhile.
    let answer = StateMessage {
        state: Active,
        term: 2,
        role: Role::Backup,
        node: PEER,
        seq: 11,
        ack: (ME, sent.seq),
    }
    .encode();
    p.ha.handle_message(p.now, &answer, false);
    assert!(!p.ha.status().resyncing);
    assert_eq!(p.ha.state(), Passive, "the newer takeover wins");
    assert!(!p.client());
}

#[test]
fn a_frozen_active_whose_peer_is_dead_serves_again_after_one_expiry() {
    let mut p = Pair::in_state(Active);
    p.now += ms(10_000);
    assert!(!p.client());
    p.advance(EXPIRY - ms(1));
    assert!(!p.client());
    p.advance(ms(1));
    assert!(!p.ha.status().resyncing);
    assert!(p.client());
    assert_eq!(p.ha.state(), Active);
}

#[test]
fn a_frozen_passive_does_not_count_stale_votes() {
    let mut p = Pair::in_state(Passive);
    p.now += ms(5000);
    assert!(
        !p.client(),
        "the peer's silence during our own freeze proves nothing"
    );
    assert_eq!(p.ha.state(), Passive);
    // The active peer speaks again within the resync: stay passive.
    p.advance(ms(500));
    p.peer(Active, 1);
    assert!(!p.client());
    assert_eq!(p.ha.state(), Passive);
}

#[test]
fn a_late_tick_within_the_expiry_is_not_a_stall() {
    let mut p = Pair::in_state(Active);
    p.advance(HB);
    p.now += EXPIRY;
    assert!(p.client());
    assert_eq!(p.ha.stats().stalls, 0);
}

// === Whole-pair scenarios, two machines wired together ===

/// Two machines exchanging messages with no delay.
struct Wired {
    now: Instant,
    a: Ha,
    b: Ha,
    link: bool,
}

impl Wired {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            now,
            a: Ha::new(HaConfig::new(Role::Primary), 1, now),
            b: Ha::new(HaConfig::new(Role::Backup), 2, now),
            link: true,
        }
    }

    /// Moves time on by `d` in 100 ms steps, exchanging what is due; `a_runs` false freezes A.
    fn run(&mut self, d: Duration, a_runs: bool) {
        let end = self.now + d;
        while self.now < end {
            self.now += ms(100);
            let now = self.now;
            if a_runs {
                self.a.tick(now);
                if let Some(m) = self.a.poll_transmit(now) {
                    if self.link {
                        if let Some(answer) = self.b.handle_message(now, &m.encode(), true) {
                            self.a.handle_message(now, &answer.encode(), false);
                        }
                    }
                }
            }
            self.b.tick(now);
            if let Some(m) = self.b.poll_transmit(now) {
                if self.link && a_runs {
                    if let Some(answer) = self.a.handle_message(now, &m.encode(), true) {
                        self.b.handle_message(now, &answer.encode(), false);
                    }
                }
            }
        }
    }

    fn states(&self) -> (State, State) {
        (self.a.state(), self.b.state())
    }
}

#[test]
fn pair_started_together_ends_with_the_primary_active() {
    let mut w = Wired::new();
    w.run(ms(300), true);
    assert_eq!(w.states(), (Active, Passive));
}

#[test]
fn pair_started_with_the_backup_first_ends_with_the_primary_active() {
    let mut w = Wired::new();
    w.link = false;
    w.run(ms(5000), false);
    assert_eq!(w.b.state(), Backup);
    w.link = true;
    w.a = Ha::new(HaConfig::new(Role::Primary), 1, w.now);
    w.run(ms(300), true);
    assert_eq!(w.states(), (Active, Passive));
}

#[test]
fn freeze_of_the_active_then_resume_ends_with_exactly_one_active() {
    let mut w = Wired::new();
    w.run(ms(500), true);
    assert_eq!(w.states(), (Active, Passive));
    // A frozen 5 s; a client votes at B after the expiry.
    w.run(ms(2500), false);
    assert!(w.b.on_client_request(w.now));
    w.run(ms(2500), false);
    assert_eq!(w.b.state(), Active);
    // A resumes: it refuses clients at once and yields to the newer term.
    w.now += ms(1);
    assert!(!w.a.on_client_request(w.now));
    w.run(ms(300), true);
    assert_eq!(w.states(), (Passive, Active));
    assert!(!w.a.on_client_request(w.now));
    assert!(w.b.on_client_request(w.now));
    assert_eq!(w.b.stats().conflicts[0], 1, "B saw the dual active");
    assert_eq!(w.a.stats().conflicts[0], 1, "A saw it and yielded");
}

#[test]
fn cut_state_link_with_clients_at_the_primary_never_activates_the_backup() {
    let mut w = Wired::new();
    w.run(ms(500), true);
    w.link = false;
    w.run(ms(10_000), true);
    assert!(w.a.on_client_request(w.now));
    assert_eq!(w.states(), (Active, Passive));
    // Link back: nothing changes.
    w.link = true;
    w.run(ms(2000), true);
    assert_eq!(w.states(), (Active, Passive));
}

#[test]
fn cut_state_link_with_clients_at_the_backup_then_healed_leaves_one_active() {
    let mut w = Wired::new();
    w.run(ms(500), true);
    w.link = false;
    w.run(ms(1000), true);
    assert!(!w.b.on_client_request(w.now), "before the expiry: refused");
    w.run(ms(1000), true);
    assert_eq!(w.b.state(), Passive, "silence alone does nothing");
    assert!(w.b.on_client_request(w.now));
    assert_eq!(w.states(), (Active, Active), "the reference's split brain");
    w.link = true;
    w.run(ms(300), true);
    assert_eq!(
        w.states(),
        (Passive, Active),
        "the newer takeover keeps serving"
    );
}

#[test]
fn restarted_primary_comes_back_passive() {
    let mut w = Wired::new();
    w.run(ms(500), true);
    w.link = false;
    w.run(ms(2500), false);
    assert!(w.b.on_client_request(w.now));
    w.a = Ha::new(HaConfig::new(Role::Primary), 3, w.now);
    w.link = true;
    w.run(ms(300), true);
    assert_eq!(w.states(), (Passive, Active));
    assert!(!w.a.on_client_request(w.now));
}
