//! Admission: no request of a connected client is dropped for lack of room; clients are
//! paused at the limits and resumed at the low watermarks (three quarters), and a paused
//! client's queued requests still expire.

use std::time::Duration;

use bytes::Bytes;
use domo_mdp::client;

use super::util::{frames, id, service, Harness, Sent, NS};
use crate::{BrokerConfig, Flow, QueueLimits, REQUEST_OVERHEAD};

const TIMEOUT: Duration = BrokerConfig::DEFAULT_REQUEST_TIMEOUT;

fn limits(max_requests: usize, max_bytes: usize) -> QueueLimits {
    QueueLimits {
        max_requests,
        max_bytes,
    }
}

fn harness(service_queue: QueueLimits, client_limits: QueueLimits) -> Harness {
    Harness::with_config(BrokerConfig {
        service_queue,
        client_limits,
        ..BrokerConfig::default()
    })
}

/// Requests queued for `name`.
fn queued(h: &Harness, name: &str) -> usize {
    h.broker
        .service_gauges()
        .into_iter()
        .find(|g| g.name == service(name))
        .map_or(0, |g| g.queued)
}

/// Replies to whatever `worker` was last sent, and returns the client it was for.
fn answer(h: &mut Harness, worker: &str) -> Option<String> {
    let request = h.take().into_iter().rev().find_map(|sent| match sent {
        Sent::Request(w, client, body) if w == worker => Some((client, body)),
        _ => None,
    })?;
    h.reply(worker, &request.0, &request.1);
    Some(request.0)
}

#[test]
fn a_full_service_pauses_its_clients_and_resumes_them_at_the_low_watermark() {
    // Limit 8: closed at 8 queued, reopened at 6 (not at 7).
    let mut h = harness(limits(8, usize::MAX), BrokerConfig::DEFAULT_CLIENT_LIMITS);
    for i in 0..8 {
        h.request(&format!("c{i}"), "echo", "x");
    }
    assert_eq!(h.broker.stats().queued_requests, 8);
    h.request("late1", "echo", "y");
    h.request("late2", "echo", "z");
    assert!(h.is_paused("late1") && h.is_paused("late2"));
    assert_eq!(h.held("late1"), 1);
    assert_eq!(h.broker.stats().pauses.service_full, 2);
    assert_eq!(h.broker.stats().clients_paused, 2);
    // Clients of other services and mmi are not held up.
    h.request("other", "elsewhere", "w");
    assert!(!h.is_paused("other"));
    assert_eq!(h.worker_count("echo"), 0);
    h.ready("w1", "echo");
    // One dispatched: 7 queued, still above the low watermark.
    assert_eq!(queued(&h, "echo"), 7);
    assert!(h.is_paused("late1"));
    answer(&mut h, "w1");
    // Another dispatched: 6 queued, the low watermark: both resumed, both admitted (8).
    assert!(!h.is_paused("late1") && !h.is_paused("late2"));
    assert_eq!(queued(&h, "echo"), 8);
    assert_eq!(h.broker.stats().clients_paused, 0);
    let mut served = Vec::new();
    while let Some(client) = answer(&mut h, "w1") {
        served.push(client);
    }
    assert_eq!(served.len(), 9);
    assert_eq!(
        &served[7..],
        ["late1", "late2"],
        "deferred requests keep their order"
    );
    let stats = h.broker.stats();
    assert_eq!(stats.requests.dropped.total(), 0);
    assert_eq!(stats.requests.replied, 10);
    assert_eq!(stats.deferred, 2);
}

#[test]
fn a_thousand_clients_against_a_tiny_queue_are_all_served_in_arrival_order() {
    let mut h = harness(limits(8, usize::MAX), BrokerConfig::DEFAULT_CLIENT_LIMITS);
    h.ready("w1", "echo");
    h.ready("w2", "echo");
    let clients: Vec<String> = (0..1000).map(|i| format!("c{i:04}")).collect();
    for client in &clients {
        h.request(client, "echo", client);
    }
    let mut order = Vec::new();
    let mut replies = 0;
    while replies < 1000 {
        let requests: Vec<(String, String)> = h
            .take()
            .into_iter()
            .filter_map(|sent| match sent {
                Sent::Request(w, c, _) => Some((w, c)),
                Sent::Reply(..) => {
                    replies += 1;
                    None
                }
                _ => None,
            })
            .collect();
        assert!(
            !requests.is_empty() || replies == 1000,
            "stalled at {replies}"
        );
        for (worker, client) in requests {
            order.push(client.clone());
            h.reply(&worker, &client, &client);
        }
    }
    assert_eq!(order, clients);
    let stats = h.broker.stats();
    assert_eq!(stats.requests.dropped.total(), 0);
    assert_eq!(stats.requests.replied, 1000);
    assert_eq!(stats.clients_paused, 0);
    assert!(h.broker.clients.is_empty(), "nothing left per client");
}

