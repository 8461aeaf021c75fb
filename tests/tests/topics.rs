//! Topics through a real `domo-broker` process with unchanged libzmq PUB and SUB sockets (the
//! `zmq` crate's libzmq 4.3), and a raw ZMTP 3.0 subscriber: prefix filtering, multipart
//! messages kept whole, the last-value cache for a late subscriber alone, and a subscriber
//! that never reads while the others get everything.
//!
//! A libzmq PUB drops what it has no subscription for, and a SUB's subscription travels
//! asynchronously, so each test first publishes probes until every subscriber has seen one
//! (a subscriber's SUBSCRIBE commands arrive in order, so its earlier prefixes are in place
//! by then). Every wait is bounded.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_tests::*;
use domo_zmtp::proto::greeting::mechanism_name;
use domo_zmtp::proto::{Command, Decoded, Decoder, Encoder, Greeting, Limits, Metadata};

const PROBE: &[u8] = b"probe.";

fn broker(extra: &[&str]) -> (LoggedBroker, String, String) {
    let b = LoggedBroker::start(&[&["--no-titanic"], extra].concat());
    let (sub, publ) = b.topics();
    (b, sub, publ)
}

fn sub_socket(ctx: &zmq::Context, ep: &str, prefixes: &[&[u8]]) -> zmq::Socket {
    let s = zsocket(ctx, zmq::SUB);
    s.set_rcvhwm(0).unwrap();
    s.connect(ep).unwrap();
    for p in prefixes {
        s.set_subscribe(p).unwrap();
    }
    s.set_subscribe(PROBE).unwrap();
    s
}

fn pub_socket(ctx: &zmq::Context, ep: &str) -> zmq::Socket {
    let s = zsocket(ctx, zmq::PUB);
    // No high-water mark, so the PUB never drops (it would at its HWM): the tests count
    // every message.
    s.set_sndhwm(0).unwrap();
    s.connect(ep).unwrap();
    s
}

/// Publishes probes until each of `subs` has received one, then drains the probes each has
/// waiting (a probe after the first is all that may be left).
fn sync(publisher: &zmq::Socket, subs: &[&zmq::Socket]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = vec![false; subs.len()];
    while seen.iter().any(|s| !s) {
        assert!(Instant::now() < deadline, "subscriptions never took effect");
        publisher.send(PROBE, 0).unwrap();
        thread::sleep(Duration::from_millis(20));
        for (i, s) in subs.iter().enumerate() {
            while let Ok(msg) = s.recv_multipart(zmq::DONTWAIT) {
                assert_eq!(
                    msg,
                    vec![PROBE.to_vec()],
                    "a message before the first probe"
                );
                seen[i] = true;
            }
        }
    }
    // Probes still in flight are skipped by `recv`.
}

/// The next message that is not a probe.
fn recv(s: &zmq::Socket) -> Vec<Vec<u8>> {
    loop {
        let msg = s
            .recv_multipart(0)
            .expect("nothing received within the timeout");
        if msg != vec![PROBE.to_vec()] {
            return msg;
        }
    }
}

#[test]
fn libzmq_subscribers_get_exactly_the_messages_their_prefixes_match_whole() {
    let (_b, sub_ep, pub_ep) = broker(&[]);
    let ctx = zmq::Context::new();
    let weather = sub_socket(&ctx, &sub_ep, &[b"weather.", b"end"]);
    // Two overlapping prefixes: each message once.
    let overlapping = sub_socket(&ctx, &sub_ep, &[b"news", b"news.sport", b"end"]);
    // A prefix subscribed and cancelled: nothing.
    let cancelled = sub_socket(&ctx, &sub_ep, &[b"weather.", b"end"]);
    cancelled.set_unsubscribe(b"weather.").unwrap();
    let publisher = pub_socket(&ctx, &pub_ep);
    sync(&publisher, &[&weather, &overlapping, &cancelled]);
    let sent: Vec<Vec<Vec<u8>>> = vec![
        vec![b"weather.paris".to_vec(), b"".to_vec(), b"21C".to_vec()],
        vec![b"news.sport".to_vec(), vec![0, 255, 1], b"x".to_vec()],
        vec![b"weathe".to_vec(), b"not a match".to_vec()],
        vec![b"news".to_vec()],
        vec![b"weather.oslo".to_vec(), vec![7u8; 100_000]],
    ];
    for m in &sent {
        publisher.send_multipart(m, 0).unwrap();
    }
    // The end marker: everything published before it has been routed once it arrives.
    publisher.send(&b"end"[..], 0).unwrap();
    let until_end = |s: &zmq::Socket| {
        let mut got = Vec::new();
        loop {
            let m = recv(s);
            if m == vec![b"end".to_vec()] {
                return got;
            }
            got.push(m);
        }
    };
    assert_eq!(until_end(&weather), vec![sent[0].clone(), sent[4].clone()]);
    assert_eq!(
        until_end(&overlapping),
        vec![sent[1].clone(), sent[3].clone()]
    );
    assert!(until_end(&cancelled).is_empty());
}

