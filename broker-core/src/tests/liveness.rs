//! Heartbeats to every worker, exact expiry, and re-dispatch of the requests that lost their
//! worker.

use std::time::Duration;

use super::util::{Harness, Sent, EXPIRY, INTERVAL, MS, NS};
use crate::BrokerConfig;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn idle_worker_gets_a_heartbeat_every_interval() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    for t in [2000, 4000, 6000] {
        h.advance_to(ms(t));
        h.heartbeat("w1");
    }
    h.advance_to(ms(7000));
    assert_eq!(
        h.take_timed(),
        [
            (INTERVAL, Sent::heartbeat("w1")),
            (2 * INTERVAL, Sent::heartbeat("w1")),
        ]
    );
}

#[test]
fn no_heartbeat_within_an_interval_of_other_traffic() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.advance_to(ms(1000));
    h.request("c", "echo", "x");
    h.advance_to(ms(1200));
    h.reply("w1", "c", "y");
    h.advance_to(ms(6500));
    let heartbeats: Vec<Duration> = h
        .take_timed()
        .into_iter()
        .filter(|(_, sent)| matches!(sent, Sent::Heartbeat(_)))
        .map(|(at, _)| at)
        .collect();
    assert_eq!(heartbeats, [ms(3500), ms(6000)]);
}

#[test]
fn silent_worker_expires_exactly_after_liveness_intervals() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.advance_to(ms(1000));
    h.heartbeat("w1");
    h.advance_to(ms(1000) + EXPIRY - NS);
    assert_eq!(h.worker_count("echo"), 1);
    h.advance(NS);
    assert_eq!(h.worker_count("echo"), 0);
    assert_eq!(h.broker.stats().worker_departures.expired, 1);
    assert_eq!(h.broker.stats().services, 0);
}

#[test]
fn silent_worker_is_heartbeated_until_it_expires_then_sent_nothing() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.advance_to(ms(60_000));
    // At 7500 ms the worker expires; a third heartbeat at that instant would be pointless.
    assert_eq!(
        h.take_timed(),
        [
            (INTERVAL, Sent::heartbeat("w1")),
            (2 * INTERVAL, Sent::heartbeat("w1")),
        ]
    );
}

#[test]
fn any_command_counts_as_life() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.advance_to(ms(7000));
    h.request("c", "echo", "x");
    h.advance_to(ms(7400));
    h.reply("w1", "c", "y");
    h.advance_to(ms(7400) + EXPIRY - NS);
    assert_eq!(h.worker_count("echo"), 1);
    h.advance(NS);
    assert_eq!(h.worker_count("echo"), 0);
}

#[test]
fn expired_worker_behind_a_live_one_is_purged() {
    // zguide #579: the reference purge stops at the first live worker in the idle list.
    let mut h = Harness::new();
    h.ready("live1", "echo");
    h.advance_to(ms(1000));
    h.ready("dead", "echo");
    h.advance_to(ms(2000));
    h.ready("live2", "echo");
    for t in (2000..=8000).step_by(1000) {
        h.advance_to(ms(t));
        h.heartbeat("live1");
        h.heartbeat("live2");
    }
    h.advance_to(ms(1000) + EXPIRY - NS);
    assert_eq!(h.worker_count("echo"), 3);
    h.advance(NS);
    assert_eq!(h.worker_count("echo"), 2);
    assert_eq!(h.broker.stats().worker_departures.expired, 1);
    for c in ["c1", "c2", "c3"] {
        h.request(c, "echo", c);
    }
    assert_eq!(
        h.take_traffic(),
        [
            Sent::request("live1", "c1", "c1"),
            Sent::request("live2", "c2", "c2"),
        ]
    );
}

#[test]
fn busy_worker_is_heartbeated_expires_and_its_request_goes_to_another_worker() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.request("c", "echo", "job");
    assert_eq!(h.take(), [Sent::request("w1", "c", "job")]);
    h.advance_to(ms(1000));
    h.ready("w2", "echo");
    for t in [2000, 4000, 6000] {
        h.advance_to(ms(t));
        h.heartbeat("w2");
    }
    h.advance_to(EXPIRY - NS);
    let sent = h.take_timed();
    assert!(
        sent.contains(&(INTERVAL, Sent::heartbeat("w1"))),
        "{sent:?}"
    );
    assert!(sent.contains(&(2 * INTERVAL, Sent::heartbeat("w1"))));
    assert!(!sent.iter().any(|(_, s)| matches!(s, Sent::Request(..))));
    h.advance(NS);
    assert_eq!(h.take_timed(), [(EXPIRY, Sent::request("w2", "c", "job"))]);
    h.reply("w2", "c", "done");
    assert_eq!(h.take(), [Sent::reply("c", "echo", "done")]);
    let stats = h.broker.stats();
    assert_eq!(stats.requests.redispatched, 1);
    assert_eq!(stats.requests.dispatched, 2);
}

