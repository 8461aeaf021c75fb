//! The session driver on in-memory links under tokio's paused clock: exact times, no sockets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use domo_mdp::worker::{decode_from_worker, encode_disconnect, encode_request};
use domo_mdp::{Heartbeat, LockExt, PeerId, ServiceName, WorkerCommand};
use domo_zmtp::HandshakeError;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{Driver, Sink};
use crate::handler::wrap;
use crate::status::Board;
use crate::transport::{Connector, Link};
use crate::{ErrorKind, WorkerOptions, WorkerStatus};
use domo_mdp::BackoffOptions;

/// What the broker side sees: (milliseconds since start, connection number, what).
type Seen = (u128, usize, String);

struct MemLink {
    id: usize,
    events: mpsc::UnboundedSender<(usize, Event)>,
    inbound: tokio::sync::Mutex<mpsc::UnboundedReceiver<Vec<Bytes>>>,
    /// What every link says of its last handshake (the connector's).
    refusal: Arc<Mutex<Option<HandshakeError>>>,
}

enum Event {
    Connected(String),
    Sent(Vec<Bytes>),
    Abandoned,
    Closed,
}

impl Link for MemLink {
    async fn send(&self, msg: Vec<Bytes>) -> bool {
        self.events.send((self.id, Event::Sent(msg))).is_ok()
    }

    fn try_send(&self, msg: Vec<Bytes>) {
        let _ = self.events.send((self.id, Event::Sent(msg)));
    }

    async fn recv(&self) -> Option<Vec<Bytes>> {
        self.inbound.lock().await.recv().await
    }

    fn abandon(&self) {
        let _ = self.events.send((self.id, Event::Abandoned));
    }

    async fn close(self) {
        let _ = self.events.send((self.id, Event::Closed));
    }

    fn handshake_error(&self) -> Option<HandshakeError> {
        self.refusal.lock_unpoisoned().clone()
    }
}

struct MemConnector {
    next: AtomicUsize,
    events: mpsc::UnboundedSender<(usize, Event)>,
    /// Senders into each connection, by connection number.
    to_worker: Mutex<Vec<mpsc::UnboundedSender<Vec<Bytes>>>>,
    /// The failed handshake every link reports, if any.
    refusal: Arc<Mutex<Option<HandshakeError>>>,
}

impl Connector for MemConnector {
    type Link = MemLink;

    fn connect(&self, endpoint: &str) -> Result<MemLink, domo_zmtp::Error> {
        let id = self.next.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = mpsc::unbounded_channel();
        self.to_worker.lock_unpoisoned().push(tx);
        let _ = self
            .events
            .send((id, Event::Connected(endpoint.to_string())));
        Ok(MemLink {
            id,
            events: self.events.clone(),
            inbound: tokio::sync::Mutex::new(rx),
            refusal: self.refusal.clone(),
        })
    }
}

/// The broker's side of the in-memory links.
struct Broker {
    start: Instant,
    connector: Arc<MemConnector>,
    events: mpsc::UnboundedReceiver<(usize, Event)>,
    stop: watch::Sender<bool>,
    status: WorkerStatus,
}

impl Broker {
    /// Sends `msg` to the worker on connection `id`.
    fn send(&self, id: usize, msg: Vec<Bytes>) {
        let conns = self.connector.to_worker.lock().unwrap();
        conns[id].send(msg).unwrap();
    }

    /// Everything the worker does until `until` ms after the start.
    async fn seen_until(&mut self, until: u64) -> Vec<Seen> {
        let deadline = self.start + Duration::from_millis(until);
        let mut seen = Vec::new();
        while let Ok(Some((id, event))) =
            tokio::time::timeout_at(deadline, self.events.recv()).await
        {
            let at = (Instant::now() - self.start).as_millis();
            let what = match event {
                Event::Connected(ep) => format!("connect {ep}"),
                Event::Sent(msg) => match decode_from_worker(msg).unwrap() {
                    // A reply shows the client-address frame it echoes, and its body.
                    WorkerCommand::Reply { client, body } => {
                        let text = String::from_utf8_lossy;
                        format!("REPLY {} {}", text(client.as_bytes()), text(&body[0]))
                    }
                    other => other.name().to_string(),
                },
                Event::Abandoned => "abandon".into(),
                Event::Closed => "close".into(),
            };
            seen.push((at, id, what));
        }
        seen
    }
}

fn seen(list: &[(u128, usize, &str)]) -> Vec<Seen> {
    list.iter()
        .map(|(t, c, w)| (*t, *c, w.to_string()))
        .collect()
}

