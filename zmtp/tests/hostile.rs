//! Hostile and broken peers against a Router, over raw TCP. Each case checks what the peer
//! sees on the wire, that the router counts it, that memory stays bounded, and that the
//! router keeps serving a well-behaved peer afterwards.
//!
//! A counting global allocator measures what the process holds; the tests in this file run
//! one at a time (a shared lock) so the numbers are their own.
#![allow(clippy::unwrap_used, unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_zmtp::proto::greeting::mechanism_name;
use domo_zmtp::proto::{Command, Decoded, Decoder, Encoder, Greeting, Limits, Metadata};
use domo_zmtp::{Dealer, Options, Router, RouterEvent, TrySendError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::timeout;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator and only keeps statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

static SERIAL: Mutex<()> = Mutex::const_new(());
const T: Duration = Duration::from_secs(10);
const MIB: usize = 1024 * 1024;

fn reset_peak() -> usize {
    let now = CURRENT.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}

async fn router(opts: Options) -> (Router, String) {
    let r = Router::new(opts);
    let ep = r.bind("tcp://127.0.0.1:0").await.unwrap();
    (r, ep.port().unwrap().to_string())
}

async fn connect(port: &str) -> TcpStream {
    TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap()
}

fn greeting(mechanism: &[u8]) -> Vec<u8> {
    Greeting::new(mechanism_name(mechanism), false)
        .encode()
        .to_vec()
}

fn ready(socket_type: &str) -> Vec<u8> {
    let mut meta = Metadata::new();
    meta.insert(
        "Socket-Type",
        Bytes::copy_from_slice(socket_type.as_bytes()),
    );
    let mut enc = Encoder::new();
    enc.encode_command(&Command::Ready(meta));
    enc.take_all().to_vec()
}

/// Reads until the peer closes (or `T` passes); returns everything read.
async fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    timeout(T, s.read_to_end(&mut out))
        .await
        .expect("connection not closed")
        .ok();
    out
}

/// Decodes the commands after the 64-byte greeting.
fn commands(bytes: &[u8]) -> Vec<Command> {
    assert!(bytes.len() >= 64, "no greeting: {bytes:?}");
    assert_eq!(bytes[0], 0xFF);
    let mut dec = Decoder::new(Limits::default());
    dec.feed(&bytes[64..]);
    let mut out = Vec::new();
    while let Ok(Some(Decoded::Command(c))) = dec.decode() {
        out.push(c);
    }
    out
}

/// Completes a NULL handshake as a DEALER over a raw stream.
async fn raw_dealer(port: &str) -> TcpStream {
    let mut s = connect(port).await;
    let mut hello = greeting(b"NULL");
    hello.extend(ready("DEALER"));
    s.write_all(&hello).await.unwrap();
    let mut buf = vec![0u8; 64];
    s.read_exact(&mut buf).await.unwrap();
    let mut dec = Decoder::new(Limits::default());
    loop {
        if let Some(Decoded::Command(Command::Ready(_))) = dec.decode().unwrap() {
            return s;
        }
        let mut chunk = [0u8; 256];
        let n = timeout(T, s.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed during handshake");
        dec.feed(&chunk[..n]);
    }
}

/// The router still serves a well-behaved peer.
async fn still_serves(router: &Router, port: &str) {
    let dealer = Dealer::connect(&format!("tcp://127.0.0.1:{port}"), Options::default()).unwrap();
    dealer
        .send(vec![Bytes::from_static(b"ping")])
        .await
        .unwrap();
    let (peer, msg) = timeout(T, router.recv()).await.unwrap().unwrap();
    router.try_send(&peer, msg).unwrap();
    assert_eq!(
        timeout(T, dealer.recv()).await.unwrap().unwrap(),
        vec![Bytes::from_static(b"ping")]
    );
}

#[tokio::test]
async fn frame_announcing_two_to_the_forty_bytes() {
    let _serial = SERIAL.lock().await;
    let (router, port) = router(Options::default()).await;
    let mut s = raw_dealer(&port).await;
    let before = reset_peak();
    // A LONG frame header announcing 2^40 bytes, and a few body bytes.
    s.write_all(&[0x02, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3])
        .await
        .unwrap();
    read_to_close(&mut s).await;
    let grew = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    assert!(grew < MIB, "allocated {grew} bytes for a frame it refused");
    let stats = router.stats();
    assert_eq!((stats.protocol_errors, stats.oversized), (1, 1));
    still_serves(&router, &port).await;
}

#[tokio::test]
async fn message_over_the_limit_across_frames() {
    let _serial = SERIAL.lock().await;
    let opts = Options {
        max_message_size: 1000,
        ..Options::default()
    };
    let (router, port) = router(opts).await;
    let mut s = raw_dealer(&port).await;
    // 600 + 600 bytes in one message: the second header already exceeds the limit.
    let mut enc = Encoder::new();
    enc.encode_message(vec![
        Bytes::from(vec![1u8; 600]),
        Bytes::from(vec![2u8; 600]),
    ]);
    s.write_all(&enc.take_all()).await.unwrap();
    read_to_close(&mut s).await;
    assert_eq!(router.stats().oversized, 1);
    still_serves(&router, &port).await;
}

#[tokio::test]
async fn garbage_greeting_is_closed_without_error_command() {
    let _serial = SERIAL.lock().await;
    let (router, port) = router(Options::default()).await;
    let mut s = connect(&port).await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut s).await;
    // We sent our greeting at once; nothing after it, since the peer is not ZMTP.
    assert!(got.len() <= 64, "{got:?}");
    assert_eq!(router.stats().handshake_failures, 1);
    still_serves(&router, &port).await;
}

