//! The Binary Star harness of `pair.rs` and `pair_titanic.rs`: the specs of a primary and a
//! backup on 127.0.0.1, `domo-broker` processes started from them and read through `/readyz`
//! and `/metrics`, an SDK worker registered with both, and a client of one broker only.
//!
//! The state links use `ipc://` endpoints in a scratch directory (no port to race for); the
//! client endpoints are TCP ports found free a moment before, because a restarted broker must
//! come back on the same one.

use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_client::{Client, ClientOptions};
use domo_worker::{Worker, WorkerOptions};
use tokio::task::JoinHandle;

use crate::wait::poll_until;
use crate::{dead_endpoint, http_addr, http_get, sample, LoggedChild, TempDir, DOMO_BROKER};
/// Worker heartbeat of the brokers and the SDK workers.
pub const WORKER_HB: Duration = Duration::from_millis(500);

/// How to start one broker of the pair.
#[derive(Clone)]
pub struct Spec {
    /// `primary` or `backup` (`--ha-role`).
    pub role: &'static str,
    /// The client and worker endpoint (`--bind`).
    pub frontend: String,
    /// This broker's state endpoint (`--ha-bind`).
    pub ha_bind: String,
    /// The peer's state endpoint (`--ha-peer`).
    pub ha_peer: String,
    /// The state heartbeat (`--ha-heartbeat`).
    pub ha_heartbeat: Duration,
    /// This broker's own Titanic store (kept across its restarts); `None`: `--no-titanic`.
    pub titanic_dir: Option<PathBuf>,
    /// More flags (e.g. the `--security-*` and `--ha-peer-key-file` of a CURVE pair).
    pub extra_args: Vec<String>,
}

/// The two brokers' specs, primary and backup, without Titanic.
pub fn pair_specs(dir: &TempDir, hb: Duration) -> (Spec, Spec) {
    let a_state = dir.ipc("a.state");
    let b_state = dir.ipc("b.state");
    let a = Spec {
        role: "primary",
        frontend: dead_endpoint(),
        ha_bind: a_state.clone(),
        ha_peer: b_state.clone(),
        ha_heartbeat: hb,
        titanic_dir: None,
        extra_args: Vec::new(),
    };
    let b = Spec {
        role: "backup",
        frontend: dead_endpoint(),
        ha_bind: b_state,
        ha_peer: a_state,
        ha_heartbeat: hb,
        titanic_dir: None,
        extra_args: Vec::new(),
    };
    (a, b)
}

/// The two brokers' specs, each with its own Titanic directory in `dir`.
pub fn pair_specs_with_titanic(dir: &TempDir, hb: Duration) -> (Spec, Spec) {
    let (mut a, mut b) = pair_specs(dir, hb);
    a.titanic_dir = Some(dir.path().join("a-titanic"));
    b.titanic_dir = Some(dir.path().join("b-titanic"));
    (a, b)
}

/// A broker process of the pair with its stderr kept; SIGKILLed when dropped.
pub struct Node {
    /// How it was started (again, after a kill).
    pub spec: Spec,
    /// The process.
    pub child: LoggedChild,
    /// The metrics listener's `host:port` (known once [`Node::ready`]).
    pub metrics: String,
}

impl Node {
    /// Spawns the broker; does not wait for it.
    pub fn spawn(spec: &Spec) -> Self {
        let mut cmd = Command::new(DOMO_BROKER);
        cmd.args(["--bind", &spec.frontend])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(crate::process::EPHEMERAL_TOPICS);
        match &spec.titanic_dir {
            Some(dir) => cmd.arg("--titanic-data-dir").arg(dir),
            None => cmd.arg("--no-titanic"),
        };
        cmd.args(["--heartbeat", &format!("{}ms", WORKER_HB.as_millis())])
            .args(["--ha-role", spec.role])
            .args(["--ha-bind", &spec.ha_bind, "--ha-peer", &spec.ha_peer])
            .args([
                "--ha-heartbeat",
                &format!("{}ms", spec.ha_heartbeat.as_millis()),
            ])
            .args(&spec.extra_args)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("DOMO_CONFIG")
            .env_remove("STATE_DIRECTORY")
            .env_remove("DOMO_TITANIC__DATA_DIR")
            .stdout(Stdio::null());
        Self {
            spec: spec.clone(),
            child: LoggedChild::spawn(&mut cmd),
            metrics: String::new(),
        }
    }

    /// Waits (up to 15 s) until the broker listens (metrics address known). A broker that
    /// exits first (its TCP port still held by the process just killed) is started again.
    pub fn ready(mut self) -> Self {
        let mut exited = None;
        let line = poll_until(Duration::from_secs(15), || {
            if let Some(line) = self.child.find("Metrics listening") {
                return Some(line);
            }
            if let Some(status) = self.child.try_wait() {
                exited = Some(status);
                std::thread::sleep(Duration::from_millis(100));
                self = Self::spawn(&self.spec);
            }
            None
        })
        .unwrap_or_else(|| {
            panic!(
                "broker not listening (exited before: {exited:?}):\n{}",
                self.log()
            )
        });
        self.metrics = http_addr(&line);
        self.child.wait_line("Broker listening");
        self
    }

