//! libzmq MDP peers through a CURVE broker: a pyzmq CURVE REQ client and a pyzmq CURVE MDP
//! worker (pyzmq's bundled libzmq 4.3) through a real `domo-broker` process with
//! `mechanism = "curve"`. Byte-exact replies, and MDP and ZMTP heartbeats flowing over a
//! 10 s idle period (the worker must still be registered after it).
//!
//! Needs python3 with pyzmq (`.ci/run` installs it); without it the test says so and passes,
//! except under `CI=true`, where it fails.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use domo_tests::{CurveKeys, LoggedBroker};

const WAIT: Duration = Duration::from_secs(40);

struct Py {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Py {
    fn spawn(args: &[String]) -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("py/mdp_curve_peer.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("a line from the pyzmq peer")
    }
}

impl Drop for Py {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pyzmq_present() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import zmq; assert zmq.has('curve')"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true but python3 with a CURVE-capable pyzmq is missing"
        );
        eprintln!("skipped: python3 with pyzmq (CURVE) not found; pip install pyzmq");
    }
    ok
}

#[test]
fn a_pyzmq_req_client_and_mdp_worker_through_a_curve_broker() {
    if !pyzmq_present() {
        return;
    }
    let keys = CurveKeys::new("curve-libzmq");
    let worker = keys.authorize("worker", &[("serve", "echo")]);
    let client = keys.authorize("client", &[("call", "echo")]);
    let mut args = keys.broker_args();
    args.extend(["--no-titanic", "--heartbeat", "1s"].map(String::from));
    let broker = LoggedBroker::start(&args);
    let server = keys.broker.public.to_string();
    let w = Py::spawn(&[
        "worker".into(),
        broker.endpoint.clone(),
        server.clone(),
        worker.public.to_string(),
        worker.secret.to_z85().to_string(),
        "echo".into(),
    ]);
    assert!(w.line().contains("\"ready\": true"));
    let c = Py::spawn(&[
        "client".into(),
        broker.endpoint.clone(),
        server,
        client.public.to_string(),
        client.secret.to_z85().to_string(),
        "echo".into(),
        "10".into(),
    ]);
    for _ in 0..4 {
        let line = c.line();
        assert!(
            line.contains("\"same\": true"),
            "byte-exact reply: {line}\n{}",
            broker.child.log()
        );
    }
    let line = c.line();
    assert!(
        line.contains("\"after_idle\": true"),
        "the worker is still registered after 10 s idle: {line}\n{}",
        broker.child.log()
    );
    let line = c.line();
    assert!(line.contains("HANDSHAKE_SUCCEEDED"), "{line}");
    assert!(
        !line.contains("DISCONNECTED"),
        "heartbeats kept the connection: {line}"
    );
    assert!(
        w.lines.try_recv().is_err(),
        "the worker was never sent DISCONNECT"
    );
    broker.wait_metric("domo_handshakes_total{result=\"ok\"}", 2.0);
}
