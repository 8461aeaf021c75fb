//! Titanic against a real broker over real sockets: the RFC 9 surface with an MDP client
//! written from the RFCs (libzmq REQ, no domo code on the client side), the zguide's
//! `ticlient` flow, restart with pending requests, no head-of-line blocking across services,
//! a paused dispatcher (the Binary Star gate) and the `domo-titanic` program's exit codes.

#![allow(clippy::unwrap_used)] // test helpers: a failed setup step should panic

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use domo_tests::*;
use domo_titanic::dispatcher::DispatcherOptions;
use domo_titanic::server::{self, RunError, TitanicConfig};
use tokio::sync::oneshot;

const HEARTBEAT: Duration = Duration::from_millis(100);

/// A Titanic server running in this process on the store in `dir`.
struct TestTitanic {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), RunError>>,
}

impl TestTitanic {
    async fn start(endpoint: &str, dir: &Path) -> Self {
        Self::start_with(endpoint, dir, |_| {}).await
    }

    async fn start_with(
        endpoint: &str,
        dir: &Path,
        tweak: impl FnOnce(&mut TitanicConfig),
    ) -> Self {
        let mut config = TitanicConfig::new([endpoint], dir.join("titanic.redb"));
        config.heartbeat = fast_heartbeat().heartbeat;
        config.sessions = 2;
        config.dispatcher = DispatcherOptions {
            request_timeout: Duration::from_secs(2),
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_millis(300),
            poll_interval: Duration::from_millis(200),
            ..DispatcherOptions::default()
        };
        tweak(&mut config);
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server::run(config, async {
            let _ = rx.await;
        }));
        let ep = endpoint.to_string();
        blocking(move || {
            for service in ["titanic.request", "titanic.reply", "titanic.close"] {
                wait_for_service(&ep, service, b"200");
            }
        })
        .await;
        Self {
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("Titanic stops in time")
            .unwrap()
            .unwrap();
    }
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// `titanic.request` that must succeed: returns the uuid after checking the frames.
fn submit(client: &ReqClient, service: &str, body: &[&[u8]]) -> Vec<u8> {
    let mut frames: Vec<&[u8]> = vec![service.as_bytes()];
    frames.extend_from_slice(body);
    let reply = client.request("titanic.request", &frames);
    assert_eq!(reply.len(), 2, "titanic.request reply {reply:?}");
    assert_eq!(reply[0], b"200");
    let id = reply[1].clone();
    assert_eq!(id.len(), 32, "uuid {id:?}");
    assert!(id.iter().all(u8::is_ascii_hexdigit), "uuid {id:?}");
    id
}

/// Polls `titanic.reply` until it says 200 (bounded) and returns the reply body.
fn wait_reply(client: &ReqClient, id: &[u8], within: Duration) -> Msg {
    eventually(within, "no reply", || {
        let reply = client.request("titanic.reply", &[id]);
        match reply[0].as_slice() {
            b"200" => Some(reply[1..].to_vec()),
            b"300" => None,
            other => panic!("titanic.reply said {:?}", String::from_utf8_lossy(other)),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9_services_answer_with_the_codes_and_frames_of_the_rfc() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let dir = tempfile::tempdir().unwrap();
    let titanic = TestTitanic::start(&broker.endpoint, dir.path()).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let c = ReqClient::connect(&ep);
        // Nobody serves "nobody.home", so the request stays pending.
        let id = submit(&c, "nobody.home", &[b"hello"]);
        assert!(
            id.iter().all(|x| !x.is_ascii_uppercase()),
            "ids we hand out are lowercase"
        );
        assert_eq!(c.request("titanic.reply", &[&id]), vec![b("300")]);
        let upper = id.to_ascii_uppercase();
        assert_eq!(c.request("titanic.reply", &[&upper]), vec![b("300")]);

        let unknown = b"0123456789abcdef0123456789abcdef";
        assert_eq!(c.request("titanic.reply", &[unknown]), vec![b("400")]);
        for bad in [&b"not-a-uuid"[..], b"", b"0123456789abcdef0123456789abcdeg"] {
            assert_eq!(
                c.request("titanic.reply", &[bad]),
                vec![b("400")],
                "{bad:?}"
            );
            assert_eq!(
                c.request("titanic.close", &[bad]),
                vec![b("400")],
                "{bad:?}"
            );
        }
        assert_eq!(c.request("titanic.reply", &[&id, &id]), vec![b("400")]);
        assert_eq!(
            c.request("titanic.request", &[b"only-a-service"]),
            vec![b("400")]
        );
        assert_eq!(
            c.request("titanic.request", &[b"", b"body"]),
            vec![b("400")]
        );

        assert_eq!(c.request("titanic.close", &[unknown]), vec![b("200")]);
        assert_eq!(c.request("titanic.close", &[&upper]), vec![b("200")]);
        assert_eq!(c.request("titanic.reply", &[&id]), vec![b("400")]);
        assert_eq!(c.request("titanic.close", &[&id]), vec![b("200")]);
    })
    .await;
    titanic.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guide_ticlient_flow_gets_the_exact_reply_then_closes() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let dir = tempfile::tempdir().unwrap();
    let titanic = TestTitanic::start(&broker.endpoint, dir.path()).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let c = ReqClient::connect(&ep);
        let body: [&[u8]; 3] = [b"Hello world", b"", &[0, 1, 0xfe, 0xff]];
        let id = submit(&c, "echo", &body);
        assert_eq!(c.request("titanic.reply", &[&id]), vec![b("300")]);
        // The service appears only after the request was stored.
        let worker = ZWorker::echo(&ep, "echo", HEARTBEAT);
        let reply = wait_reply(&c, &id, Duration::from_secs(10));
        let expected: Msg = body.iter().map(|f| f.to_vec()).collect();
        assert_eq!(reply, expected, "reply frames are byte-exact");
        // titanic.reply does not delete: the same answer again.
        let again = c.request("titanic.reply", &[&id]);
        assert_eq!(again[0], b"200");
        assert_eq!(again[1..], expected[..]);
        assert_eq!(c.request("titanic.close", &[&id]), vec![b("200")]);
        assert_eq!(c.request("titanic.reply", &[&id]), vec![b("400")]);
        assert!(worker.served() >= 1);
    })
    .await;
    titanic.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_requests_complete_after_titanic_restarts() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let dir = tempfile::tempdir().unwrap();
    let first = TestTitanic::start(&broker.endpoint, dir.path()).await;
    let ep = broker.endpoint.clone();
    let ids = blocking(move || {
        let c = ReqClient::connect(&ep);
        let ids: Vec<Vec<u8>> = (0..5)
            .map(|i| submit(&c, "late", &[format!("job {i}").as_bytes()]))
            .collect();
        for id in &ids {
            assert_eq!(c.request("titanic.reply", &[id]), vec![b("300")]);
        }
        ids
    })
    .await;
    first.stop().await;

