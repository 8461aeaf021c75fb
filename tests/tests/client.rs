//! domo-client against an in-process broker and libzmq DEALER workers written from RFC 7.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domo_broker::BrokerConfig;
use domo_client::{Client, ClientOptions, ErrorKind};
use domo_tests::*;

const HB: Duration = Duration::from_millis(100);
const LIMIT: Duration = Duration::from_secs(20);

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn options(endpoint: &str) -> ClientOptions {
    ClientOptions::new([endpoint]).timeout(Duration::from_secs(2))
}

async fn ready(endpoint: &str, service: &'static str) {
    let ep = endpoint.to_string();
    blocking(move || wait_for_service(&ep, service, b"200")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gets_replies_from_a_libzmq_dealer_worker() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let _worker = ZWorker::echo(&broker.endpoint, "echo", HB);
    ready(&broker.endpoint, "echo").await;
    let client = Client::new(options(&broker.endpoint).pool_size(4)).unwrap();
    let reply = client.request("echo", vec![b("a"), b("b")]).await.unwrap();
    assert_eq!(reply, vec![b("a"), b("b")]);
    // Many concurrent requests through clones of one client share its pool.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let client = client.clone();
        tasks.spawn(async move {
            let body = Bytes::from(i.to_string());
            let reply = client.request("echo", vec![body.clone()]).await.unwrap();
            assert_eq!(reply, vec![body]);
        });
    }
    tokio::time::timeout(LIMIT, async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_worker_is_retried_and_the_late_reply_is_not_returned_for_another_request() {
    // Broker heartbeats at the default 2500 ms, so a worker busy for 500 ms is not expired.
    let broker = TestBroker::start(BrokerConfig::default()).await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let _worker = ZWorker::start(
        &broker.endpoint,
        "slow",
        Duration::from_millis(2500),
        Box::new(move |body| {
            if seen.fetch_add(1, Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(500));
            }
            Some(body)
        }),
    );
    ready(&broker.endpoint, "slow").await;
    // One connection: the second request must reuse the first one's (reset) connection.
    let client = Client::new(
        ClientOptions::new([broker.endpoint.as_str()])
            .timeout(Duration::from_millis(300))
            .retries(3)
            .pool_size(1),
    )
    .unwrap();
    let first = tokio::time::timeout(LIMIT, client.request("slow", vec![b("first")]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, vec![b("first")]);
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "the request was not retried"
    );
    for body in ["second", "third"] {
        let reply = tokio::time::timeout(LIMIT, client.request("slow", vec![b(body)]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply, vec![b(body)]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_whose_first_endpoint_is_dead_fails_over_to_the_second() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let _worker = ZWorker::echo(&broker.endpoint, "echo", HB);
    ready(&broker.endpoint, "echo").await;
    let client = Client::new(
        ClientOptions::new([dead_endpoint(), broker.endpoint.clone()])
            .timeout(Duration::from_millis(300))
            .retries(2),
    )
    .unwrap();
    let reply = tokio::time::timeout(LIMIT, client.request("echo", vec![b("over")]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, vec![b("over")]);
    // Later requests go straight to the live endpoint.
    let started = std::time::Instant::now();
    client.request("echo", vec![b("again")]).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_request_future_does_not_leak_its_reply_into_the_next_request() {
    let broker = TestBroker::start(BrokerConfig::default()).await;
    let _worker = ZWorker::start(
        &broker.endpoint,
        "slowish",
        Duration::from_millis(2500),
        Box::new(|body| {
            if body[0] == b"slow" {
                std::thread::sleep(Duration::from_millis(300));
            }
            Some(body)
        }),
    );
    ready(&broker.endpoint, "slowish").await;
    let client = Client::new(options(&broker.endpoint).pool_size(1)).unwrap();
    let dropped = tokio::time::timeout(
        Duration::from_millis(100),
        client.request("slowish", vec![b("slow")]),
    )
    .await;
    assert!(
        dropped.is_err(),
        "the first request should still be pending"
    );
    let reply = tokio::time::timeout(LIMIT, client.request("slowish", vec![b("fast")]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, vec![b("fast")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_errors() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let client = Client::new(
        options(&broker.endpoint)
            .timeout(Duration::from_millis(200))
            .retries(1),
    )
    .unwrap();
    let err = client.request("nobody", vec![b("x")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ServiceUnavailable, "{err}");
    assert!(err.to_string().contains("\"nobody\""), "{err}");

    let big = options(&broker.endpoint);
    let big = big.max_message_size(10);
    let small = Client::new(big).unwrap();
    let err = small
        .request("echo", vec![Bytes::from(vec![0u8; 11])])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
    assert_eq!(
        err.to_string(),
        "request of 11 bytes exceeds the 10-byte limit"
    );

    let nowhere = Client::new(
        ClientOptions::new([dead_endpoint()])
            .timeout(Duration::from_millis(100))
            .retries(1),
    )
    .unwrap();
    let err = nowhere.request("echo", vec![b("x")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");

    client.close().await;
    let err = client.request("echo", vec![b("x")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
    let err = Client::new(ClientOptions::new(["bogus"])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidEndpoint);
    assert!(std::error::Error::source(&err).is_some(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_service_with_workers_times_out() {
    let broker = TestBroker::start(BrokerConfig::default()).await;
    let _worker = ZWorker::start(
        &broker.endpoint,
        "mute",
        Duration::from_millis(2500),
        Box::new(|_| None),
    );
    ready(&broker.endpoint, "mute").await;
    let client = Client::new(
        options(&broker.endpoint)
            .timeout(Duration::from_millis(150))
            .retries(1),
    )
    .unwrap();
    let err = client.request("mute", vec![b("x")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert_eq!(err.attempts(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mmi_helpers() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let _a = ZWorker::echo(&broker.endpoint, "alpha", HB);
    let _b1 = ZWorker::echo(&broker.endpoint, "beta", HB);
    let _b2 = ZWorker::echo(&broker.endpoint, "beta", HB);
    ready(&broker.endpoint, "alpha").await;
    let client = Client::new(options(&broker.endpoint)).unwrap();
    assert!(client.service_available("alpha").await.unwrap());
    assert!(!client.service_available("gamma").await.unwrap());
    eventually_async(LIMIT, "beta never had 2 workers", || async {
        (client.workers("beta").await.unwrap() == 2).then_some(())
    })
    .await;
    let mut services = client.services().await.unwrap();
    services.sort();
    assert_eq!(services, ["alpha", "beta"]);
}

#[test]
fn blocking_client_works_without_a_runtime() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let broker = rt.block_on(TestBroker::start(fast_heartbeat()));
    let _worker = ZWorker::echo(&broker.endpoint, "echo", HB);
    wait_for_service(&broker.endpoint, "echo", b"200");
    let client = domo_client::blocking::Client::new(options(&broker.endpoint)).unwrap();
    assert_eq!(
        client.request("echo", vec![b("hi")]).unwrap(),
        vec![b("hi")]
    );
    assert!(client.service_available("echo").unwrap());
    drop(client);
    drop(broker);
}
