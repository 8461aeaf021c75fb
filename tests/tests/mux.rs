//! Multiplexed clients (domo's `mux` extension) seen from the wire:
//!
//! * against a scripted broker on a domo-zmtp ROUTER that lists `mux`: many requests of one
//!   `domo_client::Client` share one connection, each tagged, and replies sent in reverse
//!   order reach the right callers; a retry goes out on the same connection under a new tag
//!   and a late reply to the abandoned attempt is dropped;
//! * against an RFC 7 broker written on libzmq (the `zmq` crate) that lists nothing: the
//!   client sends plain MDP/0.1 (no tag frame, one request per connection) and a domo-worker
//!   with credit still gets one request at a time; every request is answered correctly.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use domo_client::{Client, ClientOptions};
use domo_mdp::extensions::{EXTENSIONS_PROPERTY, MUX_PROPERTY};
use domo_worker::{Worker, WorkerOptions};
use domo_zmtp::{Options, PeerId, Router, RouterEvent};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn frames(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

/// A ROUTER that announces `X-Domo-Extensions: credit,mux`, as a domo broker does.
async fn mux_router() -> (Router, String) {
    let mut options = Options::default();
    options.metadata.insert(EXTENSIONS_PROPERTY, "credit,mux");
    let router = Router::new(options);
    let endpoint = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    (router, endpoint)
}

/// The next client REQUEST: the sender and the frames after `[""][MDPC01]`; also returns
/// whether its connection announced `X-Domo-Mux: 1` (from the Connected events seen).
async fn next_request(router: &Router, mux_peers: &mut HashSet<PeerId>) -> (PeerId, Vec<Bytes>) {
    loop {
        match timeout(WAIT, router.recv_event()).await.unwrap().unwrap() {
            RouterEvent::Connected { peer, metadata, .. }
                if metadata.get(MUX_PROPERTY).map(|v| v.as_ref()) == Some(&b"1"[..]) =>
            {
                mux_peers.insert(peer);
            }
            RouterEvent::Message { peer, msg } => {
                assert_eq!(msg[..2], frames(&[b"", b"MDPC01"])[..], "{msg:?}");
                return (peer, msg[2..].to_vec());
            }
            _ => {}
        }
    }
}

fn client(endpoint: &str, timeout: Duration) -> Client {
    let options = ClientOptions::new([endpoint])
        .timeout(timeout)
        .retries(2)
        .check_service(false)
        .pool_size(8);
    Client::new(options).unwrap()
}

#[tokio::test]
async fn many_requests_share_one_tagged_connection_and_replies_return_out_of_order() {
    let (router, endpoint) = mux_router().await;
    let client = client(&endpoint, Duration::from_secs(10));
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..6u8 {
        let client = client.clone();
        calls.spawn(async move {
            let reply = client
                .request("echo", vec![Bytes::from(vec![b'a' + i])])
                .await;
            (i, reply.unwrap())
        });
    }
    let mut mux_peers = HashSet::new();
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(next_request(&router, &mut mux_peers).await);
    }
    // One connection, which asked for multiplexing; every request tagged, tags distinct.
    let peers: HashSet<_> = got.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(peers.len(), 1, "one connection for six requests");
    assert!(mux_peers.contains(&got[0].0), "X-Domo-Mux: 1 announced");
    let mut tags = HashSet::new();
    for (_, rest) in &got {
        // [service][tag][body]
        assert_eq!(rest.len(), 3, "{rest:?}");
        assert_eq!(rest[0], "echo");
        assert!((1..=16).contains(&rest[1].len()));
        assert!(tags.insert(rest[1].clone()), "tags are unique");
    }
    // A reply with a tag nobody waits for is dropped, not given to anyone.
    let peer = got[0].0.clone();
    let stray = frames(&[
        b"",
        b"MDPC01",
        b"echo",
        b"\xff\xff\xff\xff\xff\xff\xff\xff",
        b"stray",
    ]);
    router.send(&peer, stray).await.unwrap();
    // Answer in reverse order: each reply names its request's body, upper-cased.
    for (_, rest) in got.iter().rev() {
        let body = rest[2].to_ascii_uppercase();
        let reply = vec![
            Bytes::new(),
            Bytes::from_static(b"MDPC01"),
            rest[0].clone(),
            rest[1].clone(),
            Bytes::from(body),
        ];
        router.send(&peer, reply).await.unwrap();
    }
    let mut answered = 0;
    while let Some(done) = timeout(WAIT, calls.join_next()).await.unwrap() {
        let (i, reply) = done.unwrap();
        assert_eq!(reply, vec![Bytes::from(vec![b'A' + i])], "request {i}");
        answered += 1;
    }
    assert_eq!(answered, 6);
}

