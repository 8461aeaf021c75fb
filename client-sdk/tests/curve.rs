//! domo-client with CURVE against a plain ZMTP router in the CURVE server role, standing in
//! for a broker and answering RFC 7 requests by hand: an allowed key gets its reply; a
//! refused key, a wrong server key or a NULL client gets `ErrorKind::Handshake` saying why,
//! as soon as the handshake is refused: well before the attempt's timeout, and never a
//! timeout after every retry.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domo_client::{Client, ClientOptions, Error, ErrorKind};
use domo_zmtp::curve::Authorizer;
use domo_zmtp::{HandshakeError, KeyPair, Options, PublicKey, Router, Security};
use tokio::time::Instant;

/// The attempt timeout of these tests: long, so a refusal reported at once is told apart
/// from one reported when the attempt timed out.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long a refusal may take to be reported (a handshake on 127.0.0.1 takes ~1 ms).
const PROMPTLY: Duration = Duration::from_millis(1500);

/// Lets in the one key it was given.
#[derive(Debug)]
struct Only(PublicKey);

impl Authorizer for Only {
    fn authorize(&self, client: &PublicKey) -> bool {
        *client == self.0
    }
}

/// A CURVE broker stand-in with `server`'s keys that lets in `allowed` only and replies to
/// each client request with its body. Returns its endpoint.
async fn curve_broker(server: &KeyPair, allowed: PublicKey) -> String {
    let options = Options {
        security: Security::curve_server_with(server.secret.clone(), Arc::new(Only(allowed))),
        ..Options::default()
    };
    let router = Router::new(options);
    let endpoint = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((peer, msg)) = router.recv().await {
            // ["", "MDPC01", service, body...] back as the reply.
            if msg.len() >= 3 && msg[1] == "MDPC01" {
                let _ = router.try_send(&peer, msg);
            }
        }
    });
    endpoint
}

fn options(endpoint: &str) -> ClientOptions {
    ClientOptions::new([endpoint])
        .timeout(TIMEOUT)
        .retries(2)
        .check_service(false)
}

/// Sends one request; returns the error and how long it took.
async fn refused(options: ClientOptions) -> (Error, Duration) {
    let client = Client::new(options).unwrap();
    let start = Instant::now();
    let err = client
        .request("echo", vec![Bytes::from_static(b"hi")])
        .await
        .unwrap_err();
    (err, start.elapsed())
}

#[tokio::test]
async fn an_allowed_key_gets_its_reply() {
    let (server, me) = (KeyPair::generate(), KeyPair::generate());
    let endpoint = curve_broker(&server, me.public).await;
    let client = Client::new(options(&endpoint).curve(server.public, me)).unwrap();
    let reply = client
        .request("echo", vec![Bytes::from_static(b"hi")])
        .await
        .unwrap();
    assert_eq!(reply, vec![Bytes::from_static(b"hi")]);
}

#[tokio::test]
async fn a_key_the_broker_refuses_is_not_authorized_after_one_attempt() {
    let (server, me, other) = (
        KeyPair::generate(),
        KeyPair::generate(),
        KeyPair::generate(),
    );
    let endpoint = curve_broker(&server, other.public).await;
    let (err, took) = refused(options(&endpoint).curve(server.public, me)).await;
    assert_eq!(err.kind(), ErrorKind::Handshake, "{err}");
    assert_eq!(err.handshake_error(), Some(&HandshakeError::NotAuthorized));
    assert_eq!(
        err.to_string(),
        format!("handshake failed: not authorized ({endpoint})")
    );
    assert!(
        took < PROMPTLY,
        "reported at the refusal, not at a timeout: {took:?}"
    );
}

#[tokio::test]
async fn a_wrong_server_key_is_a_server_key_mismatch_after_one_attempt() {
    let (server, me, impostor) = (
        KeyPair::generate(),
        KeyPair::generate(),
        KeyPair::generate(),
    );
    let endpoint = curve_broker(&server, me.public).await;
    let (err, took) = refused(options(&endpoint).curve(impostor.public, me)).await;
    assert_eq!(err.kind(), ErrorKind::Handshake, "{err}");
    assert_eq!(
        err.handshake_error(),
        Some(&HandshakeError::ServerKeyMismatch)
    );
    assert!(
        err.to_string()
            .starts_with("handshake failed: server key mismatch"),
        "{err}"
    );
    assert!(
        took < PROMPTLY,
        "reported at the refusal, not at a timeout: {took:?}"
    );
}

#[tokio::test]
async fn a_null_client_of_a_curve_broker_hears_of_the_mechanism() {
    let (server, me) = (KeyPair::generate(), KeyPair::generate());
    let endpoint = curve_broker(&server, me.public).await;
    let (err, _) = refused(options(&endpoint)).await;
    assert_eq!(err.kind(), ErrorKind::Handshake, "{err}");
    assert!(err.to_string().starts_with("handshake failed: "), "{err}");
    assert!(err.to_string().contains("CURVE"), "{err}");
}

#[tokio::test]
async fn a_connection_closed_mid_handshake_is_no_refusal() {
    // Accepts every connection and drops it at once: bad luck, not an answer.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let (server, me) = (KeyPair::generate(), KeyPair::generate());
    let options = options(&endpoint).retries(0).curve(server.public, me);
    let (err, _) = refused(options).await;
    assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
}
