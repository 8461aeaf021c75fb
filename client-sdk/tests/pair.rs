//! domo-client with a Binary Star pair (`ClientOptions::pair`) against two plain ZMTP routers
//! standing in for the brokers, speaking RFC 7 frames by hand: a "passive" one that accepts
//! connections and requests but never answers, and an "active" one that answers every
//! request.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use domo_client::{Client, ClientOptions, Error, ErrorKind, Failover};
use domo_zmtp::{Options, Router};
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

const LIMIT: Duration = Duration::from_secs(20);
const MDPC01: &[u8] = b"MDPC01";
const MS: Duration = Duration::from_millis(1);

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

/// A request as a fake broker got it.
#[derive(Debug)]
struct Arrival {
    broker: &'static str,
    at: Instant,
    service: Bytes,
    body: Vec<Bytes>,
}

/// Starts a fake broker named `name` on a free port; it logs every client request to
/// `log` and, if `answers`, replies with the request's body, as a broker relaying an echo
/// worker would. Returns its endpoint.
async fn fake_broker(
    name: &'static str,
    answers: bool,
    log: &mpsc::UnboundedSender<Arrival>,
) -> String {
    let router = Router::new(Options::default());
    let endpoint = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let log = log.clone();
    tokio::spawn(async move {
        while let Ok((peer, msg)) = router.recv().await {
            let at = Instant::now();
            // ["", "MDPC01", service, body...]; anything else is not a client request.
            let [empty, protocol, service, body @ ..] = &msg[..] else {
                continue;
            };
            if !empty.is_empty() || protocol != MDPC01 {
                continue;
            }
            let arrival = Arrival {
                broker: name,
                at,
                service: service.clone(),
                body: body.to_vec(),
            };
            if log.send(arrival).is_err() {
                break;
            }
            if answers {
                // A REPLY has the same frames as the REQUEST it answers.
                let _ = router.try_send(&peer, msg);
            }
        }
    });
    endpoint
}

async fn next(log: &mut mpsc::UnboundedReceiver<Arrival>) -> Arrival {
    timeout(LIMIT, log.recv()).await.unwrap().unwrap()
}

/// An `echo` request for `body` through `client`, bounded by `LIMIT`.
async fn request(client: &Client, body: &'static str) -> Result<Vec<Bytes>, Error> {
    timeout(LIMIT, client.request("echo", vec![b(body)]))
        .await
        .unwrap()
}

/// A silent primary (connected, never answering, like a passive broker) and an answering
/// backup; returns a pair client for them and the log of requests they got.
async fn passive_primary(
    timeout_ms: u32,
    settle_ms: u32,
) -> (Client, mpsc::UnboundedReceiver<Arrival>) {
    let (tx, log) = mpsc::unbounded_channel();
    let primary = fake_broker("primary", false, &tx).await;
    let backup = fake_broker("backup", true, &tx).await;
    let options = ClientOptions::pair(&primary, &backup)
        .timeout(timeout_ms * MS)
        .settle(settle_ms * MS);
    (Client::new(options).unwrap(), log)
}

/// Makes an `echo` request for `body` through a [`passive_primary`] client and checks that
/// its first attempt went to the primary, its second to the backup, and that it got `body`
/// back. Returns when the request was made and the two attempts' arrivals.
async fn fail_over(
    client: &Client,
    log: &mut mpsc::UnboundedReceiver<Arrival>,
    body: &'static str,
) -> (Instant, Arrival, Arrival) {
    let t0 = Instant::now();
    let reply = request(client, body).await.unwrap();
    assert_eq!(reply, vec![b(body)]);
    let first = next(log).await;
    let second = next(log).await;
    assert_eq!((first.broker, second.broker), ("primary", "backup"));
    for attempt in [&first, &second] {
        assert_eq!(
            (&attempt.service[..], &attempt.body[..]),
            (&b"echo"[..], &[b(body)][..]),
            "{attempt:?}"
        );
    }
    (t0, first, second)
}

/// Asserts that the retry (`second`) arrived at least `settled` after `t0` and less than
/// `gap` after the first attempt did.
fn assert_retry_timing(
    t0: Instant,
    first: &Arrival,
    second: &Arrival,
    settled: Duration,
    gap: Duration,
) {
    assert!(second.at - t0 >= settled, "{:?}", second.at - t0);
    assert!(second.at - first.at < gap, "{:?}", second.at - first.at);
}

#[test]
fn pair_options_switch_on_any_timeout_and_settle_for_two_seconds() {
    let options = ClientOptions::pair("tcp://127.0.0.1:1", "tcp://127.0.0.1:2");
    assert_eq!(
        options.endpoints,
        ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"]
    );
    assert_eq!(options.failover, Failover::AnyTimeout);
    assert_eq!(options.settle, Duration::from_secs(2));
    let plain = ClientOptions::new(["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"]);
    assert_eq!(plain.failover, Failover::Unreachable);
    assert_eq!(plain.settle, 100 * MS);
}