#[tokio::test]
async fn zmtp_2_peer_is_refused() {
    let _serial = SERIAL.lock().await;
    let (router, port) = router(Options::default()).await;
    let mut s = connect(&port).await;
    let mut g = greeting(b"NULL");
    g[10] = 1; // ZMTP 2.0
    s.write_all(&g[..11]).await.unwrap();
    read_to_close(&mut s).await;
    assert_eq!(router.stats().handshake_failures, 1);
}

#[tokio::test]
async fn truncated_greeting_then_close() {
    let _serial = SERIAL.lock().await;
    let (router, port) = router(Options::default()).await;
    let mut s = connect(&port).await;
    s.write_all(&greeting(b"NULL")[..20]).await.unwrap();
    drop(s);
    let mut waited = 0;
    while router.stats().handshake_failures == 0 && waited < 1000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(router.stats().handshake_failures, 1);
    still_serves(&router, &port).await;
}

#[tokio::test]
async fn unknown_mechanism_gets_error_then_close() {
    let _serial = SERIAL.lock().await;
    let (router, port) = router(Options::default()).await;
    let mut s = connect(&port).await;
    s.write_all(&greeting(b"CURVE")).await.unwrap();
    let got = read_to_close(&mut s).await;
    assert_eq!(
        commands(&got),
        vec![Command::Error(Bytes::from_static(
            b"security mechanism mismatch"
        ))]
    );
    // Byte-exact ERROR frame: flags COMMAND, size, "\x05ERROR", reason length, reason.
    let reason = b"security mechanism mismatch";
    let mut expected = vec![0x04, (7 + reason.len()) as u8, 5];
    expected.extend_from_slice(b"ERROR");
    expected.push(reason.len() as u8);
    expected.extend_from_slice(reason);
    assert_eq!(&got[64..], &expected[..]);
    assert_eq!(router.stats().handshake_failures, 1);
    still_serves(&router, &port).await;
}

#[tokio::test]
async fn wrong_socket_type_gets_error_then_close() {
    let _serial = SERIAL.lock().await;
    let (router, port) = router(Options::default()).await;
    let mut s = connect(&port).await;
    let mut hello = greeting(b"NULL");
    hello.extend(ready("PUB"));
    s.write_all(&hello).await.unwrap();
    let got = read_to_close(&mut s).await;
    let cmds = commands(&got);
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    assert!(
        matches!(&cmds[0], Command::Ready(m) if m.get("Socket-Type").map(|v| &v[..]) == Some(&b"ROUTER"[..]))
    );
    assert_eq!(
        cmds[1],
        Command::Error(Bytes::from_static(b"invalid socket type"))
    );
    still_serves(&router, &port).await;
}

#[tokio::test]
async fn silent_peer_is_closed_at_the_handshake_timeout() {
    let _serial = SERIAL.lock().await;
    let opts = Options {
        handshake_timeout: Duration::from_millis(300),
        ..Options::default()
    };
    let (router, port) = router(opts).await;
    let started = Instant::now();
    let mut s = connect(&port).await;
    let got = read_to_close(&mut s).await;
    let took = started.elapsed();
    assert_eq!(got.len(), 64, "only our greeting");
    assert!(
        took >= Duration::from_millis(250),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "closed too late: {took:?}");
    assert_eq!(router.stats().handshake_failures, 1);
}

