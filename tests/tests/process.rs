//! The `domo-broker` binary as a separate process: flags and exit codes (memory against a
//! client that never reads: admission.rs).
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use domo_tests::*;

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
    let child = Command::new(DOMO_BROKER)
        .args([
            "--bind",
            &ep,
            "--metrics-listen",
            "127.0.0.1:0",
            "--no-titanic",
        ])
        .args(EPHEMERAL_TOPICS)
        .args(args)
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let proc = Proc(child);
    wait_for_service(&ep, "nobody", b"404");
    (proc, ep)
}

#[test]
fn help_documents_the_flags() {
    let out = Command::new(DOMO_BROKER).arg("--help").output().unwrap();
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
        let out = Command::new(DOMO_BROKER).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?} printed nothing");
    }
}

#[test]
fn bind_failure_exits_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ep = format!("tcp://127.0.0.1:{}", taken.local_addr().unwrap().port());
    let out = Command::new(DOMO_BROKER)
        .args(["--bind", &ep, "--metrics-listen", "off", "--no-titanic"])
        .args(EPHEMERAL_TOPICS)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // The metrics address taken: also a runtime failure.
    let out = Command::new(DOMO_BROKER)
        .args([
            "--bind",
            "tcp://127.0.0.1:0",
            "--no-titanic",
            "--no-topics",
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
    let status = eventually(
        Duration::from_secs(10),
        "did not exit after SIGTERM",
        || p.0.try_wait().unwrap(),
    );
    assert_eq!(status.code(), Some(0));
}
