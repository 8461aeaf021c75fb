//! CURVE between our own Router and Dealer, over real TCP.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domo_zmtp::curve::Authorizer;
use domo_zmtp::{
    Dealer, HandshakeError, KeyPair, Options, PublicKey, Router, RouterEvent, Security,
};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Only(PublicKey);

impl Authorizer for Only {
    fn authorize(&self, client: &PublicKey) -> bool {
        *client == self.0
    }
}

fn server(server: &KeyPair, allowed: PublicKey) -> Options {
    Options {
        security: Security::curve_server_with(server.secret.clone(), Arc::new(Only(allowed))),
        ..Options::default()
    }
}

fn client(server_key: PublicKey, me: &KeyPair) -> Options {
    Options {
        security: Security::curve_client(server_key, me.clone()),
        reconnect_interval: Duration::from_millis(20),
        ..Options::default()
    }
}

async fn connected_peer(router: &Router) -> (domo_zmtp::PeerId, Option<PublicKey>) {
    match timeout(WAIT, router.recv_event())
        .await
        .expect("event")
        .expect("open")
    {
        RouterEvent::Connected { peer, key, .. } => (peer, key),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn messages_and_large_frames_round_trip_boxed() {
    let (s, c) = (KeyPair::generate(), KeyPair::generate());
    let router = Router::new(server(&s, c.public));
    let ep = router.bind("tcp://127.0.0.1:0").await.expect("bind");
    let dealer = Dealer::connect(&ep.to_string(), client(s.public, &c)).expect("dealer");
    let (peer, key) = connected_peer(&router).await;
    assert_eq!(
        key,
        Some(c.public),
        "the router learns the client's proved key"
    );
    let big = Bytes::from(vec![0xA5u8; 3 << 20]);
    let msg = vec![
        Bytes::new(),
        Bytes::from_static(b"MDPC01"),
        Bytes::from_static(b"echo"),
        big.clone(),
    ];
    for _ in 0..3 {
        dealer.send(msg.clone()).await.expect("send");
        let (from, got) = timeout(WAIT, router.recv())
            .await
            .expect("recv")
            .expect("open");
        assert_eq!(from, peer);
        assert_eq!(got, msg);
        router.try_send(&peer, got).expect("reply");
        assert_eq!(
            timeout(WAIT, dealer.recv())
                .await
                .expect("reply")
                .expect("open"),
            msg
        );
    }
    dealer.send(Vec::new()).await.expect("empty");
    let (_, got) = timeout(WAIT, router.recv())
        .await
        .expect("recv")
        .expect("open");
    assert_eq!(got, vec![Bytes::new()]);
}

#[tokio::test]
async fn an_unlisted_client_is_refused_as_not_authorized() {
    let (s, c, other) = (
        KeyPair::generate(),
        KeyPair::generate(),
        KeyPair::generate(),
    );
    let router = Router::new(server(&s, c.public));
    let ep = router.bind("tcp://127.0.0.1:0").await.expect("bind");
    let dealer = Dealer::connect(&ep.to_string(), client(s.public, &other)).expect("dealer");
    let err = timeout(WAIT, async {
        loop {
            if let Some(e) = dealer.handshake_error() {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("a handshake error");
    assert_eq!(err, HandshakeError::NotAuthorized);
    assert!(!dealer.is_connected());
}

#[tokio::test]
async fn a_wrong_server_key_is_reported_as_such() {
    let (s, c, wrong) = (
        KeyPair::generate(),
        KeyPair::generate(),
        KeyPair::generate(),
    );
    let router = Router::new(server(&s, c.public));
    let ep = router.bind("tcp://127.0.0.1:0").await.expect("bind");
    let dealer = Dealer::connect(&ep.to_string(), client(wrong.public, &c)).expect("dealer");
    let err = timeout(WAIT, async {
        loop {
            if let Some(e) = dealer.handshake_error() {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("a handshake error");
    assert_eq!(err, HandshakeError::ServerKeyMismatch);
}
