//! Router and Dealer against each other over real sockets.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use domo_zmtp::{
    Dealer, DuplicateIdentity, Options, PeerId, Router, RouterEvent, SocketType, TrySendError,
};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

fn msg(frames: &[&[u8]]) -> Vec<Bytes> {
    frames.iter().map(|f| Bytes::copy_from_slice(f)).collect()
}

async fn bound(opts: Options) -> (Router, String) {
    let router = Router::new(opts);
    let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
    (router, ep.to_string())
}

async fn next_connected(router: &Router) -> PeerId {
    match timeout(T, router.recv_event()).await.unwrap().unwrap() {
        RouterEvent::Connected {
            peer, socket_type, ..
        } => {
            assert_eq!(socket_type, SocketType::Dealer);
            peer
        }
        other => panic!("expected Connected, got {other:?}"),
    }
}

#[tokio::test]
async fn echo_with_empty_and_binary_frames() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_test_writer()
        .try_init();
    let (router, ep) = bound(Options::default()).await;
    let dealer = Dealer::connect(&ep, Options::default()).unwrap();
    let sent = msg(&[b"", b"\x00\xff\x01", b"", &[7u8; 300]]);
    dealer.send(sent.clone()).await.unwrap();
    let (peer, got) = timeout(T, router.recv()).await.unwrap().unwrap();
    assert_eq!(got, sent);
    router.try_send(&peer, got).unwrap();
    assert_eq!(timeout(T, dealer.recv()).await.unwrap().unwrap(), sent);
}

#[tokio::test]
async fn generated_ids_are_libzmq_style_and_identity_is_used() {
    let (router, ep) = bound(Options::default()).await;
    let anon = Dealer::connect(&ep, Options::default()).unwrap();
    let id = next_connected(&router).await;
    assert_eq!(id.as_bytes().len(), 5);
    assert_eq!(id.as_bytes()[0], 0);
    let named = Dealer::connect(
        &ep,
        Options {
            identity: Some(Bytes::from_static(b"w1")),
            ..Options::default()
        },
    )
    .unwrap();
    assert_eq!(next_connected(&router).await, PeerId::from("w1"));
    named.send(msg(&[b"x"])).await.unwrap();
    let (peer, _) = timeout(T, router.recv()).await.unwrap().unwrap();
    assert_eq!(peer, PeerId::from("w1"));
    drop(anon);
}

#[tokio::test]
async fn events_are_ordered_connected_messages_disconnected() {
    let (router, ep) = bound(Options::default()).await;
    let dealer = Dealer::connect(&ep, Options::default()).unwrap();
    for i in 0..5u8 {
        dealer.send(msg(&[&[i]])).await.unwrap();
    }
    dealer.shutdown().await;
    let peer = next_connected(&router).await;
    for i in 0..5u8 {
        match timeout(T, router.recv_event()).await.unwrap().unwrap() {
            RouterEvent::Message { peer: p, msg: m } => {
                assert_eq!(p, peer);
                assert_eq!(m, msg(&[&[i]]));
            }
            other => panic!("expected message {i}, got {other:?}"),
        }
    }
    assert_eq!(
        timeout(T, router.recv_event()).await.unwrap().unwrap(),
        RouterEvent::Disconnected { peer }
    );
    assert_eq!(router.stats().peers, 0);
}

#[tokio::test]
async fn unknown_peer_is_unroutable_and_message_comes_back() {
    let (router, _ep) = bound(Options::default()).await;
    let m = msg(&[b"hello"]);
    match router.try_send(&PeerId::from("nobody"), m.clone()) {
        Err(TrySendError::Unroutable(back)) => assert_eq!(back, m),
        other => panic!("{other:?}"),
    }
}

