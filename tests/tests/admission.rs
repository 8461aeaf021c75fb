//! Lossless admission against the `domo-broker` binary with real libzmq peers: bursts larger
//! than the queues are served in full (clients are paused, never dropped), a client that
//! never reads is bounded without slowing anyone else, and the zguide's asynchronous client
//! completes.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use domo_tests::*;

const MIB: usize = 1 << 20;

/// A broker process on an ephemeral endpoint with its metrics listener, on built-in defaults
/// plus `args` (Titanic on, in a temporary directory, as by default).
struct Broker {
    child: LoggedChild,
    ep: String,
    metrics: String,
    _dir: TempDir,
}

impl Broker {
    fn start(tag: &str, config: Option<&str>) -> Self {
        let dir = TempDir::new(tag);
        let ep = dead_endpoint();
        let mut cmd = Command::new(broker_binary());
        cmd.args(["--bind", &ep, "--metrics-listen", "127.0.0.1:0"])
            .args(EPHEMERAL_TOPICS)
            .arg("--titanic-data-dir")
            .arg(dir.path().join("titanic"))
            .stdout(Stdio::null());
        if let Some(config) = config {
            cmd.arg("--config").arg(dir.file("broker.toml", config));
        }
        let child = LoggedChild::spawn(&mut cmd);
        let metrics = http_addr(&child.wait_line("Metrics listening"));
        wait_for_service(&ep, "nobody", b"404");
        Self {
            child,
            ep,
            metrics,
            _dir: dir,
        }
    }

    fn metric(&self, series: &str) -> f64 {
        let (status, body) = http_get(&self.metrics, "/metrics");
        assert_eq!(status, 200);
        sample(&body, series).unwrap_or(0.0)
    }

    /// The broker's peak resident memory so far (VmHWM).
    fn peak_rss(&self) -> usize {
        status_kib(self.child.pid(), "VmHWM:") * 1024
    }

    fn rss(&self) -> usize {
        status_kib(self.child.pid(), "VmRSS:") * 1024
    }

