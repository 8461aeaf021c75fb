//! The `domo-broker` binary with its embedded Titanic (RFC 9): on by default with the default
//! data directory, `/readyz` and metrics, `--check-config` on `[titanic]`.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use domo_tests::*;

/// A broker process in `cwd` with its stderr collected; killed on drop.
struct Daemon {
    child: LoggedChild,
    endpoint: String,
}

impl Daemon {
    fn start(cwd: &Path, args: &[&str]) -> Self {
        let endpoint = dead_endpoint();
        let child = LoggedChild::spawn(
            Command::new(DOMO_BROKER)
                .current_dir(cwd)
                .args(["--bind", &endpoint, "--metrics-listen", "127.0.0.1:0"])
                .args(EPHEMERAL_TOPICS)
                .args(args)
                .env_remove("RUST_LOG")
                .env_remove("NOTIFY_SOCKET")
                .env_remove("DOMO_CONFIG")
                .env_remove("STATE_DIRECTORY")
                .env_remove("DOMO_TITANIC__DATA_DIR")
                .stdout(Stdio::null()),
        );
        Self { child, endpoint }
    }

    fn metrics_addr(&self) -> String {
        http_addr(&self.child.wait_line("Metrics listening"))
    }

    /// SIGTERM, then the exit status within `within`.
    fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.child.signal("TERM");
        self.child.wait_exit(within)
    }
}

/// The value of the first sample in Prometheus text `metrics` whose line starts with `prefix`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}

