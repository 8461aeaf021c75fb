//! Child processes: the workspace's binaries (built for the tests if need be), a broker
//! process, any process with its stderr collected, and the HTTP and Prometheus bits used to
//! read a broker's metrics listener.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::peers::wait_for_service;
use crate::wait::poll_until;
use domo_mdp::LockExt;

/// A binary of the workspace, to give to `Command::new` as it is.
///
/// Cargo hands integration tests the paths of their own package's binaries only
/// (`CARGO_BIN_EXE_*`). So the first use in a test process runs `cargo build` for the
/// packages of all three, in the running test's own target directory and profile, and the
/// binaries are taken from there: a no-op when they are up to date, and a test never runs a
/// missing or stale binary.
#[derive(Clone, Copy, Debug)]
pub struct Bin {
    name: &'static str,
}

/// The broker, `domo-broker` (package `domo-broker`).
pub const DOMO_BROKER: Bin = Bin {
    name: "domo-broker",
};
/// The command-line tool, `domo` (package `domo-cli`).
pub const DOMO: Bin = Bin { name: "domo" };
/// Standalone Titanic, `domo-titanic` (package `domo-titanic`).
pub const DOMO_TITANIC: Bin = Bin {
    name: "domo-titanic",
};

/// The HTTP gateway standalone, `domo-gateway` (package `domo-gateway`).
pub const DOMO_GATEWAY: Bin = Bin {
    name: "domo-gateway",
};

/// The packages with the binaries above: built together, with one `cargo build`.
const BIN_PACKAGES: [&str; 4] = ["domo-broker", "domo-cli", "domo-titanic", "domo-gateway"];

impl Bin {
    /// The binary's path, built first (once per test process).
    pub fn path(self) -> &'static Path {
        static BUILT: Mutex<Vec<(&str, &Path)>> = Mutex::new(Vec::new());
        let mut built = BUILT.lock_unpoisoned();
        if built.is_empty() {
            let dir = build_binaries();
            for bin in [DOMO_BROKER, DOMO, DOMO_TITANIC, DOMO_GATEWAY] {
                let path = dir.join(bin.name);
                assert!(path.exists(), "{} missing after the build", path.display());
                built.push((bin.name, Box::leak(path.into_boxed_path())));
            }
        }
        built.iter().find(|(name, _)| *name == self.name).unwrap().1
    }
}

impl AsRef<OsStr> for Bin {
    fn as_ref(&self) -> &OsStr {
        self.path().as_os_str()
    }
}

