//! Request tokens: the client-address frame of a worker REQUEST names the request, and a
//! reply is forwarded only for a request its worker holds.

use std::time::Duration;

use bytes::Bytes;
use domo_mdp::{client, worker, PeerId};

use super::util::{frames, id, service, Harness, Sent, EXPIRY, INTERVAL};
use crate::{BrokerConfig, PeerKind, ReplyDrops};

fn drops(h: &Harness) -> ReplyDrops {
    h.broker.stats().dropped_replies.clone()
}

fn stale(n: u64) -> ReplyDrops {
    ReplyDrops {
        stale_token: n,
        unknown_token: 0,
    }
}

fn unknown(n: u64) -> ReplyDrops {
    ReplyDrops {
        stale_token: 0,
        unknown_token: n,
    }
}

/// Keeps `worker` alive from now until `until` after the start, heartbeating every interval.
fn keep_alive(h: &mut Harness, worker: &str, until: Duration) {
    while h.elapsed() + INTERVAL < until {
        h.advance(INTERVAL);
        h.heartbeat(worker);
    }
    h.advance_to(until);
}

#[test]
fn each_request_gets_its_own_token_and_each_reply_reaches_its_own_client() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.ready("w2", "echo");
    for c in ["c1", "c2"] {
        h.broker.handle_message(
            h.now,
            id(c),
            client::encode_request(&service("echo"), [Bytes::from_static(b"hi")]),
        );
    }
    let to_w1 = h.broker.poll_outbound().unwrap();
    let to_w2 = h.broker.poll_outbound().unwrap();
    assert_eq!((to_w1.peer, to_w2.peer), (id("w1"), id("w2")));
    let (t1, t2) = (to_w1.frames[3].clone(), to_w2.frames[3].clone());
    assert_ne!(t1, t2);
    for token in [&t1, &t2] {
        assert_eq!(token.len(), 8);
        assert!(!token.starts_with(b"c"), "a client's id, not a token");
    }
    // Answered in the other order: each reply goes to the client its token names, exactly as
    // an MDP/0.1 client REPLY.
    let address = |t: &Bytes| PeerId::new(t.clone()).unwrap();
    let reply = |t: &Bytes, body: &'static [u8]| worker::encode_reply(&address(t), [body.into()]);
    h.broker.handle_message(h.now, id("w2"), reply(&t2, b"two"));
    h.broker.handle_message(h.now, id("w1"), reply(&t1, b"one"));
    let first = h.broker.poll_outbound().unwrap();
    let second = h.broker.poll_outbound().unwrap();
    assert_eq!((first.peer, first.kind), (id("c2"), PeerKind::Client));
    assert_eq!(first.frames, frames(&[b"", b"MDPC01", b"echo", b"two"]));
    assert_eq!((second.peer, second.kind), (id("c1"), PeerKind::Client));
    assert_eq!(second.frames, frames(&[b"", b"MDPC01", b"echo", b"one"]));
    assert_eq!(h.broker.poll_outbound(), None);
    assert_eq!(drops(&h), ReplyDrops::default());
    h.collect_now();
}

#[test]
fn late_reply_of_a_worker_declared_dead_is_dropped_and_the_client_gets_one_reply() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.request("c", "echo", "job");
    h.ready("w2", "echo");
    assert_eq!(h.take(), [Sent::request("w1", "c", "job")]);
    let first = h.token("w1", "c").unwrap();
    // w1 misses its heartbeats and is declared dead; its request goes to w2 with a new token.
    keep_alive(&mut h, "w2", EXPIRY);
    assert_eq!(h.take_traffic(), [Sent::request("w2", "c", "job")]);
    let second = h.token("w2", "c").unwrap();
    assert_ne!(first, second, "a re-dispatched request has a new token");
    // w1 was only slow: its late reply is dropped and counted, and it is told to re-register.
    h.reply("w1", "c", "late");
    assert_eq!(h.take(), [Sent::disconnect("w1")]);
    assert_eq!(drops(&h), stale(1));
    // The client gets exactly one reply, from w2.
    h.reply("w2", "c", "done");
    assert_eq!(h.take(), [Sent::reply("c", "echo", "done")]);
    assert_eq!(h.broker.stats().requests.replied, 1);
}

#[test]
fn late_reply_after_the_worker_registered_again_is_dropped_too() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.ready("w2", "echo");
    h.request("c", "echo", "job");
    h.take();
    h.close("w1");
    assert_eq!(h.take(), [Sent::request("w2", "c", "job")]);
    // Same routing id, new session, then the answer to the old request.
    h.ready("w1", "echo");
    h.reply("w1", "c", "late");
    assert_eq!(h.take(), [Sent::disconnect("w1")]);
    assert_eq!(drops(&h), stale(1));
    assert_eq!(h.broker.stats().disconnects_sent.unexpected_reply, 1);
    h.reply("w2", "c", "done");
    assert_eq!(h.take(), [Sent::reply("c", "echo", "done")]);
}

