//! The dispatcher's gate ([`DispatcherOptions::active`], for Binary Star) against a fake
//! broker: a plain libzmq ROUTER that sees every client request the dispatcher sends,
//! `mmi.service` included, and answers them by hand.

#![allow(clippy::unwrap_used)] // test helpers: a failed setup step should panic

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_titanic::dispatcher::{Dispatcher, DispatcherOptions};
use domo_titanic::{Id, Limits, Lookup, MemoryStore, Store, SystemClock};
use tokio::sync::{watch, Notify};

const MDPC01: &[u8] = b"MDPC01";
/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(500);
/// How soon after the gate opens the requests must be answered: well under `RETRY_MIN`.
const PROMPT: Duration = Duration::from_millis(1500);
/// Long enough that a lane waiting out even its first backoff would miss `PROMPT`.
const RETRY_MIN: Duration = Duration::from_secs(4);

/// A client request as the fake broker saw it.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    service: Vec<u8>,
    body: Vec<Vec<u8>>,
}

/// A ROUTER standing in for the broker.
struct FakeBroker {
    _ctx: zmq::Context,
    socket: zmq::Socket,
    endpoint: String,
}

impl FakeBroker {
    fn bind() -> Self {
        let ctx = zmq::Context::new();
        let socket = ctx.socket(zmq::ROUTER).unwrap();
        socket.set_linger(0).unwrap();
        socket.set_sndtimeo(5000).unwrap();
        socket.bind("tcp://127.0.0.1:0").unwrap();
        let endpoint = socket.get_last_endpoint().unwrap().unwrap();
        Self {
            _ctx: ctx,
            socket,
            endpoint,
        }
    }

    /// The next client request within `within`, with the routing id to answer it.
    fn recv(&self, within: Duration) -> Option<(Vec<u8>, Seen)> {
        let ms = i64::try_from(within.as_millis()).unwrap();
        if self.socket.poll(zmq::POLLIN, ms).unwrap() == 0 {
            return None;
        }
        let mut msg = self.socket.recv_multipart(0).unwrap();
        assert!(msg.len() >= 5, "client request frames {msg:?}");
        assert!(msg[1].is_empty(), "client request frames {msg:?}");
        assert_eq!(msg[2], MDPC01, "client request frames {msg:?}");
        let body = msg.split_off(4);
        let service = msg.pop().unwrap();
        Some((msg.swap_remove(0), Seen { service, body }))
    }

    fn reply(&self, routing_id: &[u8], service: &[u8], body: &[Vec<u8>]) {
        let mut msg = vec![
            routing_id.to_vec(),
            vec![],
            MDPC01.to_vec(),
            service.to_vec(),
        ];
        msg.extend(body.iter().cloned());
        self.socket.send_multipart(msg, 0).unwrap();
    }

    /// Fails if any client request arrives within `quiet`.
    fn assert_silent(&self, quiet: Duration) {
        if let Some((_, seen)) = self.recv(quiet) {
            panic!("a client request left a paused dispatcher: {seen:?}");
        }
    }

    /// Answers `mmi.service` with 200 and echoes service requests until `requests` service
    /// requests were answered, all within `within`; returns what it saw, in order.
    fn serve(&self, requests: usize, within: Duration) -> Vec<Seen> {
        let deadline = Instant::now() + within;
        let mut log = Vec::new();
        let mut answered = 0;
        while answered < requests {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some((rid, seen)) = self.recv(left) else {
                panic!("only {answered} of {requests} requests within {within:?}: {log:?}");
            };
            if seen.service == b"mmi.service" {
                self.reply(&rid, &seen.service, &[b"200".to_vec()]);
            } else {
                self.reply(&rid, &seen.service, &seen.body);
                answered += 1;
            }
            log.push(seen);
        }
        log
    }
}

/// Runs blocking libzmq code off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

fn seen(service: &str, body: &str) -> Seen {
    Seen {
        service: service.as_bytes().to_vec(),
        body: vec![body.as_bytes().to_vec()],
    }
}

fn put(store: &MemoryStore, service: &'static str, body: &'static str) -> Id {
    store
        .put_request(
            Bytes::from_static(service.as_bytes()),
            vec![Bytes::from_static(body.as_bytes())],
        )
        .unwrap()
}

