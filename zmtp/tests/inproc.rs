//! Router and Dealer in one process over `inproc://` endpoints (no sockets).
//!
//! Names are process-wide and the tests of this file run in parallel: each uses its own.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domo_zmtp::curve::Authorizer;
use domo_zmtp::proto::Metadata;
use domo_zmtp::{
    Dealer, Endpoint, Error, HandshakeError, KeyPair, Options, PeerAddr, PeerId, PublicKey, Router,
    RouterEvent, Security, SocketType,
};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

fn msg(frames: &[&[u8]]) -> Vec<Bytes> {
    frames.iter().map(|f| Bytes::copy_from_slice(f)).collect()
}

/// Dealer options that retry quickly, for the tests that connect before a bind.
fn quick() -> Options {
    Options {
        reconnect_interval: Duration::from_millis(10),
        reconnect_interval_max: Duration::from_millis(50),
        ..Options::default()
    }
}

/// The next event, which must be `Connected`: its peer, address, key and metadata.
async fn connected(router: &Router) -> (PeerId, PeerAddr, Option<PublicKey>, Metadata) {
    match timeout(T, router.recv_event()).await.unwrap().unwrap() {
        RouterEvent::Connected {
            peer,
            addr,
            socket_type,
            key,
            metadata,
        } => {
            assert_eq!(socket_type, SocketType::Dealer);
            (peer, addr, key, metadata)
        }
        other => panic!("expected Connected, got {other:?}"),
    }
}

fn addr_in_use(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse)
}

#[tokio::test]
async fn echo_multipart_empty_frames_and_a_mebibyte() {
    let router = Router::new(Options::default());
    let bound = router.bind("inproc://echo").await.unwrap();
    assert_eq!(bound, Endpoint::Inproc("echo".into()));
    assert_eq!(bound.to_string(), "inproc://echo");
    let dealer = Dealer::connect("inproc://echo", Options::default()).unwrap();
    let (peer, addr, key, _) = connected(&router).await;
    assert_eq!(addr, PeerAddr::Inproc);
    assert_eq!(addr.to_string(), "inproc");
    assert_eq!(key, None);
    timeout(T, dealer.connected()).await.unwrap().unwrap();

    let big = vec![0xa5u8; 1024 * 1024];
    let messages = [
        msg(&[b"hello"]),
        msg(&[b"", b"\x00\xff\x01", b"", &[7u8; 300]]),
        msg(&[b""]),
        msg(&[b"head", &big, b"tail"]),
        msg(&[&big]),
    ];
    for sent in &messages {
        dealer.send(sent.clone()).await.unwrap();
    }
    for sent in &messages {
        let (from, got) = timeout(T, router.recv()).await.unwrap().unwrap();
        assert_eq!(from, peer);
        assert_eq!(&got, sent);
        router.try_send(&from, got).unwrap();
    }
    for sent in &messages {
        assert_eq!(&timeout(T, dealer.recv()).await.unwrap().unwrap(), sent);
    }
    let stats = router.stats();
    assert_eq!(stats.peers, 1);

    // The end of the stream reaches the router as it would over TCP.
    drop(dealer);
    match timeout(T, router.recv_event()).await.unwrap().unwrap() {
        RouterEvent::Disconnected { peer: gone } => assert_eq!(gone, peer),
        other => panic!("expected Disconnected, got {other:?}"),
    }
}

#[tokio::test]
async fn several_dealers_share_one_name() {
    let router = Router::new(Options::default());
    router.bind("inproc://several").await.unwrap();
    let dealers: Vec<Dealer> = (0..4)
        .map(|_| Dealer::connect("inproc://several", Options::default()).unwrap())
        .collect();
    for (i, dealer) in dealers.iter().enumerate() {
        dealer.send(msg(&[&[i as u8]])).await.unwrap();
    }
    let mut seen = Vec::new();
    for _ in 0..dealers.len() {
        let (peer, got) = timeout(T, router.recv()).await.unwrap().unwrap();
        router.try_send(&peer, got.clone()).unwrap();
        seen.push(got[0][0]);
    }
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2, 3]);
    for (i, dealer) in dealers.iter().enumerate() {
        let got = timeout(T, dealer.recv()).await.unwrap().unwrap();
        assert_eq!(got, msg(&[&[i as u8]]));
    }
}

// On a paused clock, so that the dealer's first attempts run (and fail) before the bind
// without waiting in real time: no event tells a refused connect.
#[tokio::test(start_paused = true)]
async fn connect_before_bind_delivers_once_the_router_binds() {
    let dealer = Dealer::connect("inproc://late", quick()).unwrap();
    // Queued while nothing is bound; the attempts fail like a refused TCP connect and the
    // dealer backs off and retries (10 to 50 ms apart here).
    dealer.send(msg(&[b"early"])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!dealer.is_connected());
    assert_eq!(dealer.stats().connects, 0);
    assert_eq!(
        dealer.handshake_error(),
        None,
        "a refused connect is no handshake error"
    );

    let router = Router::new(Options::default());
    router.bind("inproc://late").await.unwrap();
    timeout(T, dealer.connected()).await.unwrap().unwrap();
    let (peer, got) = timeout(T, router.recv()).await.unwrap().unwrap();
    assert_eq!(got, msg(&[b"early"]));
    router.try_send(&peer, msg(&[b"late"])).unwrap();
    assert_eq!(
        timeout(T, dealer.recv()).await.unwrap().unwrap(),
        msg(&[b"late"])
    );
}