/// Polls `titanic.reply` for `id` until it is 200 (for up to 15 s); returns its body.
#[test]
fn default_broker_serves_titanic_end_to_end_in_its_working_directory() {
    let cwd = TempDir::new("titanic-default");
    // No Titanic flag nor file: the default data directory, ./titanic-data.
    let mut daemon = Daemon::start(cwd.path(), &["--heartbeat", "250ms"]);
    let ep = daemon.endpoint.clone();
    wait_for_service(&ep, "titanic.request", b"200");
    wait_for_service(&ep, "titanic.reply", b"200");
    wait_for_service(&ep, "titanic.close", b"200");
    assert!(cwd.path().join("titanic-data/titanic-log").is_dir());
    let addr = daemon.metrics_addr();
    assert_eq!(http_get(&addr, "/readyz"), (200, "ready\n".to_string()));

    let _echo = ZWorker::echo(&ep, "echo", Duration::from_millis(250));
    wait_for_service(&ep, "echo", b"200");
    let client = ReqClient::connect(&ep);
    let ack = client.request("titanic.request", &[b"echo", b"hello", b"titanic"]);
    assert_eq!(ack[0], b"200", "{ack:?}");
    assert_eq!(ack.len(), 2);
    assert_eq!(ack[1].len(), 32, "a 32-hex-digit id");
    let reply = titanic_reply_when_done(&client, &ack[1]);
    assert_eq!(reply, vec![b"hello".to_vec(), b"titanic".to_vec()]);

    let (status, metrics) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("domo_titanic_requests{state=\"done\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("domo_titanic_store_bytes "), "{metrics}");
    let commits = metrics
        .lines()
        .find(|l| l.starts_with("domo_titanic_commit_duration_seconds_count "))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert!(commits.is_some_and(|n| n >= 2), "{metrics}");
    // Writes per commit: one observation per commit, and the request and its reply among
    // the writes.
    let writes_count = sample(&metrics, "domo_titanic_commit_requests_count ");
    assert_eq!(writes_count, commits.map(|n| n as f64), "{metrics}");
    let writes = sample(&metrics, "domo_titanic_commit_requests_sum ");
    assert!(writes.is_some_and(|n| n >= 2.0), "{metrics}");

    assert_eq!(client.request("titanic.close", &[&ack[1]]), vec![b"200"]);
    assert_eq!(client.request("titanic.reply", &[&ack[1]]), vec![b"400"]);
    // SIGTERM: Titanic stops first, then the broker drains; a clean exit.
    let status = daemon.terminate(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
    daemon.child.wait_line("Titanic store closed");
}

#[test]
fn an_idempotency_key_stores_a_request_once_also_across_a_kill_9() {
    let cwd = TempDir::new("titanic-keys");
    let daemon = Daemon::start(cwd.path(), &["--heartbeat", "250ms"]);
    let ep = daemon.endpoint.clone();
    wait_for_service(&ep, "titanic.request", b"200");
    // A libzmq REQ client with the key frame ahead of the RFC 9 body.
    let client = ReqClient::connect(&ep);
    let first = client.request(
        "titanic.request",
        &[b"Idempotency-Key:order-17", b"later", b"a"],
    );
    assert_eq!(first[0], b"200", "{first:?}");
    let again = client.request(
        "titanic.request",
        &[b"Idempotency-Key:order-17", b"later", b"a"],
    );
    assert_eq!(again, first);
    let other = client.request(
        "titanic.request",
        &[b"Idempotency-Key:order-18", b"later", b"a"],
    );
    assert_eq!(other[0], b"200");
    assert_ne!(other[1], first[1]);
    // An empty key is malformed: 400, nothing stored.
    let empty = client.request("titanic.request", &[b"Idempotency-Key:", b"later", b"a"]);
    assert_eq!(empty, vec![b"400".to_vec()]);
    // The CLI's --idempotency-key is the same convention.
    let cli = |key: &str| {
        let out = Command::new(DOMO)
            .args(["titanic", "submit", "later", "a", "--idempotency-key", key])
            .env("DOMO_BROKER", &ep)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    assert_eq!(cli("order-17").as_bytes(), first[1].as_slice());
    drop(client);
    // kill -9, then the same directory: the key is on disk with its request.
    drop(daemon);
    let daemon = Daemon::start(cwd.path(), &["--heartbeat", "250ms"]);
    let ep = daemon.endpoint.clone();
    wait_for_service(&ep, "titanic.request", b"200");
    let client = ReqClient::connect(&ep);
    let after = client.request(
        "titanic.request",
        &[b"Idempotency-Key:order-17", b"later", b"a"],
    );
    assert_eq!(after, first);
    // Closed, the key names nothing: a new request.
    assert_eq!(client.request("titanic.close", &[&first[1]]), vec![b"200"]);
    let fresh = client.request(
        "titanic.request",
        &[b"Idempotency-Key:order-17", b"later", b"a"],
    );
    assert_eq!(fresh[0], b"200");
    assert_ne!(fresh[1], first[1]);
    // Three requests stored in all (order-17 twice, order-18 once), one closed: two pending.
    let metrics = http_get(&daemon.metrics_addr(), "/metrics").1;
    assert_eq!(
        sample(&metrics, "domo_titanic_requests{state=\"pending\"} "),
        Some(2.0),
        "{metrics}"
    );
}

/// Established TCP connections, either direction, with local port `port` (IPv4 and IPv6).
fn established_on(port: u16) -> usize {
    let mut n = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            // State 01 is ESTABLISHED.
            if local_port == Some(port) && *state == "01" {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn the_embedded_titanic_reaches_its_broker_in_process_not_over_tcp() {
    if !Path::new("/proc/net/tcp").exists() {
        eprintln!("skipped: no /proc/net/tcp to count connections in");
        return;
    }
    let cwd = TempDir::new("titanic-inproc");
    let daemon = Daemon::start(cwd.path(), &["--heartbeat", "250ms"]);
    let ep = daemon.endpoint.clone();
    let port: u16 = ep.rsplit(':').next().unwrap().parse().unwrap();
    // Titanic's three services (served by the broker itself) and its dispatcher are up...
    wait_for_service(&ep, "titanic.request", b"200");
    wait_for_service(&ep, "titanic.reply", b"200");
    wait_for_service(&ep, "titanic.close", b"200");
    // ...and a request goes through it, from a client that then goes away.
    {
        let client = ReqClient::connect(&ep);
        let ack = client.request("titanic.request", &[b"nobody", b"x"]);
        assert_eq!(ack[0], b"200", "{ack:?}");
    }
    // Over TCP they would hold dozens of connections to the broker's port for as long as it
    // runs; in process, once the test's own clients are gone, there are none.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut open = established_on(port);
    while open > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        open = established_on(port);
    }
    assert_eq!(open, 0, "TCP connections to the broker's own port remain");
    let metrics = http_get(&daemon.metrics_addr(), "/metrics").1;
    // Each service is one worker to the core, with no connection: the only connections
    // left are the dispatcher's client pool (in process), not the 48 worker sessions (16 per
    // service) the services would open as MDP workers.
    for service in ["titanic.request", "titanic.reply", "titanic.close"] {
        let idle = sample(
            &metrics,
            &format!("domo_workers{{service=\"{service}\",state=\"idle\"}} "),
        );
        let busy = sample(
            &metrics,
            &format!("domo_workers{{service=\"{service}\",state=\"busy\"}} "),
        );
        assert_eq!(
            idle.unwrap_or(0.0) + busy.unwrap_or(0.0),
            1.0,
            "{service}: {metrics}"
        );
    }
    let connected = sample(&metrics, "domo_connections{socket=\"router\"} ");
    assert!(connected.is_some_and(|n| n < 48.0), "{metrics}");
}

#[test]
fn readyz_says_why_when_the_store_cannot_be_opened() {
    let dir = TempDir::new("titanic-unready");
    // A regular file where the data directory should be.
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, "not a directory").unwrap();
    let daemon = Daemon::start(
        dir.path(),
        &["--titanic-data-dir", blocked.join("sub").to_str().unwrap()],
    );
    wait_for_service(&daemon.endpoint, "nobody", b"404");
    let (status, body) = http_get(&daemon.metrics_addr(), "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("Titanic data directory"), "{body}");
    // The broker itself still routes.
    let client = ReqClient::connect(&daemon.endpoint);
    assert_eq!(
        client.request("mmi.service", &[b"titanic.request"]),
        vec![b"404"]
    );
}

#[test]
fn no_titanic_flag_runs_the_broker_alone() {
    let dir = TempDir::new("titanic-off");
    let daemon = Daemon::start(dir.path(), &["--no-titanic"]);
    wait_for_service(&daemon.endpoint, "nobody", b"404");
    let (status, _) = http_get(&daemon.metrics_addr(), "/readyz");
    assert_eq!(status, 200);
    let client = ReqClient::connect(&daemon.endpoint);
    assert_eq!(
        client.request("mmi.service", &[b"titanic.request"]),
        vec![b"404"]
    );
    assert!(!dir.path().join("titanic-data").exists());
}

fn check_config(cwd: &Path, file: &Path) -> (Option<i32>, String) {
    let out = Command::new(DOMO_BROKER)
        .current_dir(cwd)
        .args(["--check-config", "--config", file.to_str().unwrap()])
        .env_remove("DOMO_CONFIG")
        .env_remove("DOMO_TITANIC__DATA_DIR")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stderr).unwrap() + &String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn check_config_reads_the_titanic_section_without_opening_the_store() {
    let dir = TempDir::new("titanic-check");
    let data = dir.path().join("data");
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[titanic]\nenabled = true\ndata_dir = {:?}\nexpire_after = \"2d\"\n\
             max_bytes = 1000000\nrequest_timeout = \"5s\"\nsessions = 4\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let (code, text) = check_config(dir.path(), &good);
    assert_eq!(code, Some(0), "{text}");
    assert!(!data.exists(), "--check-config created the data directory");
    assert!(!dir.path().join("titanic-data").exists());

    let cases = [
        ("[titanic]\nenabled = \"yes\"\n", 2, "titanic.enabled"),
        (
            "[titanic]\n\nexpire_after = \"7\"\n",
            3,
            "titanic.expire_after",
        ),
        ("[titanic]\nsessions = 0\n", 2, "titanic.sessions"),
        ("[titanic]\ndata_dir = \"\"\n", 2, "titanic.data_dir"),
        ("[titanic]\nmax_bytes = -1\n", 2, "titanic.max_bytes"),
        ("[titanic]\nstore = \"x\"\n", 2, "titanic.store"),
    ];
    for (text, line, key) in cases {
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let (code, out) = check_config(dir.path(), &bad);
        assert_eq!(code, Some(2), "{text:?}: {out}");
        let prefix = format!("domo-broker: {}:{line}: {key}: ", bad.display());
        assert!(out.starts_with(&prefix), "{text:?}: {out}");
    }
}

#[test]
fn more_requests_than_a_dispatcher_lane_holds_are_all_delivered_once_a_worker_comes() {
    // The dispatcher takes new requests from the store's feed and holds at most 1,024 per
    // service; the rest stay in the store and are read back once the lane has drained. 1,100
    // requests for a service nobody serves yet, then a worker: every one is answered.
    let cwd = TempDir::new("titanic-overflow");
    let daemon = Daemon::start(cwd.path(), &["--heartbeat", "250ms"]);
    let ep = daemon.endpoint.clone();
    wait_for_service(&ep, "titanic.request", b"200");
    let client = ReqClient::connect(&ep);
    let ids: Vec<Vec<u8>> = (0..1100)
        .map(|i| {
            let ack = client.request("titanic.request", &[b"later", format!("{i}").as_bytes()]);
            assert_eq!(ack[0], b"200", "{ack:?}");
            ack[1].clone()
        })
        .collect();
    let worker = ZWorker::start(&ep, "later", Duration::from_millis(250), Box::new(Some));
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            titanic_reply_when_done(&client, id),
            vec![format!("{i}").into_bytes()],
            "request {i}"
        );
    }
    assert!(worker.served() >= 1100);
}

#[test]
fn with_a_commit_linger_64_concurrent_submitters_share_commits_of_at_least_32() {
    // `[titanic] commit_linger`: a commit waits (in 100 us steps, while submissions keep
    // coming) for the submitters on their way back through the broker, so 64 closed-loop
    // submitters through it share commits nearly all 64 at a time (without it, at most as
    // many as are at the store at once: about 22 of 64 in a release build).
    let cwd = TempDir::new("titanic-linger");
    let config = cwd.path().join("broker.toml");
    std::fs::write(&config, "[titanic]\ncommit_linger = \"50ms\"\n").unwrap();
    let daemon = Daemon::start(
        cwd.path(),
        &["--config", config.to_str().unwrap(), "--heartbeat", "250ms"],
    );
    let ep = daemon.endpoint.clone();
    wait_for_service(&ep, "titanic.request", b"200");
    // All connected before any submits: a submitter still connecting while the first commits
    // go out would make them smaller for a reason that is not the store's.
    let start = std::sync::Arc::new(std::sync::Barrier::new(64));
    let submitters: Vec<_> = (0..64)
        .map(|s| {
            let ep = ep.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                let client = ReqClient::connect(&ep);
                client.request("mmi.service", &[b"titanic.request"]);
                start.wait();
                for i in 0..10 {
                    let body = format!("{s}/{i}");
                    let ack = client.request("titanic.request", &[b"later", body.as_bytes()]);
                    assert_eq!(ack[0], b"200", "{ack:?}");
                }
            })
        })
        .collect();
    for s in submitters {
        s.join().unwrap();
    }
    let metrics = http_get(&daemon.metrics_addr(), "/metrics").1;
    let writes = sample(&metrics, "domo_titanic_commit_requests_sum ").unwrap();
    let commits = sample(&metrics, "domo_titanic_commit_requests_count ").unwrap();
    // The 640 requests and the dispatcher's first expiry pass.
    assert_eq!(writes, 641.0, "{metrics}");
    eprintln!("{writes} writes in {commits} commits");
    assert!(
        writes / commits >= 32.0,
        "{writes} writes in {commits} commits: {:.1} per commit",
        writes / commits
    );
}