#[test]
fn late_reply_to_an_expired_request_is_dropped_and_counted() {
    let config = BrokerConfig {
        request_timeout: Duration::from_secs(1),
        ..BrokerConfig::default()
    };
    let mut h = Harness::with_config(config);
    h.ready("w1", "echo");
    h.request("c", "echo", "job");
    h.take();
    // w1 is declared dead; its request waits again, for no worker, and expires.
    h.advance(EXPIRY + Duration::from_secs(1));
    assert_eq!(h.broker.stats().worker_departures.expired, 1);
    assert_eq!(h.broker.stats().requests.dropped.expired, 1);
    h.take();
    h.reply("w1", "c", "too late");
    assert_eq!(h.take(), [Sent::disconnect("w1")]);
    assert_eq!(drops(&h), stale(1));
    assert_eq!(h.broker.stats().requests.replied, 0);
}

#[test]
fn a_second_reply_to_one_request_is_dropped() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.request("c", "echo", "job");
    h.reply("w1", "c", "once");
    h.reply("w1", "c", "twice");
    assert_eq!(
        h.take(),
        [
            Sent::request("w1", "c", "job"),
            Sent::reply("c", "echo", "once"),
            Sent::disconnect("w1"),
        ]
    );
    assert_eq!(drops(&h), stale(1));
}

#[test]
fn forged_tokens_are_dropped_and_counted_and_cost_the_worker_its_session() {
    let forged = [
        // A client's routing id, as a broker without tokens would have sent.
        id("c"),
        // Eight bytes, but not a token this broker handed out.
        PeerId::new(Bytes::from_static(&[0xff; 8])).unwrap(),
        PeerId::new(Bytes::from_static(&[0; 8])).unwrap(),
        // Too long.
        PeerId::new(Bytes::from_static(&[0; 9])).unwrap(),
    ];
    for (i, address) in forged.iter().enumerate() {
        let mut h = Harness::new();
        h.ready("w1", "echo");
        h.ready("w2", "echo");
        h.request("c", "echo", "job");
        h.reply_with("w1", address, "forged");
        assert_eq!(
            h.take(),
            [
                Sent::request("w1", "c", "job"),
                Sent::request("w2", "c", "job"),
                Sent::disconnect("w1"),
            ],
            "forgery {i}"
        );
        assert_eq!(drops(&h), unknown(1), "forgery {i}");
        h.reply("w2", "c", "real");
        assert_eq!(h.take(), [Sent::reply("c", "echo", "real")]);
    }
}

#[test]
fn a_worker_cannot_answer_another_workers_request() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.ready("w2", "echo");
    h.request("c1", "echo", "one");
    h.request("c2", "echo", "two");
    h.take();
    let token_of_w2 = h.token("w2", "c2").unwrap();
    h.reply_with("w1", &token_of_w2, "stolen");
    // Not forwarded; w1's own request waits again, for want of an idle worker.
    assert_eq!(h.take(), [Sent::disconnect("w1")]);
    assert_eq!(drops(&h), stale(1));
    h.reply("w2", "c2", "two");
    assert_eq!(
        h.take(),
        [
            Sent::reply("c2", "echo", "two"),
            Sent::request("w2", "c1", "one"),
        ]
    );
}

#[test]
fn reply_from_a_peer_that_never_registered_is_counted_by_its_token() {
    let mut h = Harness::new();
    h.reply("stranger", "c", "hello");
    assert_eq!(h.take(), [Sent::disconnect("stranger")]);
    assert_eq!(drops(&h), unknown(1));
    assert_eq!(h.broker.stats().disconnects_sent.unknown_worker, 1);
}

#[test]
fn reply_for_a_client_that_disconnected_is_dropped_as_before() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.request("c", "echo", "job");
    h.take();
    h.close("c");
    h.reply("w1", "c", "nobody listens");
    assert_eq!(h.take(), []);
    let stats = h.broker.stats();
    assert_eq!(stats.requests.dropped.client_gone, 1);
    assert_eq!(stats.dropped_replies, ReplyDrops::default());
    assert!(h.broker.in_flight.is_empty());
    // The worker answered correctly: it stays, idle.
    assert_eq!(stats.workers_idle, 1);
}

#[test]
fn tokens_are_forgotten_when_their_request_leaves_the_worker() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.ready("w2", "echo");
    for i in 0..100 {
        h.request("c", "echo", &i.to_string());
        let worker = if i % 2 == 0 { "w1" } else { "w2" };
        h.reply(worker, "c", "r");
    }
    assert!(h.broker.in_flight.is_empty());
    h.request("c", "echo", "held");
    h.request("c", "echo", "held");
    assert_eq!(h.broker.in_flight.len(), 2);
    h.close("w1");
    assert_eq!(
        h.broker.in_flight.len(),
        1,
        "w1's request is queued, tokenless"
    );
    h.disconnect("w2");
    assert!(h.broker.in_flight.is_empty());
    assert_eq!(h.broker.stats().queued_requests, 2);
}