#[tokio::test]
async fn pair_client_gets_its_reply_from_the_backup_no_earlier_than_the_settle_delay() {
    let (client, mut log) = passive_primary(200, 400).await;
    let (t0, first, second) = fail_over(&client, &mut log, "hi").await;
    // The failed attempt started at or after t0; the retry waits until its start + settle.
    assert_retry_timing(t0, &first, &second, 400 * MS, 5 * 400 * MS);
    assert!(log.try_recv().is_err());
}

#[tokio::test]
async fn after_the_switch_later_requests_go_straight_to_the_backup() {
    let (client, mut log) = passive_primary(200, 400).await;
    fail_over(&client, &mut log, "first").await;
    for body in ["second", "third", "fourth"] {
        let reply = request(&client, body).await.unwrap();
        assert_eq!(reply, vec![b(body)]);
        // Had it gone to the primary first, that arrival would come before this one.
        let arrival = next(&mut log).await;
        assert_eq!(
            (arrival.broker, &arrival.body[..]),
            ("backup", &[b(body)][..])
        );
    }
    assert!(log.try_recv().is_err());
}

#[tokio::test]
async fn the_retry_is_timed_from_the_start_of_the_failed_attempt_not_its_timeout() {
    let (client, mut log) = passive_primary(1000, 1500).await;
    let (t0, first, second) = fail_over(&client, &mut log, "x").await;
    // Counted from the timeout instead, the retry would come 2500 ms after the first
    // attempt was sent (and so at least ~2500 ms after it arrived).
    assert_retry_timing(t0, &first, &second, 1500 * MS, 2300 * MS);
}

#[tokio::test]
async fn a_timeout_longer_than_the_settle_delay_adds_no_wait() {
    let (client, mut log) = passive_primary(1000, 900).await;
    let (t0, first, second) = fail_over(&client, &mut log, "x").await;
    // Settling after the timeout would put the retry 1900 ms after the first attempt.
    assert_retry_timing(t0, &first, &second, 1000 * MS, 1700 * MS);
}

#[tokio::test]
async fn a_request_started_during_the_switch_waits_for_the_settle_point() {
    let (client, mut log) = passive_primary(200, 1200).await;
    let t0 = Instant::now();
    let early = tokio::spawn({
        let client = client.clone();
        async move { client.request("echo", vec![b("early")]).await }
    });
    let first = next(&mut log).await;
    assert_eq!(
        (first.broker, &first.body[..]),
        ("primary", &[b("early")][..])
    );
    // The early request's attempt timed out (and switched the pool to the backup) about
    // 200 ms after it arrived; the switch's settle point is 1200 ms after it was sent.
    tokio::time::sleep_until(first.at + 600 * MS).await;
    let late = request(&client, "late").await.unwrap();
    assert_eq!(late, vec![b("late")]);
    assert_eq!(
        timeout(LIMIT, early).await.unwrap().unwrap().unwrap(),
        vec![b("early")]
    );
    for _ in 0..2 {
        let arrival = next(&mut log).await;
        // Both went to the backup only (the late one straight away), and neither before
        // the settle point.
        assert_eq!(arrival.broker, "backup", "{arrival:?}");
        assert!(arrival.at - t0 >= 1200 * MS, "{arrival:?}");
    }
    assert!(log.try_recv().is_err());
}

#[tokio::test]
async fn with_both_brokers_silent_attempts_alternate_and_the_service_probe_gives_up_too() {
    let (tx, mut log) = mpsc::unbounded_channel();
    let primary = fake_broker("primary", false, &tx).await;
    let backup = fake_broker("backup", false, &tx).await;
    let client = Client::new(
        ClientOptions::pair(&primary, &backup)
            .timeout(100 * MS)
            .settle(200 * MS)
            .retries(1),
    )
    .unwrap();
    assert!(client.options().check_service);
    let err = request(&client, "x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert_eq!(err.attempts(), Some(2));
    let mut seen = Vec::new();
    for _ in 0..4 {
        let arrival = next(&mut log).await;
        seen.push((arrival.broker, arrival.service, arrival.body));
    }
    assert_eq!(
        seen,
        [
            ("primary", b("echo"), vec![b("x")]),
            ("backup", b("echo"), vec![b("x")]),
            ("primary", b("mmi.service"), vec![b("echo")]),
            ("backup", b("mmi.service"), vec![b("echo")]),
        ]
    );
    assert!(log.try_recv().is_err());
}

#[tokio::test]
async fn without_pair_failover_a_connected_but_silent_broker_keeps_the_client() {
    let (tx, mut log) = mpsc::unbounded_channel();
    let primary = fake_broker("primary", false, &tx).await;
    let backup = fake_broker("backup", true, &tx).await;
    let mut options = ClientOptions::new([primary, backup])
        .timeout(100 * MS)
        .retries(1);
    options.check_service = false;
    let client = Client::new(options).unwrap();
    let err = request(&client, "x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert_eq!(err.attempts(), Some(2));
    assert_eq!(next(&mut log).await.broker, "primary");
    assert_eq!(next(&mut log).await.broker, "primary");
    assert!(log.try_recv().is_err());
}
