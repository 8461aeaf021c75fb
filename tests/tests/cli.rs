//! The `domo` binary end to end against an in-process broker.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use domo_tests::*;

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn domo(ep: &str, args: &[&str]) -> Output {
    Command::new(DOMO)
        .args(args)
        .env("DOMO_BROKER", ep)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `domo service NAME` until it exits with `code`.
fn wait_service(ep: &str, name: &str, code: i32) {
    eventually(
        Duration::from_secs(10),
        format!("service {name} never exited {code}"),
        || {
            let out = domo(ep, &["service", name, "--timeout", "500ms"]);
            (out.status.code() == Some(code)).then_some(())
        },
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_service_services_and_worker_echo_end_to_end() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let worker = Proc(
            Command::new(DOMO)
                .args([
                    "worker",
                    "echo",
                    "echo",
                    "--sessions",
                    "2",
                    "--heartbeat",
                    "100ms",
                ])
                .args(["--broker", &ep])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_service(&ep, "echo", 0);
        let out = domo(&ep, &["service", "echo"]);
        assert_eq!(stdout(&out), "200 echo\n");

        let out = domo(&ep, &["call", "echo", "hello", "world"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), "hello\nworld\n");

        let out = domo(&ep, &["call", "echo", "hello", "--json"]);
        assert_eq!(stdout(&out), "[\"hello\"]\n");

        let out = domo(&ep, &["services"]);
        assert!(out.status.success());
        assert_eq!(stdout(&out), "echo\n");

        let out = domo(&ep, &["service", "nobody"]);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(stdout(&out), "404 nobody\n");

        // SIGTERM: the worker sends DISCONNECT and the service is gone at once.
        let pid = worker.0.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        wait_service(&ep, "echo", 1);
        drop(worker);
    })
    .await;
}

/// `domo` with no DOMO_BROKER in its environment, or with `env` as DOMO_BROKER.
fn domo_env(env: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(DOMO);
    cmd.args(args)
        .env_remove("DOMO_BROKER")
        .env_remove("DOMO_PAIR")
        .env_remove("RUST_LOG");
    if let Some(ep) = env {
        cmd.env("DOMO_BROKER", ep);
    }
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_option_goes_before_or_after_the_subcommand() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        // The worker takes it before the subcommand too.
        let worker = Proc(
            Command::new(DOMO)
                .args([
                    "--broker",
                    &ep,
                    "worker",
                    "echo",
                    "echo",
                    "--heartbeat",
                    "100ms",
                ])
                .env_remove("DOMO_BROKER")
                .env_remove("DOMO_PAIR")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_service(&ep, "echo", 0);
        let dead = dead_endpoint();
        let cases: [(Option<&str>, Vec<&str>); 5] = [
            (None, vec!["--broker", &ep, "call", "echo", "hi"]),
            (None, vec!["call", "--broker", &ep, "echo", "hi"]),
            (None, vec!["call", "echo", "hi", "--broker", &ep]),
            (Some(&ep), vec!["call", "echo", "hi"]),
            // The option wins over the environment, in either place.
            (Some(&dead), vec!["--broker", &ep, "call", "echo", "hi"]),
        ];
        for (env, args) in &cases {
            let out = domo_env(*env, args);
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
            assert_eq!(stdout(&out), "hi\n", "{args:?}");
        }
        let out = domo_env(None, &["--broker", &ep, "service", "echo"]);
        assert_eq!(stdout(&out), "200 echo\n", "{}", stderr(&out));
        // --pair before the subcommand is checked like after it.
        let out = domo_env(None, &["--pair", "--broker", &ep, "call", "echo", "hi"]);
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains("exactly two"), "{}", stderr(&out));
        // bench uses the given broker instead of starting one.
        let bench = [
            "bench",
            "--requests",
            "100",
            "--rounds",
            "1",
            "--workers",
            "1",
        ];
        let out = domo_env(
            None,
            &[&["--broker", &ep][..], &bench, &["--json"]].concat(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let two = format!("{ep},{ep}");
        let out = domo_env(None, &[&["--broker", &two][..], &bench].concat());
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        drop(worker);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_calls_exit_non_zero_with_one_line() {
    let broker = TestBroker::start(fast_heartbeat()).await;
    let ep = broker.endpoint.clone();
    blocking(move || {
        let out = domo(
            &ep,
            &[
                "call",
                "nobody",
                "x",
                "--timeout",
                "200ms",
                "--retries",
                "0",
            ],
        );
        assert_eq!(out.status.code(), Some(1));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("has no workers"), "{err}");

        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("tcp://127.0.0.1:{}", l.local_addr().unwrap().port())
        };
        let out = domo(
            &dead,
            &["call", "echo", "--timeout", "100ms", "--retries", "0"],
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains("no broker reachable"),
            "{}",
            stderr(&out)
        );

        let out = domo(&ep, &["call", "echo", "--timeout", "2500"]);
        assert_eq!(out.status.code(), Some(2), "bad duration is a usage error");
    })
    .await;
}

#[test]
fn bench_runs_raw_and_sdk_phases_and_prints_json() {
    // Built if missing; `domo` finds it beside itself (both are in the target directory).
    broker_binary();
    let out = Command::new(DOMO)
        .args([
            "bench",
            "--requests",
            "300",
            "--rounds",
            "1",
            "--clients",
            "2",
        ])
        .args(["--workers", "2", "--window", "3", "--json"])
        .env_remove("DOMO_BROKER")
        .env_remove("DOMO_BROKER_BIN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for phase in ["raw", "raw1", "sdk"] {
        assert_eq!(report[phase]["requests"], 300, "{report}");
        assert!(report[phase]["req_per_s"].as_f64().unwrap() > 0.0);
        // The broker it started is measured in every phase.
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(
                report[phase]["broker_cpu_us_per_req"].as_f64().is_some(),
                "{report}"
            );
        }
    }
    assert!(report["sdk_over_raw"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_titanic_phase_counts_durable_acknowledgements() {
    let bin = broker_binary();
    let out = Command::new(DOMO)
        .args(["bench", "--json", "--phases", "titanic"])
        .args([
            "--requests",
            "200",
            "--rounds",
            "1",
            "--clients",
            "8",
            "--window",
            "1",
        ])
        .env_remove("DOMO_BROKER")
        .env("DOMO_BROKER_BIN", &bin)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Only acknowledged (stored) submissions count: all 200 were, so the broker it started
    // ran its embedded Titanic.
    assert_eq!(report["titanic"]["requests"], 200, "{report}");
    assert!(
        report["titanic"]["p50_us"].as_u64().unwrap() > 0,
        "{report}"
    );
    if std::path::Path::new("/proc/self/stat").exists() {
        assert!(
            report["titanic"]["broker_cpu_us_per_req"]
                .as_f64()
                .is_some(),
            "{report}"
        );
    }
    assert!(report.get("raw").is_none(), "{report}");
}

#[test]
fn bench_credit_makes_the_raw_workers_announce_it() {
    let bin = broker_binary();
    let run = |credit: &str| {
        Command::new(DOMO)
            .args(["bench", "--json", "--phases", "raw", "--credit", credit])
            .args(["--requests", "400", "--rounds", "1"])
            .args(["--clients", "2", "--workers", "2", "--window", "10"])
            .env_remove("DOMO_BROKER")
            .env("DOMO_BROKER_BIN", &bin)
            .output()
            .unwrap()
    };
    let out = run("4");
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["raw"]["requests"], 400, "{report}");
    for bad in ["0", "1025", "x"] {
        let out = run(bad);
        assert_eq!(
            out.status.code(),
            Some(2),
            "--credit {bad}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn bench_against_a_given_broker_reports_its_cpu_with_broker_pid() {
    let broker = LoggedBroker::start(&["--no-titanic", "--heartbeat", "1s"]);
    let run = |extra: &[&str]| {
        Command::new(DOMO)
            .args(["--broker", &broker.endpoint, "bench", "--json"])
            .args(["--requests", "300", "--rounds", "1", "--phases", "raw"])
            .args([
                "--clients",
                "2",
                "--workers",
                "2",
                "--window",
                "3",
                "--heartbeat",
                "1s",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let pid = broker.child.pid().to_string();
    let out = run(&["--broker-pid", &pid]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    if std::path::Path::new("/proc/self/stat").exists() {
        assert!(
            report["raw"]["broker_cpu_us_per_req"].as_f64().is_some(),
            "{report}"
        );
    }
    // Without --broker-pid the given broker's CPU is unknown: null, not a guess.
    let out = run(&[]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["raw"]["broker_cpu_us_per_req"].is_null(), "{report}");
    // A pid that is not there is a usage error.
    let out = run(&["--broker-pid", "999999999"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// The pid in `domo bench`'s "started ... (pid N) on EP" line.
fn logged_pid(stderr: &str) -> u32 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("domo: started "))
        .unwrap_or_else(|| panic!("no start line in:\n{stderr}"));
    let at = line.find("(pid ").unwrap() + "(pid ".len();
    line[at..].split(')').next().unwrap().parse().unwrap()
}

#[test]
fn bench_curve_runs_every_phase_through_a_curve_broker() {
    let bin = broker_binary();
    let out = Command::new(DOMO)
        .args(["bench", "--curve", "--requests", "1000", "--rounds", "1"])
        .args(["--clients", "2", "--workers", "2", "--window", "5"])
        .env_remove("DOMO_BROKER")
        .env("DOMO_BROKER_BIN", &bin)
        .output()
        .unwrap();
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{err}");
    assert!(err.contains("with CURVE"), "{err}");
    for phase in ["raw", "raw1", "sdk"] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().next() == Some(phase) && l.contains(" req/s ")),
            "no {phase} line in:\n{text}"
        );
    }
    let pid = logged_pid(&err);
    assert!(!broker_alive(pid), "broker {pid} still running");
    // --curve starts its own broker: not with --broker.
    let out = Command::new(DOMO)
        .args(["--broker", "tcp://127.0.0.1:1", "bench", "--curve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Whether a `domo-broker` process with this pid is running (or left as a zombie).
fn broker_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "domo-broker")
}

#[test]
fn bench_without_broker_starts_its_own_broker_process_and_stops_it() {
    let bin = broker_binary();
    let out = Command::new(DOMO)
        .args(["bench", "--requests", "2000", "--rounds", "1"])
        .args(["--clients", "2", "--workers", "2", "--window", "10"])
        .env_remove("DOMO_BROKER")
        .env("DOMO_BROKER_BIN", &bin)
        .output()
        .unwrap();
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{err}");
    let pid = logged_pid(&err);
    assert!(err.contains(&format!("started {}", bin.display())), "{err}");
    for phase in ["raw", "raw1", "sdk"] {
        assert!(err.contains(&format!("round 1 {phase}: ")), "{err}");
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(phase))
            .unwrap_or_else(|| panic!("no {phase} line in:\n{text}"));
        assert!(line.contains(" req/s  p50 "), "{line}");
        // The broker's CPU time, from its /proc entry.
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(line.contains("us/req"), "{line}");
        }
    }
    assert!(text.contains("sdk/raw "), "{text}");
    assert!(
        !broker_alive(pid),
        "broker {pid} still running after domo exited"
    );
}

#[test]
fn bench_interrupted_stops_its_broker() {
    let bin = broker_binary();
    let mut cmd = Command::new(DOMO);
    cmd.args(["bench", "--requests", "100000000", "--rounds", "1"])
        .env_remove("DOMO_BROKER")
        .env("DOMO_BROKER_BIN", &bin)
        .stdout(Stdio::null());
    let mut bench = LoggedChild::spawn(&mut cmd);
    let pid = logged_pid(&bench.wait_line("domo: started "));
    assert!(broker_alive(pid));
    bench.signal("INT");
    let status = bench.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "{}", bench.log());
    assert!(
        !broker_alive(pid),
        "broker {pid} still running after Ctrl-C"
    );
}

#[test]
fn bench_flags_services_direct_and_a_missing_broker_binary() {
    broker_binary();
    let bench = |args: &[&str]| {
        Command::new(DOMO)
            .arg("bench")
            .args(args)
            .env_remove("DOMO_BROKER")
            .env_remove("DOMO_BROKER_BIN")
            .output()
            .unwrap()
    };
    // Workers and requests over several services, a warm-up, two phases only.
    let out = bench(&[
        "--requests",
        "500",
        "--rounds",
        "1",
        "--workers",
        "3",
        "--services",
        "3",
        "--warmup",
        "100",
        "--phases",
        "raw,sdk",
        "--heartbeat",
        "1s",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["services"], 3, "{report}");
    for phase in ["raw", "sdk"] {
        assert_eq!(report[phase]["requests"], 500, "{report}");
    }
    assert!(report.get("raw1").is_none(), "{report}");
    assert!(report["sdk_over_raw"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report.get("sdk_over_raw1").is_none(), "{report}");

    // The brokerless ceiling alone needs no broker binary.
    let out = bench(&[
        "--requests",
        "500",
        "--phases",
        "direct",
        "--json",
        "--broker-bin",
        "/nonexistent/domo-broker",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["direct"]["requests"], 500, "{report}");
    assert!(
        report["direct"]["broker_cpu_us_per_req"].is_null(),
        "no broker in direct: {report}"
    );

    // A broker binary that is not there: exit 1, one line saying what and how to fix it.
    let out = bench(&[
        "--requests",
        "100",
        "--broker-bin",
        "/nonexistent/domo-broker",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("cannot start a broker"), "{err}");
    assert!(err.contains("/nonexistent/domo-broker"), "{err}");

    // Usage errors: more services than workers, a bare number as a duration, a bad phase.
    for args in [
        &["--services", "5", "--workers", "2"][..],
        &["--heartbeat", "2500"],
        &["--phases", "raw,nothing"],
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn titanic_submit_reply_close_through_the_binary() {
    // The real broker, which runs Titanic by default, on a temporary data directory.
    let ep = dead_endpoint();
    let temp = TempDir::new("cli-titanic");
    let dir = temp.path().join("titanic");
    let broker = Proc(
        Command::new(broker_binary())
            .args(["--bind", &ep, "--metrics-listen", "off", "--no-topics"])
            .args(["--titanic-data-dir", dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_service(&ep, "titanic.request", b"200");

    let out = domo(&ep, &["titanic", "submit", "later", "hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = stdout(&out).trim().to_string();
    assert_eq!(id.len(), 32, "{id:?}");
    let out = domo(&ep, &["titanic", "reply", &id]);
    assert_eq!(
        (out.status.code(), stdout(&out)),
        (Some(3), "300 pending\n".to_string())
    );

    let _worker = ZWorker::echo(&ep, "later", Duration::from_millis(2500));
    let answered = eventually(Duration::from_secs(20), "never answered", || {
        let out = domo(&ep, &["titanic", "reply", &id]);
        if out.status.success() {
            return Some(stdout(&out));
        }
        assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
        None
    });
    assert_eq!(answered, "hello\n");
    assert!(domo(&ep, &["titanic", "close", &id]).status.success());
    // A malformed id is answered as Titanic answers it: unknown, and close fails with 400.
    let out = domo(&ep, &["titanic", "reply", "not-an-id"]);
    assert_eq!(
        (out.status.code(), stdout(&out)),
        (Some(4), "400 unknown\n".to_string())
    );
    let out = domo(&ep, &["titanic", "close", "not-an-id"]);
    assert_eq!(
        (out.status.code(), stderr(&out)),
        (Some(1), "domo: titanic: 400\n".to_string())
    );
    let out = domo(&ep, &["titanic", "reply", &id]);
    assert_eq!(
        (out.status.code(), stdout(&out)),
        (Some(4), "400 unknown\n".to_string())
    );

    // Offline: a request nobody serves stays pending; with the broker stopped, list shows it
    // and purge removes it.
    let out = domo(&ep, &["titanic", "submit", "nobody", "x"]);
    let stuck = stdout(&out).trim().to_string();
    drop(broker);
    let data_dir = dir.to_str().unwrap();
    let out = domo(&ep, &["titanic", "list", "--data-dir", data_dir]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    assert!(
        listing.starts_with(&format!("{stuck} nobody pending")),
        "{listing}"
    );
    assert!(listing.contains("1 pending, 0 done"), "{listing}");
    let out = domo(
        &ep,
        &[
            "titanic",
            "purge",
            "--data-dir",
            data_dir,
            "--older-than",
            "0s",
        ],
    );
    assert_eq!(stdout(&out), "1 removed\n", "{}", stderr(&out));
    let out = domo(&ep, &["titanic", "list", "--data-dir", data_dir]);
    assert!(
        stdout(&out).starts_with("0 pending, 0 done"),
        "{}",
        stdout(&out)
    );
    let out = domo(
        &ep,
        &["titanic", "list", "--data-dir", "/nonexistent-domo-dir"],
    );
    assert_eq!(out.status.code(), Some(1));
}

/// A broker of a Binary Star pair in this process, on `ipc://` state endpoints in `dir`.
async fn pair_member(
    dir: &std::path::Path,
    role: domo_broker::core::ha::Role,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    use domo_broker::config::HaSettings;
    use domo_broker::core::ha::Role;
    use domo_broker::shell::{self, ShellConfig};
    let (me, peer) = match role {
        Role::Primary => ("a", "b"),
        Role::Backup => ("b", "a"),
    };
    let state = |n: &str| format!("ipc://{}", dir.join(n).display());
    let config = ShellConfig {
        binds: vec!["tcp://127.0.0.1:0".into()],
        core: fast_heartbeat(),
        ha: Some(
            HaSettings {
                role,
                bind: state(me),
                peer: state(peer),
                heartbeat: Duration::from_millis(100),
                peer_key_file: None,
            }
            .link(None),
        ),
        ..ShellConfig::default()
    };
    let bound = shell::bind(config).await.unwrap();
    let endpoint = bound.endpoints()[0].to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = bound
            .run(async {
                let _ = stopped.await;
            })
            .await;
    });
    (endpoint, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ha_status_shows_both_brokers_of_a_pair_and_pair_mode_calls_the_active_one() {
    use domo_broker::core::ha::Role;
    let temp = TempDir::new("cli-ha");
    let dir = temp.path().to_path_buf();
    let (a, _stop_a) = pair_member(&dir, Role::Primary).await;
    let (b, _stop_b) = pair_member(&dir, Role::Backup).await;
    let lone = TestBroker::start(fast_heartbeat()).await;
    let lone_ep = lone.endpoint.clone();
    blocking(move || {
        let both = format!("{a},{b}");
        let out = eventually(Duration::from_secs(10), "pair never settled", || {
            let out = domo(&both, &["ha", "status", "--timeout", "500ms"]);
            (out.status.success() && stdout(&out).contains("state: passive")).then_some(out)
        });
        let text = stdout(&out);
        let (first, second) = text.split_at(text.find(&b).unwrap());
        assert!(first.starts_with(&a), "{text}");
        for line in [
            "role: primary",
            "state: active",
            "peer_state: passive",
            "term: 1",
        ] {
            assert!(first.contains(line), "{line} not in {first}");
        }
        for line in [
            "role: backup",
            "state: passive",
            "peer_state: active",
            "serving: 0",
        ] {
            assert!(second.contains(line), "{line} not in {second}");
        }
        let out = domo(&a, &["ha", "status", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["state"], "active");
        assert_eq!(json["broker"], a.as_str());

        // A lone broker: not part of a pair, exit 1.
        let out = domo(&lone_ep, &["ha", "status"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stdout(&out).contains("not part of a pair"),
            "{}",
            stdout(&out)
        );

        // --pair: a worker on both, a call through the active one.
        let worker = Proc(
            Command::new(DOMO)
                .args(["worker", "echo", "echo", "--pair", "--heartbeat", "100ms"])
                .args(["--broker", &both])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_service(&a, "echo", 0);
        let out = domo(&both, &["call", "--pair", "echo", "hi"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), "hi\n");
        let out = domo(
            &format!("{both},{lone_ep}"),
            &["call", "--pair", "echo", "hi"],
        );
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains("exactly two"), "{}", stderr(&out));
        drop(worker);
    })
    .await;
}
