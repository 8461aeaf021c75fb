//! Binary Star with the embedded Titanic, against real `domo-broker` processes on 127.0.0.1:
//! a durable request acknowledged by the primary stays on the primary's disk through a
//! kill -9, a takeover by the backup and the primary's restart as passive; the passive
//! primary's dispatcher neither delivers it nor votes its broker active; after a manual
//! fail-back (the backup stopped, a client votes for the primary) it is delivered and its
//! reply fetched from the primary.
//!
//! The harness is the one of `pair.rs` (copied: test files cannot share code outside
//! `common`), with a Titanic data directory per broker instead of `--no-titanic`. Every
//! process is killed on drop; every wait is bounded.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_client::{Client, ClientOptions, Error, TitanicReply};
use domo_worker::{Worker, WorkerOptions};
use tokio::task::JoinHandle;

use common::{dead_endpoint, http_get};

const BIN: &str = env!("CARGO_BIN_EXE_domo-broker");
/// Worker heartbeat of the brokers and the SDK worker.
const WORKER_HB: Duration = Duration::from_millis(500);
/// The service behind Titanic; no worker serves it until step 4.
const SERVICE: &str = "slow";
/// What the worker puts before the request body in its reply.
const REPLY_TAG: &str = "slow served";

// === Harness ===

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!("domo-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn ipc(&self, name: &str) -> String {
        format!("ipc://{}", self.0.join(name).display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How to start one broker of the pair.
#[derive(Clone)]
struct Spec {
    role: &'static str,
    frontend: String,
    ha_bind: String,
    ha_peer: String,
    ha_heartbeat: Duration,
    /// This broker's own Titanic store (kept across its restarts).
    titanic_dir: PathBuf,
}

/// The two brokers' specs: primary and backup, each with its own Titanic directory.
fn pair_specs(dir: &TempDir, hb: Duration) -> (Spec, Spec) {
    let a_state = dir.ipc("a.state");
    let b_state = dir.ipc("b.state");
    let a = Spec {
        role: "primary",
        frontend: dead_endpoint(),
        ha_bind: a_state.clone(),
        ha_peer: b_state.clone(),
        ha_heartbeat: hb,
        titanic_dir: dir.0.join("a-titanic"),
    };
    let b = Spec {
        role: "backup",
        frontend: dead_endpoint(),
        ha_bind: b_state,
        ha_peer: a_state,
        ha_heartbeat: hb,
        titanic_dir: dir.0.join("b-titanic"),
    };
    (a, b)
}

/// A broker process with its stderr kept; SIGKILLed when dropped.
struct Node {
    spec: Spec,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    metrics: String,
}

impl Node {
    /// Spawns the broker with its embedded Titanic; does not wait for it.
    fn spawn(spec: &Spec) -> Self {
        let mut child = Command::new(BIN)
            .args(["--bind", &spec.frontend])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .arg("--titanic-data-dir")
            .arg(&spec.titanic_dir)
            .args(["--heartbeat", &format!("{}ms", WORKER_HB.as_millis())])
            .args(["--ha-role", spec.role])
            .args(["--ha-bind", &spec.ha_bind, "--ha-peer", &spec.ha_peer])
            .args([
                "--ha-heartbeat",
                &format!("{}ms", spec.ha_heartbeat.as_millis()),
            ])
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("DOMO_CONFIG")
            .env_remove("STATE_DIRECTORY")
            .env_remove("DOMO_TITANIC__DATA_DIR")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            spec: spec.clone(),
            child,
            lines,
            metrics: String::new(),
        }
    }

    /// Waits until the broker listens (metrics address known). A broker that exits first
    /// (its TCP port still held by the process just killed) is started again.
    fn ready(mut self) -> Self {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(line) = self.find("Metrics listening") {
                let at = line.find("http://").unwrap() + "http://".len();
                self.metrics = line[at..].split('/').next().unwrap().to_string();
                self.wait_line("Broker listening");
                return self;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    Instant::now() < deadline,
                    "broker exits: {status}\n{}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(100));
                self = Self::spawn(&self.spec);
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "broker not listening:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn start(spec: &Spec) -> Self {
        Self::spawn(spec).ready()
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn find(&self, needle: &str) -> Option<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
    }

    fn wait_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.find(needle) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The `ha:` line of `/readyz` as `key=value` pairs.
    fn readyz(&self) -> Vec<(String, String)> {
        let (_, body) = http_get(&self.metrics, "/readyz");
        let line = body
            .lines()
            .find(|l| l.starts_with("ha: "))
            .unwrap_or_else(|| panic!("no ha line in /readyz: {body:?}"));
        line[4..]
            .split(' ')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn state(&self) -> String {
        self.readyz()
            .into_iter()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v)
            .unwrap()
    }

    fn wait_state(&self, state: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.state();
            if now == state {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} is {now}, not {state}:\n{}",
                self.spec.role,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn metric(&self, series: &str) -> Option<f64> {
        let (_, text) = http_get(&self.metrics, "/metrics");
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// Client votes this broker has won (takeovers by a client request), 0 if none yet.
    fn failovers(&self) -> f64 {
        self.metric(&format!(
            "domo_ha_failovers_total{{role=\"{}\"}}",
            self.spec.role
        ))
        .unwrap_or(0.0)
    }

    /// Requests this broker's Titanic holds without a reply.
    fn titanic_pending(&self) -> Option<f64> {
        self.metric("domo_titanic_requests{state=\"pending\"}")
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits for the process to exit on its own.
    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {within:?}:\n{}",
                self.spec.role,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Both brokers' logs, for failure messages; `earlier` is the log of a killed incarnation.
fn logs(a: &Node, b: &Node, earlier: &str) -> String {
    format!(
        "A (earlier run):\n{earlier}\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    )
}

/// Exactly one of the two is active and the other passive.
fn wait_one_active(a: &Node, b: &Node, within: Duration) -> (String, String) {
    let deadline = Instant::now() + within;
    loop {
        let states = (a.state(), b.state());
        if matches!(
            (states.0.as_str(), states.1.as_str()),
            ("active", "passive") | ("passive", "active")
        ) {
            return states;
        }
        assert!(
            Instant::now() < deadline,
            "pair never settled with one active: {states:?}\n{}",
            logs(a, b, "")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client of one broker only, no retries, no `mmi.service` check after a timeout.
fn single_client(endpoint: &str, timeout: Duration) -> Client {
    let mut options = ClientOptions::new([endpoint.to_string()])
        .timeout(timeout)
        .retries(0)
        .pool_size(1);
    options.check_service = false;
    Client::connect(options).unwrap()
}

/// `titanic.reply id` at one broker, on a fresh connection (a passive broker drops it: a
/// timeout).
async fn reply_at(endpoint: &str, id: &str, timeout: Duration) -> Result<TitanicReply, Error> {
    let client = single_client(endpoint, timeout);
    let reply = client.titanic_reply(id).await;
    client.close().await;
    reply
}

/// Asks `titanic.reply id` at `endpoint` until the broker answers at all: the first
/// answered request after the peer's expiry is the client vote that makes it active.
async fn vote_with_reply(endpoint: &str, id: &str, within: Duration) -> TitanicReply {
    let deadline = Instant::now() + within;
    loop {
        match reply_at(endpoint, id, Duration::from_millis(300)).await {
            Ok(reply) => return reply,
            Err(e) => assert!(
                Instant::now() < deadline,
                "{endpoint} never answered titanic.reply within {within:?}: {e}"
            ),
        }
    }
}

/// A worker for [`SERVICE`] registered with both brokers; records every request body it
/// serves and replies [`REPLY_TAG`] then the body.
fn pair_worker(a: &Spec, b: &Spec, served: Arc<Mutex<Vec<Vec<Bytes>>>>) -> JoinHandle<()> {
    let options = WorkerOptions::pair(a.frontend.clone(), b.frontend.clone()).heartbeat(
        domo_mdp::Heartbeat {
            interval: WORKER_HB,
            liveness: 3,
        },
    );
    let worker = Worker::connect(SERVICE, options).unwrap();
    tokio::spawn(async move {
        worker
            .serve(
                move |body: Vec<Bytes>| {
                    served.lock().unwrap().push(body.clone());
                    let mut reply = vec![Bytes::from_static(REPLY_TAG.as_bytes())];
                    reply.extend(body);
                    async move { Ok::<_, std::convert::Infallible>(reply) }
                },
                std::future::pending(),
            )
            .await;
    })
}

// === Test ===

/// A Titanic request acknowledged by the primary lives on the primary's disk only: after a
/// kill -9 and a takeover the backup does not know it; the restarted (passive) primary's
/// dispatcher holds it without delivering it or voting; once the backup is stopped and a
/// client votes the primary active, it is delivered with its original body and its reply is
/// served by the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn titanic_request_stays_on_its_broker_and_goes_out_after_failback() {
    let started = Instant::now();
    let hb = Duration::from_millis(200);
    let expiry = hb * 2;
    let dir = TempDir::new("pair-titanic");
    let (sa, sb) = pair_specs(&dir, hb);

    // 1. The pair: A active, B passive.
    let mut a = Node::start(&sa);
    let mut b = Node::start(&sb);
    let states = wait_one_active(&a, &b, Duration::from_secs(10));
    assert_eq!(
        (states.0.as_str(), states.1.as_str()),
        ("active", "passive"),
        "the primary is active first\n{}",
        logs(&a, &b, "")
    );

    // 2. With no worker for the service, a client of A alone stores a request: 200 + id.
    let client = single_client(&sa.frontend, Duration::from_secs(2));
    let t = Instant::now() + Duration::from_secs(10);
    while !client
        .service_available("titanic.request")
        .await
        .is_ok_and(|up| up)
    {
        assert!(
            Instant::now() < t,
            "titanic.request never registered with A\n{}",
            logs(&a, &b, "")
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = vec![
        Bytes::from_static(b"durable"),
        Bytes::from_static(b"payload 42"),
    ];
    let id = client
        .submit(SERVICE, body.clone())
        .await
        .unwrap_or_else(|e| panic!("titanic.request at A: {e}\n{}", logs(&a, &b, "")));
    assert_eq!(id.len(), 32, "a 32-hex-digit id: {id:?}");
    assert_eq!(
        client.titanic_reply(&id).await.unwrap(),
        TitanicReply::Pending,
        "no worker yet: titanic.reply at A says 300\n{}",
        logs(&a, &b, "")
    );
    client.close().await;
    eprintln!(
        "step 2 done at {:?}: request {id} stored by A",
        started.elapsed()
    );

    // 3. kill -9 A; a client request to B after the peer expiry makes B active; B never
    // stored the request.
    a.kill9();
    let killed_log = a.log();
    let killed = Instant::now();
    tokio::time::sleep(expiry + Duration::from_millis(100)).await;
    let at_b = vote_with_reply(&sb.frontend, &id, Duration::from_secs(10)).await;
    eprintln!("step 3: B answered {:?} after the kill", killed.elapsed());
    assert_eq!(
        at_b,
        TitanicReply::Unknown,
        "B's Titanic never stored the request: 400\n{}",
        logs(&a, &b, &killed_log)
    );
    assert_eq!(b.state(), "active", "{}", logs(&a, &b, &killed_log));
    assert_eq!(b.failovers(), 1.0, "B took over by one client vote");

    // 4. A restarts on the same endpoint and data directory: passive, the request still
    // pending on its disk. A worker registered with both gets nothing, and A stays passive.
    a = Node::start(&sa);
    a.wait_state("passive", Duration::from_secs(10));
    let t = Instant::now() + Duration::from_secs(10);
    while a.titanic_pending() != Some(1.0) {
        assert!(
            Instant::now() < t,
            "A's Titanic does not hold the request after its restart: {:?}\n{}",
            a.titanic_pending(),
            logs(&a, &b, &killed_log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b.titanic_pending(), Some(0.0), "B's Titanic holds nothing");
    let served = Arc::new(Mutex::new(Vec::new()));
    let worker = pair_worker(&sa, &sb, served.clone());
    let idle = format!("domo_workers{{service=\"{SERVICE}\",state=\"idle\"}}");
    let t = Instant::now() + Duration::from_secs(10);
    while a.metric(&idle) != Some(1.0) || b.metric(&idle) != Some(1.0) {
        assert!(
            Instant::now() < t,
            "worker not registered with both: A {:?}, B {:?}\n{}",
            a.metric(&idle),
            b.metric(&idle),
            logs(&a, &b, &killed_log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert!(
            served.lock().unwrap().is_empty(),
            "the worker got a request while A is passive: {:?}\n{}",
            served.lock().unwrap(),
            logs(&a, &b, &killed_log)
        );
        assert_eq!(
            (a.state().as_str(), b.state().as_str()),
            ("passive", "active"),
            "no fail-back while B is up\n{}",
            logs(&a, &b, &killed_log)
        );
        assert_eq!(
            a.failovers(),
            0.0,
            "A's own Titanic voted A active\n{}",
            logs(&a, &b, &killed_log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.titanic_pending(), Some(1.0), "still pending on A");
    eprintln!("step 4 done at {:?}", started.elapsed());

    // 5. Manual fail-back: B drains and exits on SIGTERM.
    b.signal("TERM");
    let status = b.wait_exit(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(0),
        "B's clean exit\n{}",
        logs(&a, &b, &killed_log)
    );
    let b_gone = Instant::now();
    // With its peer gone and no client asking, A stays passive: the request its Titanic
    // holds does not go out, so it casts no vote.
    let until = b_gone + expiry * 3;
    while Instant::now() < until {
        assert_eq!(
            a.state(),
            "passive",
            "A turned active without a client vote\n{}",
            logs(&a, &b, &killed_log)
        );
        assert!(
            served.lock().unwrap().is_empty(),
            "delivered while A is passive\n{}",
            logs(&a, &b, &killed_log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.failovers(), 0.0, "no vote from A's own Titanic");
    // A client request to A is the vote.
    let first = vote_with_reply(&sa.frontend, &id, Duration::from_secs(10)).await;
    let voted = Instant::now();
    assert!(
        matches!(first, TitanicReply::Pending | TitanicReply::Done(_)),
        "A still holds the request after the fail-back: {first:?}\n{}",
        logs(&a, &b, &killed_log)
    );
    assert_eq!(a.state(), "active", "{}", logs(&a, &b, &killed_log));
    assert_eq!(a.failovers(), 1.0, "A took over by the client's vote");
    // A's dispatcher delivers the stored request; its reply is stored and served.
    let client = single_client(&sa.frontend, Duration::from_secs(2));
    let deadline = voted + Duration::from_secs(10);
    let reply = loop {
        match client.titanic_reply(&id).await {
            Ok(TitanicReply::Done(reply)) => break reply,
            Ok(TitanicReply::Pending) => {}
            other => panic!(
                "titanic.reply at A: {other:?}\n{}",
                logs(&a, &b, &killed_log)
            ),
        }
        assert!(
            Instant::now() < deadline,
            "not delivered within 10 s of the fail-back (served {:?})\n{}",
            served.lock().unwrap(),
            logs(&a, &b, &killed_log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "step 5: reply stored {:?} after the vote, at {:?}",
        voted.elapsed(),
        started.elapsed()
    );
    let mut expected = vec![Bytes::from_static(REPLY_TAG.as_bytes())];
    expected.extend(body.iter().cloned());
    assert_eq!(reply, expected, "the worker's reply, via A's Titanic");
    let served_now = served.lock().unwrap().clone();
    assert!(
        !served_now.is_empty() && served_now.iter().all(|b| *b == body),
        "the worker served the original body at least once: {served_now:?}"
    );
    eprintln!("worker served the request {} time(s)", served_now.len());
    client
        .titanic_close(&id)
        .await
        .unwrap_or_else(|e| panic!("titanic.close at A: {e}\n{}", logs(&a, &b, &killed_log)));
    assert_eq!(
        client.titanic_reply(&id).await.unwrap(),
        TitanicReply::Unknown,
        "closed: titanic.reply says 400"
    );
    client.close().await;
    worker.abort();
    eprintln!("total {:?}", started.elapsed());
}