    /// [`Node::spawn`], then [`Node::ready`].
    pub fn start(spec: &Spec) -> Self {
        Self::spawn(spec).ready()
    }

    /// The broker's stderr so far.
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// Waits (up to 10 s) for a log line containing `needle` and returns it.
    pub fn wait_line(&self, needle: &str) -> String {
        self.child.wait_line(needle)
    }

    /// The `ha:` line of `/readyz` as `key=value` pairs, and the status code.
    pub fn readyz(&self) -> (u16, Vec<(String, String)>) {
        let (code, body) = http_get(&self.metrics, "/readyz");
        let line = body
            .lines()
            .find(|l| l.starts_with("ha: "))
            .unwrap_or_else(|| panic!("no ha line in /readyz: {body:?}"));
        let fields = line[4..]
            .split(' ')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (code, fields)
    }

    /// The pair state from `/readyz` (`primary`, `backup`, `active`, `passive`).
    pub fn state(&self) -> String {
        let (_, fields) = self.readyz();
        fields
            .into_iter()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v)
            .unwrap()
    }

    /// Waits until the pair state is `state`.
    pub fn wait_state(&self, state: &str, within: Duration) {
        let mut now = String::new();
        poll_until(within, || {
            now = self.state();
            (now == state).then_some(())
        })
        .unwrap_or_else(|| panic!("{} is {now}, not {state}:\n{}", self.spec.role, self.log()));
    }

    /// The value of `series` in `/metrics`, if there is such a sample.
    pub fn metric(&self, series: &str) -> Option<f64> {
        sample(&http_get(&self.metrics, "/metrics").1, series)
    }

    /// Client votes this broker has won (takeovers by a client request), 0 if none yet.
    pub fn failovers(&self) -> f64 {
        self.metric(&format!(
            "domo_ha_failovers_total{{role=\"{}\"}}",
            self.spec.role
        ))
        .unwrap_or(0.0)
    }

    /// Requests this broker's Titanic holds without a reply.
    pub fn titanic_pending(&self) -> Option<f64> {
        self.metric("domo_titanic_requests{state=\"pending\"}")
    }

    /// Sends the signal `name` (`TERM`, `STOP`, `CONT`...).
    pub fn signal(&self, name: &str) {
        self.child.signal(name);
    }

    /// SIGKILL, then reaps the process.
    pub fn kill9(&mut self) {
        self.child.kill();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        self.child.wait_exit(within)
    }
}

/// Exactly one of the two is active and the other passive, for `hold` in a row.
pub fn wait_one_active(a: &Node, b: &Node, hold: Duration, within: Duration) -> (String, String) {
    let mut since: Option<Instant> = None;
    let mut states = (String::new(), String::new());
    poll_until(within, || {
        states = (a.state(), b.state());
        let settled = matches!(
            (states.0.as_str(), states.1.as_str()),
            ("active", "passive") | ("passive", "active")
        );
        match (settled, since) {
            (true, Some(t)) if t.elapsed() >= hold => return Some(states.clone()),
            (true, None) => since = Some(Instant::now()),
            (false, _) => since = None,
            _ => {}
        }
        None
    })
    .unwrap_or_else(|| {
        panic!(
            "pair never settled with one active: {states:?}\nA:\n{}\nB:\n{}",
            a.log(),
            b.log()
        )
    })
}

/// A worker for `service` registered with both brokers of the pair; `reply` makes each
/// reply from its request body.
pub fn pair_worker(
    a: &Spec,
    b: &Spec,
    service: &'static str,
    reply: impl Fn(Vec<Bytes>) -> Vec<Bytes> + Send + Sync + 'static,
) -> JoinHandle<()> {
    let options = WorkerOptions::pair(a.frontend.clone(), b.frontend.clone()).heartbeat(
        domo_mdp::Heartbeat {
            interval: WORKER_HB,
            liveness: 3,
        },
    );
    let worker = Worker::new(service, options).unwrap();
    tokio::spawn(async move {
        worker
            .serve(
                move |body: Vec<Bytes>| {
                    let reply = reply(body);
                    async move { Ok::<_, std::convert::Infallible>(reply) }
                },
                std::future::pending(),
            )
            .await;
    })
}

/// A client of one broker only, no retries, no `mmi.service` check after a timeout.
pub fn single_client(endpoint: &str, timeout: Duration) -> Client {
    let mut options = ClientOptions::new([endpoint.to_string()])
        .timeout(timeout)
        .retries(0)
        .pool_size(1);
    options.check_service = false;
    Client::new(options).unwrap()
}

/// Does this broker alone answer an `echo` request within `timeout`?
pub async fn answers(endpoint: &str, timeout: Duration) -> bool {
    let client = single_client(endpoint, timeout);
    let reply = client.request("echo", vec![Bytes::from("ping")]).await;
    client.close().await;
    reply.is_ok()
}
