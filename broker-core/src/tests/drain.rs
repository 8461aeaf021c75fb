//! Draining before shutdown and the per-service events for metrics.

use std::time::Duration;

use super::util::{service, Harness, Sent, MS};
use crate::{DropReason, Event};

#[test]
fn drain_drops_queued_and_new_requests_but_answers_those_in_flight() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.request("c1", "echo", "held");
    h.request("c2", "echo", "queued");
    assert_eq!(h.take(), [Sent::request("w1", "c1", "held")]);
    h.broker.begin_drain(h.now);
    assert!(h.broker.is_draining());
    assert!(!h.broker.is_drained());
    assert_eq!(h.broker.stats().queued_requests, 0);
    h.request("c3", "echo", "too late");
    assert_eq!(h.broker.stats().requests.dropped.shutdown, 2);
    assert_eq!(h.worker_count("echo"), 1, "mmi is still answered");
    h.advance(10 * MS);
    h.reply("w1", "c1", "done");
    assert_eq!(h.take(), [Sent::reply("c1", "echo", "done")]);
    assert!(h.broker.is_drained());
    h.broker.disconnect_workers(h.now);
    h.collect_now();
    assert_eq!(h.take(), [Sent::disconnect("w1")]);
    assert_eq!(h.broker.stats().worker_departures.shutdown, 1);
    assert_eq!(h.broker.stats().workers_idle, 0);
}

#[test]
fn disconnecting_workers_drops_what_they_still_hold_without_redispatch() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.ready("w2", "echo");
    h.request("c1", "echo", "slow");
    h.take();
    h.broker.begin_drain(h.now);
    h.broker.disconnect_workers(h.now);
    h.collect_now();
    assert_eq!(h.take(), [Sent::disconnect("w1"), Sent::disconnect("w2")]);
    let stats = h.broker.stats();
    assert_eq!(stats.requests.dropped.shutdown, 1);
    assert_eq!(stats.requests.redispatched, 0);
    assert_eq!(stats.disconnects_sent.shutdown, 2);
}

#[test]
fn a_request_losing_its_worker_during_drain_goes_to_an_idle_worker_or_is_dropped() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.ready("w2", "echo");
    h.ready("w3", "echo");
    h.request("c1", "echo", "a");
    h.request("c2", "echo", "b");
    h.take();
    h.broker.begin_drain(h.now);
    h.close("w1");
    assert_eq!(h.take(), [Sent::request("w3", "c1", "a")]);
    h.close("w2");
    assert_eq!(h.take(), []);
    assert_eq!(h.broker.stats().requests.dropped.shutdown, 1);
    assert!(!h.broker.is_drained());
    h.reply("w3", "c1", "a");
    assert!(h.broker.is_drained());
}

#[test]
fn events_carry_service_and_exact_durations() {
    let mut h = Harness::new();
    h.broker.record_events(true);
    h.request("c1", "echo", "x");
    h.advance(40 * MS);
    h.ready("w1", "echo");
    h.advance(60 * MS);
    h.reply("w1", "c1", "y");
    h.request("c2", "nobody", "z");
    h.advance(Duration::from_secs(30));
    let echo = service("echo");
    let events: Vec<Event> = std::iter::from_fn(|| h.broker.poll_event()).collect();
    assert_eq!(
        events,
        [
            Event::WorkerRegistered {
                service: echo.clone()
            },
            Event::Dispatched {
                service: echo.clone(),
                queue_wait: 40 * MS
            },
            Event::Replied {
                service: echo,
                duration: 100 * MS
            },
            Event::Dropped {
                service: service("nobody"),
                reason: DropReason::UnknownService
            },
        ]
    );
}

#[test]
fn reconfigure_applies_to_workers_registered_afterwards() {
    let mut h = Harness::new();
    h.ready("old", "echo");
    let mut config = h.broker.config().clone();
    config.heartbeat.interval = 100 * MS;
    h.broker.reconfigure(config).unwrap();
    h.ready("new", "echo");
    h.take();
    h.advance(100 * MS);
    assert_eq!(h.take(), [Sent::heartbeat("new")]);
    let mut bad = h.broker.config().clone();
    bad.heartbeat.liveness = 0;
    assert!(h.broker.reconfigure(bad).is_err());
    assert_eq!(h.broker.config().heartbeat.liveness, 3);
}
