//! Worker credit: a worker that announced credit N holds up to N requests at once; workers
//! are chosen by free credit, least recently used among equals; a lost worker's requests all
//! go again.

use std::time::Duration;

use super::util::{Harness, Sent, EXPIRY, INTERVAL};
use crate::{BrokerConfig, ReplyDrops};

#[test]
fn a_credit_4_worker_takes_four_requests_and_a_reply_frees_one() {
    let mut h = Harness::new();
    h.ready_with_credit("w", "echo", 4);
    for c in ["c1", "c2", "c3", "c4", "c5"] {
        h.request(c, "echo", c);
    }
    assert_eq!(
        h.take(),
        [
            Sent::request("w", "c1", "c1"),
            Sent::request("w", "c2", "c2"),
            Sent::request("w", "c3", "c3"),
            Sent::request("w", "c4", "c4"),
        ]
    );
    let stats = h.broker.stats();
    assert_eq!((stats.queued_requests, stats.requests_at_workers), (1, 4));
    assert_eq!((stats.workers_idle, stats.workers_busy), (0, 1));
    // Replies in any order; the first frees a credit and the queued request goes out at once.
    h.reply("w", "c3", "r3");
    assert_eq!(
        h.take(),
        [
            Sent::reply("c3", "echo", "r3"),
            Sent::request("w", "c5", "c5")
        ]
    );
    for c in ["c1", "c5", "c2", "c4"] {
        h.reply("w", c, c);
    }
    assert_eq!(
        h.take(),
        [
            Sent::reply("c1", "echo", "c1"),
            Sent::reply("c5", "echo", "c5"),
            Sent::reply("c2", "echo", "c2"),
            Sent::reply("c4", "echo", "c4"),
        ]
    );
    let stats = h.broker.stats();
    assert_eq!(stats.requests.replied, 5);
    assert_eq!((stats.workers_idle, stats.workers_busy), (1, 0));
    assert_eq!(stats.requests_at_workers, 0);
}

#[test]
fn the_worker_with_most_free_credit_goes_first_then_the_longest_waiting() {
    let mut h = Harness::new();
    h.ready("a", "echo");
    h.ready_with_credit("b", "echo", 2);
    h.ready_with_credit("c", "echo", 2);
    // b and c have 2 free, a has 1: b (waited longer than c), then c (now 2 free against
    // b's 1), then a, b and c at 1 free each in the order they were last used or freed.
    for n in 1..=5 {
        h.request(&format!("k{n}"), "echo", "x");
    }
    assert_eq!(
        h.take(),
        [
            Sent::request("b", "k1", "x"),
            Sent::request("c", "k2", "x"),
            Sent::request("a", "k3", "x"),
            Sent::request("b", "k4", "x"),
            Sent::request("c", "k5", "x"),
        ]
    );
    // Everyone is full. c frees one, then a: c was freed first, so it waited longer.
    h.reply("c", "k2", "r");
    h.reply("a", "k3", "r");
    h.take();
    h.request("k6", "echo", "x");
    h.request("k7", "echo", "x");
    h.request("k8", "echo", "x");
    assert_eq!(
        h.take(),
        [Sent::request("c", "k6", "x"), Sent::request("a", "k7", "x")]
    );
    assert_eq!(h.broker.stats().queued_requests, 1);
    // c's next reply frees a credit that the queued k8 takes at once.
    h.reply("c", "k5", "r");
    assert_eq!(
        h.take(),
        [
            Sent::reply("k5", "echo", "r"),
            Sent::request("c", "k8", "x")
        ]
    );
    // c frees one credit, b both of its, after c: b has the most free credit, so it goes
    // first although c has waited longer; then c (one free, waited longer than b), then b.
    h.reply("c", "k6", "r");
    h.reply("b", "k4", "r");
    h.reply("b", "k1", "r");
    h.take();
    for n in 9..=11 {
        h.request(&format!("k{n}"), "echo", "x");
    }
    assert_eq!(
        h.take(),
        [
            Sent::request("b", "k9", "x"),
            Sent::request("c", "k10", "x"),
            Sent::request("b", "k11", "x"),
        ]
    );
}