#[test]
fn a_late_subscriber_alone_gets_the_last_values_first_then_live() {
    let (b, sub_ep, pub_ep) = broker(&[]);
    let ctx = zmq::Context::new();
    let early = sub_socket(&ctx, &sub_ep, &[b""]);
    let publisher = pub_socket(&ctx, &pub_ep);
    sync(&publisher, &[&early]);
    for (topic, value) in [
        ("cfg.a", "1"),
        ("cfg.b", "1"),
        ("other", "1"),
        ("cfg.a", "2"),
    ] {
        publisher.send_multipart([topic, value], 0).unwrap();
    }
    for _ in 0..4 {
        recv(&early);
    }
    // The late subscriber: its replay comes before anything live. The probes it waits for
    // are live messages, so they come after the replay too.
    let late = zsocket(&ctx, zmq::SUB);
    late.connect(&sub_ep).unwrap();
    late.set_subscribe(b"cfg.").unwrap();
    late.set_subscribe(PROBE).unwrap();
    let first = late.recv_multipart(0).unwrap();
    let second = late.recv_multipart(0).unwrap();
    // The probe topic had a last value too (from `sync`): replayed for the PROBE prefix.
    let mut replay = vec![first, second];
    loop {
        let m = late.recv_multipart(0).unwrap();
        if m == vec![PROBE.to_vec()] {
            break;
        }
        replay.push(m);
    }
    assert_eq!(
        replay,
        vec![
            vec![b"cfg.a".to_vec(), b"2".to_vec()],
            vec![b"cfg.b".to_vec(), b"1".to_vec()],
        ]
    );
    publisher.send_multipart(["cfg.b", "live"], 0).unwrap();
    assert_eq!(recv(&late), vec![b"cfg.b".to_vec(), b"live".to_vec()]);
    // The early subscriber saw no replay: the live message is next for it.
    assert_eq!(recv(&early), vec![b"cfg.b".to_vec(), b"live".to_vec()]);
    b.wait_metric_at_least("domo_topic_messages_total{event=\"replayed\"}", 3.0);
}

/// A subscriber over raw TCP speaking ZMTP 3.0: its subscriptions are data frames.
struct Zmtp30Sub {
    stream: TcpStream,
    dec: Decoder,
}

impl Zmtp30Sub {
    fn connect(endpoint: &str) -> Self {
        let mut stream = TcpStream::connect(endpoint.trim_start_matches("tcp://")).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut greeting = Greeting::new(mechanism_name(b"NULL"), false);
        greeting.minor = 0;
        let mut hello = greeting.encode().to_vec();
        let mut meta = Metadata::new();
        meta.insert("Socket-Type", "SUB");
        let mut enc = Encoder::new();
        enc.encode_command(&Command::Ready(meta));
        hello.extend_from_slice(&enc.take_all());
        stream.write_all(&hello).unwrap();
        let mut theirs = [0u8; 64];
        stream.read_exact(&mut theirs).unwrap();
        let mut s = Self {
            stream,
            dec: Decoder::new(Limits::default()),
        };
        assert!(matches!(s.next(), Decoded::Command(Command::Ready(_))));
        s
    }

    fn subscribe(&mut self, prefix: &[u8]) {
        let mut frame = vec![1u8];
        frame.extend_from_slice(prefix);
        let mut enc = Encoder::new();
        enc.encode_message(vec![Bytes::from(frame)]);
        self.stream.write_all(&enc.take_all()).unwrap();
    }

    fn next(&mut self) -> Decoded {
        loop {
            if let Some(d) = self.dec.decode().unwrap() {
                return d;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "closed by the broker");
            self.dec.feed(&chunk[..n]);
        }
    }

    fn next_message(&mut self) -> Vec<Vec<u8>> {
        loop {
            if let Decoded::Message(m) = self.next() {
                let m: Vec<Vec<u8>> = m.iter().map(|f| f.to_vec()).collect();
                if m != vec![PROBE.to_vec()] {
                    return m;
                }
            }
        }
    }
}