#[test]
fn a_client_at_its_request_bound_alone_is_paused_until_three_quarters() {
    let mut h = harness(BrokerConfig::DEFAULT_SERVICE_QUEUE, limits(4, usize::MAX));
    for i in 0..10 {
        h.request("greedy", "slow", &i.to_string());
    }
    // Four accepted, then paused: the other six wait in the transport.
    assert_eq!(h.broker.stats().queued_requests, 4);
    assert!(h.is_paused("greedy"));
    assert_eq!(h.held("greedy"), 6);
    assert_eq!(h.broker.stats().pauses.client_limit, 1);
    assert!(
        h.flows
            .iter()
            .any(|f| matches!(f, Flow::Pause { client } if *client == id("greedy"))),
        "paused, not deferred: nothing was read past the bound"
    );
    // Another client of the same service goes on.
    h.request("polite", "slow", "p");
    assert!(!h.is_paused("polite"));
    assert_eq!(h.broker.stats().queued_requests, 5);
    h.ready("w1", "slow");
    // One answered: greedy has 3 left, the low watermark of 4: resumed, takes one more.
    answer(&mut h, "w1");
    assert_eq!(h.held("greedy"), 5);
    assert!(h.is_paused("greedy"), "back at its bound");
    let mut served = 0;
    while answer(&mut h, "w1").is_some() {
        served += 1;
    }
    assert_eq!(served + 1, 11);
    assert_eq!(h.broker.stats().requests.dropped.total(), 0);
    assert!(!h.is_paused("greedy"));
}

#[test]
fn a_client_bound_in_bytes_counts_the_overhead_of_each_request() {
    let bound = 4 * (100 + REQUEST_OVERHEAD);
    let mut h = harness(
        BrokerConfig::DEFAULT_SERVICE_QUEUE,
        limits(usize::MAX, bound),
    );
    let body = "b".repeat(100);
    for _ in 0..6 {
        h.request("c", "echo", &body);
    }
    assert_eq!(h.broker.stats().queued_requests, 4);
    assert!(h.is_paused("c"));
    assert_eq!(h.held("c"), 2);
}

#[test]
fn a_paused_clients_queued_requests_still_expire_and_it_resumes() {
    let mut h = harness(BrokerConfig::DEFAULT_SERVICE_QUEUE, limits(2, usize::MAX));
    h.request("c", "nobody", "1");
    h.advance(Duration::from_secs(1));
    h.request("c", "nobody", "2");
    h.request("c", "nobody", "3");
    assert!(h.is_paused("c"));
    assert_eq!(h.held("c"), 1);
    // The first expires at 30 s: one left, the low watermark of 2 is 1: resumed, "3" taken.
    h.advance(TIMEOUT - Duration::from_secs(1) - NS);
    assert!(h.is_paused("c"));
    h.advance(NS);
    assert_eq!(h.broker.stats().requests.dropped.expired, 1);
    assert!(h.is_paused("c"), "at its bound again with 2 and 3");
    assert_eq!(h.held("c"), 0);
    h.advance(TIMEOUT);
    assert_eq!(h.broker.stats().requests.dropped.expired, 3);
    assert!(!h.is_paused("c"));
    assert!(h.broker.clients.is_empty());
}