#[test]
fn an_upgrade_moves_the_requests_of_titanic_redb_into_the_log_and_answers_them() {
    let cwd = TempDir::new("titanic-upgrade");
    // An earlier version's store: the broker on `store = "redb"`.
    std::fs::write(
        cwd.path().join("redb.toml"),
        "[titanic]\nstore = \"redb\"\n",
    )
    .unwrap();
    let daemon = Daemon::start(cwd.path(), &["--heartbeat", "250ms", "-c", "redb.toml"]);
    let ep = daemon.endpoint.clone();
    wait_for_service(&ep, "titanic.request", b"200");
    let client = ReqClient::connect(&ep);
    // No worker for "upgrade": they stay pending. One done request, one keyed.
    let pending: Vec<Vec<u8>> = (0..5)
        .map(|i| {
            let ack = client.request("titanic.request", &[b"upgrade", format!("p{i}").as_bytes()]);
            assert_eq!(ack[0], b"200", "{ack:?}");
            ack[1].clone()
        })
        .collect();
    let keyed = client.request(
        "titanic.request",
        &[b"Idempotency-Key:up-1", b"upgrade", b"k"],
    );
    assert_eq!(keyed[0], b"200");
    let echo = ZWorker::echo(&ep, "echo", Duration::from_millis(250));
    let done = client.request("titanic.request", &[b"echo", b"answered before"]);
    assert_eq!(
        titanic_reply_when_done(&client, &done[1]),
        vec![b"answered before".to_vec()]
    );
    drop((client, echo, daemon)); // kill -9
    let data = cwd.path().join("titanic-data");
    assert!(data.join("titanic.redb").is_file());

    // This version's default: the log, with everything moved in at start. (A short request
    // timeout: an attempt that raced the worker's arrival is retried within the test's wait.)
    std::fs::write(
        cwd.path().join("log.toml"),
        "[titanic]\nrequest_timeout = \"2s\"\n",
    )
    .unwrap();
    let daemon = Daemon::start(cwd.path(), &["--heartbeat", "250ms", "-c", "log.toml"]);
    let ep = daemon.endpoint.clone();
    wait_for_service(&ep, "titanic.request", b"200");
    daemon.child.wait_line("moved into the log");
    assert!(!data.join("titanic.redb").exists());
    assert!(data.join("titanic.redb.imported").is_file());
    assert!(data.join("titanic-log").is_dir());
    let client = ReqClient::connect(&ep);
    assert_eq!(
        client.request("titanic.reply", &[&done[1]]),
        vec![b"200".to_vec(), b"answered before".to_vec()]
    );
    for id in &pending {
        assert_eq!(
            client.request("titanic.reply", &[id]),
            vec![b"300".to_vec()]
        );
    }
    // The key still names its request.
    let again = client.request(
        "titanic.request",
        &[b"Idempotency-Key:up-1", b"upgrade", b"k"],
    );
    assert_eq!(again, keyed);
    // A worker for "upgrade" now: the moved requests go out and are answered.
    let _worker = ZWorker::echo(&ep, "upgrade", Duration::from_millis(250));
    for (i, id) in pending.iter().enumerate() {
        assert_eq!(
            titanic_reply_when_done(&client, id),
            vec![format!("p{i}").into_bytes()]
        );
    }
}