#[tokio::test]
async fn peer_that_never_reads_hits_full_and_memory_stays_bounded() {
    let _serial = SERIAL.lock().await;
    let opts = Options {
        send_hwm: 100_000,
        send_hwm_bytes: 4 * MIB,
        ..Options::default()
    };
    let (router, port) = router(opts).await;
    let s = raw_dealer(&port).await; // never reads
    let peer = match timeout(T, router.recv_event()).await.unwrap().unwrap() {
        RouterEvent::Connected { peer, .. } => peer,
        other => panic!("{other:?}"),
    };
    let before = reset_peak();
    let body = Bytes::from(vec![0u8; 64 * 1024]);
    let mut accepted = 0usize;
    let deadline = Instant::now() + T;
    loop {
        match router.try_send(&peer, vec![body.clone()]) {
            Ok(()) => accepted += 1,
            Err(TrySendError::Full(_)) => break,
            Err(e) => panic!("{e:?}"),
        }
        if accepted.is_multiple_of(16) {
            tokio::task::yield_now().await;
        }
        assert!(Instant::now() < deadline, "never reported Full");
    }
    // The queue holds at most 4 MiB (plus one message); the rest is in kernel buffers.
    let accepted_bytes = accepted * body.len();
    assert!(
        accepted_bytes < 64 * MIB,
        "accepted {accepted_bytes} bytes for a peer that never reads"
    );
    let grew = PEAK.load(Ordering::Relaxed).saturating_sub(before);
    assert!(grew < 16 * MIB, "grew {grew} bytes");
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_connect_disconnect_cycles_keep_memory_flat() {
    let _serial = SERIAL.lock().await;
    let (router, port) = router(Options::default()).await;
    let router = std::sync::Arc::new(router);
    // A real owner consumes events; count disconnects so we know when the router is idle.
    let events = {
        let router = router.clone();
        tokio::spawn(async move {
            let mut disconnects = 0usize;
            while let Ok(ev) = router.recv_event().await {
                if let RouterEvent::Disconnected { .. } = ev {
                    disconnects += 1;
                }
            }
            disconnects
        })
    };
    async fn cycles(port: &str, n: usize) {
        const PARALLEL: usize = 32;
        let mut done = 0;
        while done < n {
            let batch = PARALLEL.min(n - done);
            let tasks: Vec<_> = (0..batch)
                .map(|_| {
                    let port = port.to_string();
                    tokio::spawn(async move { drop(raw_dealer(&port).await) })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            done += batch;
        }
    }
    async fn settle(router: &Router) -> usize {
        timeout(T, async {
            while router.stats().peers > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        CURRENT.load(Ordering::Relaxed)
    }
    cycles(&port, 1_000).await;
    let warm = settle(&router).await;
    cycles(&port, 9_000).await;
    let after = settle(&router).await;
    assert_eq!(router.stats().accepted, 10_000);
    let growth = after as i64 - warm as i64;
    assert!(
        growth < 256 * 1024,
        "memory grew by {growth} bytes over 9,000 cycles"
    );
    router.shutdown().await;
    let disconnects = timeout(T, events).await.unwrap().unwrap();
    assert_eq!(disconnects, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_large_messages_leave_at_most_one_message_in_spare_buffers() {
    // A peer floods 1 MiB messages at an echo service. The connection keeps written bodies
    // for reuse, but never more than the message limit's worth of them in total.
    let _serial = SERIAL.lock().await;
    let limit = 3 * MIB;
    let opts = Options {
        max_message_size: limit as u64,
        ..Options::default()
    };
    let (router, port) = router(opts).await;
    let router = std::sync::Arc::new(router);
    let echo = {
        let router = router.clone();
        tokio::spawn(async move {
            for _ in 0..24 {
                let (peer, msg) = router.recv().await.unwrap();
                router.send(&peer, msg).await.unwrap();
            }
        })
    };
    let s = raw_dealer(&port).await;
    let mut enc = Encoder::new();
    for i in 0..24u8 {
        enc.encode_message(vec![Bytes::from(vec![i; MIB])]);
    }
    let wire = enc.take_all();
    let expected = wire.len();
    let (mut rd, mut wr) = s.into_split();
    let before = CURRENT.load(Ordering::Relaxed);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut got = 0;
        while got < expected {
            let n = timeout(T, rd.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "closed after {got} bytes");
            got += n;
        }
        rd
    });
    wr.write_all(&wire).await.unwrap();
    let rd = timeout(T, reader).await.unwrap().unwrap();
    timeout(T, echo).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let held = CURRENT.load(Ordering::Relaxed).saturating_sub(before);
    assert!(
        held <= limit + MIB,
        "holds {held} bytes after the echo, limit {limit}"
    );
    drop((rd, wr));
    still_serves(&router, &port).await;
}