    /// Requests dropped for any reason, from `domo_dropped_requests_total`.
    fn dropped(&self) -> f64 {
        let (_, body) = http_get(&self.metrics, "/metrics");
        body.lines()
            .filter(|l| l.starts_with("domo_dropped_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

fn status_kib(pid: u32, field: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A request body that says whose it is: `client` in the first and last 8 bytes, a fill
/// byte of its own in between (cheap to make and compare in a debug build).
fn body(client: usize, len: usize) -> Vec<u8> {
    let mut body = vec![(client % 251) as u8; len];
    let id = (client as u64).to_be_bytes();
    body[..8].copy_from_slice(&id);
    body[len - 8..].copy_from_slice(&id);
    body
}

/// `clients` libzmq DEALER clients each send one request of `size` bytes at once; returns
/// when every reply has arrived and matched its request byte for byte.
fn burst(ep: &str, clients: usize, size: usize, within: Duration) {
    // A libzmq context holds at most 1023 sockets (and the binding cannot raise it): one
    // context per 500 clients.
    let contexts: Vec<zmq::Context> = (0..clients.div_ceil(500))
        .map(|_| zmq::Context::new())
        .collect();
    let sockets: Vec<zmq::Socket> = (0..clients)
        .map(|i| {
            let s = zsocket(&contexts[i / 500], zmq::DEALER);
            s.connect(ep).unwrap();
            s
        })
        .collect();
    let bodies: Vec<Vec<u8>> = (0..clients).map(|i| body(i, size)).collect();
    for (s, body) in sockets.iter().zip(&bodies) {
        s.send_multipart([&[][..], MDPC01, b"echo", body], 0)
            .unwrap();
    }
    let deadline = Instant::now() + within;
    let mut done = vec![false; clients];
    let mut left = clients;
    while left > 0 {
        assert!(
            Instant::now() < deadline,
            "{left} of {clients} replies missing after {within:?}"
        );
        let mut items: Vec<zmq::PollItem<'_>> = sockets
            .iter()
            .map(|s| s.as_poll_item(zmq::POLLIN))
            .collect();
        zmq::poll(&mut items, 100).unwrap();
        let readable: Vec<usize> = items
            .iter()
            .enumerate()
            .filter(|(_, item)| item.is_readable())
            .map(|(i, _)| i)
            .collect();
        for i in readable {
            while let Ok(reply) = sockets[i].recv_multipart(zmq::DONTWAIT) {
                assert_eq!(&reply[..3], [vec![], MDPC01.to_vec(), b"echo".to_vec()]);
                assert!(!done[i], "client {i} got two replies");
                assert!(reply[3] == bodies[i], "client {i}: reply differs");
                done[i] = true;
                left -= 1;
            }
        }
    }
}

#[test]
fn a_thousand_clients_with_1mib_requests_are_all_served_within_bounded_memory() {
    let broker = Broker::start("burst", None);
    let _w1 = ZWorker::echo(&broker.ep, "echo", Duration::from_millis(2500));
    let _w2 = ZWorker::echo(&broker.ep, "echo", Duration::from_millis(2500));
    wait_for_service(&broker.ep, "echo", b"200");
    let started = Instant::now();
    burst(&broker.ep, 1000, MIB, Duration::from_secs(60));
    let peak = broker.peak_rss();
    eprintln!(
        "1000 x 1 MiB served in {:?}; broker peak RSS {} MiB; {} requests deferred",
        started.elapsed(),
        peak / MIB,
        broker.metric("domo_requests_deferred_total")
    );
    assert_eq!(broker.dropped(), 0.0, "no request dropped");
    assert!(peak < 640 * MIB, "peak RSS {} MiB", peak / MIB);
}

#[test]
fn a_thousand_clients_against_a_service_limit_of_8_are_all_served() {
    let broker = Broker::start("burst8", Some("[queue]\nservice_max_requests = 8\n"));
    let _w1 = ZWorker::echo(&broker.ep, "echo", Duration::from_millis(2500));
    let _w2 = ZWorker::echo(&broker.ep, "echo", Duration::from_millis(2500));
    wait_for_service(&broker.ep, "echo", b"200");
    burst(&broker.ep, 1000, MIB, Duration::from_secs(60));
    assert_eq!(broker.dropped(), 0.0, "no request dropped");
    assert!(broker.metric("domo_requests_deferred_total") > 0.0);
    assert!(broker.metric("domo_client_pauses_total{cause=\"service_full\"}") > 0.0);
    // Nobody is left paused.
    assert_eq!(broker.metric("domo_clients_paused"), 0.0);
}

#[test]
fn a_client_that_never_reads_is_bounded_and_others_are_served_throughout() {
    const REQUESTS: usize = 40_000;
    const SIZE: usize = 8 * 1024;
    let broker = Broker::start("hog", None);
    let _w1 = ZWorker::echo(&broker.ep, "echo", Duration::from_millis(2500));
    let _w2 = ZWorker::echo(&broker.ep, "echo", Duration::from_millis(2500));
    wait_for_service(&broker.ep, "echo", b"200");
    let baseline = broker.rss();
    // The hog sends 40,000 x 8 KiB (320 MB) to the same service and never reads a reply.
    let ep = broker.ep.clone();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel::<usize>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_hog = stop.clone();
    let hog = thread::spawn(move || {
        let ctx = zmq::Context::new();
        let s = zsocket(&ctx, zmq::DEALER);
        s.set_sndtimeo(100).unwrap();
        s.connect(&ep).unwrap();
        let request = [vec![], MDPC01.to_vec(), b"echo".to_vec(), vec![7u8; SIZE]];
        let mut sent = 0;
        while sent < REQUESTS && !stop_hog.load(std::sync::atomic::Ordering::Relaxed) {
            if s.send_multipart(&request, 0).is_ok() {
                sent += 1;
                let _ = sent_tx.send(sent);
            }
        }
        sent
    });
    // Meanwhile another client asks every 100 ms; each answer must come within 3 s. Once the
    // hog has sent nothing for 3 s the broker has pushed back on it for good.
    let client = ReqClient::connect(&broker.ep);
    client.set_timeout(3000);
    let (mut sent, mut last_progress) = (0, Instant::now());
    let mut slowest = Duration::ZERO;
    let mut asked = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while sent < REQUESTS && last_progress.elapsed() < Duration::from_secs(3) {
        assert!(
            Instant::now() < deadline,
            "hog neither finished nor stalled"
        );
        let t = Instant::now();
        let reply = client.try_request("echo", &[b"me too"]);
        assert_eq!(
            reply,
            Some(vec![b"me too".to_vec()]),
            "another client not served within 3 s (hog sent {sent})"
        );
        slowest = slowest.max(t.elapsed());
        asked += 1;
        while let Ok(n) = sent_rx.try_recv() {
            sent = n;
            last_progress = Instant::now();
        }
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = hog.join().unwrap();
    let peak = broker.peak_rss();
    eprintln!(
        "hog sent {sent} of {REQUESTS} before the broker pushed back; {asked} requests of \
         another client, slowest {slowest:?}; broker RSS {} MiB before, {} MiB after, peak \
         {} MiB",
        baseline / MIB,
        broker.rss() / MIB,
        peak / MIB
    );
    assert!(sent < REQUESTS, "the broker never pushed back");
    assert!(peak < 100 * MIB, "peak RSS {} MiB", peak / MIB);
    assert_eq!(broker.metric("domo_clients_paused"), 1.0, "the hog");
    assert_eq!(broker.dropped(), 0.0, "nothing dropped");
}

#[test]
fn the_zguide_asynchronous_client_gets_all_100000_replies() {
    const REQUESTS: usize = 100_000;
    let broker = Broker::start("async", None);
    let _w1 = ZWorker::echo(&broker.ep, "echo", Duration::from_millis(2500));
    let _w2 = ZWorker::echo(&broker.ep, "echo", Duration::from_millis(2500));
    wait_for_service(&broker.ep, "echo", b"200");
    // As mdclient2: every request sent on one DEALER before any reply is read.
    let ctx = zmq::Context::new();
    let s = zsocket(&ctx, zmq::DEALER);
    s.connect(&broker.ep).unwrap();
    for _ in 0..REQUESTS {
        s.send_multipart(
            [
                vec![],
                MDPC01.to_vec(),
                b"echo".to_vec(),
                b"Hello world".to_vec(),
            ],
            0,
        )
        .unwrap();
    }
    for i in 0..REQUESTS {
        let reply = s
            .recv_multipart(0)
            .unwrap_or_else(|e| panic!("reply {i}: {e}"));
        assert_eq!(reply[3], b"Hello world");
    }
    assert_eq!(broker.dropped(), 0.0);
}