#[test]
fn credit_1_workers_keep_plain_lru_order() {
    // The same sequence with and without announcing credit 1 gives the same traffic.
    let run = |announce: bool| {
        let mut h = Harness::new();
        for w in ["w1", "w2", "w3"] {
            if announce {
                h.ready_with_credit(w, "echo", 1);
            } else {
                h.ready(w, "echo");
            }
        }
        let mut traffic = Vec::new();
        for n in 0..4 {
            h.request(&format!("c{n}"), "echo", "x");
        }
        traffic.extend(h.take());
        h.reply("w2", "c1", "r");
        h.reply("w1", "c0", "r");
        traffic.extend(h.take());
        h.request("c4", "echo", "x");
        h.request("c5", "echo", "x");
        traffic.extend(h.take());
        traffic
    };
    let plain = run(false);
    assert_eq!(plain, run(true));
    assert_eq!(
        plain,
        [
            Sent::request("w1", "c0", "x"),
            Sent::request("w2", "c1", "x"),
            Sent::request("w3", "c2", "x"),
            Sent::reply("c1", "echo", "r"),
            Sent::request("w2", "c3", "x"),
            Sent::reply("c0", "echo", "r"),
            Sent::request("w1", "c4", "x"),
        ]
    );
}

#[test]
fn every_request_of_a_lost_worker_goes_again_and_each_client_gets_one_reply() {
    let mut h = Harness::new();
    h.ready_with_credit("w1", "echo", 3);
    for c in ["c1", "c2", "c3"] {
        h.request(c, "echo", c);
    }
    h.take();
    let old: Vec<_> = ["c1", "c2", "c3"]
        .iter()
        .map(|c| h.token("w1", c).unwrap())
        .collect();
    h.ready_with_credit("w2", "echo", 2);
    h.ready("w3", "echo");
    // w1 falls silent and is declared dead: its three requests go again in their order,
    // each under a new token: to w2 (two free), then w3 (waited longer than w2 among those
    // with one free), then w2.
    keep_alive_all(&mut h, &["w2", "w3"], EXPIRY);
    assert_eq!(
        h.take_traffic(),
        [
            Sent::request("w2", "c1", "c1"),
            Sent::request("w3", "c2", "c2"),
            Sent::request("w2", "c3", "c3"),
        ]
    );
    assert_eq!(h.broker.stats().requests.redispatched, 3);
    assert_eq!(h.broker.stats().worker_departures.expired, 1);
    for (c, token) in ["c1", "c2", "c3"].iter().zip(&old) {
        let new = h.token("w2", c).or_else(|| h.token("w3", c)).unwrap();
        assert_ne!(&new, token, "a re-dispatched request has a new token");
    }
    // w1 was only slow: its first late reply is dropped and gets DISCONNECT, and the broker
    // ignores the rest of what it sends.
    h.reply_with("w1", &old[0], "late");
    assert_eq!(h.take(), [Sent::disconnect("w1")]);
    h.reply_with("w1", &old[1], "late");
    h.reply_with("w1", &old[2], "late");
    assert_eq!(h.take(), []);
    let drops = &h.broker.stats().dropped_replies;
    assert_eq!(
        *drops,
        ReplyDrops {
            stale_token: 1,
            unknown_token: 0
        }
    );
    assert_eq!(h.broker.stats().ignored_after_disconnect, 2);
    h.reply("w3", "c2", "two");
    h.reply("w2", "c3", "three");
    h.reply("w2", "c1", "one");
    assert_eq!(
        h.take(),
        [
            Sent::reply("c2", "echo", "two"),
            Sent::reply("c3", "echo", "three"),
            Sent::reply("c1", "echo", "one"),
        ]
    );
    assert_eq!(h.broker.stats().requests.replied, 3);
}

