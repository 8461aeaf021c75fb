//! The embedded Titanic on a full disk, as a process test: its data directory is a small
//! tmpfs. Filling it makes `titanic.request` answer 500 and `/readyz` 503; freeing space
//! brings both back without a restart, and every request acknowledged before is still
//! answered.
//!
//! Mounting a tmpfs needs root (CI runs the tests as root); elsewhere the test says so on
//! stderr and passes without checking anything.
#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use domo_tests::*;

/// A tmpfs of a fixed size mounted on a directory; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it) on `dir`; `None` if that is
    /// not allowed here.
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        matches!(status, Ok(s) if s.success()).then(|| Self(dir.to_path_buf()))
    }

    /// Writes a file of zeros until the file system is full; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.0.join("filler");
        let mut file = File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // A last partial block may still fit.
        while file.write(&chunk[..512]).is_ok_and(|n| n > 0) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, so a file still open (a broker that is slow to die) cannot keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A broker with its Titanic store in `data`; killed (by pid) when dropped.
struct Daemon {
    child: LoggedChild,
    endpoint: String,
    metrics: String,
}

impl Daemon {
    fn start(data: &Path) -> Self {
        let endpoint = dead_endpoint();
        let child = LoggedChild::spawn(
            Command::new(DOMO_BROKER)
                .current_dir(data.parent().unwrap())
                .args([
                    "--bind",
                    &endpoint,
                    "--metrics-listen",
                    "127.0.0.1:0",
                    "--no-topics",
                ])
                .args(["--heartbeat", "250ms", "--titanic-data-dir"])
                .arg(data)
                .env_remove("RUST_LOG")
                .env_remove("NOTIFY_SOCKET")
                .env_remove("DOMO_CONFIG")
                .env_remove("STATE_DIRECTORY")
                .env_remove("DOMO_TITANIC__DATA_DIR")
                .stdout(Stdio::null()),
        );
        let metrics = http_addr(&child.wait_line("Metrics listening"));
        Self {
            child,
            endpoint,
            metrics,
        }
    }

    /// Waits (up to 10 s) for a stderr line containing any of `needles`.
    fn wait_any_line(&self, needles: &[&str]) {
        poll_until(Duration::from_secs(10), || {
            needles.iter().find_map(|n| self.child.find(n))
        })
        .unwrap_or_else(|| panic!("no log line with any of {needles:?}:\n{}", self.child.log()));
    }

    fn readyz(&self) -> (u16, String) {
        http_get(&self.metrics, "/readyz")
    }

    /// Polls `/readyz` until it answers `status`; returns its body.
    fn wait_ready(&self, status: u16, within: Duration) -> String {
        let (mut now, mut body) = (0, String::new());
        poll_until(within, || {
            (now, body) = self.readyz();
            (now == status).then(|| body.clone())
        })
        .unwrap_or_else(|| {
            panic!(
                "/readyz still {now} ({body:?}) after {within:?}, not {status}:\n{}",
                self.child.log()
            )
        })
    }
}

/// Polls `titanic.reply` for `id` until it is 200 (within 20 s); returns the reply body.
fn wait_for_reply(daemon: &Daemon, client: &ReqClient, id: &[u8]) -> Msg {
    poll_until(Duration::from_secs(20), || {
        let reply = client.request("titanic.reply", &[id]);
        match reply[0].as_slice() {
            b"200" => Some(reply[1..].to_vec()),
            b"300" => None,
            other => panic!("titanic.reply said {:?}", String::from_utf8_lossy(other)),
        }
    })
    .unwrap_or_else(|| panic!("no reply for the request in time:\n{}", daemon.child.log()))
}

#[test]
fn a_full_disk_refuses_titanic_requests_until_space_is_freed_then_recovers_without_a_restart() {
    let dir = TempDir::new("titanic-full-disk");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let Some(disk) = Tmpfs::mount(&data, "32m") else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let daemon = Daemon::start(&data);
    let ep = daemon.endpoint.clone();
    wait_for_service(&ep, "titanic.request", b"200");
    assert_eq!(daemon.readyz().0, 200);
    let _echo = ZWorker::echo(&ep, "echo", Duration::from_millis(250));
    wait_for_service(&ep, "echo", b"200");

    // Acknowledged while there is room.
    let client = ReqClient::connect(&ep);
    let mut acked = Vec::new();
    for i in 0..20 {
        let body = format!("before {i}");
        let ack = client.request("titanic.request", &[b"echo", body.as_bytes()]);
        assert_eq!(ack[0], b"200", "{ack:?}");
        acked.push((ack[1].clone(), body));
    }
    wait_for_reply(&daemon, &client, &acked[0].0);

    // The disk fills up: a request that needs new space is refused, /readyz says why, and
    // the store refuses every write until it has reopened and taken a test write.
    let filler = disk.fill();
    let big = vec![7u8; 1 << 20];
    let refused = client.request("titanic.request", &[b"echo", &big]);
    assert_eq!(refused, vec![b"500".to_vec()]);
    let why = daemon.wait_ready(503, Duration::from_secs(5));
    assert!(why.contains("Titanic write failed"), "{why}");
    assert!(why.contains("disk full"), "{why}");
    // A reopen attempt 100 ms later (then 200 ms, 400 ms, ...) changes nothing for a
    // request that needs space while the disk stays full.
    daemon.wait_any_line(&[
        "Titanic store still refuses writes",
        "Titanic store reopened after a failed write",
    ]);
    for _ in 0..3 {
        let refused = client.request("titanic.request", &[b"echo", &big]);
        assert_eq!(refused, vec![b"500".to_vec()]);
    }
    daemon.wait_ready(503, Duration::from_secs(5));
    // Reads of what was acknowledged keep working on the reopened file.
    let first = client.request("titanic.reply", &[&acked[0].0]);
    assert_eq!(first, vec![b"200".to_vec(), acked[0].1.as_bytes().to_vec()]);

    // Space is freed: within the backoff (at most 5 s) the store reopens, with
    // no restart, and takes requests again.
    std::fs::remove_file(&filler).unwrap();
    daemon.wait_ready(200, Duration::from_secs(20));
    let after = client.request("titanic.request", &[b"echo", b"after"]);
    assert_eq!(after[0], b"200", "{after:?}");
    let big_after = client.request("titanic.request", &[b"echo", &big]);
    assert_eq!(big_after[0], b"200", "{big_after:?}");
    let (_, metrics) = http_get(&daemon.metrics, "/metrics");
    let reopens = sample(&metrics, "domo_titanic_store_reopens_total");
    assert!(reopens.is_some_and(|n| n >= 1.0), "{metrics}");

    // Every request acknowledged before the disk filled up is answered.
    for (id, body) in &acked {
        assert_eq!(
            wait_for_reply(&daemon, &client, id),
            vec![body.as_bytes().to_vec()]
        );
    }
    assert_eq!(
        wait_for_reply(&daemon, &client, &after[1]),
        vec![b"after".to_vec()]
    );
    assert_eq!(wait_for_reply(&daemon, &client, &big_after[1]), vec![big]);
    assert!(
        daemon.child.find("panicked").is_none(),
        "{}",
        daemon.child.log()
    );
}