    let second = TestTitanic::start(&broker.endpoint, dir.path()).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let c = ReqClient::connect(&ep);
        let _worker = ZWorker::echo(&ep, "late", HEARTBEAT);
        for (i, id) in ids.iter().enumerate() {
            let reply = wait_reply(&c, id, Duration::from_secs(10));
            assert_eq!(reply, vec![format!("job {i}").into_bytes()]);
        }
    })
    .await;
    second.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_service_does_not_hold_up_another_services_requests() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let dir = tempfile::tempdir().unwrap();
    let titanic = TestTitanic::start(&broker.endpoint, dir.path()).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let c = ReqClient::connect(&ep);
        // A silent worker takes "stuck" requests and never answers; "absent" has no worker.
        let _silent = ZWorker::start(&ep, "stuck", HEARTBEAT, Box::new(|_| None));
        wait_for_service(&ep, "stuck", b"200");
        let blocked: Vec<Vec<u8>> = (0..20)
            .map(|i| {
                let service = if i % 2 == 0 { "absent" } else { "stuck" };
                submit(&c, service, &[b"x"])
            })
            .collect();
        let _echo = ZWorker::echo(&ep, "echo", HEARTBEAT);
        let started = Instant::now();
        let id = submit(&c, "echo", &[b"first come"]);
        // Well under one request timeout (2 s) of the stuck service.
        let reply = wait_reply(&c, &id, Duration::from_millis(1500));
        assert_eq!(reply, vec![b("first come")]);
        assert!(started.elapsed() < Duration::from_millis(1500));
        for id in &blocked {
            assert_eq!(c.request("titanic.reply", &[id]), vec![b("300")]);
        }
    })
    .await;
    titanic.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_larger_than_a_lane_is_read_again_and_completes() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let dir = tempfile::tempdir().unwrap();
    let titanic = TestTitanic::start_with(&broker.endpoint, dir.path(), |config| {
        config.dispatcher.lane_capacity = 3;
        config.dispatcher.page_size = 2;
        config.dispatcher.concurrency = 2;
    })
    .await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let c = ReqClient::connect(&ep);
        let ids: Vec<Vec<u8>> = (0..12)
            .map(|i| submit(&c, "backlog", &[format!("job {i}").as_bytes()]))
            .collect();
        let worker = ZWorker::echo(&ep, "backlog", HEARTBEAT);
        for (i, id) in ids.iter().enumerate() {
            let reply = wait_reply(&c, id, Duration::from_secs(10));
            assert_eq!(reply, vec![format!("job {i}").into_bytes()]);
        }
        assert!(worker.served() >= 12);
    })
    .await;
    titanic.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_never_closed_expire_after_the_configured_age() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let dir = tempfile::tempdir().unwrap();
    let titanic = TestTitanic::start_with(&broker.endpoint, dir.path(), |config| {
        config.dispatcher.expire_after = Duration::from_millis(300);
        config.dispatcher.expire_interval = Duration::from_millis(100);
    })
    .await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let c = ReqClient::connect(&ep);
        let id = submit(&c, "nobody.home", &[b"forgotten"]);
        eventually(Duration::from_secs(10), "the request never expired", || {
            (c.request("titanic.reply", &[&id]) != vec![b("300")]).then_some(())
        });
        assert_eq!(c.request("titanic.reply", &[&id]), vec![b("400")]);
    })
    .await;
    titanic.stop().await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_dispatcher_holds_requests_while_the_titanic_services_still_answer() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let dir = tempfile::tempdir().unwrap();
    let (gate, active) = tokio::sync::watch::channel(false);
    let titanic = TestTitanic::start_with(&broker.endpoint, dir.path(), |config| {
        // Long backoff: a lane that had to wait out even one would miss the deadline below.
        config.dispatcher.retry_min = Duration::from_secs(5);
        config.dispatcher.retry_max = Duration::from_secs(30);
        config.dispatcher.active = Some(active);
    })
    .await;
    let ep = broker.endpoint.clone();
    let (id, worker) = blocking(move || {
        let c = ReqClient::connect(&ep);
        let worker = ZWorker::echo(&ep, "echo", HEARTBEAT);
        wait_for_service(&ep, "echo", b"200");
        // The Titanic services are workers, not gated: they store and answer as usual.
        let id = submit(&c, "echo", &[b"held back"]);
        // Bounded watch (the scanner polls every 200 ms): the request stays pending and the
        // worker gets nothing.
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            assert_eq!(c.request("titanic.reply", &[&id]), vec![b("300")]);
            thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(worker.served(), 0, "a paused dispatcher sent a request");
        (id, worker)
    })
    .await;

    gate.send(true).unwrap();
    let opened = Instant::now();
    let ep = broker.endpoint.clone();
    blocking(move || {
        let c = ReqClient::connect(&ep);
        let reply = wait_reply(&c, &id, Duration::from_secs(2));
        assert_eq!(reply, vec![b("held back")]);
        assert_eq!(worker.served(), 1);
        assert_eq!(c.request("titanic.close", &[&id]), vec![b("200")]);
    })
    .await;
    assert!(
        opened.elapsed() < Duration::from_secs(2),
        "took {:?}",
        opened.elapsed()
    );
    titanic.stop().await;
    broker.stop().await;
}