#[tokio::test]
async fn a_bound_name_cannot_be_bound_again() {
    let first = Router::new(Options::default());
    first.bind("inproc://taken").await.unwrap();
    let second = Router::new(Options::default());
    let err = second.bind("inproc://taken").await.unwrap_err();
    assert!(addr_in_use(&err), "{err:?}");
    assert!(err.to_string().contains("inproc://taken"), "{err}");
    // Not even by the router that holds it.
    let err = first.bind("inproc://taken").await.unwrap_err();
    assert!(addr_in_use(&err), "{err:?}");
    // Names are exact: another name is free.
    second.bind("inproc://Taken").await.unwrap();

    // The first router still serves the name.
    let dealer = Dealer::connect("inproc://taken", Options::default()).unwrap();
    dealer.send(msg(&[b"to the first"])).await.unwrap();
    let (_, got) = timeout(T, first.recv()).await.unwrap().unwrap();
    assert_eq!(got, msg(&[b"to the first"]));
}

#[tokio::test]
async fn invalid_inproc_endpoints_are_refused() {
    let router = Router::new(Options::default());
    for ep in ["inproc://", "inproc:/x", "inproc:x"] {
        assert!(
            matches!(router.bind(ep).await, Err(Error::InvalidEndpoint(_))),
            "{ep}"
        );
        assert!(
            matches!(
                Dealer::connect(ep, Options::default()),
                Err(Error::InvalidEndpoint(_))
            ),
            "{ep}"
        );
    }
}

#[tokio::test]
async fn the_name_is_free_again_after_shutdown_and_a_dealer_follows_it() {
    let first = Router::new(Options::default());
    first.bind("inproc://restart").await.unwrap();
    let dealer = Dealer::connect("inproc://restart", quick()).unwrap();
    let (peer, _, _, _) = connected(&first).await;
    dealer.send(msg(&[b"one"])).await.unwrap();
    let (_, got) = timeout(T, first.recv()).await.unwrap().unwrap();
    assert_eq!(got, msg(&[b"one"]));
    first.try_send(&peer, msg(&[b"ack"])).unwrap();
    assert_eq!(
        timeout(T, dealer.recv()).await.unwrap().unwrap(),
        msg(&[b"ack"])
    );

    first.shutdown().await;
    let second = Router::new(Options::default());
    second.bind("inproc://restart").await.unwrap();
    // The dealer saw its connection end and reconnects, now to the second router.
    dealer.send(msg(&[b"two"])).await.unwrap();
    let (_, got) = timeout(T, second.recv()).await.unwrap().unwrap();
    assert_eq!(got, msg(&[b"two"]));
}

#[tokio::test]
async fn the_name_is_free_again_as_soon_as_the_router_is_dropped() {
    for _ in 0..3 {
        let router = Router::new(Options::default());
        router.bind("inproc://dropped").await.unwrap();
        drop(router);
    }
    // Also with a connection up when the router goes.
    let router = Router::new(Options::default());
    router.bind("inproc://dropped").await.unwrap();
    let dealer = Dealer::connect("inproc://dropped", quick()).unwrap();
    connected(&router).await;
    drop(router);
    let router = Router::new(Options::default());
    router.bind("inproc://dropped").await.unwrap();
    connected(&router).await;
    drop(dealer);
}

#[derive(Debug)]
struct Only(PublicKey);

impl Authorizer for Only {
    fn authorize(&self, client: &PublicKey) -> bool {
        *client == self.0
    }
}

fn curve_server(server: &KeyPair, allowed: PublicKey) -> Options {
    Options {
        security: Security::curve_server_with(server.secret.clone(), Arc::new(Only(allowed))),
        ..Options::default()
    }
}

fn curve_client(server_key: PublicKey, me: &KeyPair) -> Options {
    Options {
        security: Security::curve_client(server_key, me.clone()),
        ..quick()
    }
}

