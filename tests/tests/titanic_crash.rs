//! Crash campaign: the `domo-broker` binary with its embedded Titanic, concurrent submitters,
//! and SIGKILLs at random moments. Every id acknowledged with `200` must survive and be
//! answered with the right reply. `DOMO_CRASH_KILLS` sets the number of kills (default 3);
//! `scripts/broker-crash-campaign.sh` runs a long campaign.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use domo_tests::*;

const HEARTBEAT: Duration = Duration::from_millis(250);
const SUBMITTERS: usize = 4;

/// A broker child process, SIGKILLed when dropped.
struct Broker(Child);

impl Broker {
    fn kill(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The broker on `endpoint` with its store in `dir`; returns once Titanic answers MMI. Its
/// log goes to `dir/broker.log` (every start appended), shown if it does not come up.
fn start_broker(endpoint: &str, dir: &Path) -> Broker {
    let log = dir.join("broker.log");
    let tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    let mut exited = None;
    let child = poll_until(Duration::from_secs(15), || {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = Command::new(DOMO_BROKER)
            .args(["--bind", endpoint, "--metrics-listen", "off", "--no-topics"])
            .args(["--heartbeat", "250ms", "--titanic-data-dir"])
            .arg(dir)
            .env_remove("DOMO_CONFIG")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        thread::sleep(Duration::from_millis(50));
        // Exit 1: the port is not free yet after the kill; try again.
        exited = child.try_wait().unwrap();
        exited.is_none().then_some(child)
    })
    .unwrap_or_else(|| panic!("broker exits: {exited:?}\n{}", tail()));
    let mut broker = Broker(child);
    // Up once MMI says titanic.request is there; a broker that exits meanwhile (a bind that
    // failed after the 50 ms above, say) is started again.
    let up = poll_until(Duration::from_secs(20), || {
        if let Some(status) = broker.0.try_wait().unwrap() {
            return Some(Err(status));
        }
        let client = ReqClient::connect(endpoint);
        client.set_timeout(1000);
        let said = client.try_request("mmi.service", &[b"titanic.request"]);
        (said == Some(vec![b"200".to_vec()])).then_some(Ok(()))
    });
    match up {
        Some(Ok(())) => broker,
        Some(Err(status)) => {
            eprintln!(
                "the broker exited ({status}) while starting; again:\n{}",
                tail()
            );
            drop(broker);
            start_broker(endpoint, dir)
        }
        None => panic!("the broker did not come up within 20 s:\n{}", tail()),
    }
}

/// Ids acknowledged with 200, with the body sent.
type Acked = Arc<Mutex<Vec<(Vec<u8>, Vec<u8>)>>>;

/// Submits requests until `stop`; records every id acknowledged with 200 with its body.
fn submitter(
    endpoint: String,
    index: usize,
    stop: Arc<AtomicBool>,
    acked: Acked,
) -> (usize, usize) {
    let (mut sent, mut unacked) = (0, 0);
    let mut client = ReqClient::connect(&endpoint);
    client.set_timeout(1000);
    while !stop.load(Ordering::Relaxed) {
        let body = format!("submitter {index} request {sent}").into_bytes();
        sent += 1;
        match client.try_request("titanic.request", &[b"echo", &body]) {
            Some(reply) if reply.first().is_some_and(|c| c == b"200") => {
                assert_eq!(reply.len(), 2, "{reply:?}");
                acked.lock().unwrap().push((reply[1].clone(), body));
            }
            // 500 (Titanic stopping or starting): not acknowledged, try the next one.
            Some(_) => unacked += 1,
            // Timeout: not acknowledged; the REQ socket is stuck, so reconnect.
            None => {
                unacked += 1;
                client = ReqClient::connect(&endpoint);
                client.set_timeout(1000);
            }
        }
    }
    (sent, unacked)
}

#[test]
fn every_acknowledged_request_survives_sigkill_and_is_answered() {
    let kills: usize = std::env::var("DOMO_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = TempDir::new("titanic-crash");
    let endpoint = dead_endpoint();
    let started = Instant::now();
    let mut broker = start_broker(&endpoint, dir.path());
    let mut worker = ZWorker::echo(&endpoint, "echo", HEARTBEAT);

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|i| {
            let (ep, stop, acked) = (endpoint.clone(), stop.clone(), acked.clone());
            thread::spawn(move || submitter(ep, i, stop, acked))
        })
        .collect();

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    let mut rng = Rng::new(seed);
    for kill in 0..kills {
        thread::sleep(Duration::from_millis(200 + rng.below(1300)));
        broker.kill();
        drop(worker);
        broker = start_broker(&endpoint, dir.path());
        worker = ZWorker::echo(&endpoint, "echo", HEARTBEAT);
        if kill % 10 == 9 {
            println!(
                "{} kills, {} acknowledged",
                kill + 1,
                acked.lock().unwrap().len()
            );
        }
    }
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (mut sent, mut unacked) = (0, 0);
    for s in submitters {
        let (s, u) = s.join().unwrap();
        sent += s;
        unacked += u;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty(), "nothing acknowledged");

    // Every acknowledged id is stored and answered with its own body, echoed.
    let client = ReqClient::connect(&endpoint);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lost = Vec::new();
    for (id, body) in &acked {
        // Pending (300) is looked at again until the deadline; anything else is final.
        let mut reply = Vec::new();
        poll_until(deadline.saturating_duration_since(Instant::now()), || {
            reply = client.request("titanic.reply", &[id]);
            (reply[0] != b"300").then_some(())
        });
        if reply[0] == b"200" {
            assert_eq!(
                reply[1..],
                *std::slice::from_ref(body),
                "wrong reply for {id:?}"
            );
        } else {
            lost.push((String::from_utf8_lossy(id).into_owned(), reply));
        }
    }
    println!(
        "crash campaign: {kills} kills, {sent} submitted, {} acknowledged, {unacked} not \
         acknowledged, lost: {}, {:.1} s",
        acked.len(),
        lost.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(lost.is_empty(), "lost or unanswered: {lost:?}");
    drop(worker);
    broker.kill();
}
