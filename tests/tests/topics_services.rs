//! The `topic.*` services and the SDK's subscriber, through a real `domo-broker` process:
//! the six operations from a raw libzmq MDP client (REQ and SUB sockets) and from
//! domo-client, bad input answered with a status, and a subscriber whose connection is cut
//! while acknowledged writes go on: it gets every message exactly once, in order, or a gap
//! report for what the topic no longer retains.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use domo_client::{
    Client, ClientOptions, ErrorKind, Retention, Subscriber, SubscriberEvent, TopicMessage,
};
use domo_mdp::topic::{ReadReply, Status};
use domo_tests::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);

fn broker() -> (LoggedBroker, String) {
    let b = LoggedBroker::start(&["--no-titanic"]);
    let (sub, _) = b.topics();
    (b, sub)
}

fn frames(parts: &[&str]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.as_bytes().to_vec()).collect()
}

#[test]
fn the_six_operations_from_a_raw_libzmq_mdp_client() {
    let (b, sub_ep) = broker();
    let client = ReqClient::connect(&b.endpoint);
    // create(topic, retention)
    assert_eq!(
        client.request("topic.create", &[b"orders", b"max_messages=3"]),
        frames(&["200", "created"])
    );
    assert_eq!(
        client.request("topic.create", &[b"orders", b"max_messages=3"]),
        frames(&["200", "exists"])
    );
    let conflict = client.request("topic.create", &[b"orders", b"max_messages=4"]);
    assert_eq!(conflict[0], b"409");
    // write(topic, message): acknowledged with the offset
    for i in 0..5u32 {
        let body = format!("order {i}");
        assert_eq!(
            client.request("topic.write", &[b"orders", body.as_bytes(), b""]),
            frames(&["200", &i.to_string()])
        );
    }
    // read(topic): the three newest are retained
    let reply: Vec<Bytes> = client
        .request("topic.read", &[b"orders", b"0"])
        .into_iter()
        .map(Bytes::from)
        .collect();
    let read = ReadReply::decode(&reply).unwrap();
    assert_eq!((read.first, read.next), (2, 5));
    let offsets: Vec<u64> = read.messages.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, [2, 3, 4]);
    assert_eq!(
        read.messages[2].frames,
        vec![Bytes::from("order 4"), Bytes::new()]
    );
    // list
    let list = client.request("topic.list", &[b"ord"]);
    assert_eq!(list[0], b"200");
    assert_eq!(list[1], b"orders");
    let info = String::from_utf8(list[2].clone()).unwrap();
    assert!(
        info.contains("kind=created") && info.contains("first=2 next=5 messages=3"),
        "{info}"
    );
    // subscribe(topic): a plain libzmq SUB gets the last value first, unstamped, then live
    let ctx = zmq::Context::new();
    let sub = zsocket(&ctx, zmq::SUB);
    sub.connect(&sub_ep).unwrap();
    sub.set_subscribe(b"orders").unwrap();
    assert_eq!(
        sub.recv_multipart(0).unwrap(),
        frames(&["orders", "order 4", ""])
    );
    client.request("topic.write", &[b"orders", b"live"]);
    assert_eq!(sub.recv_multipart(0).unwrap(), frames(&["orders", "live"]));
    // unsubscribe(topic): nothing more comes
    sub.set_unsubscribe(b"orders").unwrap();
    sub.set_subscribe(b"marker").unwrap();
    client.request("topic.write", &[b"orders", b"not for it"]);
    client.request("topic.write", &[b"marker", b"m"]);
    assert_eq!(sub.recv_multipart(0).unwrap(), frames(&["marker", "m"]));
    // delete_topic(topic)
    assert_eq!(
        client.request("topic.delete", &[b"orders"]),
        frames(&["200"])
    );
    assert_eq!(client.request("topic.read", &[b"orders", b"0"])[0], b"404");
    assert_eq!(client.request("topic.delete", &[b"orders"])[0], b"404");
}

/// A service, a request body and the status expected.
type Case<'a> = (&'a str, Vec<&'a [u8]>, &'a [u8]);