#[tokio::test]
async fn a_retry_uses_the_same_connection_with_a_new_tag_and_the_late_reply_is_dropped() {
    let (router, endpoint) = mux_router().await;
    let client = client(&endpoint, Duration::from_millis(300));
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.request("slow", frames(&[b"job"])).await }
    });
    let mut mux_peers = HashSet::new();
    let (first_peer, first) = next_request(&router, &mut mux_peers).await;
    // No answer: the attempt times out and the retry comes.
    let (second_peer, second) = next_request(&router, &mut mux_peers).await;
    assert_eq!(
        first_peer, second_peer,
        "the retry needs no fresh connection"
    );
    assert_eq!(first[0], "slow");
    assert_eq!(
        (&first[2], &second[2]),
        (&second[2], &Bytes::from_static(b"job"))
    );
    assert_ne!(first[1], second[1], "a new tag for the retry");
    // The late reply to the first attempt, then the answer to the second.
    let reply = |tag: &Bytes, body: &'static [u8]| {
        vec![
            Bytes::new(),
            Bytes::from_static(b"MDPC01"),
            Bytes::from_static(b"slow"),
            tag.clone(),
            Bytes::from_static(body),
        ]
    };
    router
        .send(&first_peer, reply(&first[1], b"late"))
        .await
        .unwrap();
    router
        .send(&first_peer, reply(&second[1], b"fresh"))
        .await
        .unwrap();
    let answer = timeout(WAIT, call).await.unwrap().unwrap().unwrap();
    assert_eq!(answer, frames(&[b"fresh"]));
}