/// Waits (bounded) until `peer` has `n` messages queued at the router.
async fn until_queued(router: &Router, peer: &str, n: usize) {
    let peer = PeerId::from(Bytes::copy_from_slice(peer.as_bytes()));
    timeout(T, async {
        while router.queued_in(&peer) != Some(n) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn receive_is_fair_across_peers() {
    let (router, ep) = bound(Options::default()).await;
    let flood = Dealer::connect(
        &ep,
        Options {
            identity: Some("flood".into()),
            ..Options::default()
        },
    )
    .unwrap();
    let quiet = Dealer::connect(
        &ep,
        Options {
            identity: Some("quiet".into()),
            ..Options::default()
        },
    )
    .unwrap();
    next_connected(&router).await;
    next_connected(&router).await;
    router.pause(&PeerId::from("flood"));
    router.pause(&PeerId::from("quiet"));
    for _ in 0..500 {
        flood.send(msg(&[b"f"])).await.unwrap();
    }
    for _ in 0..3 {
        quiet.send(msg(&[b"q"])).await.unwrap();
    }
    until_queued(&router, "flood", 500).await;
    until_queued(&router, "quiet", 3).await;
    router.resume(&PeerId::from("flood"));
    router.resume(&PeerId::from("quiet"));
    // Both have messages waiting: receives alternate between them.
    let mut order = Vec::new();
    for _ in 0..8 {
        order.push(timeout(T, router.recv()).await.unwrap().unwrap().1[0][0]);
    }
    assert_eq!(order, b"fqfqfqff", "{:?}", String::from_utf8_lossy(&order));
}

#[tokio::test]
async fn pause_and_grant_control_one_peer_only() {
    let (router, ep) = bound(Options::default()).await;
    let a = Dealer::connect(
        &ep,
        Options {
            identity: Some("a".into()),
            ..Options::default()
        },
    )
    .unwrap();
    let b = Dealer::connect(
        &ep,
        Options {
            identity: Some("b".into()),
            ..Options::default()
        },
    )
    .unwrap();
    next_connected(&router).await;
    next_connected(&router).await;
    assert!(router.pause(&PeerId::from("a")));
    for i in 0..3u8 {
        a.send(msg(&[b"a", &[i]])).await.unwrap();
    }
    b.send(msg(&[b"b"])).await.unwrap();
    let (peer, _) = timeout(T, router.recv()).await.unwrap().unwrap();
    assert_eq!(peer, PeerId::from("b"), "a is paused");
    // Nothing more while a is paused.
    assert!(timeout(Duration::from_millis(200), router.recv())
        .await
        .is_err());
    assert!(router.grant(&PeerId::from("a"), 2));
    for i in 0..2u8 {
        let (peer, m) = timeout(T, router.recv()).await.unwrap().unwrap();
        assert_eq!((peer, m), (PeerId::from("a"), msg(&[b"a", &[i]])));
    }
    assert!(
        timeout(Duration::from_millis(200), router.recv())
            .await
            .is_err(),
        "credit used up"
    );
    assert!(router.resume(&PeerId::from("a")));
    let (_, m) = timeout(T, router.recv()).await.unwrap().unwrap();
    assert_eq!(m, msg(&[b"a", &[2]]));
}

#[tokio::test]
async fn paused_peer_is_pushed_back_at_its_high_water_mark() {
    let opts = Options {
        recv_hwm: 10,
        ..Options::default()
    };
    let (router, ep) = bound(opts).await;
    let a = Dealer::connect(
        &ep,
        Options {
            identity: Some("a".into()),
            send_hwm: 100_000,
            ..Options::default()
        },
    )
    .unwrap();
    next_connected(&router).await;
    router.pause(&PeerId::from("a"));
    for _ in 0..50_000 {
        a.send(msg(&[&[0u8; 100]])).await.unwrap();
    }
    // The router holds exactly its high-water mark for the paused peer and reads no more:
    // the rest waits in TCP buffers and the dealer's queue.
    until_queued(&router, "a", 10).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(router.queued_in(&PeerId::from("a")), Some(10));
    router.resume(&PeerId::from("a"));
    for _ in 0..50_000 {
        timeout(T, router.recv()).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn try_send_says_full_at_the_hwm_and_writable_follows() {
    let opts = Options {
        send_hwm: 5,
        ..Options::default()
    };
    let (router, ep) = bound(opts).await;
    // A dealer that is never read from: its receive queue fills, then TCP, then ours.
    let dealer = Dealer::connect(
        &ep,
        Options {
            recv_hwm: 1,
            ..Options::default()
        },
    )
    .unwrap();
    let peer = next_connected(&router).await;
    let big = Bytes::from(vec![0u8; 64 * 1024]);
    let mut accepted = 0usize;
    let full = loop {
        match router.try_send(&peer, vec![big.clone()]) {
            Ok(()) => accepted += 1,
            Err(TrySendError::Full(back)) => break back,
            Err(e) => panic!("{e:?}"),
        }
        if accepted.is_multiple_of(5) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(accepted < 10_000, "never full");
    };
    assert_eq!(full.len(), 1);
    assert!(router.queued(&peer).unwrap() >= 5);
    // Drain the dealer; the router announces that the peer is writable again.
    let drain = async {
        for _ in 0..accepted {
            dealer.recv().await.unwrap();
        }
    };
    let writable = async {
        loop {
            if let RouterEvent::Writable { peer: p } = router.recv_event().await.unwrap() {
                return p;
            }
        }
    };
    let (_, p) = timeout(T, async { tokio::join!(drain, writable) })
        .await
        .unwrap();
    assert_eq!(p, peer);
}

#[tokio::test]
async fn dealer_queues_before_the_router_exists() {
    // Reserve a port, free it, and start the router later.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let ep = format!("tcp://127.0.0.1:{port}");
    let dealer = Dealer::connect(
        &ep,
        Options {
            reconnect_interval_max: Duration::from_millis(200),
            ..Options::default()
        },
    )
    .unwrap();
    dealer.send(msg(&[b"early"])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let router = Router::new(Options::default());
    router.bind(&ep).await.unwrap();
    let (_, m) = timeout(T, router.recv()).await.unwrap().unwrap();
    assert_eq!(m, msg(&[b"early"]));
}

#[tokio::test]
async fn dealer_reconnects_after_router_restart() {
    let (router, ep) = bound(Options::default()).await;
    let dealer = Dealer::connect(
        &ep,
        Options {
            reconnect_interval_max: Duration::from_millis(200),
            ..Options::default()
        },
    )
    .unwrap();
    dealer.send(msg(&[b"one"])).await.unwrap();
    assert_eq!(
        timeout(T, router.recv()).await.unwrap().unwrap().1,
        msg(&[b"one"])
    );
    router.shutdown().await;
    drop(router);
    let router = Router::new(Options::default());
    router.bind(&ep).await.unwrap();
    timeout(T, dealer.connected()).await.unwrap().unwrap();
    // Wait for the new connection specifically (the old one may still be seen as up).
    timeout(T, next_connected(&router)).await.unwrap();
    dealer.send(msg(&[b"two"])).await.unwrap();
    assert_eq!(
        timeout(T, router.recv()).await.unwrap().unwrap().1,
        msg(&[b"two"])
    );
    assert!(dealer.stats().connects >= 2);
}

#[tokio::test]
async fn explicit_reconnect_gives_a_new_routing_id_and_drops_queues() {
    let (router, ep) = bound(Options::default()).await;
    let dealer = Dealer::connect(&ep, Options::default()).unwrap();
    let first = next_connected(&router).await;
    router.try_send(&first, msg(&[b"late reply"])).unwrap();
    // Make sure the reply reached the dealer's queue before reconnecting.
    tokio::time::sleep(Duration::from_millis(100)).await;
    dealer.reconnect();
    let mut second = None;
    while second.is_none() {
        match timeout(T, router.recv_event()).await.unwrap().unwrap() {
            RouterEvent::Connected { peer, .. } => second = Some(peer),
            RouterEvent::Disconnected { peer } => assert_eq!(peer, first),
            other => panic!("{other:?}"),
        }
    }
    let second = second.unwrap();
    assert_ne!(first, second);
    router.try_send(&second, msg(&[b"fresh"])).unwrap();
    assert_eq!(
        timeout(T, dealer.recv()).await.unwrap().unwrap(),
        msg(&[b"fresh"]),
        "late reply was dropped"
    );
}

#[tokio::test]
async fn duplicate_identity_rejected_by_default() {
    let (router, ep) = bound(Options::default()).await;
    let opts = Options {
        identity: Some("same".into()),
        ..Options::default()
    };
    let a = Dealer::connect(&ep, opts.clone()).unwrap();
    next_connected(&router).await;
    let b = Dealer::connect(&ep, opts).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(router.stats().identity_rejected >= 1);
    a.send(msg(&[b"from a"])).await.unwrap();
    let (peer, m) = timeout(T, router.recv()).await.unwrap().unwrap();
    assert_eq!((peer, m), (PeerId::from("same"), msg(&[b"from a"])));
    drop(b);
}

#[tokio::test]
async fn duplicate_identity_handover() {
    let opts = Options {
        duplicate_identity: DuplicateIdentity::Handover,
        ..Options::default()
    };
    let (router, ep) = bound(opts).await;
    let dopts = Options {
        identity: Some("same".into()),
        ..Options::default()
    };
    let _a = Dealer::connect(&ep, dopts.clone()).unwrap();
    next_connected(&router).await;
    let b = Dealer::connect(&ep, dopts).unwrap();
    assert_eq!(
        timeout(T, router.recv_event()).await.unwrap().unwrap(),
        RouterEvent::Disconnected {
            peer: PeerId::from("same")
        }
    );
    assert_eq!(next_connected(&router).await, PeerId::from("same"));
    router
        .try_send(&PeerId::from("same"), msg(&[b"to b"]))
        .unwrap();
    assert_eq!(
        timeout(T, b.recv()).await.unwrap().unwrap(),
        msg(&[b"to b"])
    );
}

#[tokio::test]
async fn several_endpoints_including_ipc() {
    let router = Router::new(Options::default());
    let tcp = router.bind("tcp://127.0.0.1:0").await.unwrap();
    assert_ne!(tcp.port(), Some(0));
    let dir = std::env::temp_dir().join(format!("domo-zmtp-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ipc = format!("ipc://{}/r.sock", dir.display());
    router.bind(&ipc).await.unwrap();
    let d1 = Dealer::connect(&tcp.to_string(), Options::default()).unwrap();
    let d2 = Dealer::connect(&ipc, Options::default()).unwrap();
    d1.send(msg(&[b"tcp"])).await.unwrap();
    d2.send(msg(&[b"ipc"])).await.unwrap();
    let mut got = vec![
        timeout(T, router.recv()).await.unwrap().unwrap().1,
        timeout(T, router.recv()).await.unwrap().unwrap().1,
    ];
    got.sort();
    assert_eq!(got, vec![msg(&[b"ipc"]), msg(&[b"tcp"])]);
    router.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn shutdown_flushes_queued_messages() {
    let (router, ep) = bound(Options::default()).await;
    let dealer = Dealer::connect(&ep, Options::default()).unwrap();
    let peer = next_connected(&router).await;
    for i in 0..100u8 {
        router.try_send(&peer, msg(&[&[i]])).unwrap();
    }
    router.shutdown().await;
    for i in 0..100u8 {
        assert_eq!(
            timeout(T, dealer.recv()).await.unwrap().unwrap(),
            msg(&[&[i]])
        );
    }
    assert!(matches!(router.recv().await, Err(domo_zmtp::Error::Closed)));
}

#[tokio::test]
async fn try_recv_event_drains_a_batch_without_waiting() {
    let (router, ep) = bound(Options::default()).await;
    assert_eq!(router.try_recv_event().unwrap(), None);
    let dealer = Dealer::connect(
        &ep,
        Options {
            identity: Some("b".into()),
            ..Options::default()
        },
    )
    .unwrap();
    next_connected(&router).await;
    router.pause(&PeerId::from("b"));
    for i in 0..3u8 {
        dealer.send(msg(&[&[i]])).await.unwrap();
    }
    until_queued(&router, "b", 3).await;
    router.resume(&PeerId::from("b"));
    for i in 0..3u8 {
        let ev = router.try_recv_event().unwrap();
        assert_eq!(
            ev,
            Some(RouterEvent::Message {
                peer: PeerId::from("b"),
                msg: msg(&[&[i]])
            })
        );
    }
    assert_eq!(router.try_recv_event().unwrap(), None);
    router.shutdown().await;
    // What happened before the shutdown is still reported, then Closed.
    assert_eq!(
        router.try_recv_event().unwrap(),
        Some(RouterEvent::Disconnected {
            peer: PeerId::from("b")
        })
    );
    assert!(router.try_recv_event().is_err());
}

#[tokio::test]
async fn dealer_try_recv_takes_what_has_arrived_without_waiting() {
    let (router, ep) = bound(Options::default()).await;
    let dealer = Dealer::connect(&ep, Options::default()).unwrap();
    assert_eq!(dealer.try_recv().unwrap(), None, "nothing yet");
    let peer = next_connected(&router).await;
    for n in [b"1", b"2", b"3"] {
        router.try_send(&peer, msg(&[n])).unwrap();
    }
    // The first by waiting, so all three have been written; the rest without waiting.
    assert_eq!(
        timeout(T, dealer.recv()).await.unwrap().unwrap(),
        msg(&[b"1"])
    );
    let mut rest = Vec::new();
    let deadline = tokio::time::Instant::now() + T;
    while rest.len() < 2 {
        match dealer.try_recv().unwrap() {
            Some(m) => rest.push(m),
            None => {
                assert!(tokio::time::Instant::now() < deadline, "messages lost");
                tokio::task::yield_now().await;
            }
        }
    }
    assert_eq!(rest, [msg(&[b"2"]), msg(&[b"3"])]);
    assert_eq!(dealer.try_recv().unwrap(), None);
    dealer.shutdown().await;
    assert!(dealer.try_recv().is_err(), "closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_echoed_through_recycled_buffers_arrive_intact() {
    // Large bodies of mixed sizes, 8 in flight: the echo sends back what it received, so the
    // router's connection recycles those buffers, and the dealer's recycles the fresh bodies
    // it sends. Every reply must match, and replies kept by the client must never change.
    let (router, ep) = bound(Options::default()).await;
    let echo = tokio::spawn(async move {
        loop {
            let (peer, msg) = router.recv().await.unwrap();
            if msg.len() == 1 && msg[0].is_empty() {
                break;
            }
            router.send(&peer, msg).await.unwrap();
        }
    });
    let dealer = Dealer::connect(&ep, Options::default()).unwrap();
    const SIZES: [usize; 6] = [1 << 20, 1 << 20, 900_000, (1 << 20) + 3, 200_000, 17_000];
    let message = |i: usize| {
        let mut body = vec![i as u8; SIZES[i % SIZES.len()]];
        body[..8].copy_from_slice(&(i as u64).to_be_bytes());
        vec![Bytes::from(vec![b'h', i as u8]), Bytes::from(body)]
    };
    let n = 60;
    let window = 8;
    for i in 0..window {
        dealer.send(message(i)).await.unwrap();
    }
    let mut kept = Vec::new();
    for i in 0..n {
        let got = timeout(T, dealer.recv()).await.unwrap().unwrap();
        assert!(got == message(i), "reply {i} differs");
        if i % 5 == 0 {
            kept.push((i, got));
        }
        if i + window < n {
            dealer.send(message(i + window)).await.unwrap();
        }
    }
    for (i, got) in kept {
        assert!(got == message(i), "kept reply {i} changed");
    }
    dealer.send(vec![Bytes::new()]).await.unwrap();
    timeout(T, echo).await.unwrap().unwrap();
}

/// A dealer with an identity, connected to `ep`.
fn named_dealer(ep: &str, id: &'static str) -> Dealer {
    Dealer::connect(
        ep,
        Options {
            identity: Some(Bytes::from_static(id.as_bytes())),
            ..Options::default()
        },
    )
    .unwrap()
}

/// Waits until `n` peers are connected.
async fn connected(router: &Router, n: usize) -> Vec<PeerId> {
    let mut peers = Vec::new();
    while peers.len() < n {
        peers.push(next_connected(router).await);
    }
    peers
}

/// Waits until the router holds `bytes` of its receive budget or more.
async fn until_budget_used(router: &Router, bytes: usize) {
    timeout(T, async {
        while router.stats().recv_budget_used < bytes {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
}

const MIB: usize = 1 << 20;

#[tokio::test]
async fn receive_budget_bounds_what_many_peers_send_at_once() {
    let budget = 4 * MIB;
    let (router, ep) = bound(Options {
        recv_budget_bytes: budget,
        ..Options::default()
    })
    .await;
    let ids = [
        "p00", "p01", "p02", "p03", "p04", "p05", "p06", "p07", "p08", "p09", "p10", "p11", "p12",
        "p13", "p14", "p15",
    ];
    let dealers: Vec<Dealer> = ids.iter().map(|id| named_dealer(&ep, id)).collect();
    connected(&router, ids.len()).await;
    for (i, dealer) in dealers.iter().enumerate() {
        for j in 0..2u8 {
            let body = vec![i as u8 ^ j; MIB];
            dealer.send(vec![Bytes::from(body)]).await.unwrap();
        }
    }
    // 32 MiB are on their way; the router takes its budget and no more: a frame is read
    // only with a reservation, and reservations are handed out while under the budget.
    until_budget_used(&router, budget).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let used = router.stats().recv_budget_used;
    assert!(used < budget + MIB, "{used} bytes held, budget {budget}");
    let held: usize = ids
        .iter()
        .map(|id| router.queued_in(&PeerId::from(*id)).unwrap())
        .sum();
    assert!(held <= 4, "{held} messages of 1 MiB held");
    // Everything still arrives, intact and in order per peer, as the owner takes it.
    let mut next = vec![0u8; ids.len()];
    for _ in 0..2 * ids.len() {
        let (peer, got) = timeout(T, router.recv()).await.unwrap().unwrap();
        let i = ids.iter().position(|id| PeerId::from(*id) == peer).unwrap();
        assert_eq!(got[0].len(), MIB);
        assert!(got[0].iter().all(|&b| b == i as u8 ^ next[i]));
        next[i] += 1;
    }
    assert!(next.iter().all(|&n| n == 2));
    assert_eq!(router.stats().recv_budget_used, 0);
}

#[tokio::test]
async fn held_back_peers_cannot_starve_exempt_peers_or_small_messages() {
    let budget = 2 * MIB;
    let (router, ep) = bound(Options {
        recv_budget_bytes: budget,
        ..Options::default()
    })
    .await;
    let hog = named_dealer(&ep, "hog");
    let worker = named_dealer(&ep, "worker");
    let other = named_dealer(&ep, "other");
    connected(&router, 3).await;
    router.pause(&PeerId::from("hog"));
    assert!(router.set_budgeted(&PeerId::from("worker"), false));
    for _ in 0..4 {
        hog.send(vec![Bytes::from(vec![1u8; MIB])]).await.unwrap();
    }
    until_budget_used(&router, budget).await;
    // A large message from a budgeted peer waits while the paused peer holds the budget...
    other.send(vec![Bytes::from(vec![2u8; MIB])]).await.unwrap();
    // ...but the exempt peer's large messages and anyone's small ones go through.
    worker
        .send(vec![Bytes::from(vec![3u8; MIB])])
        .await
        .unwrap();
    let (peer, got) = timeout(T, router.recv()).await.unwrap().unwrap();
    assert_eq!((peer, got[0].len()), (PeerId::from("worker"), MIB));
    let small = named_dealer(&ep, "small");
    connected(&router, 1).await;
    small.send(msg(&[b"ready"])).await.unwrap();
    let (peer, got) = timeout(T, router.recv()).await.unwrap().unwrap();
    assert_eq!((peer, got), (PeerId::from("small"), msg(&[b"ready"])));
    assert!(
        timeout(Duration::from_millis(200), router.recv())
            .await
            .is_err(),
        "the other peer's large message must wait for budget"
    );
    // The paused peer resumes and drains: the waiting large message is read.
    router.resume(&PeerId::from("hog"));
    let mut from_other = 0;
    for _ in 0..5 {
        let (peer, got) = timeout(T, router.recv()).await.unwrap().unwrap();
        if peer == PeerId::from("other") {
            assert!(got[0].iter().all(|&b| b == 2));
            from_other += 1;
        }
    }
    assert_eq!(from_other, 1);
}

#[tokio::test]
async fn deferred_message_comes_back_first_after_resume() {
    let (router, ep) = bound(Options {
        recv_budget_bytes: MIB,
        ..Options::default()
    })
    .await;
    let a = named_dealer(&ep, "a");
    connected(&router, 1).await;
    for i in 0..3u8 {
        a.send(msg(&[&[i]])).await.unwrap();
    }
    let (peer, first) = timeout(T, router.recv()).await.unwrap().unwrap();
    assert_eq!(first, msg(&[&[0]]));
    router.defer(&peer, first).unwrap();
    assert!(router.stats().recv_budget_used >= 1);
    assert!(
        timeout(Duration::from_millis(200), router.recv())
            .await
            .is_err(),
        "a deferred peer is paused"
    );
    router.resume(&peer);
    for i in 0..3u8 {
        let (_, got) = timeout(T, router.recv()).await.unwrap().unwrap();
        assert_eq!(got, msg(&[&[i]]));
    }
    assert_eq!(
        router.defer(&PeerId::from("nobody"), msg(&[b"x"])),
        Err(msg(&[b"x"]))
    );
}

#[tokio::test]
async fn try_send_batch_keeps_order_per_peer_and_hands_back_what_did_not_fit() {
    let opts = Options {
        send_hwm: 3,
        ..Options::default()
    };
    let (router, ep) = bound(opts).await;
    let a = Dealer::connect(&ep, Options::default()).unwrap();
    let pa = next_connected(&router).await;
    // A peer that is gone: its messages come back as unroutable.
    let gone = PeerId::from("nobody");
    // Queued before the connection task can run: the fourth message for `a` meets the HWM.
    let batch = (0..5u8).map(|i| {
        let peer = if i == 2 { gone.clone() } else { pa.clone() };
        (peer, vec![Bytes::from(vec![i])], i)
    });
    let failed = router.try_send_batch(batch);
    let failed: Vec<_> = failed
        .into_iter()
        .map(|(peer, e, i)| (peer, matches!(e, TrySendError::Full(_)), i))
        .collect();
    // Four for `a` against a limit of 3 unless the connection already took some out.
    assert!(failed.contains(&(gone, false, 2)), "{failed:?}");
    let delivered: Vec<u8> = {
        let mut got = Vec::new();
        let expected = 5 - failed.len();
        for _ in 0..expected {
            got.push(timeout(T, a.recv()).await.unwrap().unwrap()[0][0]);
        }
        got
    };
    // In order, and nothing that failed was delivered.
    let mut sorted = delivered.clone();
    sorted.sort_unstable();
    assert_eq!(delivered, sorted);
    for (_, _, i) in &failed {
        assert!(!delivered.contains(i));
    }
    assert!(delivered.starts_with(&[0, 1, 3]), "{delivered:?}");
}
