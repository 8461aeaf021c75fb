//! Worker credit end to end, against a broker process: a worker on a raw domo-zmtp DEALER
//! that announces `X-Domo-Credit: 4` gets four requests before it replies to any, and reads
//! `X-Domo-Extensions: credit` in the broker's handshake; an RFC 7 libzmq worker on the same
//! service still gets one request at a time.
#![allow(clippy::unwrap_used)]

use std::thread;
use std::time::Duration;

use bytes::Bytes;
use domo_mdp::extensions::{lists, CREDIT, CREDIT_PROPERTY, EXTENSIONS_PROPERTY};
use domo_mdp::{worker, PeerId, ServiceName, WorkerCommand};
use domo_tests::*;
use domo_zmtp::{Dealer, Options};

const HB: Duration = Duration::from_millis(2500);

/// The next REQUEST the credit worker gets (skipping heartbeats): its token and body.
async fn next_request(w: &Dealer) -> (PeerId, Vec<Bytes>) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), w.recv())
            .await
            .expect("a request in time")
            .unwrap();
        match worker::decode_from_broker(msg).unwrap() {
            WorkerCommand::Request { client, body } => return (client, body),
            WorkerCommand::Heartbeat => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Whether a REQUEST arrives within `within` (heartbeats ignored).
async fn request_within(w: &Dealer, within: Duration) -> bool {
    tokio::time::timeout(within, next_request(w)).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credit_4_worker_gets_four_requests_before_replying_and_rfc7_gets_one() {
    let broker = blocking(|| LoggedBroker::start(&["--no-titanic"])).await;
    let ep = broker.endpoint.clone();

    // An RFC 7 worker that keeps whatever it gets (never replies): it must hold one at most.
    let rfc7 = {
        let ep = ep.clone();
        blocking(move || ZWorker::start(&ep, "credit", HB, Box::new(|_| None))).await
    };
    let mut options = Options::default();
    options.metadata.insert(CREDIT_PROPERTY, "4");
    let w = Dealer::connect(&ep, options).unwrap();
    w.connected().await.unwrap();
    let meta = w.peer_metadata().expect("broker metadata");
    let extensions = meta.get(EXTENSIONS_PROPERTY).expect("X-Domo-Extensions");
    assert!(lists(extensions, CREDIT), "{extensions:?}");
    let service = ServiceName::try_from("credit").unwrap();
    w.send(worker::encode_ready(&service)).await.unwrap();
    blocking_scope(|| broker.wait_metric("domo_workers{service=\"credit\",state=\"idle\"}", 2.0));

    // Six clients, one request each. The credit worker has the most free credit, so it takes
    // the first ones; once it is down to one free, the RFC 7 worker (waiting longer) takes
    // one; the credit worker its fourth; the sixth waits in the queue.
    let (replies, answered) = std::sync::mpsc::channel();
    for i in 0..6 {
        let (ep, replies) = (ep.clone(), replies.clone());
        // Detached: the client whose request the RFC 7 worker keeps waits out its timeout.
        thread::spawn(move || {
            let c = ReqClient::connect(&ep);
            c.set_timeout(15_000);
            let body = format!("r{i}");
            let _ = replies.send((i, c.try_request("credit", &[body.as_bytes()])));
        });
    }
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(next_request(&w).await);
    }
    blocking_scope(|| {
        broker.wait_metric("domo_requests_at_workers", 5.0);
        broker.wait_metric("domo_queued_requests{service=\"credit\"}", 1.0);
    });
    assert!(
        !request_within(&w, Duration::from_millis(300)).await,
        "a fifth request beyond the credit"
    );
    assert_eq!(rfc7.served(), 1, "the RFC 7 worker holds one request");
    let busy = "domo_workers{service=\"credit\",state=\"busy\"}";
    assert_eq!(broker.metric(busy), Some(2.0));

    // A reply frees one credit: the queued request comes at once.
    let (token, body) = held.pop().unwrap();
    w.send(worker::encode_reply(&token, body)).await.unwrap();
    held.push(next_request(&w).await);
    for (token, body) in held {
        w.send(worker::encode_reply(&token, body)).await.unwrap();
    }
    for _ in 0..5 {
        let (i, reply) = answered.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            reply,
            Some(vec![format!("r{i}").into_bytes()]),
            "client {i}"
        );
    }
    assert_eq!(rfc7.served(), 1);
    w.shutdown().await;
}

/// Runs a blocking closure that borrows from the test on this thread (short waits only).
fn blocking_scope<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_credit_counts_as_one_and_is_counted() {
    let broker = blocking(|| LoggedBroker::start(&["--no-titanic"])).await;
    let ep = broker.endpoint.clone();
    let mut options = Options::default();
    options.metadata.insert(CREDIT_PROPERTY, "4096");
    let w = Dealer::connect(&ep, options).unwrap();
    w.connected().await.unwrap();
    let service = ServiceName::try_from("credit").unwrap();
    w.send(worker::encode_ready(&service)).await.unwrap();
    blocking_scope(|| {
        broker.wait_metric("domo_workers{service=\"credit\",state=\"idle\"}", 1.0);
        broker.wait_metric(
            "domo_transport_events_total{event=\"malformed_credit\"}",
            1.0,
        );
    });
    let (replies, answered) = std::sync::mpsc::channel();
    for i in 0..2 {
        let (ep, replies) = (ep.clone(), replies.clone());
        thread::spawn(move || {
            let c = ReqClient::connect(&ep);
            c.set_timeout(15_000);
            let body = format!("r{i}");
            let _ = replies.send((i, c.try_request("credit", &[body.as_bytes()])));
        });
    }
    let (token, body) = next_request(&w).await;
    blocking_scope(|| broker.wait_metric("domo_queued_requests{service=\"credit\"}", 1.0));
    assert!(
        !request_within(&w, Duration::from_millis(300)).await,
        "a second request to a worker of credit 1"
    );
    w.send(worker::encode_reply(&token, body)).await.unwrap();
    let (token, body) = next_request(&w).await;
    w.send(worker::encode_reply(&token, body)).await.unwrap();
    for _ in 0..2 {
        let (i, reply) = answered.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            reply,
            Some(vec![format!("r{i}").into_bytes()]),
            "client {i}"
        );
    }
    w.shutdown().await;
}