#[test]
fn bad_input_gets_a_status_and_a_reason_and_the_broker_goes_on() {
    let (b, _) = broker();
    let client = ReqClient::connect(&b.endpoint);
    let long = vec![b'x'; 256];
    let cases: Vec<Case<'_>> = vec![
        ("topic.create", vec![b""], b"400"),
        ("topic.create", vec![&long], b"413"),
        ("topic.create", vec![b"t", b"max_bytes=lots"], b"400"),
        ("topic.create", vec![b"t", b"retain=forever"], b"400"),
        (
            "topic.create",
            vec![b"t", b"persist=disk", b"max_messages=0"],
            b"400",
        ),
        (
            "topic.create",
            vec![b"t", b"max_bytes=99999999999999"],
            b"507",
        ),
        ("topic.write", vec![&long, b"x"], b"413"),
        ("topic.read", vec![b"unknown", b"0"], b"404"),
        ("topic.read", vec![b"t", b"-1"], b"400"),
        ("topic.read", vec![b"t", b"99999999999999999999999"], b"400"),
        ("topic.read", vec![b"t"], b"400"),
        ("topic.delete", vec![b"unknown"], b"404"),
        ("topic.list", vec![b"a", b"b"], b"400"),
    ];
    for (service, body, code) in &cases {
        let reply = client.request(service, body);
        assert_eq!(reply[0], *code, "{service} {body:?}: {reply:?}");
        assert!(
            reply.len() == 2 && !reply[1].is_empty(),
            "a reason: {reply:?}"
        );
    }
    // Still serving.
    assert_eq!(
        client.request("topic.write", &[b"t", b"x"]),
        frames(&["200", "0"])
    );
}

