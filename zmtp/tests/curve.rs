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

/// Waits until `dealer` knows why its handshake failed.
async fn refusal(dealer: &Dealer) -> HandshakeError {
    timeout(WAIT, async {
        loop {
            if let Some(e) = dealer.handshake_error() {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("a handshake error")
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
    let err = refusal(&dealer).await;
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
    let err = refusal(&dealer).await;
    assert_eq!(err, HandshakeError::ServerKeyMismatch);
}

/// A raw TCP peer: sends `bytes`, returns what it got back before the router closed.
async fn raw_exchange(ep: &str, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = ep.trim_start_matches("tcp://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(bytes).await;
    let mut got = Vec::new();
    let _ = timeout(WAIT, s.read_to_end(&mut got))
        .await
        .expect("closed by the router");
    got
}

async fn served(ep: &str, server_key: PublicKey, me: &KeyPair, router: &Router) {
    let dealer = Dealer::connect(ep, client(server_key, me)).expect("dealer");
    dealer
        .send(vec![Bytes::from_static(b"still serving?")])
        .await
        .expect("send");
    let (peer, msg) = loop {
        match timeout(WAIT, router.recv_event())
            .await
            .expect("event")
            .expect("open")
        {
            RouterEvent::Message { peer, msg } => break (peer, msg),
            _ => continue,
        }
    };
    router.try_send(&peer, msg).expect("reply");
    assert_eq!(
        timeout(WAIT, dealer.recv())
            .await
            .expect("reply")
            .expect("open"),
        vec![Bytes::from_static(b"still serving?")]
    );
}

fn greeting(mechanism: &[u8]) -> Vec<u8> {
    let mut g = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 1];
    let mut name = [0u8; 20];
    name[..mechanism.len()].copy_from_slice(mechanism);
    g.extend_from_slice(&name);
    g.push(0);
    g.extend_from_slice(&[0u8; 31]);
    g
}

#[tokio::test]
async fn hostile_peers_are_refused_and_the_router_keeps_serving() {
    let (s, c) = (KeyPair::generate(), KeyPair::generate());
    let router = Router::new(server(&s, c.public));
    let ep = router
        .bind("tcp://127.0.0.1:0")
        .await
        .expect("bind")
        .to_string();

    // A NULL peer: refused with ERROR at the greeting.
    let got = raw_exchange(&ep, &greeting(b"NULL")).await;
    assert_eq!(&got[12..17], b"CURVE", "our greeting");
    assert!(
        String::from_utf8_lossy(&got[64..]).contains("security mechanism mismatch"),
        "{got:?}"
    );
    // An unversioned (ZMTP 1.0/2.0) peer: a 10-byte signature with a small length, or a
    // ZMTP 2 greeting (revision 1).
    let got = raw_exchange(&ep, &[0x01, 0x00]).await;
    assert!(got.len() <= 64, "closed without a handshake");
    let got = raw_exchange(&ep, &[0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 1, 5]).await;
    assert!(got.len() <= 64, "closed without a handshake");
    // A truncated HELLO (one byte short), then EOF; and an oversized one.
    let mut hello = greeting(b"CURVE");
    hello.extend_from_slice(&[0x04, 199, 5]);
    hello.extend_from_slice(b"HELLO");
    hello.extend_from_slice(&[0u8; 193]);
    let got = raw_exchange(&ep, &hello).await;
    assert!(String::from_utf8_lossy(&got).contains("malformed command"));
    let mut hello = greeting(b"CURVE");
    hello.extend_from_slice(&[0x04, 250, 5]);
    hello.extend_from_slice(b"HELLO");
    hello.extend_from_slice(&[1u8; 244]);
    let got = raw_exchange(&ep, &hello).await;
    assert!(String::from_utf8_lossy(&got).contains("malformed command"));

    served(&ep, s.public, &c, &router).await;
    let hs = router.stats().handshakes;
    assert_eq!(hs.ok, 1, "{hs:?}");
    assert!(hs.malformed >= 4, "{hs:?}");
}

#[tokio::test]
async fn a_client_retrying_a_wrong_key_costs_a_bounded_number_of_handshakes() {
    let (s, c) = (KeyPair::generate(), KeyPair::generate());
    let router = Router::new(server(&s, c.public));
    let ep = router
        .bind("tcp://127.0.0.1:0")
        .await
        .expect("bind")
        .to_string();
    // Redials every 10 ms, as fast as a misconfigured client can.
    let wrong = Dealer::connect(
        &ep,
        Options {
            security: Security::curve_client(KeyPair::generate().public, c.clone()),
            reconnect_interval: Duration::from_millis(10),
            reconnect_interval_max: Duration::from_millis(10),
            ..Options::default()
        },
    )
    .expect("dealer");
    let started = std::time::Instant::now();
    // Let it hammer for 3 s, watching the router's counters (an event-free wait: the
    // point is how much 3 s of retries cost).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hs = router.stats().handshakes;
    let elapsed = started.elapsed().as_secs_f64();
    // 5 free failures, then one handshake per 500 ms (plus the one in flight).
    let bound = 5.0 + elapsed / 0.5 + 2.0;
    assert!(
        (hs.wrong_key as f64) <= bound,
        "{} wrong-key handshakes in {elapsed:.1} s (bound {bound}): {hs:?}",
        hs.wrong_key
    );
    assert!(hs.wrong_key >= 5, "{hs:?}");
    // (A client that dials one connection at a time waits for its slot rather than being
    // refused: `rate_limited` counts only connections beyond a 5 s queue.)
    assert_eq!(
        wrong.handshake_error(),
        Some(HandshakeError::ServerKeyMismatch)
    );
    // A correct client from the same address still gets in.
    served(&ep, s.public, &c, &router).await;
}

#[tokio::test]
async fn application_metadata_travels_inside_the_curve_handshake() {
    use domo_zmtp::proto::Metadata;
    let (s, c) = (KeyPair::generate(), KeyPair::generate());
    let mut server_meta = Metadata::new();
    server_meta.insert("X-Domo-Extensions", "credit,mux");
    let router = Router::new(Options {
        metadata: server_meta,
        ..server(&s, c.public)
    });
    let ep = router.bind("tcp://127.0.0.1:0").await.expect("bind");
    let mut client_meta = Metadata::new();
    client_meta.insert("X-Domo-Credit", "8");
    // `Socket-Type` and `Identity` cannot be overridden this way.
    client_meta.insert("Socket-Type", "ROUTER");
    let dealer = Dealer::connect(
        &ep.to_string(),
        Options {
            metadata: client_meta,
            ..client(s.public, &c)
        },
    )
    .expect("dealer");
    match timeout(WAIT, router.recv_event())
        .await
        .expect("event")
        .expect("open")
    {
        RouterEvent::Connected {
            metadata,
            socket_type,
            ..
        } => {
            assert_eq!(
                metadata.get("X-Domo-Credit").map(|v| &v[..]),
                Some(&b"8"[..])
            );
            assert_eq!(socket_type, domo_zmtp::SocketType::Dealer);
        }
        other => panic!("unexpected {other:?}"),
    }
    dealer.connected().await.expect("connected");
    let theirs = dealer.peer_metadata().expect("connected");
    assert_eq!(
        theirs.get("X-Domo-Extensions").map(|v| &v[..]),
        Some(&b"credit,mux"[..])
    );
}