impl AsRef<Path> for Bin {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

/// The example program `name` of `package`, built first (in the running test's target
/// directory and profile, as [`Bin`]).
pub fn example(package: &str, name: &str) -> PathBuf {
    cargo_build(&["-p", package, "--example", name])
        .join("examples")
        .join(name)
}

/// Runs `cargo build` for [`BIN_PACKAGES`] in the target directory and profile of the
/// running test; returns the directory the binaries are in.
fn build_binaries() -> PathBuf {
    let mut args = vec!["--bins"];
    for package in BIN_PACKAGES {
        args.extend(["-p", package]);
    }
    cargo_build(&args)
}

/// `cargo build --quiet --locked ARGS` in the target directory and profile of the running
/// test; returns that profile's directory.
fn cargo_build(args: &[&str]) -> PathBuf {
    // The test runs as <target>/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let target_dir = profile_dir.parent().unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["build", "--quiet", "--locked"])
        .args(args);
    match profile_dir.file_name().and_then(OsStr::to_str) {
        Some("debug") => {}
        Some(profile) => {
            cmd.args(["--profile", profile]);
        }
        None => panic!("no profile in {}", profile_dir.display()),
    }
    let status = cmd.status().unwrap();
    assert!(status.success(), "{cmd:?}: {status}");
    profile_dir
}

/// Flags that put a broker's topic endpoints on ports the system picks, so brokers started
/// side by side do not contend for the default ones (`tcp://127.0.0.1:5557` and `:5558`).
pub const EPHEMERAL_TOPICS: [&str; 4] = [
    "--topics-subscribe",
    "tcp://127.0.0.1:0",
    "--topics-publish",
    "tcp://127.0.0.1:0",
];

/// The `domo-broker` binary ([`DOMO_BROKER`]'s path).
pub fn broker_binary() -> PathBuf {
    DOMO_BROKER.path().to_path_buf()
}

/// A `domo-broker` child process, SIGKILLed when dropped.
pub struct BrokerProcess(Child);

impl BrokerProcess {
    /// Starts the binary on `endpoint` with `args`, waiting until it answers MMI. A broker
    /// that exits at once (its port not yet free after a kill) is started again, for up to
    /// 10 s.
    pub fn start(endpoint: &str, args: &[&str]) -> Self {
        let bin = DOMO_BROKER.path();
        let mut exited = None;
        let child = poll_until(Duration::from_secs(10), || {
            let mut child = Command::new(bin)
                .args(["--bind", endpoint, "--no-titanic", "--no-topics"])
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            thread::sleep(Duration::from_millis(100));
            // Exit status 1 = bind failed: try again.
            exited = child.try_wait().unwrap();
            exited.is_none().then_some(child)
        })
        .unwrap_or_else(|| panic!("broker exits: {exited:?}"));
        wait_for_service(endpoint, "nobody", b"404");
        Self(child)
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

/// The endpoint in the broker's `Broker listening` log line, text or JSON.
pub fn listening_endpoint(line: &str) -> String {
    let tail = match line.split_once("endpoint=") {
        Some((_, tail)) => tail,
        None => line.split_once("\"endpoint\":\"").unwrap().1,
    };
    tail.split([' ', '"']).next().unwrap().to_string()
}

/// A `domo-broker` child process bound to `tcp://127.0.0.1:0` with its metrics listener on
/// `127.0.0.1:0`, its log collected; killed on drop.
pub struct LoggedBroker {
    /// The process and its log.
    pub child: LoggedChild,
    /// Its endpoint, as bound.
    pub endpoint: String,
    /// Its metrics listener, `host:port`.
    pub metrics: String,
}

impl LoggedBroker {
    /// Starts the broker with `args` after the bind and metrics flags, and waits until it
    /// listens.
    pub fn start<S: AsRef<OsStr>>(args: &[S]) -> Self {
        let mut cmd = Command::new(DOMO_BROKER);
        cmd.args([
            "--bind",
            "tcp://127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .args(EPHEMERAL_TOPICS)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("DOMO_CONFIG")
        .stdout(Stdio::null());
        let child = LoggedChild::spawn(&mut cmd);
        let endpoint = listening_endpoint(&child.wait_line("Broker listening"));
        let metrics = http_addr(&child.wait_line("Metrics listening"));
        Self {
            child,
            endpoint,
            metrics,
        }
    }

    /// Its topic endpoints, subscribers' and publishers', as bound (from the `Topics
    /// listening` log line; the broker runs with [`EPHEMERAL_TOPICS`]).
    pub fn topics(&self) -> (String, String) {
        let line = self.child.wait_line("Topics listening");
        let field = |name: &str| {
            let tail = match line.split_once(&format!("{name}=")) {
                Some((_, tail)) => tail,
                None => line.split_once(&format!("\"{name}\":\"")).unwrap().1,
            };
            tail.split([' ', '"']).next().unwrap().to_string()
        };
        (field("subscribe"), field("publish"))
    }

    /// The value of `series` now.
    pub fn metric(&self, series: &str) -> Option<f64> {
        sample(&http_get(&self.metrics, "/metrics").1, series)
    }

    /// Waits (up to 10 s) until `series` has `value`.
    pub fn wait_metric(&self, series: &str, value: f64) {
        self.wait_metric_until(series, &format!("{value}"), |v| v == value);
    }

    /// Waits (up to 10 s) until `series` is at least `value` (a counter that may go on
    /// growing).
    pub fn wait_metric_at_least(&self, series: &str, value: f64) {
        self.wait_metric_until(series, &format!(">= {value}"), |v| v >= value);
    }

    fn wait_metric_until(&self, series: &str, wanted: &str, ok: impl Fn(f64) -> bool) {
        let mut last = None;
        poll_until(Duration::from_secs(10), || {
            last = self.metric(series);
            last.is_some_and(&ok).then_some(())
        })
        .unwrap_or_else(|| panic!("{series} is {last:?}, never {wanted}"));
    }
}

/// A child process with its stderr collected line by line (by a thread of its own); killed
/// and reaped when dropped.
pub struct LoggedChild {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl LoggedChild {
    /// Spawns `cmd` with its stderr piped to the collector (stdin and stdout as `cmd` says).
    pub fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, lines }
    }

    /// The process id.
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
        poll_until(Duration::from_secs(10), || self.find(needle))
            .unwrap_or_else(|| panic!("no log line with {needle:?}:\n{}", self.log()))
    }

    /// Sends the signal `name` (`TERM`, `HUP`, `STOP`...) with `kill -NAME pid`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {}: {status}", self.pid());
    }

    /// The exit status if the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Waits for the process to exit on its own within `within`.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        poll_until(within, || self.try_wait()).unwrap_or_else(|| {
            panic!(
                "process {} still running after {within:?}:\n{}",
                self.pid(),
                self.log()
            )
        })
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

/// `GET path` over HTTP/1.1; returns the status code and the body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
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