// === the domo-titanic program ===

fn titanic_bin() -> std::process::Command {
    std::process::Command::new(DOMO_TITANIC)
}

/// Waits for `child` to exit, bounded.
fn wait_exit(child: &mut std::process::Child, within: Duration) -> std::process::ExitStatus {
    poll_until(within, || child.try_wait().unwrap()).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("domo-titanic did not exit within {within:?}");
    })
}

#[test]
fn bad_flags_exit_with_status_2_and_an_unusable_data_dir_with_1() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["--broker", "udp://127.0.0.1:1"][..],
        &["--expire-after", "7 weeks"],
        &["--heartbeat", "0s"],
        &["--store", "sqlite"],
        &["--no-such-flag"],
    ] {
        let status = titanic_bin()
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
    // A data directory that cannot be created is a runtime failure, not a bad flag.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let status = titanic_bin()
        .arg("--data-dir")
        .arg(file.join("sub"))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_program_serves_exits_1_on_a_locked_store_and_0_on_sigterm() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let dir = tempfile::tempdir().unwrap();
    let (ep, data) = (broker.endpoint.clone(), dir.path().to_path_buf());
    blocking(move || {
        let spawn = || {
            titanic_bin()
                .args(["--broker", &ep, "--heartbeat", "100ms", "--data-dir"])
                .arg(&data)
                .env("RUST_LOG", "warn")
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut first = spawn();
        wait_for_service(&ep, "titanic.request", b"200");
        let c = ReqClient::connect(&ep);
        let _echo = ZWorker::echo(&ep, "echo", HEARTBEAT);
        let id = submit(&c, "echo", &[b"via the program"]);
        assert_eq!(
            wait_reply(&c, &id, Duration::from_secs(10)),
            vec![b("via the program")]
        );

        // A second instance on the same data directory cannot open the store.
        let mut second = spawn();
        assert_eq!(
            wait_exit(&mut second, Duration::from_secs(10)).code(),
            Some(1)
        );

        let pid = first.id().to_string();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        assert_eq!(
            wait_exit(&mut first, Duration::from_secs(15)).code(),
            Some(0)
        );
        // Its workers said DISCONNECT: the broker forgets the service at once.
        wait_for_service(&ep, "titanic.request", b"404");
        // The log store by default (segment files in titanic-log), no redb file.
        assert!(data.join("titanic-log").join("LOCK").is_file());
        assert!(!data.join("titanic.redb").exists());
    })
    .await;
    broker.stop().await;
}
