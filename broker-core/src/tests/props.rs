//! Property test: random sequences of inputs (rights changes included) never panic, keep every invariant
//! ([`Broker::check_invariants`](crate::Broker)), only produce valid MDP, and never
//! send to a peer after its DISCONNECT (both checked by the harness after each input).

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use domo_mdp::PeerId;

use super::util::{frames, Harness};
use crate::token::Token;
use crate::{BrokerConfig, QueueLimits};

/// Peers are drawn from one small pool, so the same id acts as client and worker at times.
const PEERS: u8 = 6;
const SERVICES: [&str; 4] = ["s0", "s1", "s2", "mmi.service"];
/// Rights a peer may be given (as a certificate's `call` or `serve`).
const PATTERNS: [&str; 6] = ["*", "", "s0", "s1, s2", "s*", "mmi.*"];

#[derive(Debug, Clone)]
enum Event {
    /// READY with a credit of 1, 2 or 3 (weighted towards 1, the RFC 7 case).
    Ready(u8, usize, u32),
    Request(u8, usize, u8),
    Mmi(u8, usize),
    /// One of the busy workers, picked by index, replies to the request it holds.
    ReplyHeld(usize),
    /// Any peer replies to any client: mostly protocol violations.
    ReplyTo(u8, u8),
    Heartbeat(u8),
    /// Every registered worker sends HEARTBEAT, so sessions outlive a few advances.
    HeartbeatAll,
    Disconnect(u8),
    Close(u8),
    Garbage(u8, u8),
    Advance(u16),
    /// The shell gives a peer rights: call and serve patterns, by index.
    Rights(u8, usize, usize),
    /// A peer (multiplexed from then on) broadcasts to a service with a timeout in ms.
    Broadcast(u8, usize, u16),
}

fn event() -> impl Strategy<Value = Event> {
    let peer = 0..PEERS;
    let service = 0..SERVICES.len();
    prop_oneof![
        2 => (peer.clone(), service.clone(), prop_oneof![2 => Just(1u32), 1 => 2u32..4])
            .prop_map(|(p, s, n)| Event::Ready(p, s, n)),
        4 => (peer.clone(), service.clone(), 0u8..8).prop_map(|(p, s, n)| Event::Request(p, s, n)),
        1 => (peer.clone(), service).prop_map(|(p, s)| Event::Mmi(p, s)),
        6 => any::<usize>().prop_map(Event::ReplyHeld),
        1 => (peer.clone(), peer.clone()).prop_map(|(p, c)| Event::ReplyTo(p, c)),
        1 => peer.clone().prop_map(Event::Heartbeat),
        2 => Just(Event::HeartbeatAll),
        1 => peer.clone().prop_map(Event::Disconnect),
        1 => peer.clone().prop_map(Event::Close),
        1 => (peer, any::<u8>()).prop_map(|(p, k)| Event::Garbage(p, k)),
        3 => (0u16..400).prop_map(Event::Advance),
        1 => (0..PEERS, 0..PATTERNS.len(), 0..PATTERNS.len())
            .prop_map(|(p, c, s)| Event::Rights(p, c, s)),
        1 => (0..PEERS, 0..SERVICES.len(), 0u16..1500)
            .prop_map(|(p, s, ms)| Event::Broadcast(p, s, ms)),
    ]
}

fn config(redispatch: bool) -> BrokerConfig {
    let mut config = BrokerConfig {
        request_timeout: Duration::from_secs(1),
        service_queue: QueueLimits {
            max_requests: 3,
            max_bytes: 12,
        },
        total_queue: QueueLimits {
            max_requests: 5,
            max_bytes: 1000,
        },
        redispatch,
        max_redispatch: 1,
        ..BrokerConfig::default()
    };
    config.heartbeat.interval = Duration::from_millis(100);
    config
}

fn name(peer: u8) -> String {
    format!("p{peer}")
}

fn apply(h: &mut Harness, event: &Event) {
    match *event {
        Event::Ready(p, s, credit) => h.ready_with_credit(&name(p), SERVICES[s], credit),
        Event::Request(p, s, size) => {
            h.request(&name(p), SERVICES[s], &"x".repeat(size.into()));
        }
        Event::Mmi(p, s) => h.request(&name(p), "mmi.workers", SERVICES[s]),
        Event::ReplyHeld(pick) => {
            let mut held: Vec<(Token, String)> = h
                .broker
                .in_flight
                .iter()
                .map(|(token, held)| (*token, text(&held.worker)))
                .collect();
            if held.is_empty() {
                return;
            }
            held.sort();
            let (token, worker) = &held[pick % held.len()];
            h.reply_with(worker, &token.to_address().unwrap(), "r");
        }
        Event::ReplyTo(p, c) => h.reply(&name(p), &name(c), "r"),
        Event::Heartbeat(p) => h.heartbeat(&name(p)),
        Event::HeartbeatAll => {
            let mut workers: Vec<String> = h.broker.workers.keys().map(text).collect();
            workers.sort();
            for worker in workers {
                h.heartbeat(&worker);
            }
        }
        Event::Disconnect(p) => h.disconnect(&name(p)),
        Event::Close(p) => h.close(&name(p)),
        Event::Garbage(p, kind) => h.send(&name(p), garbage(kind)),
        Event::Advance(ms) => h.advance(Duration::from_millis(ms.into())),
        Event::Rights(p, call, serve) => h.set_rights(&name(p), PATTERNS[call], PATTERNS[serve]),
        Event::Broadcast(p, s, ms) => {
            h.mux_client(&name(p));
            let body = format!("{}|{ms}|x", SERVICES[s]);
            h.tagged_request(&name(p), "mmi.broadcast", "t", &body);
        }
    }
}

fn text(peer: &PeerId) -> String {
    String::from_utf8_lossy(peer.as_bytes()).into_owned()
}

fn garbage(kind: u8) -> Vec<Bytes> {
    match kind % 5 {
        0 => frames(&[b"", b"MDPW01", &[kind]]),
        1 => frames(&[b"", b"MDPW01", b"\x03", b"", b"", b"x"]),
        2 => frames(&[b"", b"MDPC01"]),
        3 => frames(&[&[kind]]),
        _ => Vec::new(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_inputs_keep_every_invariant(
        redispatch in any::<bool>(),
        events in proptest::collection::vec(event(), 1..80),
    ) {
        let mut h = Harness::with_config(config(redispatch));
        for event in &events {
            apply(&mut h, event);
        }
        // Long after everything: all workers expired, every queue drained, nothing left.
        h.advance(Duration::from_secs(60));
        let stats = h.broker.stats();
        prop_assert_eq!(stats.services, 0);
        prop_assert_eq!(h.broker.poll_timeout(), None);
    }
}
