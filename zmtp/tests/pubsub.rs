//! The PUB/SUB family on a [`Router`] of type XPUB or XSUB: real libzmq `SUB`, `PUB` and
//! `XPUB` peers (libzmq 4.3 built from source by the `zmq` crate) and raw peers that speak
//! ZMTP 3.0 or 3.1, to check both subscription forms byte for byte.
//!
//! libzmq calls block, so the libzmq side of each test runs on its own thread with receive
//! timeouts; every wait is bounded.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use domo_zmtp::proto::greeting::mechanism_name;
use domo_zmtp::proto::{Command, Decoded, Decoder, Encoder, Greeting, Limits, Metadata};
use domo_zmtp::{Options, PeerId, Router, RouterEvent, SocketType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);
const ZMQ_TIMEOUT_MS: i32 = 10_000;

fn frames(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

async fn bound(socket_type: SocketType) -> (Router, String) {
    let r = Router::with_socket_type(socket_type, Options::default());
    let ep = r.bind("tcp://127.0.0.1:0").await.unwrap();
    (r, ep.to_string())
}

async fn next_event(router: &Router) -> RouterEvent {
    timeout(T, router.recv_event()).await.unwrap().unwrap()
}

async fn connected(router: &Router) -> (PeerId, SocketType) {
    match next_event(router).await {
        RouterEvent::Connected {
            peer, socket_type, ..
        } => (peer, socket_type),
        other => panic!("expected Connected, got {other:?}"),
    }
}

async fn message(router: &Router) -> Vec<Bytes> {
    match next_event(router).await {
        RouterEvent::Message { msg, .. } => msg,
        other => panic!("expected a message, got {other:?}"),
    }
}

fn zsocket(ctx: &zmq::Context, kind: zmq::SocketType) -> zmq::Socket {
    let s = ctx.socket(kind).unwrap();
    s.set_rcvtimeo(ZMQ_TIMEOUT_MS).unwrap();
    s.set_sndtimeo(ZMQ_TIMEOUT_MS).unwrap();
    s.set_linger(0).unwrap();
    s
}

/// A peer over raw TCP that has done a NULL handshake as `socket_type` announcing ZMTP
/// 3.`minor`.
struct RawPeer {
    stream: TcpStream,
    dec: Decoder,
}

impl RawPeer {
    async fn connect(endpoint: &str, socket_type: &str, minor: u8) -> Self {
        let addr = endpoint.trim_start_matches("tcp://");
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut greeting = Greeting::new(mechanism_name(b"NULL"), false);
        greeting.minor = minor;
        let mut hello = greeting.encode().to_vec();
        let mut meta = Metadata::new();
        meta.insert(
            "Socket-Type",
            Bytes::copy_from_slice(socket_type.as_bytes()),
        );
        let mut enc = Encoder::new();
        enc.encode_command(&Command::Ready(meta));
        hello.extend_from_slice(&enc.take_all());
        stream.write_all(&hello).await.unwrap();
        let mut theirs = [0u8; 64];
        timeout(T, stream.read_exact(&mut theirs))
            .await
            .unwrap()
            .unwrap();
        let mut peer = Self {
            stream,
            dec: Decoder::new(Limits::default()),
        };
        match peer.next().await {
            Decoded::Command(Command::Ready(meta)) => {
                let expected = match socket_type {
                    "SUB" => "XPUB",
                    _ => "XSUB",
                };
                assert_eq!(
                    meta.get("Socket-Type").unwrap().as_ref(),
                    expected.as_bytes()
                );
            }
            other => panic!("expected READY, got {other:?}"),
        }
        peer
    }

    /// The next frame group the router sent: a command or a whole message.
    async fn next(&mut self) -> Decoded {
        loop {
            if let Some(d) = self.dec.decode().unwrap() {
                return d;
            }
            let mut chunk = [0u8; 4096];
            let n = timeout(T, self.stream.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed by the router");
            self.dec.feed(&chunk[..n]);
        }
    }

    async fn send(&mut self, msg: Vec<Bytes>) {
        let mut enc = Encoder::new();
        enc.encode_message(msg);
        self.stream.write_all(&enc.take_all()).await.unwrap();
    }

    async fn send_command(&mut self, cmd: Command) {
        let mut enc = Encoder::new();
        enc.encode_command(&cmd);
        self.stream.write_all(&enc.take_all()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_libzmq_sub_subscribes_cancels_and_receives_through_an_xpub_router() {
    let (xpub, ep) = bound(SocketType::XPub).await;
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let sub = thread::spawn(move || {
        let ctx = zmq::Context::new();
        let s = zsocket(&ctx, zmq::SUB);
        s.connect(&ep).unwrap();
        s.set_subscribe(b"weather.").unwrap();
        s.set_subscribe(b"").unwrap();
        s.set_unsubscribe(b"").unwrap();
        go_rx.recv().unwrap();
        // Only what the SUB still subscribes to reaches the application (libzmq filters
        // on its side too): the router sends what it is told to.
        let first = s.recv_multipart(0).unwrap();
        let second = s.recv_multipart(0).unwrap();
        (first, second)
    });
    let (peer, kind) = connected(&xpub).await;
    assert_eq!(kind, SocketType::Sub);
    // libzmq 4.3 talks ZMTP 3.1 to us: its SUBSCRIBE and CANCEL commands arrive in the XPUB
    // form, in order.
    assert_eq!(message(&xpub).await, frames(&[b"\x01weather."]));
    assert_eq!(message(&xpub).await, frames(&[b"\x01"]));
    assert_eq!(message(&xpub).await, frames(&[b"\x00"]));
    go_tx.send(()).unwrap();
    xpub.try_send(&peer, frames(&[b"weather.paris", b"", b"21C"]))
        .unwrap();
    xpub.try_send(&peer, frames(&[b"weather.oslo", b"-3C"]))
        .unwrap();
    let (first, second) = tokio::task::spawn_blocking(move || sub.join().unwrap())
        .await
        .unwrap();
    assert_eq!(
        first,
        vec![b"weather.paris".to_vec(), Vec::new(), b"21C".to_vec()]
    );
    assert_eq!(second, vec![b"weather.oslo".to_vec(), b"-3C".to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_xsub_router_subscribes_a_libzmq_xpub_and_receives_its_messages() {
    let (xsub, ep) = bound(SocketType::XSub).await;
    let publisher = thread::spawn(move || {
        let ctx = zmq::Context::new();
        let s = zsocket(&ctx, zmq::XPUB);
        s.connect(&ep).unwrap();
        // An XPUB shows the subscription it was sent, whichever form it came in.
        let sub = s.recv_bytes(0).unwrap();
        s.send_multipart([&b"a.topic"[..], b"x", b""], 0).unwrap();
        sub
    });
    let (peer, kind) = connected(&xsub).await;
    assert_eq!(kind, SocketType::XPub);
    xsub.try_send(&peer, frames(&[b"\x01"])).unwrap();
    assert_eq!(message(&xsub).await, frames(&[b"a.topic", b"x", b""]));
    let sub = tokio::task::spawn_blocking(move || publisher.join().unwrap())
        .await
        .unwrap();
    assert_eq!(sub, b"\x01");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_libzmq_pub_sends_through_an_xsub_router_once_subscribed() {
    let (xsub, ep) = bound(SocketType::XSub).await;
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let publisher = thread::spawn(move || {
        let ctx = zmq::Context::new();
        let s = zsocket(&ctx, zmq::PUB);
        s.connect(&ep).unwrap();
        // A PUB drops what no subscriber asked for, and cannot tell when the subscription
        // has arrived: publish until the router has received one (bounded by the test's
        // timeouts).
        let mut n = 0u32;
        while !stop2.load(Ordering::Relaxed) && n < 20_000 {
            s.send_multipart([&b"news"[..], &n.to_be_bytes()], 0)
                .unwrap();
            n += 1;
            thread::sleep(Duration::from_millis(1));
        }
    });
    let (peer, kind) = connected(&xsub).await;
    assert_eq!(kind, SocketType::Pub);
    xsub.try_send(&peer, frames(&[b"\x01"])).unwrap();
    let msg = message(&xsub).await;
    stop.store(true, Ordering::Relaxed);
    assert_eq!(msg.len(), 2);
    assert_eq!(msg[0].as_ref(), b"news");
    tokio::task::spawn_blocking(move || publisher.join().unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn subscriptions_from_zmtp_3_0_and_3_1_peers_arrive_in_one_form() {
    let (xpub, ep) = bound(SocketType::XPub).await;
    // ZMTP 3.0: subscriptions are data frames starting with 0x01 / 0x00.
    let mut old = RawPeer::connect(&ep, "SUB", 0).await;
    let (old_id, _) = connected(&xpub).await;
    old.send(frames(&[b"\x01old."])).await;
    old.send(frames(&[b"\x00old."])).await;
    assert_eq!(message(&xpub).await, frames(&[b"\x01old."]));
    assert_eq!(message(&xpub).await, frames(&[b"\x00old."]));
    // ZMTP 3.1: the SUBSCRIBE and CANCEL commands, with a binary prefix.
    let mut new = RawPeer::connect(&ep, "SUB", 1).await;
    let (new_id, _) = connected(&xpub).await;
    for (name, prefix) in [("SUBSCRIBE", &b"new.\x00\xff"[..]), ("CANCEL", b"")] {
        new.send_command(Command::Other {
            name: Bytes::from_static(name.as_bytes()),
            data: Bytes::copy_from_slice(prefix),
        })
        .await;
    }
    assert_eq!(message(&xpub).await, frames(&[b"\x01new.\x00\xff"]));
    assert_eq!(message(&xpub).await, frames(&[b"\x00"]));
    // Messages to either go out as plain data, multipart kept whole.
    for (id, peer) in [(&old_id, &mut old), (&new_id, &mut new)] {
        xpub.try_send(id, frames(&[b"t", b"", b"body"])).unwrap();
        assert_eq!(
            peer.next().await,
            Decoded::Message(frames(&[b"t", b"", b"body"]))
        );
    }
}

#[tokio::test]
async fn an_xsub_router_sends_subscriptions_in_the_form_each_peer_version_expects() {
    let (xsub, ep) = bound(SocketType::XSub).await;
    let mut old = RawPeer::connect(&ep, "PUB", 0).await;
    let (old_id, _) = connected(&xsub).await;
    let mut new = RawPeer::connect(&ep, "PUB", 1).await;
    let (new_id, _) = connected(&xsub).await;
    for id in [&old_id, &new_id] {
        xsub.try_send(id, frames(&[b"\x01a.b"])).unwrap();
        xsub.try_send(id, frames(&[b"\x00"])).unwrap();
        // Not a subscription (two frames): goes out as data.
        xsub.try_send(id, frames(&[b"\x01x", b"y"])).unwrap();
    }
    assert_eq!(old.next().await, Decoded::Message(frames(&[b"\x01a.b"])));
    assert_eq!(old.next().await, Decoded::Message(frames(&[b"\x00"])));
    assert_eq!(
        old.next().await,
        Decoded::Message(frames(&[b"\x01x", b"y"]))
    );
    let cmd = |name: &'static str, data: &'static [u8]| {
        Decoded::Command(Command::Other {
            name: Bytes::from_static(name.as_bytes()),
            data: Bytes::from_static(data),
        })
    };
    assert_eq!(new.next().await, cmd("SUBSCRIBE", b"a.b"));
    assert_eq!(new.next().await, cmd("CANCEL", b""));
    assert_eq!(
        new.next().await,
        Decoded::Message(frames(&[b"\x01x", b"y"]))
    );
    // And the publishers' messages come in whole.
    old.send(frames(&[b"a.b.c", b"1"])).await;
    assert_eq!(message(&xsub).await, frames(&[b"a.b.c", b"1"]));
}

#[tokio::test]
async fn an_xpub_router_refuses_a_dealer_peer_with_error() {
    let (xpub, ep) = bound(SocketType::XPub).await;
    let addr = ep.trim_start_matches("tcp://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let mut hello = Greeting::new(mechanism_name(b"NULL"), false)
        .encode()
        .to_vec();
    let mut meta = Metadata::new();
    meta.insert("Socket-Type", "DEALER");
    let mut enc = Encoder::new();
    enc.encode_command(&Command::Ready(meta));
    hello.extend_from_slice(&enc.take_all());
    s.write_all(&hello).await.unwrap();
    let mut out = Vec::new();
    timeout(T, s.read_to_end(&mut out)).await.unwrap().ok();
    let mut dec = Decoder::new(Limits::default());
    dec.feed(&out[64..]);
    let mut cmds = Vec::new();
    while let Ok(Some(Decoded::Command(c))) = dec.decode() {
        cmds.push(c);
    }
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::Error(r) if r.as_ref() == b"invalid socket type")),
        "{cmds:?}"
    );
    assert_eq!(xpub.stats().handshake_failures, 1);
}

#[tokio::test]
async fn a_sub_dealer_tells_first_subscriptions_and_last_cancels_and_resubscribes_on_reconnect() {
    use domo_zmtp::Dealer;
    let (xpub, ep) = bound(SocketType::XPub).await;
    let sub = Dealer::connect_with_socket_type(SocketType::Sub, &ep, Options::default()).unwrap();
    // Before the connection is up: remembered, sent once it is.
    sub.subscribe(b"a").unwrap();
    let (peer, kind) = connected(&xpub).await;
    assert_eq!(kind, SocketType::Sub);
    assert_eq!(message(&xpub).await, frames(&[b"\x01a"]));
    sub.subscribe(b"a").unwrap();
    sub.subscribe(b"b").unwrap();
    assert_eq!(message(&xpub).await, frames(&[b"\x01b"]));
    sub.cancel(b"a").unwrap();
    sub.cancel(b"zzz").unwrap();
    sub.cancel(b"b").unwrap();
    // The second subscription to "a" and its first cancel stay local.
    assert_eq!(message(&xpub).await, frames(&[b"\x00b"]));
    xpub.try_send(&peer, frames(&[b"a.1", b"x"])).unwrap();
    assert_eq!(
        timeout(T, sub.recv()).await.unwrap().unwrap(),
        frames(&[b"a.1", b"x"])
    );
    // A new connection hears every subscription again.
    sub.reconnect();
    loop {
        match next_event(&xpub).await {
            RouterEvent::Connected { .. } => break,
            RouterEvent::Disconnected { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(message(&xpub).await, frames(&[b"\x01a"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_dealer_subscribes_to_a_libzmq_xpub() {
    use domo_zmtp::Dealer;
    let ctx = zmq::Context::new();
    let xpub = ctx.socket(zmq::XPUB).unwrap();
    xpub.set_rcvtimeo(ZMQ_TIMEOUT_MS).unwrap();
    xpub.set_linger(0).unwrap();
    xpub.bind("tcp://127.0.0.1:0").unwrap();
    let ep = xpub.get_last_endpoint().unwrap().unwrap();
    let sub = Dealer::connect_with_socket_type(SocketType::Sub, &ep, Options::default()).unwrap();
    sub.subscribe(b"t.").unwrap();
    let xpub = tokio::task::spawn_blocking(move || {
        assert_eq!(xpub.recv_bytes(0).unwrap(), b"\x01t.");
        xpub.send_multipart([&b"t.x"[..], b"1"], 0).unwrap();
        xpub
    })
    .await
    .unwrap();
    assert_eq!(
        timeout(T, sub.recv()).await.unwrap().unwrap(),
        frames(&[b"t.x", b"1"])
    );
    drop(xpub);
}
