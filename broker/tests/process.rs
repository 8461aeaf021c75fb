//! The `domo-broker` binary as a separate process: flags, exit codes, and memory against a
//! client that never reads.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_domo-broker");

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("tcp://127.0.0.1:{}", l.local_addr().unwrap().port())
}

fn start(args: &[&str]) -> (Proc, String) {
    let ep = free_endpoint();
    let child = Command::new(BIN)
        .args([
            "--bind",
            &ep,
            "--metrics-listen",
            "127.0.0.1:0",
            "--no-titanic",
        ])
        .args(args)
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc(child);
    wait_for_service(&ep, "nobody", b"404");
    (proc, ep)
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn help_documents_the_flags() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--bind",
        "--heartbeat",
        "--liveness",
        "--version",
        "--config",
        "--check-config",
        "--print-config",
        "--print-default-config",
        "--metrics-listen",
        "--log-level",
        "--log-format",
        "DOMO_CONFIG",
        "DOMO_BROKER__BIND",
        "DOMO_METRICS__LISTEN",
        "DOMO_LOG__LEVEL",
        "DOMO_LOG__FORMAT",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
}

#[test]
fn bad_flag_values_exit_2_with_one_line() {
    for args in [
        &["--heartbeat", "2500"][..],
        &["--heartbeat", "0ms"],
        &["--liveness", "0"],
        &["--bogus"],
        &["--metrics-listen", "nowhere"],
        &["--log-format", "xml"],
        &["--log-level", "info,=["],
        &["--config", "/nonexistent/broker.toml"],
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?} printed nothing");
    }
}

#[test]
fn bind_failure_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ep = format!("tcp://127.0.0.1:{}", taken.local_addr().unwrap().port());
    let out = Command::new(BIN)
        .args(["--bind", &ep, "--metrics-listen", "off", "--no-titanic"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // The metrics address taken: also a runtime failure.
    let out = Command::new(BIN)
        .args([
            "--bind",
            "tcp://127.0.0.1:0",
            "--no-titanic",
            "--metrics-listen",
        ])
        .arg(taken.local_addr().unwrap().to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn serves_on_several_endpoints_with_custom_heartbeat() {
    let second = free_endpoint();
    let (_p, ep) = start(&["--bind", &second, "--heartbeat", "100ms", "--liveness", "3"]);
    wait_for_service(&second, "nobody", b"404");
    let _w = ZWorker::echo(&ep, "echo", Duration::from_millis(100));
    wait_for_service(&second, "echo", b"200");
    let c = ReqClient::connect(&second);
    assert_eq!(
        c.request("echo", &[b"via second endpoint"]),
        vec![b"via second endpoint".to_vec()]
    );
}

#[test]
fn sigterm_exits_0() {
    let (mut p, _ep) = start(&[]);
    let pid = p.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = p.0.try_wait().unwrap() {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn client_that_never_reads_is_paused_and_broker_memory_stays_bounded() {
    const BODY: usize = 4096;
    // 125 MiB of replies: well past the 64 MiB per-client send cap plus what the kernel's
    // autotuned socket buffers and libzmq's receive queue absorb (~15 MB), so the pause does
    // not depend on how large those buffers grow.
    const FIRST: usize = 32_000;
    let (p, ep) = start(&[]);
    let pid = p.0.id();
    let _echo = ZWorker::echo(&ep, "echo", Duration::from_millis(2500));
    let hog_worker = ZWorker::echo(&ep, "hog", Duration::from_millis(2500));
    wait_for_service(&ep, "echo", b"200");
    wait_for_service(&ep, "hog", b"200");
    let baseline = rss_bytes(pid);
    let ctx = zmq::Context::new();
    let hog = zsocket(&ctx, zmq::DEALER);
    hog.set_sndtimeo(2000).unwrap();
    hog.connect(&ep).unwrap();
    let request = || [vec![], MDPC01.to_vec(), b"hog".to_vec(), vec![7u8; BODY]];
    let c = ReqClient::connect(&ep);
    for i in 0..FIRST {
        hog.send_multipart(request(), 0).unwrap();
        if i % 1000 == 0 {
            // Others are served meanwhile.
            assert_eq!(c.request("echo", &[b"fine"]), vec![b"fine".to_vec()]);
        }
    }
    // Every request is answered; the hog reads none of the replies.
    let deadline = Instant::now() + Duration::from_secs(60);
    while hog_worker.served() < FIRST {
        assert!(
            Instant::now() < deadline,
            "hog requests not all served: {}",
            hog_worker.served()
        );
        thread::sleep(Duration::from_millis(20));
    }
    // Its replies are past the cap, so the broker has stopped reading it: sending more
    // blocks once the buffers on the way are full.
    let mut extra = 0;
    while hog.send_multipart(request(), 0).is_ok() {
        extra += 1;
        assert!(
            extra < 20_000,
            "the broker never pushed back on a client that does not read"
        );
    }
    assert_eq!(
        c.request("echo", &[b"still fine"]),
        vec![b"still fine".to_vec()]
    );
    let grown = rss_bytes(pid).saturating_sub(baseline);
    eprintln!(
        "hog pushed back after {extra} more requests; broker grew by {} MiB",
        grown >> 20
    );
    // 125 MiB of replies held for the hog plus the requests read before the pause.
    assert!(
        grown < 320 * 1024 * 1024,
        "broker grew by {} MiB",
        grown >> 20
    );
}
