//! The core as one broker of a Binary Star pair: what a passive broker keeps and refuses,
//! the client vote, yielding after a conflict, and `mmi.ha`.

use std::time::Duration;

use super::util::{Harness, Sent, INTERVAL};
use crate::ha::{HaConfig, Role, State, StateMessage};

const HB: Duration = Duration::from_millis(1000);
const PEER: u64 = 9;

/// A broker of the pair with `role`, and a scripted peer.
struct PairHarness {
    h: Harness,
    peer_role: Role,
    peer_seq: u64,
}

impl PairHarness {
    fn new(role: Role) -> Self {
        let mut h = Harness::new();
        h.broker.enable_ha(
            HaConfig {
                role,
                heartbeat: HB,
            },
            1,
            h.now,
        );
        let peer_role = match role {
            Role::Primary => Role::Backup,
            Role::Backup => Role::Primary,
        };
        Self {
            h,
            peer_role,
            peer_seq: 0,
        }
    }

    /// The peer announces its state; returns the answer, as the state endpoint would send.
    fn peer(&mut self, state: State, term: u64) -> Option<StateMessage> {
        self.peer_seq += 1;
        let frames = StateMessage {
            state,
            term,
            role: self.peer_role,
            node: PEER,
            seq: self.peer_seq,
            ack: (0, 0),
        }
        .encode();
        let now = self.h.now;
        let answer = self.h.broker.handle_peer_state(now, &frames, true);
        self.h.collect_now();
        answer.map(|f| StateMessage::decode(&f).unwrap())
    }

    fn state(&self) -> State {
        self.h.broker.ha_status().unwrap().state
    }

    /// Passes time in heartbeat steps with the peer announcing `state` each time.
    fn run_with_peer(&mut self, state: State, term: u64, steps: u32) {
        for _ in 0..steps {
            self.h.advance(HB);
            self.peer(state, term);
        }
    }
}

fn workers(p: &PairHarness) -> usize {
    let s = p.h.broker.stats();
    s.workers_idle + s.workers_busy
}

/// A passive backup: peer active.
fn passive() -> PairHarness {
    let mut p = PairHarness::new(Role::Backup);
    p.peer(State::Active, 1);
    assert_eq!(p.state(), State::Passive);
    p
}

#[test]
fn passive_broker_keeps_and_heartbeats_workers_but_serves_no_client() {
    let mut p = passive();
    p.h.ready("w", "echo");
    p.h.take();
    p.run_with_peer(State::Active, 1, 3);
    assert!(
        p.h.take().contains(&Sent::heartbeat("w")),
        "the passive broker heartbeats its workers"
    );
    p.h.request("c", "echo", "hello");
    p.h.request("c", "mmi.service", "echo");
    p.h.request("c", "mmi.workers", "echo");
    assert_eq!(
        p.h.take_traffic(),
        [],
        "nothing dispatched, nothing answered"
    );
    let stats = p.h.broker.stats().requests.clone();
    assert_eq!(stats.received, 1);
    assert_eq!(stats.dropped.not_active, 1);
    assert_eq!(stats.dispatched, 0);
    assert_eq!(p.h.broker.ha_stats().unwrap().refused, 3);
    assert_eq!(workers(&p), 1, "the worker stays registered");
    // Worker expiry still applies on a passive broker.
    p.run_with_peer(State::Active, 1, 8);
    assert_eq!(workers(&p), 0);
}

#[test]
fn a_client_vote_after_the_peer_expiry_makes_the_passive_serve_at_once() {
    let mut p = passive();
    p.h.ready("w", "echo");
    p.h.advance(HB);
    p.h.take();
    p.h.advance(HB);
    // The peer has been silent for two heartbeats: the next request is the vote.
    p.h.request("c", "echo", "hello");
    assert_eq!(p.h.take_traffic(), [Sent::request("w", "c", "hello")]);
    assert_eq!(p.state(), State::Active);
    p.h.reply("w", "c", "world");
    assert_eq!(p.h.take_traffic(), [Sent::reply("c", "echo", "world")]);
    let told = p.h.to_peer.last().unwrap();
    assert_eq!((told.state, told.term), (State::Active, 2));
}

