//! Test harness shared by the broker, SDK and CLI tests (included with `#[path]`): an
//! in-process broker on an ephemeral port, the `domo-broker` binary as a child process, and MDP
//! peers written from RFC 7 on plain libzmq sockets (no domo code on the peer side).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use domo_broker::shell::{self, ShellConfig};
use domo_broker::BrokerConfig;
use tokio::sync::oneshot;

pub const MDPC01: &[u8] = b"MDPC01";
pub const MDPW01: &[u8] = b"MDPW01";
pub const READY: u8 = 1;
pub const REQUEST: u8 = 2;
pub const REPLY: u8 = 3;
pub const HEARTBEAT: u8 = 4;
pub const DISCONNECT: u8 = 5;
pub const TIMEOUT_MS: i32 = 10_000;

pub type Msg = Vec<Vec<u8>>;

/// A broker running in this process; stopped when dropped.
pub struct TestBroker {
    pub endpoint: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestBroker {
    pub async fn start(core: BrokerConfig) -> Self {
        let config = ShellConfig {
            binds: vec!["tcp://127.0.0.1:0".into()],
            core,
            ..ShellConfig::default()
        };
        let bound = shell::bind(config).await.unwrap();
        let endpoint = bound.endpoints()[0].to_string();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            bound
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Self {
            endpoint,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Heartbeat settings short enough for expiry tests.
pub fn fast_heartbeat() -> BrokerConfig {
    BrokerConfig {
        heartbeat: domo_mdp::Heartbeat {
            interval: Duration::from_millis(100),
            liveness: 3,
        },
        ..BrokerConfig::default()
    }
}

pub fn zsocket(ctx: &zmq::Context, kind: zmq::SocketType) -> zmq::Socket {
    let s = ctx.socket(kind).unwrap();
    s.set_rcvtimeo(TIMEOUT_MS).unwrap();
    s.set_sndtimeo(TIMEOUT_MS).unwrap();
    s.set_linger(0).unwrap();
    s
}

/// A synchronous MDP client on a libzmq REQ socket, as in the zguide's `mdcliapi`.
pub struct ReqClient {
    _ctx: zmq::Context,
    socket: zmq::Socket,
}

impl ReqClient {
    pub fn connect(endpoint: &str) -> Self {
        let ctx = zmq::Context::new();
        let socket = zsocket(&ctx, zmq::REQ);
        socket.connect(endpoint).unwrap();
        Self { _ctx: ctx, socket }
    }

    /// Sends `[MDPC01][service][body...]`, returns the reply body after checking the header
    /// and service frames.
    pub fn request(&self, service: &str, body: &[&[u8]]) -> Msg {
        let mut msg: Msg = vec![MDPC01.to_vec(), service.as_bytes().to_vec()];
        msg.extend(body.iter().map(|f| f.to_vec()));
        self.socket.send_multipart(msg, 0).unwrap();
        let reply = self.socket.recv_multipart(0).expect("no reply in time");
        assert_eq!(reply[0], MDPC01, "reply header");
        assert_eq!(reply[1], service.as_bytes(), "reply service frame");
        reply[2..].to_vec()
    }

    pub fn set_timeout(&self, ms: i32) {
        self.socket.set_rcvtimeo(ms).unwrap();
    }

    /// Sends a request and waits up to the socket timeout; `None` if nothing came.
    pub fn try_request(&self, service: &str, body: &[&[u8]]) -> Option<Msg> {
        let mut msg: Msg = vec![MDPC01.to_vec(), service.as_bytes().to_vec()];
        msg.extend(body.iter().map(|f| f.to_vec()));
        self.socket.send_multipart(msg, 0).unwrap();
        self.socket.recv_multipart(0).ok().map(|r| r[2..].to_vec())
    }
}

/// What a test worker does with a request body.
pub type Handler = Box<dyn Fn(Msg) -> Option<Msg> + Send>;

/// An MDP worker on a libzmq DEALER socket, written from RFC 7: READY, then REQUEST/REPLY,
/// heartbeats every `heartbeat`, stops on DISCONNECT or when told to.
pub struct ZWorker {
    stop: Arc<AtomicBool>,
    served: Arc<std::sync::atomic::AtomicUsize>,
    thread: Option<JoinHandle<WorkerLog>>,
}

/// What a worker saw.
#[derive(Debug, Default)]
pub struct WorkerLog {
    pub requests: usize,
    pub disconnected: bool,
    pub heartbeats: usize,
}

impl ZWorker {
    /// Starts a worker; `handler` returns `None` to swallow a request (never reply).
    pub fn start(endpoint: &str, service: &str, heartbeat: Duration, handler: Handler) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = served.clone();
        let (ep, svc, flag) = (endpoint.to_string(), service.to_string(), stop.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = thread::spawn(move || {
            let ctx = zmq::Context::new();
            let s = zsocket(&ctx, zmq::DEALER);
            s.connect(&ep).unwrap();
            s.send_multipart([vec![], MDPW01.to_vec(), vec![READY], svc.into_bytes()], 0)
                .unwrap();
            ready_tx.send(()).unwrap();
            let mut log = WorkerLog::default();
            let mut next_hb = Instant::now() + heartbeat;
            while !flag.load(Ordering::Relaxed) {
                let wait = next_hb
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(50) as i64;
                if s.poll(zmq::POLLIN, wait).unwrap() > 0 {
                    let msg = s.recv_multipart(0).unwrap();
                    assert_eq!(
                        &msg[..2],
                        &[vec![], MDPW01.to_vec()],
                        "worker frames {msg:?}"
                    );
                    match msg[2][0] {
                        REQUEST => {
                            log.requests += 1;
                            let client = msg[3].clone();
                            assert!(msg[4].is_empty());
                            if let Some(body) = handler(msg[5..].to_vec()) {
                                let mut reply =
                                    vec![vec![], MDPW01.to_vec(), vec![REPLY], client, vec![]];
                                reply.extend(body);
                                s.send_multipart(reply, 0).unwrap();
                            }
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        HEARTBEAT => log.heartbeats += 1,
                        DISCONNECT => {
                            log.disconnected = true;
                            break;
                        }
                        other => panic!("unexpected command {other}"),
                    }
                }
                if Instant::now() >= next_hb {
                    s.send_multipart([vec![], MDPW01.to_vec(), vec![HEARTBEAT]], 0)
                        .unwrap();
                    next_hb += heartbeat;
                }
            }
            log
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Self {
            stop,
            served,
            thread: Some(thread),
        }
    }

    /// Requests handled so far.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }

    pub fn echo(endpoint: &str, service: &str, heartbeat: Duration) -> Self {
        Self::start(endpoint, service, heartbeat, Box::new(Some))
    }

    /// Stops the worker (its socket closes without DISCONNECT) and returns its log.
    pub fn stop(mut self) -> WorkerLog {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for ZWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs blocking libzmq code off the async runtime.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Asks `mmi.service` until it says `expected` or the time runs out.
pub fn wait_for_service(endpoint: &str, service: &str, expected: &[u8]) {
    let client = ReqClient::connect(endpoint);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = client.request("mmi.service", &[service.as_bytes()]);
        if reply == vec![expected.to_vec()] {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "mmi.service {service} never said {expected:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// An endpoint on 127.0.0.1 where nothing listens (the port was free a moment ago).
pub fn dead_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("tcp://127.0.0.1:{}", l.local_addr().unwrap().port())
}

/// The `domo-broker` binary next to this test's target directory, built if missing.
pub fn broker_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let bin = profile_dir.join("domo-broker");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "-p", "domo-broker", "--bin", "domo-broker"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(
            cmd.status().unwrap().success(),
            "building domo-broker failed"
        );
    }
    assert!(bin.exists(), "{} missing", bin.display());
    bin
}

/// A `domo-broker` child process, SIGKILLed when dropped.
pub struct BrokerProcess(std::process::Child);

impl BrokerProcess {
    /// Starts the binary on `endpoint` with `args`, waiting until it answers MMI.
    pub fn start(endpoint: &str, args: &[&str]) -> Self {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut child = std::process::Command::new(broker_binary())
                .args(["--bind", endpoint, "--no-titanic"])
                .args(args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            thread::sleep(Duration::from_millis(100));
            // Exit status 1 = bind failed (port not yet free after a kill): try again.
            match child.try_wait().unwrap() {
                None => {
                    wait_for_service(endpoint, "nobody", b"404");
                    return Self(child);
                }
                Some(status) => assert!(Instant::now() < deadline, "broker exits: {status}"),
            }
        }
    }

    /// SIGKILL: the broker dies without a word to anyone.
    pub fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` over HTTP/1.1; returns the status code and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A fresh scratch directory under the system temp dir, removed on drop.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// `domo-{tag}-{pid}-{nanos}-{n}`: unique within and across test processes.
    pub fn new(tag: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("domo-{tag}-{}-{nanos}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// Writes `text` to the file `name` in this directory; returns its path.
    pub fn file(&self, name: &str, text: &str) -> std::path::PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// An `ipc://` endpoint for the socket file `name` in this directory.
    pub fn ipc(&self, name: &str) -> String {
        format!("ipc://{}", self.0.join(name).display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process with its stderr collected line by line (by a thread of its own); killed
/// and reaped when dropped.
pub struct LoggedChild {
    child: std::process::Child,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
}

impl LoggedChild {
    /// Spawns `cmd` with its stderr piped to the collector (stdin and stdout as `cmd` says).
    pub fn spawn(cmd: &mut std::process::Command) -> Self {
        use std::io::BufRead;
        let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stderr so far, one line after another.
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The first stderr line so far containing `needle`.
    pub fn find(&self, needle: &str) -> Option<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
    }

    /// Waits (up to 10 s) for a stderr line containing `needle` and returns it.
    pub fn wait_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.find(needle) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends the signal `name` (`TERM`, `HUP`, `STOP`...) with `kill -NAME pid`.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {}: {status}", self.pid());
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Waits for the process to exit on its own within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process {} still running after {within:?}:\n{}",
                self.pid(),
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, then reaps the process.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `host:port` of the `http://host:port/...` URL in a log line (such as the broker's
/// `Metrics listening` line).
pub fn http_addr(line: &str) -> String {
    let at = line.find("http://").unwrap() + "http://".len();
    line[at..].split('/').next().unwrap().to_string()
}

/// The value of the sample line for exactly `series` in the Prometheus text `metrics`.
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