/// A minimal RFC 7 broker on a libzmq ROUTER: one service, workers in LRU order, one
/// request per worker at a time; no metadata of its own. Records every client request's
/// frames after `[""][MDPC01]` and the routing id it came from.
struct Rfc7Broker {
    endpoint: String,
    requests: Arc<Requests>,
    /// Most requests one worker ever held at once.
    most_at_a_worker: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Rfc7Broker {
    fn start() -> Self {
        let ctx = zmq::Context::new();
        let router = domo_tests::zsocket(&ctx, zmq::ROUTER);
        router.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = router.get_last_endpoint().unwrap().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let most = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (requests, most, stop) = (requests.clone(), most.clone(), stop.clone());
            move || run_rfc7(&router, &requests, &most, &stop)
        });
        Self {
            endpoint,
            requests,
            most_at_a_worker: most,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Rfc7Broker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Client requests seen: routing id, frames after `[""][MDPC01]`.
type Requests = Mutex<Vec<(Vec<u8>, Vec<Vec<u8>>)>>;

fn run_rfc7(router: &zmq::Socket, requests: &Requests, most: &Mutex<usize>, stop: &AtomicBool) {
    router.set_rcvtimeo(50).unwrap();
    let mut idle: VecDeque<Vec<u8>> = VecDeque::new();
    let mut held: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut queue: VecDeque<(Vec<u8>, Vec<Vec<u8>>)> = VecDeque::new();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(msg) = router.recv_multipart(0) {
            let (peer, rest) = (msg[0].clone(), &msg[1..]);
            match rest.get(1).map(Vec::as_slice) {
                Some(b"MDPC01") => {
                    requests
                        .lock()
                        .unwrap()
                        .push((peer.clone(), rest[2..].to_vec()));
                    queue.push_back((peer, rest[3..].to_vec()));
                }
                Some(b"MDPW01") => match rest.get(2).map(Vec::as_slice) {
                    Some(b"\x01") => idle.push_back(peer),
                    Some(b"\x03") => {
                        // REPLY: [""][MDPW01][03][client][""][body...]
                        let client = rest[3].clone();
                        let mut out =
                            vec![client, Vec::new(), b"MDPC01".to_vec(), b"echo".to_vec()];
                        out.extend(rest[5..].iter().cloned());
                        router.send_multipart(out, 0).unwrap();
                        *held.entry(peer.clone()).or_default() -= 1;
                        idle.push_back(peer);
                    }
                    _ => {} // HEARTBEAT, DISCONNECT: nothing to do in this test
                },
                _ => {}
            }
        }
        while !idle.is_empty() && !queue.is_empty() {
            let worker = idle.pop_front().unwrap();
            let (client, body) = queue.pop_front().unwrap();
            let mut out = vec![
                worker.clone(),
                Vec::new(),
                b"MDPW01".to_vec(),
                vec![2],
                client,
                Vec::new(),
            ];
            out.extend(body);
            router.send_multipart(out, 0).unwrap();
            let n = held.entry(worker).or_default();
            *n += 1;
            let mut most = most.lock().unwrap();
            *most = (*most).max(*n);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_an_rfc7_broker_the_sdks_fall_back_to_plain_mdp() {
    let broker = Rfc7Broker::start();
    let worker = Worker::new(
        "echo",
        WorkerOptions::new([broker.endpoint.as_str()]).sessions(2),
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(worker.serve(
        |body: Vec<Bytes>| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<_, std::convert::Infallible>(body)
        },
        async {
            let _ = stopped.await;
        },
    ));
    let client = client(&broker.endpoint, Duration::from_secs(10));
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..8u8 {
        let client = client.clone();
        calls.spawn(async move {
            let body = vec![Bytes::from(vec![b'0' + i]), Bytes::from_static(b"two")];
            let reply = client.request("echo", body.clone()).await.unwrap();
            assert_eq!(reply, body, "request {i} got its own reply");
        });
    }
    while let Some(done) = timeout(WAIT * 2, calls.join_next()).await.unwrap() {
        done.unwrap();
    }
    let requests = broker.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 8, "one attempt each");
    let mut connections = HashSet::new();
    for (peer, rest) in &requests {
        // [service][body...]: exactly what was sent, no tag frame.
        assert_eq!(rest.len(), 3, "{rest:?}");
        assert_eq!(rest[0], b"echo");
        assert_eq!(rest[2], b"two");
        connections.insert(peer.clone());
    }
    assert!(
        connections.len() > 1,
        "one request per connection: {} connections",
        connections.len()
    );
    assert_eq!(*broker.most_at_a_worker.lock().unwrap(), 1);
    let _ = stop.send(());
    let _ = timeout(WAIT, serving).await;
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_domo_broker_one_connection_carries_every_request_in_flight() {
    let broker = domo_tests::blocking(|| domo_tests::LoggedBroker::start(&["--no-titanic"])).await;
    let ep = broker.endpoint.clone();
    let worker = Worker::new("echo", WorkerOptions::new([ep.as_str()])).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(worker.serve(
        |body: Vec<Bytes>| async move { Ok::<_, std::convert::Infallible>(body) },
        async {
            let _ = stopped.await;
        },
    ));
    let client = Client::new(ClientOptions::new([ep.as_str()]).pool_size(32)).unwrap();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..32u32 {
        let client = client.clone();
        calls.spawn(async move {
            let body = vec![Bytes::from(i.to_be_bytes().to_vec())];
            assert_eq!(client.request("echo", body.clone()).await.unwrap(), body);
        });
    }
    while let Some(done) = timeout(WAIT, calls.join_next()).await.unwrap() {
        done.unwrap();
    }
    // The worker's session and the client's one multiplexed connection.
    tokio::task::block_in_place(|| {
        broker.wait_metric("domo_connections{socket=\"router\"}", 2.0);
        broker.wait_metric("domo_replies_total{service=\"echo\"}", 32.0);
        assert_eq!(
            broker.metric("domo_protocol_errors_total{peer=\"client\"}"),
            Some(0.0)
        );
    });
    let _ = stop.send(());
    let _ = timeout(WAIT, serving).await;
}
