//! A domo-worker worker in `EndpointMode::EachBroker` (a Binary Star pair) against two plain
//! ZMTP routers standing in for the two brokers, speaking RFC 7 frames by hand: it registers
//! with both, answers each router on that router, and losing one router leaves the session
//! to the other alone.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domo_mdp::Heartbeat;
use domo_worker::{BackoffOptions, EndpointMode, Worker, WorkerOptions};
use domo_zmtp::{Options, PeerId, Router};
use tokio::sync::mpsc;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);
const MDPW01: &[u8] = b"MDPW01";
const READY: u8 = 1;
const REQUEST: u8 = 2;
const REPLY: u8 = 3;
const HEARTBEAT: u8 = 4;

fn frames(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

fn ready(service: &[u8]) -> Vec<Bytes> {
    frames(&[b"", MDPW01, &[READY], service])
}

fn reply(client: &[u8], body: &[u8]) -> Vec<Bytes> {
    frames(&[b"", MDPW01, &[REPLY], client, b"", body])
}

fn is_command(msg: &[Bytes], code: u8) -> bool {
    msg.len() >= 3 && msg[0].is_empty() && msg[1] == MDPW01 && msg[2][..] == [code]
}

/// Heartbeats fast enough that a test outlives several liveness windows, with a liveness
/// (1 s) that a loaded machine does not trip by accident.
fn options(primary: &str, backup: &str) -> WorkerOptions {
    WorkerOptions::pair(primary, backup)
        .heartbeat(Heartbeat {
            interval: Duration::from_millis(100),
            liveness: 10,
        })
        .backoff(
            BackoffOptions::default()
                .initial(Duration::from_millis(100))
                .max(Duration::from_secs(1))
                .jitter(false),
        )
}

/// A router that answers the HEARTBEATs of registered workers (as a broker does, so their
/// sessions stay alive) and reports every other message it gets.
struct FakeBroker {
    endpoint: String,
    router: Arc<Router>,
    seen: mpsc::UnboundedReceiver<(PeerId, Vec<Bytes>)>,
}

impl FakeBroker {
    async fn bind(endpoint: &str) -> Self {
        let router = Arc::new(Router::new(Options::default()));
        let endpoint = router.bind(endpoint).await.unwrap().to_string();
        let (tx, seen) = mpsc::unbounded_channel();
        let r = router.clone();
        tokio::spawn(async move {
            let mut registered = HashSet::new();
            while let Ok((peer, msg)) = r.recv().await {
                if is_command(&msg, HEARTBEAT) {
                    // Heartbeats of a connection that never sent READY here (an old session
                    // whose socket reconnected on its own) get no answer, so that session
                    // still finds its broker dead and registers again.
                    if registered.contains(&peer) {
                        let _ = r.try_send(&peer, frames(&[b"", MDPW01, &[HEARTBEAT]]));
                    }
                    continue;
                }
                if is_command(&msg, READY) {
                    registered.insert(peer.clone());
                }
                if tx.send((peer, msg)).is_err() {
                    break;
                }
            }
        });
        Self {
            endpoint,
            router,
            seen,
        }
    }

    /// The next message other than a HEARTBEAT.
    async fn next(&mut self) -> (PeerId, Vec<Bytes>) {
        timeout(LIMIT, self.seen.recv()).await.unwrap().unwrap()
    }

    /// Waits for a READY for `service` and returns its sender.
    async fn registered(&mut self, service: &[u8]) -> PeerId {
        let (peer, msg) = self.next().await;
        assert_eq!(msg, ready(service));
        peer
    }

    fn request(&self, worker: &PeerId, client: &[u8], body: &[u8]) {
        let msg = frames(&[b"", MDPW01, &[REQUEST], client, b"", body]);
        self.router.try_send(worker, msg).unwrap();
    }

    /// Sends a request to `worker` and checks that its reply comes back from that worker.
    async fn round_trip(&mut self, worker: &PeerId, client: &[u8], body: &[u8]) {
        self.request(worker, client, body);
        let (from, msg) = self.next().await;
        assert_eq!(&from, worker);
        assert_eq!(msg, reply(client, body));
    }

    async fn stop(self) {
        timeout(LIMIT, self.router.shutdown()).await.unwrap();
    }
}

async fn echo(body: Vec<Bytes>) -> Result<Vec<Bytes>, std::convert::Infallible> {
    Ok(body)
}

#[tokio::test]
async fn pair_options_register_every_session_on_every_endpoint() {
    let options = WorkerOptions::pair("tcp://127.0.0.1:1", "tcp://127.0.0.1:2").sessions(3);
    assert_eq!(options.mode, EndpointMode::EachBroker);
    assert_eq!(
        options.endpoints,
        ["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"]
    );
    assert_eq!(options.total_sessions(), 6);
    let failover = WorkerOptions::new(["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"]).sessions(3);
    assert_eq!(failover.mode, EndpointMode::Failover);
    assert_eq!(failover.total_sessions(), 3);
    assert_eq!(WorkerOptions::default().mode, EndpointMode::Failover);
}

#[tokio::test]
async fn each_broker_worker_sends_ready_to_both_brokers() {
    let mut a = FakeBroker::bind("tcp://127.0.0.1:0").await;
    let mut b = FakeBroker::bind("tcp://127.0.0.1:0").await;
    let worker = Worker::new("echo", options(&a.endpoint, &b.endpoint).sessions(2)).unwrap();
    let serving = tokio::spawn(worker.serve(echo, std::future::pending()));
    for broker in [&mut a, &mut b] {
        // `sessions` sessions per broker, each its own connection.
        let first = broker.registered(b"echo").await;
        let second = broker.registered(b"echo").await;
        assert_ne!(first, second);
    }
    serving.abort();
}

#[tokio::test]
async fn a_request_from_either_broker_is_answered_on_that_broker() {
    let mut a = FakeBroker::bind("tcp://127.0.0.1:0").await;
    let mut b = FakeBroker::bind("tcp://127.0.0.1:0").await;
    let worker = Worker::new("echo", options(&a.endpoint, &b.endpoint)).unwrap();
    let serving = tokio::spawn(worker.serve(echo, std::future::pending()));
    let on_a = a.registered(b"echo").await;
    let on_b = b.registered(b"echo").await;
    a.round_trip(&on_a, b"client-a", b"to a").await;
    b.round_trip(&on_b, b"client-b", b"to b").await;
    a.round_trip(&on_a, b"client-a", b"a again").await;
    serving.abort();
}

#[tokio::test]
async fn recv_holds_one_request_from_each_broker_at_once() {
    let mut a = FakeBroker::bind("tcp://127.0.0.1:0").await;
    let mut b = FakeBroker::bind("tcp://127.0.0.1:0").await;
    // One session per broker: the request channel must hold two requests, not one.
    let mut worker = Worker::new("echo", options(&a.endpoint, &b.endpoint)).unwrap();
    let (first, (on_a, on_b)) = timeout(LIMIT, async {
        tokio::join!(worker.recv(), async {
            let on_a = a.registered(b"echo").await;
            let on_b = b.registered(b"echo").await;
            a.request(&on_a, b"client-a", b"one");
            b.request(&on_b, b"client-b", b"two");
            (on_a, on_b)
        })
    })
    .await
    .unwrap();
    let second = timeout(LIMIT, worker.recv()).await.unwrap().unwrap();
    let mut bodies: Vec<Bytes> = Vec::new();
    for mut request in [first.unwrap(), second] {
        let body = request.take_body();
        bodies.extend(body.iter().cloned());
        request.reply(body).unwrap();
    }
    bodies.sort();
    assert_eq!(
        bodies,
        [Bytes::from_static(b"one"), Bytes::from_static(b"two")]
    );
    assert_eq!(a.next().await, (on_a, reply(b"client-a", b"one")));
    assert_eq!(b.next().await, (on_b, reply(b"client-b", b"two")));
    timeout(LIMIT, worker.shutdown()).await.unwrap();
}

#[tokio::test]
async fn losing_one_broker_leaves_the_session_to_the_other_untouched() {
    let mut a = FakeBroker::bind("tcp://127.0.0.1:0").await;
    let mut b = FakeBroker::bind("tcp://127.0.0.1:0").await;
    let a_endpoint = a.endpoint.clone();
    let worker = Worker::new("echo", options(&a.endpoint, &b.endpoint)).unwrap();
    let serving = tokio::spawn(worker.serve(echo, std::future::pending()));
    let _ = a.registered(b"echo").await;
    let on_b = b.registered(b"echo").await;

    a.stop().await;
    b.round_trip(&on_b, b"client-b", b"while a is gone").await;

    // The session of the lost broker finds it dead (10 silent heartbeats), waits its backoff
    // and registers again with that same endpoint: never with the other broker, where a new
    // READY would show up before the replies below.
    let mut a = FakeBroker::bind(&a_endpoint).await;
    let on_a = a.registered(b"echo").await;
    a.round_trip(&on_a, b"client-a", b"a is back").await;

    // The session to b outlived a's liveness window on the same connection: heartbeats kept
    // it alive, and it answers from the same routing id, with no READY in between.
    b.round_trip(&on_b, b"client-b", b"still here").await;
    assert!(b.seen.try_recv().is_err());
    serving.abort();
}
