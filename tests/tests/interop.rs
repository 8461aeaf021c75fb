//! The broker with unchanged libzmq peers: REQ and DEALER clients, DEALER workers written
//! from RFC 7. The broker runs in-process on an ephemeral port (or as a separate process
//! where its memory is measured).
#![allow(clippy::unwrap_used)]

use std::thread;
use std::time::{Duration, Instant};

use domo_broker::BrokerConfig;
use domo_tests::*;

const HB: Duration = Duration::from_millis(2500);

fn tagged(tag: &'static str) -> Handler {
    Box::new(move |mut body: Msg| {
        body.push(tag.as_bytes().to_vec());
        Some(body)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_is_byte_exact_for_multipart_binary_and_empty_frames() {
    let broker = TestBroker::start(BrokerConfig::default()).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let _w = ZWorker::echo(&ep, "echo", HB);
        let c = ReqClient::connect(&ep);
        let bodies: Vec<Vec<&[u8]>> = vec![
            vec![b"hello"],
            vec![b"", b"\x00\xff\x00", b""],
            vec![&[0u8; 300], b"MDPW01", b"\x05"],
        ];
        for body in bodies {
            let expected: Msg = body.iter().map(|f| f.to_vec()).collect();
            assert_eq!(c.request("echo", &body), expected);
        }
    })
    .await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mib_bodies() {
    let broker = TestBroker::start(BrokerConfig::default()).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let _w = ZWorker::echo(&ep, "big", HB);
        let c = ReqClient::connect(&ep);
        let body = vec![0x5Au8; 1024 * 1024];
        for _ in 0..5 {
            assert_eq!(c.request("big", &[&body]), vec![body.clone()]);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_are_isolated() {
    let broker = TestBroker::start(BrokerConfig::default()).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let _a = ZWorker::start(&ep, "alpha", HB, tagged("A"));
        let _b = ZWorker::start(&ep, "beta", HB, tagged("B"));
        let c = ReqClient::connect(&ep);
        for _ in 0..5 {
            assert_eq!(
                c.request("alpha", &[b"x"]),
                vec![b"x".to_vec(), b"A".to_vec()]
            );
            assert_eq!(
                c.request("beta", &[b"y"]),
                vec![b"y".to_vec(), b"B".to_vec()]
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_waits_until_a_worker_arrives() {
    let broker = TestBroker::start(BrokerConfig::default()).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let client_ep = ep.clone();
        let client =
            thread::spawn(move || ReqClient::connect(&client_ep).request("late", &[b"early bird"]));
        // The request is queued: no worker for "late" yet.
        wait_for_service(&ep, "late", b"404");
        thread::sleep(Duration::from_millis(100));
        let _w = ZWorker::echo(&ep, "late", HB);
        assert_eq!(client.join().unwrap(), vec![b"early bird".to_vec()]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_balanced_over_workers_least_recently_used_first() {
    let broker = TestBroker::start(BrokerConfig::default()).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let a = ZWorker::start(&ep, "svc", HB, tagged("A"));
        let b = ZWorker::start(&ep, "svc", HB, tagged("B"));
        let c = ReqClient::connect(&ep);
        wait_for_workers(&ep, "svc", 2);
        let tags: Vec<Vec<u8>> = (0..20)
            .map(|_| c.request("svc", &[b"r"]).pop().unwrap())
            .collect();
        // Sequential requests alternate: the other worker is always the least recently used.
        for pair in tags.windows(2) {
            assert_ne!(pair[0], pair[1], "{tags:?}");
        }
        assert_eq!((a.stop().requests, b.stop().requests), (10, 10));
    })
    .await;
}

fn wait_for_workers(ep: &str, service: &str, n: usize) {
    let c = ReqClient::connect(ep);
    eventually(Duration::from_secs(10), "workers never registered", || {
        (c.request("mmi.workers", &[service.as_bytes()]) == vec![n.to_string().into_bytes()])
            .then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mmi_codes() {
    let broker = TestBroker::start(BrokerConfig::default()).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let c = ReqClient::connect(&ep);
        assert_eq!(c.request("mmi.service", &[b"echo"]), vec![b"404".to_vec()]);
        let w1 = ZWorker::echo(&ep, "echo", HB);
        let _w2 = ZWorker::echo(&ep, "echo", HB);
        let _other = ZWorker::echo(&ep, "other", HB);
        wait_for_workers(&ep, "echo", 2);
        assert_eq!(c.request("mmi.service", &[b"echo"]), vec![b"200".to_vec()]);
        assert_eq!(
            c.request("mmi.service", &[b"nothing"]),
            vec![b"404".to_vec()]
        );
        assert_eq!(c.request("mmi.workers", &[b"echo"]), vec![b"2".to_vec()]);
        let mut services = c.request("mmi.services", &[b""]);
        services.sort();
        assert_eq!(services, vec![b"echo".to_vec(), b"other".to_vec()]);
        assert_eq!(c.request("mmi.nope", &[b"x"]), vec![b"501".to_vec()]);
        // The registry follows departures: stopping a worker closes its connection.
        drop(w1);
        wait_for_workers(&ep, "echo", 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_worker_expires_and_its_request_goes_to_another_worker() {
    let config = fast_heartbeat();
    let hb = config.heartbeat.interval;
    let broker = TestBroker::start(config).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        // The first worker takes the request and hangs: no reply, no heartbeat.
        let hung = ZWorker::start(
            &ep,
            "svc",
            hb,
            Box::new(|_| {
                thread::sleep(Duration::from_secs(3));
                None
            }),
        );
        wait_for_workers(&ep, "svc", 1);
        let client_ep = ep.clone();
        let started = Instant::now();
        let client =
            thread::spawn(move || ReqClient::connect(&client_ep).request("svc", &[b"job"]));
        // Once the request is held by the hung worker, a healthy one arrives.
        thread::sleep(Duration::from_millis(50));
        let healthy = ZWorker::start(&ep, "svc", hb, tagged("healthy"));
        let reply = client.join().unwrap();
        assert_eq!(reply, vec![b"job".to_vec(), b"healthy".to_vec()]);
        // Expiry is interval x liveness = 300 ms after the hung worker's last heartbeat.
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(healthy.stop().requests, 1);
        assert_eq!(hung.stop().requests, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_clients() {
    const CLIENTS: usize = 1000;
    let broker = TestBroker::start(BrokerConfig::default()).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let _workers: Vec<ZWorker> = (0..4).map(|_| ZWorker::echo(&ep, "echo", HB)).collect();
        let ctxs: Vec<zmq::Context> = (0..4).map(|_| zmq::Context::new()).collect();
        let clients: Vec<zmq::Socket> = (0..CLIENTS)
            .map(|i| {
                let s = zsocket(&ctxs[i % 4], zmq::DEALER);
                s.connect(&ep).unwrap();
                s
            })
            .collect();
        for (i, s) in clients.iter().enumerate() {
            let req = [
                vec![],
                MDPC01.to_vec(),
                b"echo".to_vec(),
                (i as u32).to_be_bytes().to_vec(),
            ];
            s.send_multipart(req, 0).unwrap();
        }
        for (i, s) in clients.iter().enumerate() {
            let reply = s.recv_multipart(0).unwrap();
            assert_eq!(
                reply,
                vec![
                    vec![],
                    MDPC01.to_vec(),
                    b"echo".to_vec(),
                    (i as u32).to_be_bytes().to_vec()
                ]
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_client_sends_100k_requests_before_reading_and_gets_all_replies() {
    const N: u32 = 100_000;
    let broker = TestBroker::start(BrokerConfig::default()).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let _workers: Vec<ZWorker> = (0..2).map(|_| ZWorker::echo(&ep, "echo", HB)).collect();
        wait_for_workers(&ep, "echo", 2);
        let ctx = zmq::Context::new();
        let s = zsocket(&ctx, zmq::DEALER);
        s.set_rcvtimeo(30_000).unwrap();
        s.set_sndtimeo(30_000).unwrap();
        s.connect(&ep).unwrap();
        for i in 0..N {
            s.send_multipart(
                [
                    vec![],
                    MDPC01.to_vec(),
                    b"echo".to_vec(),
                    i.to_be_bytes().to_vec(),
                ],
                0,
            )
            .expect("broker stopped reading the client's requests");
        }
        let mut seen = vec![false; N as usize];
        for _ in 0..N {
            let reply = s.recv_multipart(0).expect("reply missing");
            let mut be = [0u8; 4];
            be.copy_from_slice(&reply[3]);
            let i = u32::from_be_bytes(be) as usize;
            assert!(!seen[i], "duplicate reply {i}");
            seen[i] = true;
        }
        assert!(seen.iter().all(|&s| s));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_dropped_and_the_broker_keeps_serving() {
    let broker = TestBroker::start(BrokerConfig::default()).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let _w = ZWorker::echo(&ep, "echo", HB);
        let ctx = zmq::Context::new();
        let bad = zsocket(&ctx, zmq::DEALER);
        bad.connect(&ep).unwrap();
        let cases: Vec<Msg> = vec![
            vec![b"no empty frame".to_vec()],                       // 1 frame
            vec![MDPC01.to_vec(), b"echo".to_vec(), b"x".to_vec()], // missing empty frame
            vec![vec![], b"MDPX01".to_vec(), b"echo".to_vec(), b"x".to_vec()], // unknown header
            vec![
                vec![],
                b"MDPC02".to_vec(),
                vec![1],
                b"echo".to_vec(),
                b"x".to_vec(),
            ],
            vec![vec![], MDPC01.to_vec()], // no service
            vec![vec![], MDPC01.to_vec(), b"echo".to_vec()], // no body
            vec![vec![], MDPW01.to_vec()], // no command
            vec![vec![], MDPW01.to_vec(), vec![0x09]], // unknown command
            vec![vec![], MDPW01.to_vec(), vec![READY]], // READY, no service
            vec![vec![], MDPW01.to_vec(), vec![REPLY]], // REPLY, no address
            vec![
                vec![],
                MDPW01.to_vec(),
                vec![REPLY],
                vec![],
                vec![],
                b"x".to_vec(),
            ],
            vec![vec![], MDPW01.to_vec(), vec![HEARTBEAT]], // before READY
        ];
        for case in cases {
            bad.send_multipart(case, 0).unwrap();
        }
        let c = ReqClient::connect(&ep);
        assert_eq!(
            c.request("echo", &[b"still here"]),
            vec![b"still here".to_vec()]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_garbage_from_one_peer_while_another_client_is_served() {
    let broker = TestBroker::start(BrokerConfig::default()).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let _w = ZWorker::echo(&ep, "echo", HB);
        wait_for_workers(&ep, "echo", 1);
        let flood_ep = ep.clone();
        let flood = thread::spawn(move || {
            let ctx = zmq::Context::new();
            let s = zsocket(&ctx, zmq::DEALER);
            s.set_sndtimeo(30_000).unwrap();
            s.connect(&flood_ep).unwrap();
            for i in 0..100_000u32 {
                s.send_multipart([b"garbage".to_vec(), i.to_be_bytes().to_vec()], 0)
                    .unwrap();
            }
        });
        let c = ReqClient::connect(&ep);
        let mut served = 0;
        while !flood.is_finished() || served < 20 {
            assert_eq!(c.request("echo", &[b"ok"]), vec![b"ok".to_vec()]);
            served += 1;
        }
        flood.join().unwrap();
        assert_eq!(c.request("echo", &[b"after"]), vec![b"after".to_vec()]);
    })
    .await;
}
