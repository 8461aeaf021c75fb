//! CURVE security of a real `domo-broker`: the `[security]` files refused with a one-line
//! message and exit 3 (or 2 for the configuration itself), and, end to end, who may connect
//! and what each key may call or serve. Every wait is bounded; every process is killed on
//! drop; ports are ephemeral.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use domo_client::{Client, ClientOptions};
use domo_mdp::Heartbeat;
use domo_tests::*;
use domo_worker::{Worker, WorkerOptions};
use domo_zmtp::{Dealer, HandshakeError, KeyPair, Options, Security};

/// Runs the broker binary to completion: exit code, stdout, stderr.
fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(DOMO_BROKER);
    cmd.args(args);
    for var in [
        "DOMO_CONFIG",
        "DOMO_SECURITY__MECHANISM",
        "DOMO_SECURITY__SECRET_KEY_FILE",
        "DOMO_SECURITY__AUTHORIZED_KEYS",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

/// `--check-config` and a start with `args`: both must fail with `code` and exactly
/// `message` (one line) on stderr.
fn refused(args: &[String], code: i32, message: &str) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = [
        &[
            "--bind",
            "tcp://127.0.0.1:0",
            "--metrics-listen",
            "off",
            "--no-titanic",
        ][..],
        &args,
    ]
    .concat();
    for args in [[&["--check-config"][..], &args].concat(), start] {
        let (status, out, err) = run(&args);
        assert_eq!(status, Some(code), "{args:?}: {err}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err, format!("domo-broker: {message}\n"), "{args:?}");
    }
}

fn chmod(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

// === the key files ===

#[test]
fn check_config_accepts_curve_with_good_key_files() {
    let keys = CurveKeys::new("sec-good");
    keys.authorize("alice", &[("call", "echo, mmi.*")]);
    let args = [vec!["--check-config".to_string()], keys.broker_args()].concat();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = run(&args);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("configuration OK"), "{out}");
}

#[test]
fn a_secret_key_readable_by_group_or_others_is_refused_with_exit_3() {
    let keys = CurveKeys::new("sec-mode");
    chmod(&keys.secret_file, 0o644);
    let message = format!(
        "security.secret_key_file: {} is readable by group or others (chmod 600 it)",
        keys.secret_file.display()
    );
    refused(&keys.broker_args(), 3, &message);
    chmod(&keys.secret_file, 0o600);
    let (code, _, err) = run(&[
        &["--check-config"][..],
        &keys
            .broker_args()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ]
    .concat());
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn missing_or_malformed_key_files_exit_3_naming_the_key_and_file() {
    let keys = CurveKeys::new("sec-files");
    let mut args = keys.broker_args();
    // The secret key file is missing.
    let missing = keys.dir().path().join("gone.key_secret");
    args[3] = missing.display().to_string();
    refused(
        &args,
        3,
        &format!(
            "security.secret_key_file: {}: cannot read: No such file or directory (os error 2)",
            missing.display()
        ),
    );
    // A malformed certificate among the authorized keys: its file and line.
    keys.authorize("alice", &[]);
    let bad = keys.authorized.join("bob.key");
    std::fs::write(
        &bad,
        "metadata\n    call = \"echo\"\ncurve\n    public-key = \"x\"\n",
    )
    .unwrap();
    let message = format!(
        "security.authorized_keys: {}:4: a CURVE key is 40 Z85 characters",
        bad.display()
    );
    let (code, _, err) = run(&[
        &["--check-config"][..],
        &keys
            .broker_args()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ]
    .concat());
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.starts_with(&format!("domo-broker: {message}")) && err.lines().count() == 1,
        "{err}"
    );
    // Rights that do not parse.
    let key = domo_zmtp::KeyPair::generate().public;
    let text = format!("metadata\n    serve = \"pay*ments\"\ncurve\n    public-key = \"{key}\"\n");
    std::fs::write(&bad, text).unwrap();
    refused(
        &keys.broker_args(),
        3,
        &format!(
            "security.authorized_keys: {}:2: metadata serve: \"pay*ments\": `*` may only end a \
             pattern",
            bad.display()
        ),
    );
    // The directory is missing.
    let mut args = keys.broker_args();
    let nowhere = keys.dir().path().join("nowhere");
    args[5] = nowhere.display().to_string();
    refused(
        &args,
        3,
        &format!(
            "security.authorized_keys: {}: cannot read: No such file or directory (os error 2)",
            nowhere.display()
        ),
    );
}

#[test]
fn curve_without_its_files_or_an_unknown_mechanism_is_a_configuration_error_exit_2() {
    let dir = TempDir::new("sec-config");
    let file = dir.file("broker.toml", "[security]\nmechanism = \"curve\"\n");
    refused(
        &["--config".into(), file.display().to_string()],
        2,
        &format!(
            "{}:1: security.secret_key_file: required with mechanism = \"curve\" (the broker's \
             secret certificate, e.g. \"/etc/domo/broker.key_secret\")",
            file.display()
        ),
    );
    let file = dir.file("plain.toml", "[security]\nmechanism = \"plain\"\n");
    refused(
        &["--config".into(), file.display().to_string()],
        2,
        &format!(
            "{}:2: security.mechanism: unknown variant `plain`, expected `null` or `curve`",
            file.display()
        ),
    );
    // The flag is checked by clap, with its usage error (exit 2 too).
    let (code, _, err) = run(&["--check-config", "--security-mechanism", "plain"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("invalid value 'plain'"), "{err}");
}

// === end to end ===

/// How long a request that must not be answered is given.
const SILENCE: Duration = Duration::from_millis(500);
/// How long anything that must happen is given.
const WITHIN: Duration = Duration::from_secs(10);

/// A broker process with CURVE on, with `keys`.
fn curve_broker(keys: &CurveKeys, extra: &[&str]) -> LoggedBroker {
    let mut args = keys.broker_args();
    args.extend(["--heartbeat", "250ms"].map(String::from));
    args.extend(extra.iter().map(|a| a.to_string()));
    LoggedBroker::start(&args)
}

/// A raw DEALER with `security` that does not hurry to reconnect (a refused key retries
/// rarely, so the broker's per-address handshake limiter stays out of the way).
fn dealer(endpoint: &str, security: Security) -> Dealer {
    let options = Options {
        security,
        reconnect_interval: Duration::from_secs(5),
        reconnect_interval_max: Duration::from_secs(5),
        ..Options::default()
    };
    Dealer::connect(endpoint, options).unwrap()
}

fn frames(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

/// An MDP client request on a DEALER: `[""][MDPC01][service][body]`.
async fn request(dealer: &Dealer, service: &str, body: &str) {
    let msg = frames(&[b"", b"MDPC01", service.as_bytes(), body.as_bytes()]);
    dealer.send(msg).await.unwrap();
}

/// The body of the next reply, or `None` if none comes within `within`.
async fn reply(dealer: &Dealer, within: Duration) -> Option<String> {
    let msg = tokio::time::timeout(within, dealer.recv())
        .await
        .ok()?
        .unwrap();
    assert_eq!(&msg[..2], &frames(&[b"", b"MDPC01"])[..], "{msg:?}");
    Some(String::from_utf8_lossy(msg.last().unwrap()).into_owned())
}

/// An echo worker with `security`, served until the returned sender is dropped or fired.
fn echo_worker(
    endpoint: &str,
    service: &str,
    security: Security,
) -> tokio::sync::oneshot::Sender<()> {
    let options = WorkerOptions::new([endpoint])
        .heartbeat(Heartbeat {
            interval: Duration::from_millis(250),
            liveness: 3,
        })
        .transport(Options {
            security,
            ..Options::default()
        });
    let worker = Worker::new(service.to_string(), options).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(worker.serve(
        |body: Vec<Bytes>| async move { Ok::<_, std::convert::Infallible>(body) },
        async {
            let _ = stopped.await;
        },
    ));
    stop
}

fn client(endpoint: &str, security: Security) -> Client {
    let options = ClientOptions::new([endpoint])
        .timeout(Duration::from_secs(2))
        .retries(0)
        .check_service(false)
        .transport(Options {
            security,
            ..Options::default()
        });
    Client::new(options).unwrap()
}

/// Waits until `dealer` knows why its handshake failed.
async fn handshake_error(dealer: &Dealer) -> HandshakeError {
    poll_until_async(WITHIN, || async { dealer.handshake_error() })
        .await
        .expect("no handshake error")
}

/// Asks `mmi.service` about `service` on `dealer`, until it answers `status`.
async fn wait_for(dealer: &Dealer, service: &str, status: &str) {
    poll_until_async(WITHIN, || async {
        request(dealer, "mmi.service", service).await;
        (reply(dealer, WITHIN).await.as_deref() == Some(status)).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("mmi.service {service} never {status}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlisted_key_is_refused_while_a_listed_client_is_served() {
    let keys = CurveKeys::new("sec-e2e-listed");
    let worker = keys.authorize("worker", &[("serve", "echo")]);
    let alice = keys.authorize("alice", &[]);
    let broker = curve_broker(&keys, &["--no-titanic"]);
    let _worker = echo_worker(&broker.endpoint, "echo", keys.client(&worker));
    let alice_probe = dealer(&broker.endpoint, keys.client(&alice));
    wait_for(&alice_probe, "echo", "200").await;
    // A listed client, through the SDK.
    let served = client(&broker.endpoint, keys.client(&alice));
    let answer = served
        .request("echo", vec![Bytes::from("hi")])
        .await
        .unwrap();
    assert_eq!(answer, [Bytes::from("hi")]);
    // An unlisted key: refused during the handshake, no reply.
    let mallory = dealer(&broker.endpoint, keys.client(&KeyPair::generate()));
    request(&mallory, "echo", "let me in").await;
    assert_eq!(reply(&mallory, SILENCE).await, None);
    assert_eq!(
        handshake_error(&mallory).await,
        HandshakeError::NotAuthorized
    );
    // A client with a wrong server key does not get through either.
    let lost = dealer(
        &broker.endpoint,
        Security::curve_client(KeyPair::generate().public, alice.clone()),
    );
    request(&lost, "echo", "hello?").await;
    assert_eq!(reply(&lost, SILENCE).await, None);
    // A NULL client does not get through.
    let plain = dealer(&broker.endpoint, Security::Null);
    request(&plain, "echo", "hello?").await;
    assert_eq!(reply(&plain, SILENCE).await, None);
    // The listed client is still served, on a new connection too.
    let again = client(&broker.endpoint, keys.client(&alice));
    let answer = again
        .request("echo", vec![Bytes::from("again")])
        .await
        .unwrap();
    assert_eq!(answer, [Bytes::from("again")]);
    broker.wait_metric("domo_handshakes_total{result=\"not_authorized\"}", 1.0);
    broker.wait_metric_at_least("domo_handshakes_total{result=\"ok\"}", 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_serve_does_not_match_gets_disconnect() {
    let keys = CurveKeys::new("sec-e2e-serve");
    let billing = keys.authorize("billing", &[("serve", "billing.*"), ("call", "")]);
    let broker = curve_broker(&keys, &["--no-titanic"]);
    let worker = dealer(&broker.endpoint, keys.client(&billing));
    let ready = |service: &str| frames(&[b"", b"MDPW01", &[0x01], service.as_bytes()]);
    worker.send(ready("echo")).await.unwrap();
    let disconnect = tokio::time::timeout(WITHIN, worker.recv()).await.unwrap();
    assert_eq!(disconnect.unwrap(), frames(&[b"", b"MDPW01", &[0x05]]));
    broker.wait_metric("domo_security_refusals_total{right=\"serve\"}", 1.0);
    broker.wait_metric(
        "domo_disconnects_sent_total{reason=\"not_authorized\"}",
        1.0,
    );
    // What it may serve, it serves (on a fresh connection: the refused one is silenced).
    let _serving = echo_worker(&broker.endpoint, "billing.pay", keys.client(&billing));
    let admin = keys.authorize("admin", &[]);
    let probe = dealer(&broker.endpoint, keys.client(&admin));
    // Not listed yet when the broker started: a SIGHUP brings the new key in.
    broker.child.signal("HUP");
    broker.child.wait_line("Authorized keys applied");
    wait_for(&probe, "billing.pay", "200").await;
    wait_for(&probe, "echo", "404").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_call_does_not_match_gets_no_reply_and_mmi_service_says_403() {
    let keys = CurveKeys::new("sec-e2e-call");
    let worker = keys.authorize("worker", &[]);
    let carol = keys.authorize("carol", &[("call", "mmi.*, billing.*"), ("serve", "")]);
    let broker = curve_broker(&keys, &["--no-titanic"]);
    let _worker = echo_worker(&broker.endpoint, "echo", keys.client(&worker));
    let probe = dealer(&broker.endpoint, keys.client(&worker));
    wait_for(&probe, "echo", "200").await;
    let dealer = dealer(&broker.endpoint, keys.client(&carol));
    request(&dealer, "echo", "hi").await;
    assert_eq!(reply(&dealer, SILENCE).await, None);
    broker.wait_metric("domo_security_refusals_total{right=\"call\"}", 1.0);
    request(&dealer, "mmi.service", "echo").await;
    assert_eq!(reply(&dealer, WITHIN).await.as_deref(), Some("403"));
    request(&dealer, "mmi.service", "billing.pay").await;
    assert_eq!(reply(&dealer, WITHIN).await.as_deref(), Some("404"));
    // The SDK says so: not a timeout, not "no workers", but "not allowed".
    let sdk = client(&broker.endpoint, keys.client(&carol));
    let error = sdk.service_available("echo").await.unwrap_err();
    assert_eq!(error.kind(), domo_client::ErrorKind::Forbidden, "{error}");
    let checking = ClientOptions::new([&broker.endpoint])
        .timeout(SILENCE)
        .retries(0)
        .transport(Options {
            security: keys.client(&carol),
            ..Options::default()
        });
    let error = Client::new(checking)
        .unwrap()
        .request("echo", vec![Bytes::from("hi")])
        .await
        .unwrap_err();
    assert_eq!(error.kind(), domo_client::ErrorKind::Forbidden, "{error}");
    assert_eq!(
        error.to_string(),
        "not allowed to call service \"echo\" (the broker answered 403)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_after_deleting_a_key_file_closes_that_clients_connection() {
    let keys = CurveKeys::new("sec-e2e-revoke");
    let alice = keys.authorize("alice", &[]);
    let bob = keys.authorize("bob", &[]);
    let worker = keys.authorize("worker", &[("serve", "echo")]);
    let other = keys.authorize("other", &[("serve", "other")]);
    let broker = curve_broker(&keys, &["--no-titanic"]);
    let _worker = echo_worker(&broker.endpoint, "echo", keys.client(&worker));
    let _other = echo_worker(&broker.endpoint, "other", keys.client(&other));
    let alice_dealer = dealer(&broker.endpoint, keys.client(&alice));
    let bob_dealer = dealer(&broker.endpoint, keys.client(&bob));
    wait_for(&alice_dealer, "echo", "200").await;
    wait_for(&bob_dealer, "other", "200").await;
    keys.revoke("alice");
    // A worker whose key is removed is closed and forgotten at once.
    keys.revoke("other");
    // The worker's key loses `echo`: it is sent DISCONNECT (and its SDK registers again,
    // in vain, so the service stays without worker).
    keys.write_public("worker", &worker, &[("serve", "other")]);
    broker.child.signal("HUP");
    broker.child.wait_line("Authorized keys reloaded");
    broker.child.wait_line("Authorized keys applied");
    // Alice's connection is closed, and her reconnection refused.
    assert_eq!(
        handshake_error(&alice_dealer).await,
        HandshakeError::NotAuthorized
    );
    request(&alice_dealer, "mmi.service", "echo").await;
    assert_eq!(reply(&alice_dealer, SILENCE).await, None);
    // Bob goes on; both workers are gone from their services.
    request(&bob_dealer, "mmi.service", "other").await;
    assert_eq!(reply(&bob_dealer, WITHIN).await.as_deref(), Some("404"));
    wait_for(&bob_dealer, "echo", "404").await;
    let series = "domo_disconnects_sent_total{reason=\"not_authorized\"}";
    broker.wait_metric_at_least(series, 1.0);
    broker.wait_metric_at_least("domo_handshakes_total{result=\"not_authorized\"}", 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_titanic_connects_with_the_brokers_own_key() {
    let keys = CurveKeys::new("sec-e2e-titanic");
    let worker = keys.authorize("worker", &[("serve", "echo")]);
    let dave = keys.authorize("dave", &[("call", "titanic.*")]);
    let data = keys.dir().path().join("titanic");
    let data = data.display().to_string();
    let broker = curve_broker(&keys, &["--titanic-data-dir", &data]);
    let _worker = echo_worker(&broker.endpoint, "echo", keys.client(&worker));
    let sdk = client(&broker.endpoint, keys.client(&dave));
    // Dave may not call echo himself, but Titanic (the broker's own key) may, for him.
    let reply = tokio::time::timeout(
        Duration::from_secs(20),
        sdk.call_durable(
            "echo",
            vec![Bytes::from("durable")],
            Duration::from_secs(15),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(reply, [Bytes::from("durable")]);
}

// === the pair's state link ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_curve_pair_accepts_state_messages_from_the_pinned_peer_key_only() {
    use domo_tests::pair::{pair_specs, wait_one_active, Node};
    let dir = TempDir::new("sec-pair");
    let (ka, kb) = (CurveKeys::new("sec-pair-a"), CurveKeys::new("sec-pair-b"));
    // Each broker pins the other's public certificate.
    let a_pub = dir.file(
        "a.key",
        &domo_zmtp::curve::Certificate::new(ka.broker.secret.clone()).public_text(),
    );
    let b_pub = dir.file(
        "b.key",
        &domo_zmtp::curve::Certificate::new(kb.broker.secret.clone()).public_text(),
    );
    let (mut a, mut b) = pair_specs(&dir, Duration::from_millis(200));
    a.extra_args = ka.broker_args();
    a.extra_args
        .extend(["--ha-peer-key-file".into(), b_pub.display().to_string()]);
    b.extra_args = kb.broker_args();
    b.extra_args
        .extend(["--ha-peer-key-file".into(), a_pub.display().to_string()]);
    let (na, nb) = (Node::start(&a), Node::start(&b));
    // The encrypted state link works: the pair settles with the primary active.
    let states = blocking({
        let (na, nb) = (na, nb);
        move || {
            let states = wait_one_active(&na, &nb, Duration::from_millis(600), WITHIN);
            (states, na, nb)
        }
    })
    .await;
    let ((sa, sb), na, nb) = states;
    assert_eq!((sa.as_str(), sb.as_str()), ("active", "passive"));
    assert!(na.log().contains("CURVE"), "{}", na.log());

    // A stranger who knows the backup's public key, with a keypair of its own: refused
    // during the handshake, so its forged "I am the active primary" never reaches the
    // state machine.
    let stranger = dealer(
        &b.ha_bind,
        Security::curve_client(kb.broker.public, KeyPair::generate()),
    );
    let _ = stranger.try_send(frames(&[b"forged state"]));
    assert_eq!(
        handshake_error(&stranger).await,
        HandshakeError::NotAuthorized
    );
    // A NULL peer is refused at the greeting.
    let null = dealer(&b.ha_bind, Security::Null);
    let _ = null.try_send(frames(&[b"forged state"]));
    let err = handshake_error(&null).await;
    assert!(
        matches!(err, HandshakeError::MechanismMismatch { ref theirs } if theirs.as_ref() == b"CURVE"),
        "{err:?}"
    );
    // Nothing changed: still one active, one passive, no failover.
    let ((sa, sb), na, nb) = blocking(move || {
        let states = wait_one_active(&na, &nb, Duration::from_millis(600), WITHIN);
        (states, na, nb)
    })
    .await;
    assert_eq!((sa.as_str(), sb.as_str()), ("active", "passive"));
    assert_eq!(na.failovers() + nb.failovers(), 0.0);
}

#[test]
fn a_curve_pair_needs_the_peer_key_and_a_null_one_refuses_it() {
    let keys = CurveKeys::new("sec-pair-config");
    let dir = TempDir::new("sec-pair-config-files");
    let mut args = keys.broker_args();
    args.extend(
        [
            "--ha-role",
            "primary",
            "--ha-bind",
            "tcp://127.0.0.1:1",
            "--ha-peer",
            "tcp://127.0.0.1:2",
        ]
        .map(String::from),
    );
    refused(
        &args,
        2,
        "ha.peer_key_file: required with security.mechanism = \"curve\" (the peer's public \
         certificate, e.g. \"/etc/domo/peer.key\")",
    );
    let own = dir.file(
        "own.key",
        &domo_zmtp::curve::Certificate::new(keys.broker.secret.clone()).public_text(),
    );
    refused(
        &[
            "--ha-role".into(),
            "primary".into(),
            "--ha-bind".into(),
            "tcp://127.0.0.1:1".into(),
            "--ha-peer".into(),
            "tcp://127.0.0.1:2".into(),
            "--ha-peer-key-file".into(),
            own.display().to_string(),
        ],
        2,
        "--ha-peer-key-file: needs security.mechanism = \"curve\" (and the broker's own keys)",
    );
}