#[test]
fn a_zmtp_3_0_subscriber_subscribes_with_data_frames() {
    let (_b, sub_ep, pub_ep) = broker(&[]);
    let ctx = zmq::Context::new();
    let mut old = Zmtp30Sub::connect(&sub_ep);
    old.subscribe(b"a.");
    old.subscribe(PROBE);
    let publisher = pub_socket(&ctx, &pub_ep);
    // Probe until the raw subscriber sees one.
    let deadline = Instant::now() + Duration::from_secs(20);
    old.stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    'probing: loop {
        assert!(Instant::now() < deadline, "subscription never took effect");
        publisher.send(PROBE, 0).unwrap();
        let mut chunk = [0u8; 4096];
        if let Ok(n) = old.stream.read(&mut chunk) {
            assert!(n > 0);
            old.dec.feed(&chunk[..n]);
            while let Some(d) = old.dec.decode().unwrap() {
                if matches!(d, Decoded::Message(_)) {
                    break 'probing;
                }
            }
        }
    }
    old.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    publisher.send_multipart(["b.x", "no"], 0).unwrap();
    publisher.send_multipart(["a.x", "yes", ""], 0).unwrap();
    assert_eq!(
        old.next_message(),
        vec![b"a.x".to_vec(), b"yes".to_vec(), Vec::new()]
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn a_subscriber_that_never_reads_is_dropped_and_cut_off_while_the_others_get_everything() {
    // 1 GiB in 64 KiB messages with an 8 MiB queue per subscriber: the slow one overflows
    // a hundred times over (DOMO_TOPICS_SLOW_TEST_MIB sets another volume).
    const MSG: usize = 64 * 1024;
    let total: usize = std::env::var("DOMO_TOPICS_SLOW_TEST_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
        << 20;
    let count = total / MSG;
    let (_dir, config) = write_config(
        "[topics]\nsubscriber_max_bytes = 8388608\nslow_subscriber_timeout = \"2s\"\n",
    );
    let (b, sub_ep, pub_ep) = broker(&["--config", &config]);
    let pid = b.child.pid();
    let ctx = zmq::Context::new();
    // libzmq reads ahead into a SUB's queue whether the application reads or not: a small
    // high-water mark and socket buffer, so the broker soon sees a subscriber that does not
    // read.
    let slow = zsocket(&ctx, zmq::SUB);
    slow.set_rcvhwm(4).unwrap();
    slow.set_rcvbuf(64 * 1024).unwrap();
    slow.connect(&sub_ep).unwrap();
    slow.set_subscribe(b"data").unwrap();
    slow.set_subscribe(PROBE).unwrap();
    let fast: Vec<zmq::Socket> = (0..2)
        .map(|_| sub_socket(&ctx, &sub_ep, &[b"data"]))
        .collect();
    let publisher = pub_socket(&ctx, &pub_ep);
    let all: Vec<&zmq::Socket> = fast.iter().chain([&slow]).collect();
    sync(&publisher, &all);
    // From here on the slow subscriber reads nothing. The fast ones are kept fast whatever
    // else the machine does: the publisher stays at most WINDOW messages (2 MiB) ahead of
    // the slower of them, well inside their 8 MiB queues, so what they lose can only be the
    // broker's doing. The slow one is not waited for.
    const WINDOW: u64 = 32;
    let progress = Arc::new((Mutex::new(vec![0u64; fast.len()]), Condvar::new()));
    let readers: Vec<_> = fast
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let progress = progress.clone();
            thread::spawn(move || {
                let mut next = 0u64;
                while (next as usize) < count {
                    let m = recv(&s);
                    assert_eq!(m.len(), 2);
                    let n = u64::from_be_bytes(m[1][..8].try_into().unwrap());
                    assert_eq!(n, next, "a fast subscriber missed or reordered a message");
                    assert_eq!(m[1].len(), MSG);
                    next += 1;
                    let (done, moved) = &*progress;
                    done.lock().unwrap()[i] = next;
                    moved.notify_all();
                }
                (next, s)
            })
        })
        .collect();
    let baseline = rss_kib(pid);
    let mut peak = baseline;
    let mut body = vec![0u8; MSG];
    for i in 0..count as u64 {
        let (done, moved) = &*progress;
        let mut seen = done.lock().unwrap();
        while seen.iter().min().copied().unwrap_or(0) + WINDOW <= i {
            let (guard, waited) = moved.wait_timeout(seen, Duration::from_secs(20)).unwrap();
            assert!(!waited.timed_out(), "the fast subscribers stalled at {i}");
            seen = guard;
        }
        drop(seen);
        body[..8].copy_from_slice(&i.to_be_bytes());
        publisher.send_multipart([&b"data"[..], &body], 0).unwrap();
        if i % 256 == 0 {
            peak = peak.max(rss_kib(pid));
        }
    }
    // Kept open: they are still connected at the end.
    let _fast: Vec<zmq::Socket> = readers
        .into_iter()
        .map(|r| {
            let (got, s) = r.join().unwrap();
            assert_eq!(got, count as u64);
            s
        })
        .collect();
    peak = peak.max(rss_kib(pid));
    // Bounded: the slow one's 8 MiB queue, its 1 MiB send queue, socket buffers, the fast
    // ones' queues in passing and the last value: far below what was published.
    assert!(
        peak < baseline + 96 * 1024,
        "broker RSS grew from {baseline} KiB to {peak} KiB"
    );
    // Dropped while it lagged (how many depends on how fast the machine published before its
    // timeout cut it off), then cut off.
    b.wait_metric_at_least("domo_topic_dropped_total{reason=\"slow_subscriber\"}", 1.0);
    b.wait_metric("domo_topic_slow_disconnects_total", 1.0);
    // The two fast ones are still there.
    b.wait_metric("domo_topic_connections{role=\"subscriber\"}", 2.0);
    eprintln!(
        "published {count} messages of {MSG} B; broker RSS {baseline} KiB -> peak {peak} KiB"
    );
}

/// A configuration file in a fresh scratch directory.
fn write_config(text: &str) -> (TempDir, String) {
    let dir = TempDir::new("topics-config");
    let path = dir.path().join("broker.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}