#[test]
fn a_broker_that_yields_drops_its_queue_and_hands_out_no_more_work() {
    let mut p = PairHarness::new(Role::Primary);
    p.peer(State::Backup, 0);
    assert_eq!(p.state(), State::Active);
    p.h.ready("w1", "echo");
    p.h.ready("w2", "echo");
    p.h.request("c1", "echo", "a");
    p.h.request("c2", "echo", "b");
    p.h.request("c3", "echo", "c");
    assert_eq!(p.h.take_traffic().len(), 2, "two dispatched, one queued");
    // The peer took over later (a higher term): this broker yields.
    let answer = p.peer(State::Active, 5).unwrap();
    assert_eq!(answer.state, State::Passive);
    assert_eq!(p.state(), State::Passive);
    assert_eq!(
        p.h.broker.stats().requests.dropped.not_active,
        1,
        "the queued one"
    );
    // A busy worker's reply still reaches its client...
    p.h.reply("w1", "c1", "A");
    assert_eq!(p.h.take_traffic(), [Sent::reply("c1", "echo", "A")]);
    // ...but a request whose worker is lost is not dispatched again.
    p.h.close("w2");
    assert_eq!(p.h.take_traffic(), []);
    assert_eq!(p.h.broker.stats().requests.dropped.not_active, 2);
    p.h.request("c4", "echo", "d");
    assert_eq!(p.h.take_traffic(), []);
}

#[test]
fn mmi_ha_is_answered_in_every_state_and_is_no_vote() {
    let mut lone = Harness::new();
    lone.request("c", "mmi.ha", "");
    assert_eq!(lone.take(), [Sent::reply("c", "mmi.ha", "404")]);

    let mut p = passive();
    p.h.advance(HB * 5);
    p.h.take();
    p.h.request("c", "mmi.ha", "");
    let sent = p.h.take();
    let [Sent::Reply(to, service, body)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!((to.as_str(), service.as_str()), ("c", "mmi.ha"));
    let fields: Vec<&str> = body.split('|').collect();
    assert_eq!(fields[0], "200");
    for field in [
        "role=backup",
        "state=passive",
        "term=0",
        "serving=0",
        "peer_state=active",
        "peer_up=0",
        "peer_term=1",
        "conflict=none",
        "resyncing=0",
    ] {
        assert!(fields.contains(&field), "{field} missing from {fields:?}");
    }
    assert_eq!(p.state(), State::Passive, "mmi.ha is not a vote");
}

#[test]
fn a_lone_primary_serves_after_one_expiry_on_the_first_client_request() {
    let mut p = PairHarness::new(Role::Primary);
    p.h.ready("w", "echo");
    p.h.take();
    p.h.request("c", "echo", "early");
    assert_eq!(p.h.take_traffic(), []);
    p.h.advance(HB * 2);
    p.h.request("c", "echo", "late");
    assert_eq!(p.h.take_traffic(), [Sent::request("w", "c", "late")]);
    assert_eq!(p.state(), State::Active);
}

#[test]
fn state_goes_to_the_peer_every_heartbeat_and_answers_carry_the_new_state() {
    let mut p = PairHarness::new(Role::Primary);
    p.h.advance(INTERVAL);
    let sent = p.h.to_peer.len();
    assert!((3..=4).contains(&sent), "{sent} messages in 2.5 heartbeats");
    assert!(p.h.to_peer.iter().all(|m| m.state == State::Primary));
    let answer = p.peer(State::Backup, 0).unwrap();
    assert_eq!(
        (answer.state, answer.term, answer.ack),
        (State::Active, 1, (PEER, 1))
    );
    assert!(p.h.broker.handle_peer_state(p.h.now, &[], true).is_none());
    assert_eq!(p.h.broker.ha_stats().unwrap().malformed, 1);
}

#[test]
fn a_draining_broker_falls_silent_so_the_peer_can_take_over() {
    let mut p = PairHarness::new(Role::Primary);
    p.peer(State::Backup, 0);
    assert_eq!(p.state(), State::Active);
    p.h.advance(HB);
    let before = p.h.to_peer.len();
    p.h.broker.begin_drain(p.h.now);
    p.h.collect_now();
    p.run_with_peer(State::Passive, 0, 5);
    assert_eq!(
        p.h.to_peer.len(),
        before,
        "no state message after the drain began"
    );
    assert!(p.peer(State::Passive, 0).is_none(), "no answer either");
    assert_eq!(
        p.h.broker.ha_stats().unwrap().stalls,
        0,
        "silence by choice is no stall"
    );
    // A newer takeover by the peer is still yielded to.
    p.peer(State::Active, 2);
    assert_eq!(p.state(), State::Passive);
}
