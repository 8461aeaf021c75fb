//! CURVE end to end with the `domo` binary: certificates from `domo keygen`, and a router in
//! the CURVE server role standing in for a broker (it answers client requests with their
//! body and hands one request to each worker that registers). With the right keys `domo
//! call`, `domo worker echo` and `domo-titanic` work; a key the router refuses or a wrong
//! server key is reported as `handshake failed: ...`, never as a timeout. Last, the same
//! through the broker itself, with rights from `domo keygen --meta`.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_tests::*;
use domo_zmtp::curve::{Authorizer, Certificate};
use domo_zmtp::{Options, PublicKey, Router, Security};
use tokio::sync::mpsc;

const MDPC01: &[u8] = b"MDPC01";
const MDPW01: &[u8] = b"MDPW01";

/// The two files `domo keygen NAME` wrote.
struct Cert {
    public: PathBuf,
    secret: PathBuf,
}

impl Cert {
    fn public_key(&self) -> PublicKey {
        Certificate::load(&self.public).unwrap().public
    }
}

/// Runs `domo keygen NAME --dir DIR`.
fn keygen(dir: &Path, name: &str) -> Cert {
    let out = Command::new(DOMO)
        .args(["keygen", name, "--dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    Cert {
        public: dir.join(format!("{name}.key")),
        secret: dir.join(format!("{name}.key_secret")),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Lets in the keys it was given.
#[derive(Debug)]
struct AllowList(Vec<PublicKey>);

impl Authorizer for AllowList {
    fn authorize(&self, client: &PublicKey) -> bool {
        self.0.contains(client)
    }
}

/// A CURVE router with `server`'s secret key letting in `allowed`: it answers every client
/// request with its body, sends `hello` to every worker that sends READY, and reports the
/// workers' replies on the returned channel.
async fn curve_router(
    server: &Cert,
    allowed: Vec<PublicKey>,
) -> (String, mpsc::UnboundedReceiver<Vec<Bytes>>) {
    let secret = Certificate::load(&server.secret).unwrap().secret.unwrap();
    let options = Options {
        security: Security::curve_server_with(secret, Arc::new(AllowList(allowed))),
        ..Options::default()
    };
    let router = Router::new(options);
    let endpoint = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let (replies, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((peer, msg)) = router.recv().await {
            match (msg.get(1).map(|p| &p[..]), msg.get(2).map(|c| &c[..])) {
                (Some(MDPC01), Some(_)) => {
                    let _ = router.try_send(&peer, msg);
                }
                (Some(MDPW01), Some([1])) => {
                    let request = [&b""[..], MDPW01, &[2], b"client", b"", b"hello"];
                    let request = request.iter().map(|p| Bytes::copy_from_slice(p));
                    let _ = router.try_send(&peer, request.collect());
                }
                (Some(MDPW01), Some([3])) => {
                    let _ = replies.send(msg);
                }
                _ => {}
            }
        }
    });
    (endpoint, rx)
}

/// `domo --broker EP --server-key S --key K call echo hello`, one attempt of `timeout`.
fn call(endpoint: &str, server_key: &Path, key: &Path, timeout: &str) -> Output {
    Command::new(DOMO)
        .args(["--broker", endpoint, "call", "echo", "hello"])
        .args(["--timeout", timeout, "--retries", "2"])
        .arg("--server-key")
        .arg(server_key)
        .arg("--key")
        .arg(key)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// `domo worker echo echo` with the keys in DOMO_SERVER_KEY and DOMO_KEY.
fn echo_worker(endpoint: &str, server_key: &Path, key: &Path) -> LoggedChild {
    LoggedChild::spawn(
        Command::new(DOMO)
            .args(["--broker", endpoint, "worker", "echo", "echo"])
            .args(["--heartbeat", "100ms"])
            .env("DOMO_SERVER_KEY", server_key)
            .env("DOMO_KEY", key)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domo_call_and_worker_echo_work_with_the_right_keys() {
    let dir = TempDir::new("curve-ok");
    let (broker, client, worker) = (
        keygen(dir.path(), "broker"),
        keygen(dir.path(), "client"),
        keygen(dir.path(), "worker"),
    );
    let allowed = vec![client.public_key(), worker.public_key()];
    let (endpoint, mut replies) = curve_router(&broker, allowed).await;

    let ep = endpoint.clone();
    let out = blocking(move || call(&ep, &broker.public, &client.secret, "5s")).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
    assert_eq!(text(&out.stderr), "", "no warning for a 0600 secret");

    let broker_key = dir.path().join("broker.key");
    let _worker = echo_worker(&endpoint, &broker_key, &worker.secret);
    let reply = tokio::time::timeout(Duration::from_secs(10), replies.recv())
        .await
        .expect("no reply from the worker")
        .unwrap();
    let expected = [&b""[..], MDPW01, &[3], b"client", b"", b"hello"];
    assert_eq!(reply, expected.map(Bytes::copy_from_slice));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_keys_are_handshake_failures_not_timeouts() {
    let dir = TempDir::new("curve-refused");
    let (broker, client, stranger) = (
        keygen(dir.path(), "broker"),
        keygen(dir.path(), "client"),
        keygen(dir.path(), "stranger"),
    );
    // A fresh router for each case: a router slows down the handshakes of an address
    // whose handshakes keep failing, and here every client has the same address.
    let allowed = vec![client.public_key()];
    let (endpoint, _replies) = curve_router(&broker, allowed.clone()).await;

    // A key the broker does not allow: one attempt (1 s), not three.
    let (ep, stranger_secret, broker_public) = (
        endpoint.clone(),
        stranger.secret.clone(),
        broker.public.clone(),
    );
    let start = Instant::now();
    let out = blocking(move || call(&ep, &broker_public, &stranger_secret, "1s")).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("domo: handshake failed: not authorized ({endpoint})\n")
    );
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "{:?}",
        start.elapsed()
    );

    // The right client key, but the stranger's public key taken for the broker's.
    let (endpoint, _replies) = curve_router(&broker, allowed.clone()).await;
    let (ep, client_secret, wrong) = (endpoint.clone(), client.secret, stranger.public);
    let out = blocking(move || call(&ep, &wrong, &client_secret, "1s")).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("domo: handshake failed: server key mismatch ({endpoint})\n")
    );

    // A worker with a refused key says so on stderr, and keeps running.
    let (endpoint, _replies) = curve_router(&broker, allowed).await;
    let mut worker = echo_worker(&endpoint, &broker.public, &stranger.secret);
    let line = blocking(move || {
        let line = worker.wait_line("handshake failed: not authorized");
        assert!(worker.is_running(), "{}", worker.log());
        line
    })
    .await;
    assert!(line.contains("ERROR"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domo_titanic_registers_through_curve_with_its_keys() {
    let dir = TempDir::new("curve-titanic");
    let (broker, titanic) = (keygen(dir.path(), "broker"), keygen(dir.path(), "titanic"));
    let (endpoint, mut replies) = curve_router(&broker, vec![titanic.public_key()]).await;
    let _titanic = LoggedChild::spawn(
        Command::new(DOMO_TITANIC)
            .args([
                "--broker",
                &endpoint,
                "--heartbeat",
                "100ms",
                "--sessions",
                "1",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env("DOMO_TITANIC_SERVER_KEY", &broker.public)
            .env("DOMO_TITANIC_KEY", &titanic.secret)
            .stdout(Stdio::null()),
    );
    // Its workers (three services, one session each) registered over CURVE and answered.
    for _ in 0..3 {
        let reply = tokio::time::timeout(Duration::from_secs(10), replies.recv())
            .await
            .expect("no reply from a Titanic worker")
            .unwrap();
        assert_eq!(
            reply[..4],
            [&b""[..], MDPW01, &[3], b"client"].map(Bytes::copy_from_slice)
        );
    }
}

/// The broker itself with CURVE on: certificates from `domo keygen --meta` carry the rights
/// (`serve=echo` for the worker, `call=echo` for the client), and `domo` with those keys
/// works through it while a key it does not list is told so.
#[test]
fn domo_with_keygen_certificates_through_a_curve_broker() {
    let keys = CurveKeys::new("curve-cli-broker");
    let dir = keys.dir().path();
    let broker_public = dir.join("broker.key");
    let keygen_meta = |name: &str, meta: &str| {
        let out = Command::new(DOMO)
            .args([
                "keygen",
                name,
                "--meta",
                meta,
                "--dir",
                dir.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let cert = format!("{name}.key");
        std::fs::copy(dir.join(&cert), keys.authorized.join(&cert)).unwrap();
        dir.join(format!("{name}.key_secret"))
    };
    let worker_secret = keygen_meta("worker", "serve=echo");
    let client_secret = keygen_meta("client", "call=echo");
    let stranger = keygen(dir, "stranger");
    let mut args = keys.broker_args();
    args.extend(["--heartbeat", "250ms", "--no-titanic"].map(String::from));
    let broker = LoggedBroker::start(&args);
    let ep = &broker.endpoint;

    let _worker = LoggedChild::spawn(
        Command::new(DOMO)
            .args([
                "--broker",
                ep,
                "worker",
                "echo",
                "echo",
                "--heartbeat",
                "250ms",
            ])
            .env("DOMO_SERVER_KEY", &broker_public)
            .env("DOMO_KEY", &worker_secret)
            .stdout(Stdio::null()),
    );
    let out = eventually(Duration::from_secs(10), "echo never answered", || {
        let out = call(ep, &broker_public, &client_secret, "1s");
        out.status.success().then_some(out)
    });
    assert_eq!(text(&out.stdout), "hello\n");

    let out = call(ep, &broker_public, &stranger.secret, "1s");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!("domo: handshake failed: not authorized ({ep})\n")
    );
}