fn start(sink: Sink) -> Broker {
    start_on(sink, &["tcp://a:1", "tcp://b:1"])
}

/// A session whose endpoint list is `endpoints` (one endpoint: a pinned session).
fn start_on(sink: Sink, endpoints: &[&str]) -> Broker {
    start_with(sink, endpoints, WorkerOptions::default().credit)
}

/// A session on `endpoints` that may hold `credit` requests.
fn start_with(sink: Sink, endpoints: &[&str], credit: u32) -> Broker {
    let (events_tx, events) = mpsc::unbounded_channel();
    let connector = Arc::new(MemConnector {
        next: AtomicUsize::new(0),
        events: events_tx,
        to_worker: Mutex::new(Vec::new()),
        refusal: Arc::default(),
    });
    let options = WorkerOptions::new(["tcp://a:1", "tcp://b:1"])
        .heartbeat(Heartbeat::default())
        .backoff(BackoffOptions::default().jitter(false))
        .credit(credit);
    let (stop, stop_rx) = watch::channel(false);
    let board = Board::new(1);
    let driver = Driver {
        connector: connector.clone(),
        service: ServiceName::from_static("svc"),
        options: Arc::new(options),
        endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
        sink,
        stop: stop_rx,
        status: board.reporter(0),
    };
    let start = Instant::now();
    tokio::spawn(driver.run(0));
    Broker {
        start,
        connector,
        events,
        stop,
        status: board.status(),
    }
}

fn echo_sink() -> Sink {
    Sink::Handler(wrap(|body: Vec<Bytes>| async move {
        match &body[0][..] {
            b"panic" => panic!("handler panics on purpose"),
            b"slow" => {
                tokio::time::sleep(Duration::from_millis(3000)).await;
                Ok::<_, std::convert::Infallible>(body)
            }
            _ => Ok(body),
        }
    }))
}

fn request(body: &'static str) -> Vec<Bytes> {
    request_from("client", body)
}

/// A REQUEST whose client-address frame (domo's token) is `client`.
fn request_from(client: &'static str, body: &'static str) -> Vec<Bytes> {
    let client = PeerId::new(Bytes::from_static(client.as_bytes())).unwrap();
    encode_request(&client, [Bytes::from_static(body.as_bytes())])
}

/// What a handler was given, and when: (milliseconds since `start`, body).
type Given = Arc<Mutex<Vec<(u128, String)>>>;

/// A handler that notes each body it is given, then replies with it after the number of
/// milliseconds the body names; `panic` panics after 10 ms.
fn timed_sink(start: Instant, given: &Given) -> Sink {
    let given = given.clone();
    Sink::Handler(wrap(move |body: Vec<Bytes>| {
        let text = String::from_utf8_lossy(&body[0]).into_owned();
        given
            .lock_unpoisoned()
            .push(((Instant::now() - start).as_millis(), text.clone()));
        async move {
            if text == "panic" {
                tokio::time::sleep(Duration::from_millis(10)).await;
                panic!("handler panics on purpose");
            }
            let ms = text.parse().unwrap();
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, std::convert::Infallible>(body)
        }
    }))
}