fn sdk(b: &LoggedBroker) -> Client {
    Client::new(ClientOptions::new([b.endpoint.as_str()]).timeout(Duration::from_secs(5))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_six_operations_through_the_sdk() {
    let (b, sub_ep) = blocking(broker).await;
    let client = sdk(&b);
    let retention = Retention {
        max_messages: 100,
        ..Retention::default()
    };
    assert!(client.topic_create("prices.eur", retention).await.unwrap());
    assert!(!client.topic_create("prices.eur", retention).await.unwrap());
    let e = client
        .topic_create("prices.eur", Retention::default())
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.topic_status()),
        (ErrorKind::Topic, Some(Status::Conflict))
    );
    let mut sub = Subscriber::new(&sub_ep, client.clone()).unwrap();
    sub.subscribe("prices.").unwrap();
    for i in 0..3u64 {
        let offset = client
            .topic_write("prices.eur", vec![Bytes::from(format!("1.0{i}"))])
            .await
            .unwrap();
        assert_eq!(offset, i);
    }
    // The subscriber's first subscription may arrive after some writes: the last value
    // replayed then shows a gap from nothing, which it does not have to fill. Whatever
    // came first, the rest is in order, once each, stamped.
    let mut seen = Vec::new();
    while seen.last() != Some(&2) {
        match timeout(T, sub.next()).await.unwrap().unwrap() {
            SubscriberEvent::Message(TopicMessage { topic, stamp, .. }) => {
                assert_eq!(topic, "prices.eur");
                seen.push(stamp.unwrap().offset);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
    let read = client.topic_read("prices.eur", 1, 10).await.unwrap();
    assert_eq!(read.messages.len(), 2);
    let list = client.topic_list("prices.").await.unwrap();
    assert_eq!(list.len(), 1);
    sub.cancel("prices.").unwrap();
    client.topic_delete("prices.eur").await.unwrap();
    let e = client.topic_delete("prices.eur").await.unwrap_err();
    assert_eq!(e.topic_status(), Some(Status::NotFound));
    assert!(e.to_string().contains("404"), "{e}");
}

/// A TCP proxy whose connections the test can cut, to take a subscriber's connection away
/// without touching the broker.
struct Proxy {
    endpoint: String,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
        let target = target.trim_start_matches("tcp://").to_string();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let list = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let task = tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    let _ = inbound.shutdown().await;
                });
                list.lock().unwrap().push(task);
            }
        });
        Self {
            endpoint,
            conns,
            accept,
        }
    }

    /// Drops every connection now (both sides see it closed).
    fn cut(&self) {
        for task in self.conns.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Collects messages of `topic` from the subscriber until offset `last` has been delivered;
/// returns the offsets delivered and the gaps reported.
async fn until_offset(sub: &mut Subscriber, last: u64) -> (Vec<u64>, Vec<(u64, u64)>) {
    let (mut offsets, mut gaps) = (Vec::new(), Vec::new());
    while offsets.last() != Some(&last) {
        match timeout(T, sub.next()).await.expect("stalled").unwrap() {
            SubscriberEvent::Message(m) => {
                let body = String::from_utf8(m.frames[0].to_vec()).unwrap();
                let offset = m.stamp.unwrap().offset;
                assert_eq!(
                    body,
                    format!("m{offset}"),
                    "a message with another's offset"
                );
                offsets.push(offset);
            }
            SubscriberEvent::Gap { from, to, .. } => gaps.push((from, to)),
            other => panic!("unexpected {other:?}"),
        }
    }
    (offsets, gaps)
}

async fn write_range(client: &Client, topic: &str, range: std::ops::Range<u64>) {
    for i in range {
        let offset = client
            .topic_write(topic.to_string(), vec![Bytes::from(format!("m{i}"))])
            .await
            .unwrap();
        assert_eq!(offset, i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_subscriber_resumes_with_every_acknowledged_message_exactly_once() {
    let (b, sub_ep) = blocking(broker).await;
    let client = sdk(&b);
    client
        .topic_create(
            "orders",
            Retention {
                max_messages: 10_000,
                ..Retention::default()
            },
        )
        .await
        .unwrap();
    let proxy = Proxy::start(&sub_ep).await;
    let mut sub = Subscriber::new(&proxy.endpoint, client.clone()).unwrap();
    sub.subscribe("orders").unwrap();
    // The first message makes sure the subscription is in place (the broker replays it as
    // the last value if it was written before).
    write_range(&client, "orders", 0..1).await;
    let (first, _) = until_offset(&mut sub, 0).await;
    assert_eq!(first, [0]);
    write_range(&client, "orders", 1..100).await;
    let (live, gaps) = until_offset(&mut sub, 99).await;
    assert_eq!(live, (1..100).collect::<Vec<_>>());
    assert!(gaps.is_empty());
    // Cut, write 400 more while it is away (acknowledged: stored), then let it back in.
    for round in 0..3u64 {
        proxy.cut();
        let start = 100 + round * 400;
        write_range(&client, "orders", start..start + 400).await;
        let (got, gaps) = until_offset(&mut sub, start + 399).await;
        assert_eq!(
            got,
            (start..start + 400).collect::<Vec<_>>(),
            "round {round}: each once, in order"
        );
        assert!(gaps.is_empty(), "{gaps:?}");
    }
    assert_eq!(sub.position(b"orders").unwrap().offset, 1299);
    // Nothing else is pending: the next message is the next live one.
    write_range(&client, "orders", 1300..1301).await;
    let (next, _) = until_offset(&mut sub, 1300).await;
    assert_eq!(next, [1300]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_topic_no_longer_retains_is_reported_as_a_gap() {
    let (b, sub_ep) = blocking(broker).await;
    let client = sdk(&b);
    client
        .topic_create(
            "small",
            Retention {
                max_messages: 5,
                ..Retention::default()
            },
        )
        .await
        .unwrap();
    let proxy = Proxy::start(&sub_ep).await;
    let mut sub = Subscriber::new(&proxy.endpoint, client.clone()).unwrap();
    sub.subscribe("small").unwrap();
    write_range(&client, "small", 0..1).await;
    until_offset(&mut sub, 0).await;
    proxy.cut();
    write_range(&client, "small", 1..21).await;
    // Offsets 1-15 are gone (5 retained: 16-20): reported, then 16-20 in order.
    let (got, gaps) = until_offset(&mut sub, 20).await;
    assert_eq!(gaps, [(1, 16)]);
    assert_eq!(got, (16..21).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_hold_the_topics_by_hash_and_a_prefix_subscriber_sees_them_all() {
    use domo_client::{Publisher, TopicBroker};
    let mut brokers = Vec::new();
    let mut deployment = Vec::new();
    for _ in 0..3 {
        let b = blocking(|| LoggedBroker::start(&["--no-titanic"])).await;
        let (subscribe, publish) = b.topics();
        deployment.push(TopicBroker {
            client: sdk(&b),
            subscribe,
            publish,
        });
        brokers.push(b);
    }
    let publisher = Publisher::new(deployment.clone()).unwrap();
    let mut sub = Subscriber::of(&deployment).unwrap();
    sub.subscribe("s.").unwrap();
    let topics: Vec<String> = (0..30).map(|i| format!("s.{i}")).collect();
    for t in &topics {
        publisher
            .create(t.clone(), Retention::default())
            .await
            .unwrap();
        assert_eq!(
            publisher
                .publish(t.clone(), vec![Bytes::from("m0")])
                .await
                .unwrap(),
            0
        );
    }
    // Each topic is on the broker the placement names, and only there; all three hold some.
    let mut held = [0usize; 3];
    for (i, b) in deployment.iter().enumerate() {
        let names: Vec<String> = b
            .client
            .topic_list("s.")
            .await
            .unwrap()
            .into_iter()
            .map(|(n, _)| String::from_utf8(n.to_vec()).unwrap())
            .collect();
        for n in &names {
            let owner = publisher.broker_for(n.as_bytes());
            assert_eq!(owner.publish, b.publish, "{n} on the wrong broker");
        }
        held[i] = names.len();
    }
    assert_eq!(held.iter().sum::<usize>(), 30);
    assert!(held.iter().all(|&n| n > 0), "{held:?}");
    // The subscriber of all three gets every topic (its last value or live), once.
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 30 {
        match timeout(T, sub.next()).await.unwrap().unwrap() {
            SubscriberEvent::Message(m) => {
                assert!(seen.insert(m.topic.clone()), "{:?} twice", m.topic);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // Fire-and-forget goes to the owner too, and reaches the subscriber.
    publisher.send("s.ff", vec![Bytes::from("fire")]).unwrap();
    loop {
        if let SubscriberEvent::Message(m) = timeout(T, sub.next()).await.unwrap().unwrap() {
            if m.topic == "s.ff" {
                assert_eq!(m.frames, vec![Bytes::from("fire")]);
                break;
            }
        }
    }
    let owner = publisher.broker_for(b"s.ff");
    let on_owner = owner.client.topic_read("s.ff", 0, 1).await.unwrap();
    assert_eq!(on_owner.messages.len(), 1);
    publisher.close().await;
}

/// Runs `domo ARGS` against the broker `b`.
fn domo(b: &LoggedBroker, args: &[&str]) -> std::process::Output {
    let (subscribe, publish) = b.topics();
    std::process::Command::new(DOMO)
        .args(args)
        .env("DOMO_BROKER", &b.endpoint)
        .env("DOMO_TOPICS__SUBSCRIBE", subscribe)
        .env("DOMO_TOPICS__PUBLISH", publish)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn out(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_cli_creates_writes_reads_lists_deletes_publishes_and_subscribes() {
    let (b, _) = broker();
    assert_eq!(
        out(&domo(
            &b,
            &["topic", "create", "news", "--max-messages", "2"]
        )),
        "created\n"
    );
    assert_eq!(out(&domo(&b, &["topic", "write", "news", "a", "b"])), "0\n");
    assert_eq!(out(&domo(&b, &["pub", "news", "c"])), "1\n");
    assert_eq!(out(&domo(&b, &["pub", "news", "d"])), "2\n");
    // Two retained: the read says what is gone on stderr.
    let read = domo(&b, &["topic", "read", "news"]);
    assert_eq!(out(&read), "1 c\n2 d\n");
    assert!(String::from_utf8_lossy(&read.stderr).contains("offsets 0..1 are no longer retained"));
    let json = out(&domo(
        &b,
        &["topic", "read", "news", "--from", "2", "--json"],
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["messages"][0]["offset"], 2);
    assert_eq!(v["messages"][0]["frames"][0], "d");
    let list = out(&domo(&b, &["topic", "list"]));
    assert!(list.starts_with("news kind=created"), "{list}");
    // A subscriber gets the last value first, then what is published after it, a
    // fire-and-forget message included.
    let (subscribe, _) = b.topics();
    let mut sub = Killed(
        std::process::Command::new(DOMO)
            .args(["sub", "news", "--count", "2"])
            .env("DOMO_BROKER", &b.endpoint)
            .env("DOMO_TOPICS__SUBSCRIBE", &subscribe)
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = lines_of(sub.0.stdout.take().unwrap());
    let first = lines.recv_timeout(T).expect("no last value");
    assert_eq!(first, "news 2 d");
    // Its subscription is in place: the last value came through it.
    assert!(domo(&b, &["pub", "--no-ack", "news", "e"]).status.success());
    assert_eq!(lines.recv_timeout(T).expect("no live message"), "news 3 e");
    let status = sub.0.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // Delete, then both read and delete say 404 (exit 1, one line).
    out(&domo(&b, &["topic", "delete", "news"]));
    let gone = domo(&b, &["topic", "read", "news"]);
    assert_eq!(gone.status.code(), Some(1));
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(err.contains("404") && err.lines().count() == 1, "{err}");
}

/// A child process killed by its pid when dropped (a failed assertion included).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines `stdout` prints, as they come.
fn lines_of(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn the_cache_invalidation_example_drops_the_changed_keys_on_every_node() {
    let (b, subscribe) = broker();
    let bin = example("domo-client", "cache_invalidation");
    let out = std::process::Command::new(bin)
        .args(["--broker", &b.endpoint, "--subscribe", &subscribe])
        .args(["--nodes", "3", "--changes", "4"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("all 3 nodes dropped the 4 changed keys"),
        "{stdout}"
    );
    // Each node dropped each changed key once.
    assert_eq!(stdout.matches(": dropped ").count(), 12, "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriber_is_a_stream_too() {
    use futures_core::Stream;
    let (b, sub_ep) = blocking(broker).await;
    let client = sdk(&b);
    client
        .topic_create("streamed", Retention::default())
        .await
        .unwrap();
    let sub = Subscriber::new(&sub_ep, client.clone()).unwrap();
    sub.subscribe("streamed").unwrap();
    let mut stream = sub.into_stream();
    client
        .topic_write("streamed", vec![Bytes::from("m0")])
        .await
        .unwrap();
    let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx));
    match timeout(T, next).await.unwrap() {
        Some(Ok(SubscriberEvent::Message(m))) => {
            assert_eq!(
                (m.topic.as_ref(), m.stamp.unwrap().offset),
                (&b"streamed"[..], 0)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn malformed_input_on_the_topic_endpoints_is_counted_and_the_broker_goes_on() {
    use domo_zmtp::proto::greeting::mechanism_name;
    use domo_zmtp::proto::{Command, Encoder, Greeting, Metadata};
    use std::io::{Read, Write};
    let (b, sub_ep) = broker();
    // A ZMTP 3.0 SUB that sends what is neither a subscription nor a cancel.
    let mut raw = std::net::TcpStream::connect(sub_ep.trim_start_matches("tcp://")).unwrap();
    let mut greeting = Greeting::new(mechanism_name(b"NULL"), false);
    greeting.minor = 0;
    let mut out = greeting.encode().to_vec();
    let mut meta = Metadata::new();
    meta.insert("Socket-Type", "SUB");
    let mut enc = Encoder::new();
    enc.encode_command(&Command::Ready(meta));
    for junk in [
        vec![Bytes::from_static(b"\x02junk")],
        vec![
            Bytes::from_static(b"\x01two"),
            Bytes::from_static(b"frames"),
        ],
        vec![Bytes::new()],
    ] {
        enc.encode_message(junk);
    }
    out.extend_from_slice(&enc.take_all());
    raw.write_all(&out).unwrap();
    let mut theirs = [0u8; 64];
    raw.read_exact(&mut theirs).unwrap();
    b.wait_metric("domo_topic_dropped_total{reason=\"malformed\"}", 3.0);
    // Still serving, that connection included (it sent nothing fatal to ZMTP).
    let client = ReqClient::connect(&b.endpoint);
    assert_eq!(
        client.request("topic.write", &[b"after", b"x"]),
        frames(&["200", "0"])
    );
}
