//! Service queues: expiry at exactly `request_timeout`, limits in count and bytes, lazy
//! services that leave nothing behind.

use std::time::Duration;

use super::util::{Harness, Sent, NS};
use crate::{BrokerConfig, QueueLimits};

const TIMEOUT: Duration = BrokerConfig::DEFAULT_REQUEST_TIMEOUT;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn with_service_limits(max_requests: usize, max_bytes: usize) -> Harness {
    let config = BrokerConfig {
        service_queue: QueueLimits {
            max_requests,
            max_bytes,
        },
        ..BrokerConfig::default()
    };
    Harness::with_config(config)
}

#[test]
fn queued_request_expires_at_exactly_request_timeout() {
    let mut h = Harness::new();
    h.request("c", "nobody", "x");
    assert_eq!(h.broker.poll_timeout(), Some(h.now + TIMEOUT));
    h.advance(TIMEOUT - NS);
    assert_eq!(h.broker.stats().queued_requests, 1);
    h.advance(NS);
    let stats = h.broker.stats();
    assert_eq!(stats.queued_requests, 0);
    assert_eq!(stats.requests.dropped.expired, 1);
    assert_eq!(stats.services, 0, "the service entry is gone");
    assert_eq!(h.broker.poll_timeout(), None);
    h.ready("w1", "nobody");
    assert_eq!(h.take(), []);
}

#[test]
fn each_queued_request_expires_on_its_own_deadline() {
    let mut h = Harness::new();
    for t in [0, 10, 20] {
        h.advance_to(secs(t));
        h.request("c", "nobody", "x");
    }
    for (t, left) in [(30, 2), (40, 1), (50, 0)] {
        h.advance_to(secs(t) - NS);
        assert_eq!(h.broker.stats().queued_requests, left + 1);
        h.advance(NS);
        assert_eq!(h.broker.stats().queued_requests, left);
    }
}

#[test]
fn requests_waiting_for_busy_workers_expire_too() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.request("c1", "echo", "long job");
    h.advance_to(secs(1));
    h.request("c2", "echo", "waits");
    for t in 2..=31 {
        h.advance_to(secs(t));
        h.heartbeat("w1");
    }
    assert_eq!(h.broker.stats().requests.dropped.expired, 1);
    h.reply("w1", "c1", "done");
    assert_eq!(
        h.take_traffic().last(),
        Some(&Sent::reply("c1", "echo", "done"))
    );
    assert_eq!(h.broker.stats().workers_idle, 1);
}

#[test]
fn a_requeued_request_waits_a_full_timeout_again_and_fresh_ones_still_expire() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.request("c1", "echo", "held");
    h.advance_to(secs(5));
    h.request("c2", "echo", "fresh");
    for t in [7, 9, 11, 13, 15, 17, 19] {
        h.advance_to(secs(t));
        h.heartbeat("w1");
    }
    h.advance_to(secs(20));
    h.close("w1");
    // Queue: c1 (re-queued at 20 s, expires at 50 s) ahead of c2 (expires at 35 s).
    h.advance_to(secs(35) - NS);
    assert_eq!(h.broker.stats().queued_requests, 2);
    h.advance(NS);
    assert_eq!(h.broker.stats().queued_requests, 1);
    h.advance_to(secs(50) - NS);
    assert_eq!(h.broker.stats().queued_requests, 1);
    h.advance(NS);
    assert_eq!(h.broker.stats().queued_requests, 0);
    assert_eq!(h.broker.stats().requests.dropped.expired, 2);
}

#[test]
fn a_full_service_queue_defers_new_requests_by_count_and_drops_none() {
    let mut h = with_service_limits(2, usize::MAX);
    for body in ["1", "2", "3"] {
        h.request("c", "echo", body);
    }
    h.request("c", "other", "4");
    let stats = h.broker.stats();
    assert_eq!(stats.requests.dropped.total(), 0);
    assert_eq!(stats.queued_requests, 2);
    assert_eq!(stats.deferred, 1);
    // The client is paused: its third request and what it sent after it wait in the
    // transport, in order.
    assert!(h.is_paused("c"));
    assert_eq!(h.held("c"), 2);
    h.ready("w1", "echo");
    h.reply("w1", "c", "r1");
    h.reply("w1", "c", "r2");
    h.reply("w1", "c", "r3");
    assert_eq!(
        h.take(),
        [
            Sent::request("w1", "c", "1"),
            Sent::reply("c", "echo", "r1"),
            Sent::request("w1", "c", "2"),
            Sent::reply("c", "echo", "r2"),
            Sent::request("w1", "c", "3"),
            Sent::reply("c", "echo", "r3"),
        ]
    );
    assert!(!h.is_paused("c"));
    assert_eq!(h.broker.stats().queued_requests, 1, "the request for other");
}