fn given(list: &[(u128, &str)]) -> Vec<(u128, String)> {
    list.iter().map(|(t, b)| (*t, b.to_string())).collect()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn silent_broker_gets_heartbeats_then_the_next_endpoint_after_the_backoff() {
    let mut broker = start(echo_sink());
    let expected = seen(&[
        (0, 0, "connect tcp://a:1"),
        (0, 0, "READY"),
        (2500, 0, "HEARTBEAT"),
        (5000, 0, "HEARTBEAT"),
        (7500, 0, "abandon"),
        (8500, 1, "connect tcp://b:1"),
        (8500, 1, "READY"),
        (11_000, 1, "HEARTBEAT"),
        (13_500, 1, "HEARTBEAT"),
        (16_000, 1, "abandon"),
        (18_000, 2, "connect tcp://a:1"),
        (18_000, 2, "READY"),
    ]);
    assert_eq!(broker.seen_until(18_001).await, expected);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn broker_traffic_keeps_the_session_and_disconnect_re_registers_after_1s() {
    let mut broker = start(echo_sink());
    broker.seen_until(1).await;
    for t in [2000, 4000, 6000, 8000, 10_000] {
        tokio::time::sleep_until(broker.start + Duration::from_millis(t)).await;
        broker.send(0, domo_mdp::worker::encode_heartbeat());
    }
    let seen_so_far = broker.seen_until(10_500).await;
    assert!(
        seen_so_far
            .iter()
            .all(|(_, c, w)| *c == 0 && w == "HEARTBEAT"),
        "{seen_so_far:?}"
    );
    broker.send(0, encode_disconnect());
    let expected = seen(&[
        (10_500, 0, "abandon"),
        (11_500, 1, "connect tcp://a:1"),
        (11_500, 1, "READY"),
    ]);
    assert_eq!(broker.seen_until(11_501).await, expected);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_busy_session_keeps_heartbeating_and_replies_when_done() {
    let mut broker = start(echo_sink());
    broker.seen_until(100).await;
    broker.send(0, request("slow"));
    let expected = seen(&[
        (2500, 0, "HEARTBEAT"),
        (3100, 0, "REPLY client slow"),
        (5600, 0, "HEARTBEAT"),
    ]);
    assert_eq!(broker.seen_until(5601).await, expected);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_panicking_handler_restarts_the_session_at_once_without_a_reply() {
    let mut broker = start(echo_sink());
    broker.seen_until(100).await;
    broker.send(0, request("panic"));
    broker.send(0, request("unused"));
    let expected = seen(&[
        (100, 0, "DISCONNECT"),
        (100, 1, "connect tcp://a:1"),
        (100, 1, "READY"),
        (100, 0, "close"),
    ]);
    assert_eq!(broker.seen_until(101).await, expected);
    broker.send(1, request("fine"));
    assert_eq!(
        broker.seen_until(102).await,
        seen(&[(101, 1, "REPLY client fine")])
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn stopping_sends_disconnect_and_closes() {
    let mut broker = start(echo_sink());
    broker.seen_until(1000).await;
    broker.stop.send(true).unwrap();
    let expected = seen(&[(1000, 0, "DISCONNECT"), (1000, 0, "close")]);
    assert_eq!(broker.seen_until(1001).await, expected);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_pinned_session_re_registers_with_its_own_endpoint_only() {
    let mut broker = start_on(echo_sink(), &["tcp://b:1"]);
    let expected = seen(&[
        (0, 0, "connect tcp://b:1"),
        (0, 0, "READY"),
        (2500, 0, "HEARTBEAT"),
        (5000, 0, "HEARTBEAT"),
        (7500, 0, "abandon"),
        (8500, 1, "connect tcp://b:1"),
        (8500, 1, "READY"),
        (11_000, 1, "HEARTBEAT"),
        (13_500, 1, "HEARTBEAT"),
        (16_000, 1, "abandon"),
        (18_000, 2, "connect tcp://b:1"),
        (18_000, 2, "READY"),
    ]);
    assert_eq!(broker.seen_until(18_001).await, expected);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_refused_handshake_shows_in_the_status_from_the_first_heartbeat_until_traffic() {
    let mut broker = start(echo_sink());
    *broker.connector.refusal.lock_unpoisoned() = Some(HandshakeError::NotAuthorized);
    let registering = seen(&[(0, 0, "connect tcp://a:1"), (0, 0, "READY")]);
    assert_eq!(broker.seen_until(1).await, registering);
    assert!(broker.status.handshake_error().is_none());
    assert!(broker.status.changed().await);
    assert_eq!((Instant::now() - broker.start).as_millis(), 2500);
    let error = broker.status.handshake_error().expect("refused");
    assert_eq!(error.kind(), ErrorKind::Handshake);
    assert_eq!(
        error.to_string(),
        "handshake failed: not authorized (tcp://a:1)"
    );
    // The session goes on as with a silent broker: heartbeats, then the next endpoint,
    // whose refusal is news.
    let expected = seen(&[
        (2500, 0, "HEARTBEAT"),
        (5000, 0, "HEARTBEAT"),
        (7500, 0, "abandon"),
        (8500, 1, "connect tcp://b:1"),
        (8500, 1, "READY"),
        (11_000, 1, "HEARTBEAT"),
    ]);
    assert_eq!(broker.seen_until(11_001).await, expected);
    assert!(broker.status.changed().await, "news at 11 s");
    let error = broker.status.handshake_error().expect("refused");
    assert!(error.to_string().ends_with("(tcp://b:1)"), "{error}");
    // Once the broker lets us in, its first message clears the status.
    *broker.connector.refusal.lock_unpoisoned() = None;
    broker.send(1, domo_mdp::worker::encode_heartbeat());
    assert!(broker.status.changed().await);
    assert!(broker.status.handshake_error().is_none());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_connection_closed_mid_handshake_is_not_a_refusal() {
    let mut broker = start(echo_sink());
    *broker.connector.refusal.lock_unpoisoned() = Some(HandshakeError::Closed);
    let expected = seen(&[
        (0, 0, "connect tcp://a:1"),
        (0, 0, "READY"),
        (2500, 0, "HEARTBEAT"),
    ]);
    assert_eq!(broker.seen_until(2501).await, expected);
    assert!(broker.status.handshake_error().is_none());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_session_of_credit_3_holds_three_requests_and_replies_in_completion_order() {
    let given_to_handler = Given::default();
    let mut broker = start_with(
        timed_sink(Instant::now(), &given_to_handler),
        &["tcp://a:1"],
        3,
    );
    broker.seen_until(100).await;
    broker.send(0, request_from("token-a", "300"));
    broker.send(0, request_from("token-b", "100"));
    broker.send(0, request_from("token-c", "200"));
    // A fourth while three are held: beyond the credit, dropped unseen by the handler.
    broker.send(0, request_from("token-d", "50"));
    let expected = seen(&[
        (200, 0, "REPLY token-b 100"),
        (300, 0, "REPLY token-c 200"),
        (400, 0, "REPLY token-a 300"),
    ]);
    assert_eq!(broker.seen_until(401).await, expected);
    // All three were in the handler at once, from the start.
    let all_three = given(&[(100, "300"), (100, "100"), (100, "200")]);
    assert_eq!(*given_to_handler.lock_unpoisoned(), all_three);
    // The credit is free again: the next three are taken at once too.
    broker.send(0, request_from("token-e", "20"));
    broker.send(0, request_from("token-f", "10"));
    let expected = seen(&[(411, 0, "REPLY token-f 10"), (421, 0, "REPLY token-e 20")]);
    assert_eq!(broker.seen_until(422).await, expected);
    assert_eq!(given_to_handler.lock_unpoisoned().len(), 5);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failed_request_restarts_the_session_and_drops_the_others_it_held() {
    let given_to_handler = Given::default();
    let mut broker = start_with(
        timed_sink(Instant::now(), &given_to_handler),
        &["tcp://a:1"],
        3,
    );
    broker.seen_until(100).await;
    broker.send(0, request_from("token-a", "50"));
    broker.send(0, request_from("token-b", "panic"));
    broker.send(0, request_from("token-c", "200"));
    // The panic (at 110) ends the connection: no reply for it nor for the other two.
    let expected = seen(&[
        (110, 0, "DISCONNECT"),
        (110, 1, "connect tcp://a:1"),
        (110, 1, "READY"),
        (110, 0, "close"),
        (2610, 1, "HEARTBEAT"),
    ]);
    assert_eq!(broker.seen_until(2611).await, expected);
    let all_three = given(&[(100, "50"), (100, "panic"), (100, "200")]);
    assert_eq!(*given_to_handler.lock_unpoisoned(), all_three);
    // The new connection serves as before.
    broker.send(1, request_from("token-d", "5"));
    let expected = seen(&[(2616, 1, "REPLY token-d 5")]);
    assert_eq!(broker.seen_until(2617).await, expected);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_session_of_credit_1_drops_a_second_request_as_before() {
    let given_to_handler = Given::default();
    let mut broker = start_with(
        timed_sink(Instant::now(), &given_to_handler),
        &["tcp://a:1"],
        1,
    );
    broker.seen_until(100).await;
    broker.send(0, request_from("token-a", "100"));
    broker.send(0, request_from("token-b", "10"));
    let expected = seen(&[(200, 0, "REPLY token-a 100")]);
    assert_eq!(broker.seen_until(201).await, expected);
    assert_eq!(*given_to_handler.lock_unpoisoned(), given(&[(100, "100")]));
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn broker_loss_drops_every_held_request() {
    let given_to_handler = Given::default();
    let mut broker = start_with(
        timed_sink(Instant::now(), &given_to_handler),
        &["tcp://a:1"],
        3,
    );
    broker.seen_until(100).await;
    broker.send(0, request_from("token-a", "9000"));
    broker.send(0, request_from("token-b", "9500"));
    // No traffic after the requests at 100: the broker is lost at 7600, and the replies
    // due at 9100 and 9600 are never sent, on either connection.
    let expected = seen(&[
        (2500, 0, "HEARTBEAT"),
        (5000, 0, "HEARTBEAT"),
        (7500, 0, "HEARTBEAT"),
        (7600, 0, "abandon"),
        (8600, 1, "connect tcp://a:1"),
        (8600, 1, "READY"),
    ]);
    assert_eq!(broker.seen_until(10_000).await, expected);
}
