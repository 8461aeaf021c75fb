//! CURVE interop with a real CURVE-capable libzmq (pyzmq's bundled libzmq 4.3), both
//! directions: a libzmq DEALER against our CURVE Router, our CURVE Dealer against a libzmq
//! ROUTER with pyzmq's ZAP authenticator. Byte-exact echoes, large frames, and ZMTP
//! heartbeats (libzmq's PING/PONG travel inside the boxes) over a 10 s idle period.
//!
//! Needs `python3` with pyzmq (`.ci/run` installs it). Without it the tests say so and pass,
//! except under `CI=true`, where they fail.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domo_zmtp::curve::{Authorizer, Certificate};
use domo_zmtp::{Dealer, KeyPair, Options, PublicKey, Router, Security};
use tokio::time::timeout;

const IDLE_SECONDS: &str = "10";
const WAIT: Duration = Duration::from_secs(40);

/// A python peer, killed by its pid when dropped; its stdout lines arrive on a channel.
struct Peer {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    fn spawn(args: &[&str]) -> Option<Self> {
        if !pyzmq_present() {
            return None;
        }
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/curve_peer.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Some(Self { child, lines })
    }

    fn line(&self) -> serde_like::Value {
        let line = self
            .lines
            .recv_timeout(WAIT)
            .expect("a line from the libzmq peer");
        serde_like::parse(&line)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pyzmq_present() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import zmq; assert zmq.has('curve')"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true but python3 with a CURVE-capable pyzmq is missing"
        );
        eprintln!("skipped: python3 with pyzmq (CURVE) not found; pip install pyzmq");
    }
    ok
}

/// Just enough JSON for the peer's lines: we only look for substrings.
mod serde_like {
    pub(super) struct Value(pub(super) String);
    pub(super) fn parse(s: &str) -> Value {
        Value(s.to_owned())
    }
    impl Value {
        pub(super) fn has(&self, needle: &str) -> bool {
            self.0.contains(needle)
        }
    }
}

#[derive(Debug)]
struct Only(PublicKey);

impl Authorizer for Only {
    fn authorize(&self, client: &PublicKey) -> bool {
        *client == self.0
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_curve_dealer_against_our_curve_router() {
    let (server, client) = (KeyPair::generate(), KeyPair::generate());
    let router = Arc::new(Router::new(Options {
        security: Security::curve_server_with(server.secret.clone(), Arc::new(Only(client.public))),
        ..Options::default()
    }));
    let ep = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let Some(peer) = Peer::spawn(&[
        "client",
        &ep,
        &server.public.to_string(),
        &client.public.to_string(),
        &client.secret.to_z85(),
        IDLE_SECONDS,
    ]) else {
        return;
    };
    let echo = tokio::spawn({
        let router = router.clone();
        async move {
            let mut seen = Vec::new();
            for _ in 0..5 {
                let (id, msg) = router.recv().await.unwrap();
                seen.push(msg.clone());
                router.send(&id, msg).await.unwrap();
            }
            seen
        }
    });
    for _ in 0..4 {
        let line = tokio::task::block_in_place(|| peer.line());
        assert!(
            line.has("\"same\": true"),
            "libzmq got back what it sent: {}",
            line.0
        );
    }
    let line = tokio::task::block_in_place(|| peer.line());
    assert!(
        line.has(&hex(b"after idle")),
        "served after the idle period: {}",
        line.0
    );
    let line = tokio::task::block_in_place(|| peer.line());
    assert!(
        !line.has("DISCONNECTED"),
        "heartbeats kept the connection: {}",
        line.0
    );
    assert!(line.has("HANDSHAKE_SUCCEEDED"), "{}", line.0);
    let seen = timeout(WAIT, echo).await.unwrap().unwrap();
    assert_eq!(seen[0], vec![Bytes::from_static(b"hello")]);
    assert_eq!(seen[2][0].len(), 256 * 4096, "a 1 MiB frame arrived whole");
    assert_eq!(
        router.stats().accepted,
        1,
        "one connection for the whole test"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_curve_dealer_against_a_libzmq_curve_router_with_zap() {
    let (server, client) = (KeyPair::generate(), KeyPair::generate());
    let allowed = tempfile::tempdir().unwrap();
    Certificate::new(client.secret.clone())
        .save(allowed.path(), "client")
        .unwrap();
    std::fs::remove_file(allowed.path().join("client.key_secret")).unwrap();
    let Some(peer) = Peer::spawn(&[
        "server",
        &server.public.to_string(),
        &server.secret.to_z85(),
        allowed.path().to_str().unwrap(),
    ]) else {
        return;
    };
    let line = tokio::task::block_in_place(|| peer.line());
    let ep = line.0.split('"').nth(3).unwrap().to_owned();
    let dealer = Dealer::connect(
        &ep,
        Options {
            security: Security::curve_client(server.public, client.clone()),
            ..Options::default()
        },
    )
    .unwrap();
    let msgs = [
        vec![Bytes::from_static(b"hello")],
        vec![
            Bytes::new(),
            Bytes::from(vec![7u8; 300]),
            Bytes::from(vec![9u8; 2 << 20]),
        ],
        vec![Bytes::new()],
    ];
    for msg in &msgs {
        dealer.send(msg.clone()).await.unwrap();
        assert_eq!(&timeout(WAIT, dealer.recv()).await.unwrap().unwrap(), msg);
    }
    tokio::time::sleep(Duration::from_secs(10)).await; // the idle period itself
    dealer
        .send(vec![Bytes::from_static(b"after idle")])
        .await
        .unwrap();
    assert_eq!(
        timeout(WAIT, dealer.recv()).await.unwrap().unwrap(),
        vec![Bytes::from_static(b"after idle")]
    );
    assert_eq!(
        dealer.stats().connects,
        1,
        "libzmq's heartbeats never dropped us"
    );

    // A key the authenticator does not know: libzmq's ZAP says 400.
    let stranger = Dealer::connect(
        &ep,
        Options {
            security: Security::curve_client(server.public, KeyPair::generate()),
            ..Options::default()
        },
    )
    .unwrap();
    let err = timeout(WAIT, async {
        loop {
            if let Some(e) = stranger.handshake_error() {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(err, domo_zmtp::HandshakeError::NotAuthorized);
}
