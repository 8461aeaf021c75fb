//! The broker `domo bench` runs when no `--broker` is given: the `domo-broker` binary as a
//! child process on a free 127.0.0.1 port, killed (by its pid) when the guard is dropped, and
//! the CPU time of a process or thread from `/proc`.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_mdp::{client, ServiceName};
use domo_zmtp::{Dealer, Options};

/// How long the broker has to answer MMI after it was started.
const READY_WITHIN: Duration = Duration::from_secs(10);

/// Stderr lines of the broker kept for an error message.
const KEPT_LINES: usize = 20;

/// The broker binary's file name on this platform.
fn binary_name() -> String {
    format!("domo-broker{}", std::env::consts::EXE_SUFFIX)
}

/// The broker binary to run: `explicit` (`--broker-bin` / `DOMO_BROKER_BIN`) as given, else
/// `domo-broker` in `exe_dir` (the directory of the running `domo`), else the first
/// `domo-broker` in the directories of `path` (`PATH`).
pub(super) fn find_binary(
    explicit: Option<&Path>,
    exe_dir: Option<&Path>,
    path: Option<&OsStr>,
) -> Result<PathBuf, String> {
    if let Some(bin) = explicit {
        return Ok(bin.to_path_buf());
    }
    let name = binary_name();
    exe_dir
        .map(|dir| dir.join(&name))
        .into_iter()
        .chain(
            path.into_iter()
                .flat_map(std::env::split_paths)
                .map(|dir| dir.join(&name)),
        )
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            let beside = exe_dir.map_or_else(String::new, |d| format!(" in {} nor", d.display()));
            format!(
                "no {name}{beside} on PATH: give its path with --broker-bin PATH (or \
                 DOMO_BROKER_BIN), or a running broker with --broker EP"
            )
        })
}

/// [`find_binary`] for this process: its own directory and `PATH`.
pub(super) fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().ok();
    let exe_dir = exe.as_deref().and_then(Path::parent);
    find_binary(explicit, exe_dir, std::env::var_os("PATH").as_deref())
}

/// A `domo-broker` child process; killed and reaped when dropped.
pub(super) struct LocalBroker {
    child: Child,
    endpoint: String,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// A directory the broker uses (Titanic's store), removed after the broker is killed.
    scratch: Option<tempfile::TempDir>,
    /// Another one (the topics' store).
    scratch_also: Option<tempfile::TempDir>,
}

/// Why a start failed: worth another port, or not.
enum Failed {
    /// The broker exited (most likely the port was taken in the meantime).
    Exited(String),
    /// Anything else.
    Other(String),
}

impl LocalBroker {
    /// Starts `bin` on a free port with `heartbeat` and waits until it answers `mmi.service`.
    /// A port found free can be taken before the broker binds it, so a broker that exits
    /// at once is tried again on another port, three times in all.
    /// `extra` are more flags (the `--security-*` of a CURVE run); `transport` the options
    /// of the connection that asks it.
    pub(super) async fn start(
        bin: &Path,
        heartbeat: Duration,
        extra: &[String],
        transport: Options,
    ) -> Result<Self, String> {
        let mut last = String::new();
        for _ in 0..3 {
            let endpoint = free_endpoint()?;
            let mut broker = Self::spawn(bin, &endpoint, heartbeat, extra)?;
            match broker.wait_ready(transport.clone()).await {
                Ok(()) => return Ok(broker),
                Err(Failed::Exited(why)) => last = why,
                Err(Failed::Other(why)) => return Err(why),
            }
        }
        Err(last)
    }