#[test]
fn a_full_service_queue_defers_new_requests_by_body_bytes() {
    let mut h = with_service_limits(usize::MAX, 10);
    h.request("c1", "echo", "12345");
    h.request("c2", "echo", "123|456");
    h.request("c3", "echo", "12|345");
    let stats = h.broker.stats();
    assert_eq!(stats.requests.dropped.total(), 0);
    // The second request takes the queue past its limit (a request is never refused by an
    // open queue); the third waits.
    assert_eq!((stats.queued_requests, stats.queued_bytes), (2, 11));
    assert!(h.is_paused("c3") && !h.is_paused("c1") && !h.is_paused("c2"));
}

#[test]
fn total_limits_span_services_and_create_no_service_when_full() {
    let config = BrokerConfig {
        total_queue: QueueLimits {
            max_requests: 2,
            max_bytes: usize::MAX,
        },
        ..BrokerConfig::default()
    };
    let mut h = Harness::with_config(config);
    h.request("c1", "a", "1");
    h.request("c2", "b", "2");
    h.request("c3", "c", "3");
    let stats = h.broker.stats();
    assert_eq!(stats.requests.dropped.total(), 0);
    assert_eq!(stats.services, 2);
    assert!(h.is_paused("c3"));
    assert_eq!(stats.pauses.total_full, 1);
}

#[test]
fn a_request_too_big_for_an_empty_queue_is_still_taken() {
    let mut h = with_service_limits(10, 3);
    h.request("c", "echo", "1234");
    assert_eq!(h.broker.stats().requests.dropped.total(), 0);
    assert_eq!(h.broker.stats().queued_bytes, 4);
    h.ready("w1", "echo");
    assert_eq!(h.take(), [Sent::request("w1", "c", "1234")]);
}

#[test]
fn an_idle_worker_takes_a_request_whatever_the_queue_limits() {
    let mut h = with_service_limits(0, 0);
    h.ready("w1", "echo");
    h.request("c", "echo", "big body");
    assert_eq!(h.take(), [Sent::request("w1", "c", "big body")]);
}

#[test]
fn an_async_client_may_queue_100000_requests_before_reading_any_reply() {
    let mut h = Harness::new();
    h.checking = false;
    let body = "x".repeat(64);
    for _ in 0..100_000 {
        h.request("async", "echo", &body);
    }
    assert_eq!(h.broker.stats().queued_requests, 100_000);
    h.ready("w1", "echo");
    for _ in 0..100_000 {
        h.reply("w1", "async", "y");
    }
    let stats = h.broker.stats();
    assert_eq!(stats.requests.replied, 100_000);
    assert_eq!(stats.requests.dropped.total(), 0);
    h.broker.check_invariants(h.now);
}

#[test]
fn with_a_zero_timeout_requests_never_wait() {
    let config = BrokerConfig {
        request_timeout: Duration::ZERO,
        ..BrokerConfig::default()
    };
    let mut h = Harness::with_config(config);
    h.request("c", "echo", "x");
    h.ready("w1", "echo");
    assert_eq!(h.take(), []);
    assert_eq!(h.broker.stats().requests.dropped.expired, 1);
    h.request("c", "echo", "y");
    assert_eq!(h.take(), [Sent::request("w1", "c", "y")]);
}

#[test]
fn requests_for_arbitrary_names_leave_nothing_behind() {
    let mut h = Harness::new();
    for i in 0..1000 {
        h.request("c", &format!("no-such-service-{i}"), "x");
    }
    assert_eq!(h.broker.stats().services, 1000);
    h.advance(TIMEOUT);
    assert_eq!(h.broker.stats().services, 0);
    assert!(h.broker.services.is_empty());
    assert_eq!(h.broker.timers.len(), 0);
}