/// Waits (bounded) until `id` has a reply, and returns its frames.
async fn wait_done(store: &MemoryStore, id: Id, within: Duration) -> Vec<Bytes> {
    let deadline = Instant::now() + within;
    loop {
        if let Lookup::Done(reply) = store.get(id).unwrap() {
            return reply.frames;
        }
        assert!(
            Instant::now() < deadline,
            "{id} not answered within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asserts that `id` gets `body` for its reply within `PROMPT`.
async fn assert_stored(store: &MemoryStore, id: Id, body: &'static str) {
    assert_eq!(
        wait_done(store, id, PROMPT).await,
        vec![Bytes::from_static(body.as_bytes())]
    );
}

/// A dispatcher running against the fake broker.
struct Running {
    wake: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(store: Arc<MemoryStore>, endpoint: &str, options: DispatcherOptions) -> Self {
        let wake = Arc::new(Notify::new());
        let store: Arc<dyn Store> = store;
        let dispatcher =
            Dispatcher::new(store, &[endpoint.to_string()], options, wake.clone()).unwrap();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(dispatcher.run(stopped));
        Self { wake, stop, task }
    }

    /// Stops the dispatcher (bounded), and only then drops the fake broker it talks to.
    async fn stop(self, fake: FakeBroker) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the dispatcher stops in time")
            .unwrap();
        drop(fake);
    }
}

fn options(active: watch::Receiver<bool>) -> DispatcherOptions {
    DispatcherOptions {
        request_timeout: Duration::from_millis(250),
        retry_min: RETRY_MIN,
        retry_max: Duration::from_secs(30),
        poll_interval: Duration::from_millis(50),
        active: Some(active),
        ..DispatcherOptions::default()
    }
}

/// A fake broker, a store holding an `echo` request for each of `bodies`, and a dispatcher
/// started on them with `options`; returns the requests' ids in the order of `bodies`.
fn start<const N: usize>(
    bodies: [&'static str; N],
    options: DispatcherOptions,
) -> (FakeBroker, Arc<MemoryStore>, [Id; N], Running) {
    let fake = FakeBroker::bind();
    let store = Arc::new(MemoryStore::new(Arc::new(SystemClock), Limits::default()));
    let ids = bodies.map(|body| put(&store, "echo", body));
    let running = Running::start(store.clone(), &fake.endpoint, options);
    (fake, store, ids, running)
}

/// [`FakeBroker::assert_silent`] for `QUIET`, off the async runtime.
async fn assert_quiet(fake: FakeBroker) -> FakeBroker {
    blocking(move || {
        fake.assert_silent(QUIET);
        fake
    })
    .await
}

/// [`FakeBroker::serve`] within `PROMPT`, off the async runtime.
async fn serve(fake: FakeBroker, requests: usize) -> (FakeBroker, Vec<Seen>) {
    blocking(move || {
        let log = fake.serve(requests, PROMPT);
        (fake, log)
    })
    .await
}

/// Off the async runtime: takes the `mmi.service` check for `echo` and answers it with 200,
/// then takes the `echo` request with `body` and leaves it unanswered, each within 10 s.
/// Returns the routing id to answer the request.
async fn first_attempt(fake: FakeBroker, body: &'static str) -> (FakeBroker, Vec<u8>) {
    blocking(move || {
        let (rid, probe) = fake.recv(Duration::from_secs(10)).expect("mmi.service");
        assert_eq!(probe, seen("mmi.service", "echo"));
        fake.reply(&rid, &probe.service, &[b"200".to_vec()]);
        let (rid, request) = fake.recv(Duration::from_secs(10)).expect("the request");
        assert_eq!(request, seen("echo", body));
        (fake, rid)
    })
    .await
}

/// With the gate open: serves exactly the `mmi.service` check for `echo` and then the `echo`
/// request with `body`, within `PROMPT`, and `id` gets `body` for its reply within `PROMPT`.
async fn deliver(fake: FakeBroker, store: &MemoryStore, id: Id, body: &'static str) -> FakeBroker {
    let (fake, log) = serve(fake, 1).await;
    assert_eq!(log, vec![seen("mmi.service", "echo"), seen("echo", body)]);
    assert_stored(store, id, body).await;
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_gate_lets_no_client_request_out_and_opening_it_delivers_at_once() {
    let (gate, active) = watch::channel(false);
    let (fake, store, [id], running) = start(["stored while passive"], options(active));
    // Woken and polled every 50 ms, and still nothing may leave: not even `mmi.service`.
    running.wake.notify_one();
    let fake = assert_quiet(fake).await;
    assert!(matches!(store.get(id).unwrap(), Lookup::Pending));

    gate.send(true).unwrap();
    let opened = Instant::now();
    let fake = deliver(fake, &store, id, "stored while passive").await;
    assert!(opened.elapsed() < PROMPT, "took {:?}", opened.elapsed());
    running.stop(fake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_when_the_gate_closes_times_out_and_resumes_without_backoff() {
    let (gate, active) = watch::channel(true);
    let (fake, store, [first], running) = start(["in flight"], options(active));
    // The broker turns passive while the request is in flight: it is dropped unanswered.
    let (fake, _) = first_attempt(fake, "in flight").await;
    gate.send(false).unwrap();
    // Stored while paused, for a service without a lane yet: the scanner holds it back.
    let second = put(&store, "other", "stored while paused");
    running.wake.notify_one();
    // The attempt times out (250 ms) while paused. Neither the lane's `mmi.service` check
    // nor the client SDK's own diagnosis after a timeout may follow, and no retry.
    let fake = assert_quiet(fake).await;

    // Resumed: the lane does not wait out the backoff of the failed attempt (`RETRY_MIN`).
    gate.send(true).unwrap();
    let opened = Instant::now();
    let (fake, log) = serve(fake, 2).await;
    for (probe, request) in [("echo", "in flight"), ("other", "stored while paused")] {
        let asked = log.iter().position(|s| *s == seen("mmi.service", probe));
        let sent = log.iter().position(|s| *s == seen(probe, request));
        assert!(asked.is_some() && asked < sent, "{log:?}");
    }
    assert_eq!(log.len(), 4, "{log:?}");
    assert_stored(&store, first, "in flight").await;
    assert_stored(&store, second, "stored while paused").await;
    assert!(opened.elapsed() < PROMPT, "took {:?}", opened.elapsed());
    running.stop(fake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_with_requests_queued_sends_none_while_the_gate_is_closed() {
    let (gate, active) = watch::channel(true);
    let options = DispatcherOptions {
        concurrency: 1,
        ..options(active)
    };
    let (fake, store, [first, second], running) = start(["first", "second"], options);
    let (fake, rid) = first_attempt(fake, "first").await;
    // Closed while the first is in flight: it is answered and stored as usual, but the
    // second, next in the lane, must wait.
    gate.send(false).unwrap();
    let fake = blocking(move || {
        fake.reply(&rid, b"echo", &[b"first".to_vec()]);
        fake.assert_silent(QUIET);
        fake
    })
    .await;
    assert_stored(&store, first, "first").await;
    assert!(matches!(store.get(second).unwrap(), Lookup::Pending));

    gate.send(true).unwrap();
    let fake = deliver(fake, &store, second, "second").await;
    running.stop(fake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_due_to_retry_while_the_gate_is_closed_does_not_ask_mmi() {
    let (gate, active) = watch::channel(true);
    // A short backoff: the lane is due to ask `mmi.service` again well within `QUIET`.
    let options = DispatcherOptions {
        retry_min: Duration::from_millis(20),
        ..options(active)
    };
    let (fake, store, [id], running) = start(["retried"], options);
    let (fake, _) = first_attempt(fake, "retried").await;
    gate.send(false).unwrap();
    // Times out after 250 ms; its retry (20 ms later) starts with `mmi.service`: held back.
    let fake = assert_quiet(fake).await;
    gate.send(true).unwrap();
    let fake = deliver(fake, &store, id, "retried").await;
    running.stop(fake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_gate_the_dispatcher_sends_at_once() {
    let options = DispatcherOptions {
        active: None,
        ..options(watch::channel(false).1)
    };
    let (fake, store, [id], running) = start(["ungated"], options);
    let fake = deliver(fake, &store, id, "ungated").await;
    running.stop(fake).await;
}