#[test]
fn total_limits_pause_only_requests_that_would_queue() {
    let config = BrokerConfig {
        total_queue: limits(4, usize::MAX),
        ..BrokerConfig::default()
    };
    let mut h = Harness::with_config(config);
    h.ready("w", "fast");
    for i in 0..4 {
        h.request(&format!("c{i}"), &format!("s{i}"), "x");
    }
    h.request("queuer", "s9", "x");
    assert!(h.is_paused("queuer"));
    // A request an idle worker can take at once grows no queue: served.
    h.request("lucky", "fast", "x");
    assert_eq!(h.take_traffic(), [Sent::request("w", "lucky", "x")]);
    h.reply("w", "lucky", "x");
    assert!(!h.is_paused("lucky"));
    // mmi is answered too.
    assert_eq!(h.worker_count("fast"), 1);
    // Three queued requests expire: down to 1, under the low watermark of 4 (3).
    h.advance(TIMEOUT);
    assert!(!h.is_paused("queuer"));
    assert_eq!(h.broker.stats().queued_requests, 1);
}

#[test]
fn replies_a_client_does_not_read_wait_in_order_and_count_against_its_bound() {
    let mut h = harness(BrokerConfig::DEFAULT_SERVICE_QUEUE, limits(3, usize::MAX));
    h.ready("w1", "echo");
    h.request("c", "echo", "1");
    h.reply("w1", "c", "r1");
    assert_eq!(
        h.take_traffic(),
        [
            Sent::request("w1", "c", "1"),
            Sent::reply("c", "echo", "r1")
        ]
    );
    // The transport refuses reply 1 (as the shell does on `Full`): it comes back, the
    // client is paused.
    let reply = |body: &str| client::encode_reply(&service("echo"), [Bytes::from(body.to_owned())]);
    h.send_blocked("c", reply("r1"));
    assert!(h.is_paused("c"));
    assert_eq!(h.broker.stats().pauses.reply_backlog, 1);
    // Requests read before the pause, and their replies, queue up behind it.
    h.broker
        .handle_message(h.now, id("c"), frames(&[b"", b"MDPC01", b"echo", b"2"]));
    h.collect_now();
    assert_eq!(h.held("c"), 1, "deferred: the client is paused");
    assert_eq!(h.take_traffic(), []);
    h.writable("c");
    assert_eq!(
        h.take_traffic(),
        [
            Sent::reply("c", "echo", "r1"),
            Sent::request("w1", "c", "2")
        ],
        "the waiting reply first, then request 2, taken on resume"
    );
    assert!(!h.is_paused("c"));
    assert_eq!(h.held("c"), 0);
    h.reply("w1", "c", "r2");
    assert_eq!(h.take_traffic(), [Sent::reply("c", "echo", "r2")]);
    assert_eq!(h.broker.stats().requests.dropped.total(), 0);
}

#[test]
fn a_backlog_of_a_client_that_leaves_is_dropped_and_counted() {
    let mut h = Harness::new();
    let reply = client::encode_reply(&service("echo"), [Bytes::from_static(b"r")]);
    h.send_blocked("c", reply.clone());
    h.send_blocked("c", reply);
    assert!(h.is_paused("c"));
    h.close("c");
    assert_eq!(h.broker.stats().replies_to_gone_clients, 2);
    assert_eq!(h.broker.stats().clients_paused, 0);
    assert!(h.broker.clients.is_empty());
}

#[test]
fn queued_requests_of_a_client_that_left_are_not_dispatched() {
    let mut h = Harness::new();
    h.request("gone", "echo", "1");
    h.request("stays", "echo", "2");
    h.close("gone");
    h.ready("w1", "echo");
    assert_eq!(h.take(), [Sent::request("w1", "stays", "2")]);
    assert_eq!(h.broker.stats().requests.dropped.client_gone, 1);
}

#[test]
fn workers_are_announced_to_the_transport() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    assert!(h.exempt.contains(&id("w1")));
}

#[test]
fn raising_the_limits_on_reload_resumes_whoever_now_fits() {
    let mut h = harness(limits(2, usize::MAX), limits(2, usize::MAX));
    h.request("a", "echo", "1");
    h.request("a", "echo", "2");
    h.request("b", "echo", "3");
    assert!(h.is_paused("a") && h.is_paused("b"));
    let mut config = h.broker.config().clone();
    config.service_queue = BrokerConfig::DEFAULT_SERVICE_QUEUE;
    config.client_limits = BrokerConfig::DEFAULT_CLIENT_LIMITS;
    h.broker.reconfigure(config).unwrap();
    h.collect_now();
    assert!(!h.is_paused("a") && !h.is_paused("b"));
    assert_eq!(h.broker.stats().queued_requests, 3);
}