#[tokio::test]
async fn curve_over_inproc() {
    let (s, c) = (KeyPair::generate(), KeyPair::generate());
    let router = Router::new(curve_server(&s, c.public));
    router.bind("inproc://curve").await.unwrap();
    let dealer = Dealer::connect("inproc://curve", curve_client(s.public, &c)).unwrap();
    let (peer, addr, key, _) = connected(&router).await;
    assert_eq!(addr, PeerAddr::Inproc);
    assert_eq!(key, Some(c.public), "the router learns the client's key");

    let big = vec![0x3cu8; 1024 * 1024];
    let sent = msg(&[b"", b"boxed", &big]);
    dealer.send(sent.clone()).await.unwrap();
    let (from, got) = timeout(T, router.recv()).await.unwrap().unwrap();
    assert_eq!((&from, &got), (&peer, &sent));
    router.try_send(&peer, got).unwrap();
    assert_eq!(timeout(T, dealer.recv()).await.unwrap().unwrap(), sent);

    // The handshake refuses over inproc as over TCP.
    let stranger = KeyPair::generate();
    let refused = Dealer::connect("inproc://curve", curve_client(s.public, &stranger)).unwrap();
    assert_eq!(
        timeout(T, refused.refused()).await.unwrap(),
        HandshakeError::NotAuthorized
    );
    let wrong_server = KeyPair::generate().public;
    let mismatched = Dealer::connect("inproc://curve", curve_client(wrong_server, &c)).unwrap();
    assert_eq!(
        timeout(T, mismatched.refused()).await.unwrap(),
        HandshakeError::ServerKeyMismatch
    );
    // A NULL dealer does not get in either.
    let plain = Dealer::connect("inproc://curve", quick()).unwrap();
    assert!(matches!(
        timeout(T, plain.refused()).await.unwrap(),
        HandshakeError::MechanismMismatch { .. }
    ));
    assert_eq!(router.stats().peers, 1);
}

#[tokio::test]
async fn the_connected_event_carries_the_dealers_metadata() {
    let mut router_meta = Metadata::new();
    router_meta.insert("X-Domo-Extensions", "credit");
    let router = Router::new(Options {
        metadata: router_meta,
        ..Options::default()
    });
    router.bind("inproc://metadata").await.unwrap();
    let mut dealer_meta = Metadata::new();
    dealer_meta.insert("X-Domo-Credit", "8");
    let dealer = Dealer::connect(
        "inproc://metadata",
        Options {
            identity: Some(Bytes::from_static(b"titanic")),
            metadata: dealer_meta,
            ..Options::default()
        },
    )
    .unwrap();
    let (peer, addr, _, metadata) = connected(&router).await;
    assert_eq!(peer, PeerId::from("titanic"));
    assert_eq!(addr, PeerAddr::Inproc);
    assert_eq!(
        metadata.get("X-Domo-Credit").map(|v| &v[..]),
        Some(&b"8"[..])
    );
    assert_eq!(
        metadata.get("Identity").map(|v| &v[..]),
        Some(&b"titanic"[..])
    );
    assert_eq!(
        metadata.get("Socket-Type").map(|v| &v[..]),
        Some(&b"DEALER"[..])
    );
    timeout(T, dealer.connected()).await.unwrap().unwrap();
    let theirs = dealer.peer_metadata().unwrap();
    assert_eq!(
        theirs.get("X-Domo-Extensions").map(|v| &v[..]),
        Some(&b"credit"[..])
    );
}

/// A rough throughput comparison, not a test: `cargo test --release -p domo-zmtp --test
/// inproc -- --ignored --nocapture`. Echoes messages DEALER -> ROUTER -> DEALER with a
/// window of messages in flight, over inproc and over loopback TCP, all on one thread.
#[tokio::test]
#[ignore = "a benchmark; prints numbers, asserts nothing about speed"]
async fn echo_throughput_inproc_vs_tcp() {
    for (size, window, messages) in [
        (64usize, 1usize, 50_000usize),
        (64, 256, 200_000),
        (4096, 256, 200_000),
    ] {
        for transport in ["inproc://throughput", "tcp://127.0.0.1:0"] {
            let router = Arc::new(Router::new(Options::default()));
            let ep = router.bind(transport).await.unwrap().to_string();
            let echo = {
                let router = router.clone();
                tokio::spawn(async move {
                    while let Ok((peer, m)) = router.recv().await {
                        if router.send(&peer, m).await.is_err() {
                            break;
                        }
                    }
                })
            };
            let dealer = Dealer::connect(&ep, Options::default()).unwrap();
            timeout(T, dealer.connected()).await.unwrap().unwrap();
            let payload = Bytes::from(vec![1u8; size]);
            let start = std::time::Instant::now();
            let mut sent = 0;
            for _ in 0..window.min(messages) {
                dealer.send(vec![payload.clone()]).await.unwrap();
                sent += 1;
            }
            for _ in 0..messages {
                timeout(T, dealer.recv()).await.unwrap().unwrap();
                if sent < messages {
                    dealer.send(vec![payload.clone()]).await.unwrap();
                    sent += 1;
                }
            }
            let elapsed = start.elapsed();
            println!(
                "{transport:<20} {size:>5} B, window {window:>3}: {:>9.0} round trips/s \
                 ({elapsed:.2?} for {messages})",
                messages as f64 / elapsed.as_secs_f64()
            );
            drop(dealer);
            router.shutdown().await;
            echo.abort();
        }
    }
}