    fn spawn(
        bin: &Path,
        endpoint: &str,
        heartbeat: Duration,
        extra: &[String],
    ) -> Result<Self, String> {
        let mut cmd = Command::new(bin);
        cmd.args(["--bind", endpoint])
            .args([
                "--heartbeat",
                &format!("{}ms", heartbeat.as_millis().max(1)),
            ])
            // No metrics listener and, unless topic endpoints are given (the topics phase), no
            // topics (nothing to collide with on 9464, 5557 and 5558) and, unless a Titanic
            // directory is given (the titanic phase), no Titanic workers (nor their
            // heartbeats) in the figures: the broker alone, as before.
            .args(["--metrics-listen", "off"])
            .args((!extra.iter().any(|a| a == "--topics-subscribe")).then_some("--no-topics"))
            .args((!extra.iter().any(|a| a == "--titanic-data-dir")).then_some("--no-titanic"))
            .args(["--log-level", "warn"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Built-in defaults plus the flags above: no configuration file, pair settings or log
        // filter from this environment (DOMO_CONFIG, DOMO_HA__*, RUST_LOG...).
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("DOMO_") {
                cmd.env_remove(key);
            }
        }
        cmd.env_remove("RUST_LOG");
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(pipe) = child.stderr.take() {
            let sink = stderr.clone();
            // Drained all along, so the broker never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut lines) = sink.lock() {
                        if lines.len() == KEPT_LINES {
                            lines.pop_front();
                        }
                        lines.push_back(line);
                    }
                }
            });
        }
        Ok(Self {
            child,
            endpoint: endpoint.to_string(),
            stderr,
            scratch: None,
            scratch_also: None,
        })
    }

    /// Keeps `dir` until the broker is gone (killed first, then the directory removed).
    pub(super) fn keep(&mut self, dir: Option<tempfile::TempDir>) {
        self.scratch = dir;
    }

    /// Keeps a second directory the same way (the topics' store).
    pub(super) fn keep_also(&mut self, dir: Option<tempfile::TempDir>) {
        self.scratch_also = dir;
    }

    /// Asks `mmi.service` for a service nobody offers until the answer is 404.
    async fn wait_ready(&mut self, transport: Options) -> Result<(), Failed> {
        let deadline = Instant::now() + READY_WITHIN;
        let dealer = Dealer::connect(&self.endpoint, transport)
            .map_err(|e| Failed::Other(format!("cannot connect to {}: {e}", self.endpoint)))?;
        let ask = client::encode_request(
            &ServiceName::from_static("mmi.service"),
            [Bytes::from_static(b"domo.bench.nobody")],
        );
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Give the stderr reader a moment to catch the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(Failed::Exited(format!(
                    "the broker exited ({status}){}",
                    self.stderr_tail()
                )));
            }
            if Instant::now() >= deadline {
                return Err(Failed::Other(format!(
                    "the broker (pid {}) did not answer mmi.service on {} within {READY_WITHIN:?}{}",
                    self.pid(),
                    self.endpoint,
                    self.stderr_tail()
                )));
            }
            let _ = dealer.try_send(ask.clone());
            let reply = tokio::time::timeout(Duration::from_millis(200), dealer.recv()).await;
            if let Ok(Ok(reply)) = reply {
                if reply.last().is_some_and(|f| &f[..] == b"404") {
                    return Ok(());
                }
            }
        }
    }

    /// `: ` and the broker's last stderr lines, or nothing if it wrote none.
    fn stderr_tail(&self) -> String {
        let lines = self
            .stderr
            .lock()
            .map(|l| Vec::from(l.clone()))
            .unwrap_or_default();
        if lines.is_empty() {
            String::new()
        } else {
            format!(": {}", lines.join(" / "))
        }
    }

    pub(super) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tcp://127.0.0.1:PORT` with a port that was free a moment ago.
pub(super) fn free_endpoint() -> Result<String, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("cannot find a free port: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("cannot find a free port: {e}"))?
        .port();
    Ok(format!("tcp://127.0.0.1:{port}"))
}

/// The CPU time (user + system) of one process or thread, read from its `/proc` stat file;
/// `None` where there is no `/proc` (or the process is gone).
#[derive(Debug, Clone)]
pub(super) struct CpuClock(PathBuf);

impl CpuClock {
    /// The process `pid` (e.g. the broker child).
    pub(super) fn process(pid: u32) -> Self {
        Self(PathBuf::from(format!("/proc/{pid}/stat")))
    }

    /// The calling thread, if `/proc/thread-self` says which it is.
    pub(super) fn this_thread() -> Option<Self> {
        // /proc/thread-self links to <pid>/task/<tid>.
        let link = std::fs::read_link("/proc/thread-self").ok()?;
        let tid = link.file_name()?.to_string_lossy().into_owned();
        Some(Self(PathBuf::from(format!("/proc/self/task/{tid}/stat"))))
    }

    /// CPU seconds so far.
    pub(super) fn seconds(&self) -> Option<f64> {
        cpu_seconds(&std::fs::read_to_string(&self.0).ok()?)
    }
}

/// User + system time, in seconds, from the text of a `/proc/.../stat` file.
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // In clock ticks: USER_HZ, which is 100 on Linux.
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "domo-cli-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn dir(&self, name: &str) -> PathBuf {
            let dir = self.0.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            dir
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_binary_is_the_flag_then_beside_domo_then_on_path() {
        let scratch = Scratch::new("find");
        let (exe_dir, on_path, empty) =
            (scratch.dir("exe"), scratch.dir("bin"), scratch.dir("empty"));
        let name = binary_name();
        std::fs::write(exe_dir.join(&name), "").unwrap();
        std::fs::write(on_path.join(&name), "").unwrap();
        let path = std::env::join_paths([&empty, &on_path]).unwrap();

        let explicit = Path::new("/some/where/domo-broker");
        assert_eq!(
            find_binary(Some(explicit), Some(&exe_dir), Some(&path)),
            Ok(explicit.to_path_buf())
        );
        assert_eq!(
            find_binary(None, Some(&exe_dir), Some(&path)),
            Ok(exe_dir.join(&name))
        );
        assert_eq!(
            find_binary(None, Some(&empty), Some(&path)),
            Ok(on_path.join(&name))
        );
        let error = find_binary(None, Some(&empty), Some(empty.as_os_str())).unwrap_err();
        assert!(error.contains("--broker-bin"), "{error}");
        assert!(find_binary(None, None, None).is_err());
    }

    #[test]
    fn cpu_time_is_user_plus_system_ticks() {
        // pid (comm) state ppid ... with utime 150 and stime 50 as fields 14 and 15.
        let stat = "42 (domo broker) S 1 42 42 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 3 0";
        assert_eq!(cpu_seconds(stat), Some(2.0));
        assert_eq!(cpu_seconds("garbage"), None);
        let me = CpuClock::process(std::process::id());
        if Path::new("/proc/self/stat").exists() {
            assert!(me.seconds().is_some());
        }
    }
}