#[test]
fn a_worker_that_disconnects_or_closes_puts_back_all_it_holds() {
    let mut h = Harness::new();
    h.ready_with_credit("w1", "echo", 2);
    h.request("c1", "echo", "a");
    h.request("c2", "echo", "b");
    h.take();
    h.disconnect("w1");
    assert_eq!(h.broker.stats().queued_requests, 2);
    h.ready_with_credit("w2", "echo", 4);
    assert_eq!(
        h.take(),
        [
            Sent::request("w2", "c1", "a"),
            Sent::request("w2", "c2", "b")
        ]
    );
    h.close("w2");
    assert_eq!(h.broker.stats().queued_requests, 2);
    assert_eq!(h.broker.stats().requests.redispatched, 4);
}

#[test]
fn requests_of_a_lost_worker_are_dropped_when_redispatch_is_off() {
    let config = BrokerConfig {
        redispatch: false,
        ..BrokerConfig::default()
    };
    let mut h = Harness::with_config(config);
    h.ready_with_credit("w", "echo", 3);
    for c in ["c1", "c2", "c3"] {
        h.request(c, "echo", "x");
    }
    h.take();
    h.close("w");
    let stats = h.broker.stats();
    assert_eq!(stats.requests.dropped.worker_lost, 3);
    assert_eq!((stats.queued_requests, stats.requests_at_workers), (0, 0));
}

#[test]
fn several_requests_of_one_client_at_one_worker_are_charged_each() {
    let mut h = Harness::new();
    h.ready_with_credit("w", "echo", 4);
    for n in 0..3 {
        h.request("c", "echo", &format!("r{n}"));
    }
    assert_eq!(h.take().len(), 3);
    // The harness checks the client's charges after every input; here the replies answer
    // the requests, not merely the client, each one exactly once.
    let tokens: Vec<_> = h.broker.in_flight.keys().copied().collect();
    assert_eq!(tokens.len(), 3);
    let mut sorted = tokens.clone();
    sorted.sort();
    for token in sorted.iter().rev() {
        h.reply_with("w", &token.to_address().unwrap(), "done");
    }
    assert_eq!(h.take().len(), 3);
    assert_eq!(h.broker.stats().requests.replied, 3);
    assert!(
        h.broker.clients.is_empty(),
        "client charged after its replies"
    );
}

#[test]
fn the_drain_waits_for_every_request_a_worker_holds() {
    let mut h = Harness::new();
    h.ready_with_credit("w", "echo", 2);
    h.request("c1", "echo", "x");
    h.request("c2", "echo", "x");
    h.take();
    h.broker.begin_drain(h.now);
    h.collect_now();
    h.reply("w", "c1", "r");
    assert!(!h.broker.is_drained());
    h.reply("w", "c2", "r");
    assert!(h.broker.is_drained());
}

/// Keeps several workers alive until `until` after the start.
fn keep_alive_all(h: &mut Harness, workers: &[&str], until: Duration) {
    while h.elapsed() + INTERVAL < until {
        h.advance(INTERVAL);
        for worker in workers {
            h.heartbeat(worker);
        }
    }
    h.advance_to(until);
}

#[test]
fn a_worker_with_credit_left_counts_as_busy_while_it_holds_a_request() {
    let mut h = Harness::new();
    h.ready_with_credit("w1", "echo", 2);
    h.ready("w2", "echo");
    h.request("c1", "echo", "x");
    assert_eq!(h.take(), [Sent::request("w1", "c1", "x")]);
    let gauges = h.broker.service_gauges();
    assert_eq!(gauges.len(), 1);
    let g = &gauges[0];
    assert_eq!((g.queued, g.idle, g.busy), (0, 1, 1));
    // Credit: 2 + 1 in all, one request held.
    assert_eq!((g.credit, g.credit_used), (3, 1));
    let stats = h.broker.stats();
    assert_eq!((stats.workers_idle, stats.workers_busy), (1, 1));
    // w1 still waits with one free credit, behind w2 (which waited longer).
    h.request("c2", "echo", "x");
    h.request("c3", "echo", "x");
    assert_eq!(
        h.take(),
        [
            Sent::request("w2", "c2", "x"),
            Sent::request("w1", "c3", "x")
        ]
    );
    let g = &h.broker.service_gauges()[0];
    assert_eq!((g.queued, g.idle, g.busy), (0, 0, 2));
    assert_eq!((g.credit, g.credit_used), (3, 3));
}
