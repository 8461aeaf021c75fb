//! Interoperability with real libzmq peers (libzmq 4.3 built from source by the `zmq` crate).
//!
//! libzmq calls block, so the libzmq side of each test runs on its own thread with receive
//! timeouts; the domo side runs on tokio. Every wait is bounded.
#![allow(clippy::unwrap_used)]

use std::thread;
use std::time::Duration;

use bytes::Bytes;
use domo_zmtp::{Dealer, Options, PeerId, Router, RouterEvent};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);
const ZMQ_TIMEOUT_MS: i32 = 10_000;

fn frames(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

fn zsocket(ctx: &zmq::Context, kind: zmq::SocketType) -> zmq::Socket {
    let s = ctx.socket(kind).unwrap();
    s.set_rcvtimeo(ZMQ_TIMEOUT_MS).unwrap();
    s.set_sndtimeo(ZMQ_TIMEOUT_MS).unwrap();
    s.set_linger(0).unwrap();
    s
}

async fn router() -> (Router, String) {
    let r = Router::new(Options::default());
    let ep = r.bind("tcp://127.0.0.1:0").await.unwrap();
    (r, ep.to_string())
}

/// Echoes every message back to its sender until `count` messages were echoed.
async fn echo(router: &Router, count: usize) {
    for _ in 0..count {
        let (peer, msg) = timeout(T, router.recv()).await.unwrap().unwrap();
        router.send(&peer, msg).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_dealer_against_our_router() {
    let (router, ep) = router().await;
    let cases: Vec<Vec<Vec<u8>>> = vec![
        vec![b"hello".to_vec()],
        vec![vec![], vec![], vec![]],
        vec![vec![0u8, 255, 1, 0], vec![], b"x".to_vec()],
        (0..150).map(|i| vec![i as u8; i]).collect(),
        vec![vec![0xAB; 8 * 1024 * 1024], b"tail".to_vec()],
        vec![vec![1u8; 255], vec![2u8; 256]],
    ];
    let sent = cases.clone();
    let client = thread::spawn(move || {
        let ctx = zmq::Context::new();
        let s = zsocket(&ctx, zmq::DEALER);
        s.connect(&ep).unwrap();
        let mut got = Vec::new();
        for msg in &sent {
            s.send_multipart(msg, 0).unwrap();
            got.push(s.recv_multipart(0).unwrap());
        }
        got
    });
    echo(&router, cases.len()).await;
    let got = tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    assert_eq!(got, cases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_req_against_our_router() {
    let (router, ep) = router().await;
    let client = thread::spawn(move || {
        let ctx = zmq::Context::new();
        let s = zsocket(&ctx, zmq::REQ);
        s.connect(&ep).unwrap();
        let mut replies = Vec::new();
        for i in 0..3u8 {
            s.send_multipart([b"MDPC01".to_vec(), vec![i]], 0).unwrap();
            replies.push(s.recv_multipart(0).unwrap());
        }
        replies
    });
    for i in 0..3u8 {
        let (peer, msg) = timeout(T, router.recv()).await.unwrap().unwrap();
        // REQ puts an empty delimiter before the body and expects it back.
        assert_eq!(msg, frames(&[b"", b"MDPC01", &[i]]));
        router
            .send(&peer, frames(&[b"", b"reply", &[i]]))
            .await
            .unwrap();
    }
    let replies = tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    let expected: Vec<Vec<Vec<u8>>> = (0..3u8).map(|i| vec![b"reply".to_vec(), vec![i]]).collect();
    assert_eq!(replies, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_dealer_against_libzmq_router() {
    let ctx = zmq::Context::new();
    let server = zsocket(&ctx, zmq::ROUTER);
    server.bind("tcp://127.0.0.1:0").unwrap();
    let ep = server.get_last_endpoint().unwrap().unwrap();
    let srv = thread::spawn(move || {
        let mut ids = Vec::new();
        for _ in 0..3 {
            let mut msg = server.recv_multipart(0).unwrap();
            ids.push(msg[0].clone());
            msg.push(b"echoed".to_vec());
            server.send_multipart(msg, 0).unwrap();
        }
        // Hand the socket back: closing it now (linger 0) could discard the last reply.
        (ids, server)
    });
    let opts = Options {
        identity: Some(Bytes::from_static(b"worker-7")),
        ..Options::default()
    };
    let dealer = Dealer::connect(&ep, opts).unwrap();
    let cases = [
        frames(&[b"", b"MDPW01", &[1], b"echo"]),
        frames(&[b""]),
        frames(&[&[9u8; 70_000]]),
    ];
    for case in &cases {
        dealer.send(case.clone()).await.unwrap();
        let mut expected = case.clone();
        expected.push(Bytes::from_static(b"echoed"));
        assert_eq!(timeout(T, dealer.recv()).await.unwrap().unwrap(), expected);
    }
    let (ids, _server) = tokio::task::spawn_blocking(move || srv.join().unwrap())
        .await
        .unwrap();
    assert!(
        ids.iter().all(|id| id == b"worker-7"),
        "libzmq saw our Identity"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_libzmq_peers() {
    const PEERS: usize = 1000;
    let (router, ep) = router().await;
    // libzmq allows 1023 sockets per context by default: spread over four.
    let clients = thread::spawn(move || {
        let ctxs: Vec<zmq::Context> = (0..4).map(|_| zmq::Context::new()).collect();
        let sockets: Vec<zmq::Socket> = (0..PEERS)
            .map(|i| {
                let s = zsocket(&ctxs[i % 4], zmq::DEALER);
                s.connect(&ep).unwrap();
                s
            })
            .collect();
        for (i, s) in sockets.iter().enumerate() {
            s.send_multipart([(i as u32).to_be_bytes().to_vec()], 0)
                .unwrap();
        }
        let mut ok = 0;
        for (i, s) in sockets.iter().enumerate() {
            let reply = s.recv_multipart(0).unwrap();
            assert_eq!(reply, vec![(i as u32).to_be_bytes().to_vec()]);
            ok += 1;
        }
        drop(sockets);
        ok
    });
    let mut peers = std::collections::HashSet::new();
    for _ in 0..PEERS {
        let (peer, msg) = timeout(T, router.recv()).await.unwrap().unwrap();
        peers.insert(peer.clone());
        router.send(&peer, msg).await.unwrap();
    }
    assert_eq!(peers.len(), PEERS, "every peer has its own routing id");
    let ok = tokio::task::spawn_blocking(move || clients.join().unwrap())
        .await
        .unwrap();
    assert_eq!(ok, PEERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_peer_with_zmtp_heartbeats_stays_connected() {
    let (router, ep) = router().await;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let client = thread::spawn(move || {
        let ctx = zmq::Context::new();
        let s = zsocket(&ctx, zmq::DEALER);
        s.set_heartbeat_ivl(50).unwrap();
        s.set_heartbeat_timeout(150).unwrap();
        s.set_heartbeat_ttl(500).unwrap();
        s.set_identity(b"hb").unwrap();
        s.connect(&ep).unwrap();
        s.send("first", 0).unwrap();
        // Idle for many heartbeat intervals: libzmq PINGs, we must PONG.
        rx.recv_timeout(Duration::from_secs(20)).unwrap();
        s.send("second", 0).unwrap();
        s.recv_multipart(0).unwrap()
    });
    let mut seen = Vec::new();
    let first = timeout(T, async {
        loop {
            match router.recv_event().await.unwrap() {
                RouterEvent::Message { peer, msg } => return (peer, msg),
                ev => seen.push(ev),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(first.1, frames(&[b"first"]));
    // 1.5 s = 30 heartbeat intervals and 10 heartbeat timeouts.
    let quiet = timeout(Duration::from_millis(1500), router.recv_event()).await;
    assert!(
        quiet.is_err(),
        "no event expected while idle, got {quiet:?}"
    );
    tx.send(()).unwrap();
    let (peer, msg) = timeout(T, router.recv()).await.unwrap().unwrap();
    assert_eq!(
        (peer.clone(), msg),
        (PeerId::from("hb"), frames(&[b"second"]))
    );
    router.send(&peer, frames(&[b"done"])).await.unwrap();
    let reply = tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    assert_eq!(reply, vec![b"done".to_vec()]);
    assert_eq!(
        router.stats().accepted,
        1,
        "the libzmq peer never had to reconnect"
    );
    assert!(
        seen.iter()
            .all(|e| matches!(e, RouterEvent::Connected { .. })),
        "{seen:?}"
    );
}

/// Binds a libzmq ROUTER on `ep`, echoes `n` messages with a marker frame, then closes.
fn libzmq_echo_server(ep: &str, n: usize, marker: &'static [u8]) -> thread::JoinHandle<()> {
    let ctx = zmq::Context::new();
    let s = zsocket(&ctx, zmq::ROUTER);
    // Closing flushes the last reply (context termination waits up to the linger time).
    s.set_linger(5000).unwrap();
    s.bind(ep).unwrap();
    thread::spawn(move || {
        for _ in 0..n {
            let mut msg = s.recv_multipart(0).unwrap();
            msg.push(marker.to_vec());
            s.send_multipart(msg, 0).unwrap();
        }
        drop(s);
        drop(ctx);
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_dealer_delivers_again_after_libzmq_restarts() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let ep = format!("tcp://127.0.0.1:{port}");
    let opts = Options {
        reconnect_interval_max: Duration::from_millis(200),
        ..Options::default()
    };
    let dealer = Dealer::connect(&ep, opts).unwrap();

    let first = libzmq_echo_server(&ep, 1, b"first server");
    dealer.send(frames(&[b"one"])).await.unwrap();
    assert_eq!(
        timeout(T, dealer.recv()).await.unwrap().unwrap(),
        frames(&[b"one", b"first server"])
    );
    tokio::task::spawn_blocking(move || first.join().unwrap())
        .await
        .unwrap();

    // The first server is gone; a new libzmq process-equivalent binds the same port.
    let second = libzmq_echo_server(&ep, 1, b"second server");
    dealer.send(frames(&[b"two"])).await.unwrap();
    let reply = timeout(T, dealer.recv()).await.unwrap().unwrap();
    assert_eq!(reply, frames(&[b"two", b"second server"]));
    tokio::task::spawn_blocking(move || second.join().unwrap())
        .await
        .unwrap();
    assert!(dealer.stats().connects >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libzmq_dealer_reconnects_to_a_restarted_router() {
    let (router, ep) = router().await;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let client_ep = ep.clone();
    let client = thread::spawn(move || {
        let ctx = zmq::Context::new();
        let s = zsocket(&ctx, zmq::DEALER);
        s.set_reconnect_ivl(50).unwrap();
        s.connect(&client_ep).unwrap();
        s.send("before", 0).unwrap();
        let a = s.recv_multipart(0).unwrap();
        rx.recv_timeout(Duration::from_secs(20)).unwrap();
        s.send("after", 0).unwrap();
        let b = s.recv_multipart(0).unwrap();
        (a, b)
    });
    echo(&router, 1).await;
    router.shutdown().await;
    drop(router);
    let router = Router::new(Options::default());
    router.bind(&ep).await.unwrap();
    tx.send(()).unwrap();
    echo(&router, 1).await;
    let (a, b) = tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    assert_eq!((a, b), (vec![b"before".to_vec()], vec![b"after".to_vec()]));
}

/// Application metadata (`X-...` properties, the way domo negotiates extensions) crosses to
/// libzmq and back: libzmq hands our property to its application (`zmq_msg_gets`) and
/// announces its socket type to us; a libzmq peer that does not know our property is not
/// bothered by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_metadata_crosses_to_libzmq_and_back() {
    use domo_zmtp::proto::Metadata;
    let ctx = zmq::Context::new();
    let server = zsocket(&ctx, zmq::ROUTER);
    server.bind("tcp://127.0.0.1:0").unwrap();
    let ep = server.get_last_endpoint().unwrap().unwrap();
    let srv = thread::spawn(move || {
        let mut first = zmq::Message::new();
        server.recv(&mut first, 0).unwrap(); // routing id
        let mut body = zmq::Message::new();
        server.recv(&mut body, 0).unwrap();
        let seen = body.gets("X-Domo-Extensions").map(str::to_owned);
        server
            .send_multipart([first.to_vec(), body.to_vec()], 0)
            .unwrap();
        (seen, server)
    });
    let mut metadata = Metadata::new();
    metadata.insert("X-Domo-Extensions", "credit,mux");
    let dealer = Dealer::connect(
        &ep,
        Options {
            metadata: metadata.clone(),
            ..Options::default()
        },
    )
    .unwrap();
    dealer.send(frames(&[b"hello"])).await.unwrap();
    assert_eq!(
        timeout(T, dealer.recv()).await.unwrap().unwrap(),
        frames(&[b"hello"])
    );
    let theirs = dealer.peer_metadata().expect("connected");
    assert_eq!(
        theirs.get("Socket-Type").map(|v| &v[..]),
        Some(&b"ROUTER"[..])
    );
    let (seen, _server) = tokio::task::spawn_blocking(move || srv.join().unwrap())
        .await
        .unwrap();
    assert_eq!(
        seen.as_deref(),
        Some("credit,mux"),
        "libzmq read our property"
    );

    // A libzmq DEALER against a Router that announces a property it does not know.
    let router = Router::new(Options {
        metadata,
        ..Options::default()
    });
    let ep = router.bind("tcp://127.0.0.1:0").await.unwrap().to_string();
    let client = thread::spawn(move || {
        let s = zsocket(&ctx, zmq::DEALER);
        s.connect(&ep).unwrap();
        s.send("ping", 0).unwrap();
        s.recv_bytes(0).unwrap()
    });
    match timeout(T, router.recv_event()).await.unwrap().unwrap() {
        RouterEvent::Connected { metadata, .. } => {
            assert_eq!(
                metadata.get("Socket-Type").map(|v| &v[..]),
                Some(&b"DEALER"[..])
            );
        }
        other => panic!("expected Connected, got {other:?}"),
    }
    echo(&router, 1).await;
    let reply = tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    assert_eq!(reply, b"ping");
}
