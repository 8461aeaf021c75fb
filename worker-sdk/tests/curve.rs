//! A domo-worker worker with CURVE against a plain ZMTP router in the CURVE server role,
//! standing in for a broker and speaking RFC 7 frames by hand: an allowed key registers and
//! answers; a refused key or a wrong server key shows in `Worker::status` as
//! `ErrorKind::Handshake` saying why, while the sessions keep trying.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domo_mdp::Heartbeat;
use domo_worker::{Error, ErrorKind, Worker, WorkerOptions, WorkerStatus};
use domo_zmtp::curve::Authorizer;
use domo_zmtp::{HandshakeError, KeyPair, Options, PublicKey, Router, Security};
use tokio::sync::oneshot;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);
const MDPW01: &[u8] = b"MDPW01";

fn frames(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

/// Lets in the one key it was given.
#[derive(Debug)]
struct Only(PublicKey);

impl Authorizer for Only {
    fn authorize(&self, client: &PublicKey) -> bool {
        *client == self.0
    }
}

/// A bound CURVE router with `server`'s keys that lets in `allowed` only.
async fn curve_router(server: &KeyPair, allowed: PublicKey) -> (Router, String) {
    let options = Options {
        security: Security::curve_server_with(server.secret.clone(), Arc::new(Only(allowed))),
        ..Options::default()
    };
    let router = Router::new(options);
    let endpoint = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    (router, endpoint)
}

/// Serves "echo" with `options` until the returned sender is used or dropped.
fn serve_echo(options: WorkerOptions) -> (WorkerStatus, oneshot::Sender<()>) {
    let worker = Worker::new("echo", options).unwrap();
    let status = worker.status();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(worker.serve(
        |body| async move { Ok::<_, std::convert::Infallible>(body) },
        async {
            let _ = stopped.await;
        },
    ));
    (status, stop)
}

/// Heartbeats fast, so a refusal is reported within a fraction of the test's limit.
fn options(endpoint: &str) -> WorkerOptions {
    WorkerOptions::new([endpoint]).heartbeat(Heartbeat {
        interval: Duration::from_millis(100),
        liveness: 3,
    })
}

/// Waits until `status` reports a refused handshake.
async fn refusal(status: &mut WorkerStatus) -> Error {
    timeout(LIMIT, async {
        loop {
            if let Some(error) = status.handshake_error() {
                return error;
            }
            assert!(status.changed().await, "the worker ended");
        }
    })
    .await
    .expect("no handshake error reported")
}

#[tokio::test]
async fn an_allowed_key_registers_and_answers() {
    let (server, me) = (KeyPair::generate(), KeyPair::generate());
    let (router, endpoint) = curve_router(&server, me.public).await;
    let (status, _stop) = serve_echo(options(&endpoint).curve(server.public, me));
    let (peer, ready) = timeout(LIMIT, router.recv()).await.unwrap().unwrap();
    assert_eq!(ready, frames(&[b"", MDPW01, &[1], b"echo"]));
    let request = frames(&[b"", MDPW01, &[2], b"client", b"", b"hi"]);
    router.try_send(&peer, request).unwrap();
    let reply = timeout(LIMIT, async {
        loop {
            let (_, msg) = router.recv().await.unwrap();
            if msg.get(2).is_some_and(|c| c[..] == [3]) {
                return msg;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(reply, frames(&[b"", MDPW01, &[3], b"client", b"", b"hi"]));
    assert!(status.handshake_error().is_none());
}

#[tokio::test]
async fn a_refused_key_is_reported_as_not_authorized() {
    let (server, me, other) = (
        KeyPair::generate(),
        KeyPair::generate(),
        KeyPair::generate(),
    );
    let (_router, endpoint) = curve_router(&server, other.public).await;
    let (mut status, _stop) = serve_echo(options(&endpoint).curve(server.public, me));
    let error = refusal(&mut status).await;
    assert_eq!(error.kind(), ErrorKind::Handshake);
    assert_eq!(
        error.handshake_error(),
        Some(&HandshakeError::NotAuthorized)
    );
    assert_eq!(
        error.to_string(),
        format!("handshake failed: not authorized ({endpoint})")
    );
}

#[tokio::test]
async fn a_wrong_server_key_is_reported_as_a_mismatch() {
    let (server, me, impostor) = (
        KeyPair::generate(),
        KeyPair::generate(),
        KeyPair::generate(),
    );
    let (_router, endpoint) = curve_router(&server, me.public).await;
    let (mut status, _stop) = serve_echo(options(&endpoint).curve(impostor.public, me));
    let error = refusal(&mut status).await;
    assert_eq!(error.kind(), ErrorKind::Handshake);
    assert_eq!(
        error.handshake_error(),
        Some(&HandshakeError::ServerKeyMismatch)
    );
}