#[test]
fn late_timeout_never_hands_a_request_to_an_expired_worker() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    // The shell oversleeps: the next input comes long after w1's expiry.
    h.now += ms(8000);
    h.request("c", "echo", "x");
    assert_eq!(h.take(), []);
    assert_eq!(h.broker.stats().worker_departures.expired, 1);
    assert_eq!(h.broker.stats().queued_requests, 1);
}

#[test]
fn closed_connection_while_busy_puts_the_request_at_the_head_of_the_queue() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.request("c1", "echo", "first");
    h.request("c2", "echo", "second");
    h.request("c3", "echo", "third");
    h.take();
    h.close("w1");
    assert_eq!(h.take(), [], "nothing is sent to a closed peer");
    assert_eq!(h.broker.stats().worker_departures.connection_closed, 1);
    h.ready("w2", "echo");
    assert_eq!(h.take(), [Sent::request("w2", "c1", "first")]);
    h.reply("w2", "c1", "1");
    assert_eq!(
        h.take(),
        [
            Sent::reply("c1", "echo", "1"),
            Sent::request("w2", "c2", "second")
        ]
    );
}

#[test]
fn disconnect_while_busy_redispatches_at_once_to_an_idle_worker() {
    let mut h = Harness::new();
    h.ready("w1", "echo");
    h.ready("w2", "echo");
    h.request("c", "echo", "job");
    assert_eq!(h.take(), [Sent::request("w1", "c", "job")]);
    h.disconnect("w1");
    assert_eq!(h.take(), [Sent::request("w2", "c", "job")]);
    assert_eq!(h.broker.stats().worker_departures.disconnect, 1);
}

#[test]
fn poison_request_is_dropped_after_max_redispatch() {
    let mut h = Harness::new();
    assert_eq!(h.broker.config().max_redispatch, 2);
    h.request("c", "echo", "poison");
    h.ready("w1", "echo");
    h.close("w1");
    h.ready("w2", "echo");
    h.advance(EXPIRY);
    h.ready("w3", "echo");
    h.disconnect("w3");
    h.ready("w4", "echo");
    assert_eq!(
        h.take_traffic(),
        [
            Sent::request("w1", "c", "poison"),
            Sent::request("w2", "c", "poison"),
            Sent::request("w3", "c", "poison"),
        ]
    );
    let stats = h.broker.stats();
    assert_eq!(stats.requests.dropped.redispatch_limit, 1);
    assert_eq!(stats.requests.redispatched, 2);
    assert_eq!(stats.queued_requests, 0);
    assert_eq!(stats.workers_idle, 1);
}

#[test]
fn without_redispatch_the_request_of_a_lost_worker_is_dropped() {
    let config = BrokerConfig {
        redispatch: false,
        ..BrokerConfig::default()
    };
    let mut h = Harness::with_config(config);
    h.ready("w1", "echo");
    h.ready("w2", "echo");
    h.request("c", "echo", "job");
    h.close("w1");
    assert_eq!(h.take(), [Sent::request("w1", "c", "job")]);
    assert_eq!(h.broker.stats().requests.dropped.worker_lost, 1);
    assert_eq!(h.broker.stats().workers_idle, 1);
}

#[test]
fn custom_heartbeat_settings_are_used() {
    let mut config = BrokerConfig::default();
    config.heartbeat.interval = 100 * MS;
    config.heartbeat.liveness = 5;
    let mut h = Harness::with_config(config);
    h.ready("w1", "echo");
    h.advance(500 * MS - NS);
    assert_eq!(h.take().len(), 4);
    assert_eq!(h.worker_count("echo"), 1);
    h.advance(NS);
    assert_eq!(h.worker_count("echo"), 0);
}

#[test]
fn an_in_process_worker_never_expires_however_late_the_timers_fire() {
    // The shell's loop starved of CPU for many liveness windows: its in-process service
    // (the embedded Titanic) is still there and gets the next request.
    let mut h = Harness::new();
    h.broker.register_in_process(
        h.now,
        super::util::id("local"),
        super::util::service("titanic.request"),
        crate::Credit::ONE,
    );
    h.collect_now();
    h.ready("w1", "echo");
    h.advance(EXPIRY * 10);
    assert_eq!(h.worker_count("titanic.request"), 1);
    assert_eq!(
        h.worker_count("echo"),
        0,
        "a connected worker still expires"
    );
    h.take();
    h.request("c", "titanic.request", "job");
    assert_eq!(h.take(), [Sent::request("local", "c", "job")]);
    assert_eq!(h.broker.stats().worker_departures.expired, 1);
}
