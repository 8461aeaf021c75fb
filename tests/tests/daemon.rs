//! The daemon's operational surface, against the real binary: configuration precedence and
//! errors, `--check-config`, the metrics and health listener after real traffic, drain on
//! SIGTERM, systemd notifications and SIGHUP reload. Every wait is bounded; every process
//! is killed on drop; ports are ephemeral.
#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use domo_tests::*;

const HB: Duration = Duration::from_millis(2500);
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/broker.toml");

/// A broker process with its stderr collected line by line; killed on drop.
struct Daemon {
    child: LoggedChild,
    endpoint: String,
}

impl Daemon {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(DOMO_BROKER);
        cmd.args([
            "--bind",
            "tcp://127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            // Titanic is not the subject here (titanic_embedded.rs): no shared data dir.
            "--no-titanic",
        ])
        .args(EPHEMERAL_TOPICS)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("DOMO_CONFIG")
        .envs(env.iter().copied())
        .stdout(Stdio::null());
        let child = LoggedChild::spawn(&mut cmd);
        let endpoint = listening_endpoint(&child.wait_line("Broker listening"));
        Self { child, endpoint }
    }

    /// The metrics listener's address, from its log line.
    fn metrics_addr(&self) -> String {
        http_addr(&self.child.wait_line("Metrics listening"))
    }
}

/// Scrapes until `series` has `value` (for up to 10 s).
fn wait_for_metric(addr: &str, series: &str, value: f64) {
    let mut text = String::new();
    poll_until(Duration::from_secs(10), || {
        text = http_get(addr, "/metrics").1;
        (sample(&text, series) == Some(value)).then_some(())
    })
    .unwrap_or_else(|| panic!("{series} never {value}:\n{text}"));
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(DOMO_BROKER)
        .args(args)
        .env_remove("DOMO_CONFIG")
        .env_remove("DOMO_METRICS__LISTEN")
        .env_remove("DOMO_LOG__LEVEL")
        .env_remove("DOMO_BROKER__BIND")
        .env_remove("DOMO_HA__ROLE")
        .env_remove("DOMO_HA__BIND")
        .env_remove("DOMO_HA__PEER")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.code(), text(out.stdout), text(out.stderr))
}

fn print_config(args: &[&str], env: &[(&str, &str)]) -> String {
    let (code, out, err) = run(&[&["--print-config"], args].concat(), env);
    assert_eq!(code, Some(0), "{err}");
    out
}

// === configuration ===

#[test]
fn print_default_config_is_the_shipped_example() {
    let (code, out, _) = run(&["--print-default-config"], &[]);
    assert_eq!(code, Some(0));
    assert_eq!(out, std::fs::read_to_string(EXAMPLE).unwrap());
}

#[test]
fn precedence_is_defaults_then_file_then_env_then_flags() {
    let dir = TempDir::new("precedence");
    let file = dir.file(
        "broker.toml",
        "[broker]\nheartbeat = \"1s\"\nliveness = 5\n\
         [metrics]\nlisten = \"127.0.0.1:1000\"\n[log]\nlevel = \"debug\"\n",
    );
    let file = file.to_str().unwrap();
    let defaults = print_config(&[], &[]);
    assert!(defaults.contains("heartbeat = \"2500ms\""), "{defaults}");
    assert!(defaults.contains("listen = \"127.0.0.1:9464\""));
    // The file over the defaults (named by DOMO_CONFIG or --config).
    for out in [
        print_config(&[], &[("DOMO_CONFIG", file)]),
        print_config(&["--config", file], &[]),
    ] {
        assert!(out.contains("heartbeat = \"1s\"\nliveness = 5\n"), "{out}");
        assert!(out.contains("listen = \"127.0.0.1:1000\""), "{out}");
        assert!(out.contains("level = \"debug\""), "{out}");
        assert!(out.contains("bind = [\"tcp://127.0.0.1:5555\"]"), "{out}");
    }
    // The environment over the file.
    let env = [
        ("DOMO_METRICS__LISTEN", "127.0.0.1:2000"),
        ("DOMO_LOG__LEVEL", "warn"),
        (
            "DOMO_BROKER__BIND",
            "tcp://127.0.0.1:7001,tcp://127.0.0.1:7002",
        ),
    ];
    let out = print_config(&["--config", file], &env);
    assert!(out.contains("listen = \"127.0.0.1:2000\""), "{out}");
    assert!(out.contains("level = \"warn\""), "{out}");
    assert!(
        out.contains("bind = [\"tcp://127.0.0.1:7001\", \"tcp://127.0.0.1:7002\"]"),
        "{out}"
    );
    // Flags over the environment.
    let out = print_config(
        &[
            "--config",
            file,
            "--log-level",
            "error",
            "--metrics-listen",
            "off",
            "--heartbeat",
            "300ms",
        ],
        &env,
    );
    assert!(out.contains("level = \"error\""), "{out}");
    assert!(out.contains("listen = \"off\""), "{out}");
    assert!(
        out.contains("heartbeat = \"300ms\"\nliveness = 5\n"),
        "{out}"
    );
    // What --print-config prints is itself a valid file with the same effect.
    let again = dir.file("printed.toml", &out);
    let reread = print_config(&["--config", again.to_str().unwrap()], &[]);
    assert_eq!(
        reread.lines().skip(1).collect::<Vec<_>>(),
        out.lines().skip(1).collect::<Vec<_>>()
    );
}

#[test]
fn check_config_accepts_good_files_and_binds_nothing() {
    // Endpoints already taken: binding them would fail with 1.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = TempDir::new("check-good");
    let file = dir.file(
        "broker.toml",
        &format!("[broker]\nbind = [\"tcp://{addr}\"]\n[metrics]\nlisten = \"{addr}\"\n"),
    );
    for args in [
        vec!["--check-config", "--config", EXAMPLE],
        vec!["--check-config", "--config", file.to_str().unwrap()],
        vec!["--check-config"],
    ] {
        let (code, out, err) = run(&args, &[]);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        assert!(out.contains("configuration OK"), "{out}");
    }
}

#[test]
fn check_config_rejects_bad_files_naming_file_line_and_key_with_exit_2() {
    let dir = TempDir::new("check-bad");
    let cases = [
        (
            "[broker]\nheartbeat = \"1s\"\nheartbeet = \"2s\"\n",
            ":3: broker.heartbeet: unknown field",
        ),
        (
            "[broker]\nheartbeat = \"2500\"\n",
            ":2: broker.heartbeat: invalid duration",
        ),
        (
            "\n[queue]\nrequest_timeout = 30\n",
            ":3: queue.request_timeout: invalid type",
        ),
        (
            "[metrics]\nlisten = \"everywhere\"\n",
            ":2: metrics.listen: invalid listen address",
        ),
        (
            "[shutdown]\ndrain_timeout = \"0s\"\n",
            ":2: shutdown.drain_timeout: must be more than 0",
        ),
        (
            "[titanic]\nsessions = 0\n",
            ":2: titanic.sessions: must be between",
        ),
        ("[titanc]\n", ":1: titanc: unknown field"),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.file(&format!("bad{i}.toml"), text);
        let path = path.to_str().unwrap();
        let (code, out, err) = run(&["--check-config", "--config", path], &[]);
        assert_eq!(code, Some(2), "{text:?}");
        assert!(out.is_empty());
        let expected = format!("domo-broker: {path}{expected}");
        assert!(
            err.starts_with(&expected),
            "{text:?}:\n{err}\nexpected {expected}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        // The daemon refuses the same file the same way.
        let (code, _, daemon_err) = run(&["--config", path], &[]);
        assert_eq!((code, daemon_err), (Some(2), err));
    }
}

// === metrics and health ===

#[test]
fn metrics_after_real_traffic_show_the_right_counts() {
    let dir = TempDir::new("metrics");
    let file = dir.file("broker.toml", "[queue]\nrequest_timeout = \"200ms\"\n");
    let daemon = Daemon::start(&["--config", file.to_str().unwrap()], &[]);
    let addr = daemon.metrics_addr();
    assert_eq!(http_get(&addr, "/healthz"), (200, "ok\n".into()));
    assert_eq!(http_get(&addr, "/readyz"), (200, "ready\n".into()));
    assert_eq!(http_get(&addr, "/nope").0, 404);
    let worker = ZWorker::echo(&daemon.endpoint, "echo", HB);
    wait_for_service(&daemon.endpoint, "echo", b"200");
    let client = ReqClient::connect(&daemon.endpoint);
    for _ in 0..5 {
        assert_eq!(client.request("echo", &[b"hi"]), vec![b"hi".to_vec()]);
    }
    client.set_timeout(400);
    assert_eq!(client.try_request("misspelt", &[b"?"]), None);
    let (status, text) = http_get(&addr, "/metrics");
    assert_eq!(status, 200);
    let expect = [
        (
            "domo_client_requests_total{outcome=\"dispatched\",service=\"echo\"}",
            5.0,
        ),
        ("domo_replies_total{service=\"echo\"}", 5.0),
        ("domo_request_duration_seconds_count{service=\"echo\"}", 5.0),
        ("domo_queue_wait_seconds_count{service=\"echo\"}", 5.0),
        ("domo_workers{service=\"echo\",state=\"idle\"}", 1.0),
        ("domo_workers{service=\"echo\",state=\"busy\"}", 0.0),
        ("domo_queued_requests{service=\"echo\"}", 0.0),
        (
            "domo_client_requests_total{outcome=\"unknown_service\",service=\"_other\"}",
            1.0,
        ),
        ("domo_dropped_requests_total{reason=\"expired\"}", 1.0),
        ("domo_draining", 0.0),
        (
            "domo_build_info{git_sha=\"unknown\",version=\"0.1.0\"}",
            1.0,
        ),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
    }
    assert!(sample(&text, "domo_connections{socket=\"router\"}").unwrap() >= 2.0);
    assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 0.0);
    assert!(
        !text.contains("misspelt"),
        "client-chosen name became a label"
    );
    drop(worker);
}

// === drain, signals, systemd ===

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed; unit file not verified");
        return;
    };
    assert!(out.status.success());
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/domo-broker.service");
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(text.contains("ExecStart=/usr/bin/domo-broker --config /etc/domo/broker.toml"));
    // The binary is not installed here: point the unit at the one under test.
    let dir = TempDir::new("unit");
    let copy = dir.file(
        "domo-broker.service",
        &text.replace("/usr/bin/domo-broker", DOMO_BROKER.path().to_str().unwrap()),
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("domo-broker.service"), "{stderr}");
}

#[test]
fn pair_example_configs_pass_check_config_and_the_template_unit_verifies() {
    for name in ["primary", "backup"] {
        let path =
            concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/ha/").to_string() + name + ".toml";
        let (code, out, err) = run(&["--check-config", "--config", &path], &[]);
        assert_eq!(code, Some(0), "{name}: {out}{err}");
        let printed = print_config(&["--config", &path], &[]);
        assert!(
            printed.contains(&format!("[ha]\nrole = \"{name}\"")),
            "{printed}"
        );
    }
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed; template unit not verified");
        return;
    };
    assert!(out.status.success());
    let unit = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/ha/domo-broker@.service"
    );
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(text.contains("ExecStart=/usr/bin/domo-broker --config /etc/domo/%i.toml"));
    let dir = TempDir::new("unit-ha");
    dir.file(
        "domo-broker@.service",
        &text.replace("/usr/bin/domo-broker", DOMO_BROKER.path().to_str().unwrap()),
    );
    let instance = dir.path().join("domo-broker@primary.service");
    std::os::unix::fs::symlink(dir.path().join("domo-broker@.service"), &instance).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&instance)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("domo-broker@"), "{stderr}");
}

/// A worker that takes `delay` to answer each request.
fn slow_worker(endpoint: &str, delay: Duration) -> ZWorker {
    ZWorker::start(
        endpoint,
        "slow",
        HB,
        Box::new(move |body| {
            thread::sleep(delay);
            Some(body)
        }),
    )
}

#[test]
fn sigterm_answers_requests_in_flight_disconnects_workers_and_exits_0() {
    let mut daemon = Daemon::start(&[], &[("DOMO_LOG__LEVEL", "info")]);
    let addr = daemon.metrics_addr();
    let worker = slow_worker(&daemon.endpoint, Duration::from_millis(1500));
    wait_for_service(&daemon.endpoint, "slow", b"200");
    let ep = daemon.endpoint.clone();
    let in_flight = thread::spawn(move || ReqClient::connect(&ep).request("slow", &[b"job"]));
    wait_for_metric(&addr, "domo_workers{service=\"slow\",state=\"busy\"}", 1.0);
    let sent = Instant::now();
    daemon.child.signal("TERM");
    daemon.child.wait_line("Draining");
    assert_eq!(http_get(&addr, "/readyz"), (503, "draining\n".into()));
    assert_eq!(http_get(&addr, "/healthz").0, 200);
    let (_, text) = http_get(&addr, "/metrics");
    assert_eq!(sample(&text, "domo_draining"), Some(1.0));
    // A new request is refused while draining (the client times out).
    let late = ReqClient::connect(&daemon.endpoint);
    late.set_timeout(200);
    assert_eq!(late.try_request("slow", &[b"late"]), None);
    assert_eq!(in_flight.join().unwrap(), vec![b"job".to_vec()]);
    let status = daemon.child.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        sent.elapsed() < Duration::from_secs(20),
        "exceeded the drain timeout"
    );
    let log = worker.stop();
    assert!(log.disconnected, "worker was not sent DISCONNECT");
    assert_eq!(log.requests, 1);
}

#[test]
fn drain_timeout_bounds_the_wait_and_a_second_signal_skips_it() {
    for second_signal in [false, true] {
        let dir = TempDir::new("drain");
        let timeout = if second_signal { "60s" } else { "500ms" };
        let file = dir.file(
            "broker.toml",
            &format!("[shutdown]\ndrain_timeout = \"{timeout}\"\n"),
        );
        let mut daemon = Daemon::start(&["--config", file.to_str().unwrap()], &[]);
        let addr = daemon.metrics_addr();
        // A worker that never answers holds the request for good.
        let worker = ZWorker::start(&daemon.endpoint, "stuck", HB, Box::new(|_| None));
        wait_for_service(&daemon.endpoint, "stuck", b"200");
        let client = ReqClient::connect(&daemon.endpoint);
        client.set_timeout(100);
        assert_eq!(client.try_request("stuck", &[b"x"]), None);
        wait_for_metric(&addr, "domo_workers{service=\"stuck\",state=\"busy\"}", 1.0);
        let start = Instant::now();
        daemon.child.signal("TERM");
        if second_signal {
            daemon.child.wait_line("Draining");
            daemon.child.signal("INT");
        }
        let status = daemon.child.wait_exit(Duration::from_secs(10));
        assert_eq!(status.code(), Some(0));
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(worker.stop().disconnected);
        let timed_out = daemon.child.find("Drain timeout").is_some();
        assert_eq!(timed_out, !second_signal);
    }
}

#[test]
fn systemd_sees_ready_after_bind_then_stopping() {
    let dir = TempDir::new("notify");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut daemon = Daemon::start(&[], &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())]);
    let recv = || {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("no notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = recv();
    assert!(first.lines().any(|l| l == "READY=1"), "{first:?}");
    // The five topic.* services, served by the broker itself, are its only ones.
    assert!(
        first.contains("STATUS=5 services, 5 workers, 0 queued"),
        "{first:?}"
    );
    // READY comes only once the socket is bound: it accepts a connection now.
    wait_for_service(&daemon.endpoint, "nobody", b"404");
    daemon.child.signal("TERM");
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|m: &String| m.lines().any(|l| l == "STOPPING=1"))
    {
        seen.push(recv());
    }
    assert_eq!(
        daemon.child.wait_exit(Duration::from_secs(10)).code(),
        Some(0)
    );
}

#[test]
fn watchdog_is_pinged_when_systemd_enables_it() {
    let dir = TempDir::new("watchdog");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let env = [
        ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "3000000"),
    ];
    let daemon = Daemon::start(&[], &env);
    daemon.child.wait_line("systemd watchdog enabled");
    eventually(Duration::from_secs(10), "no WATCHDOG=1", || {
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("no notification in time");
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "WATCHDOG=1")
            .then_some(())
    });
    drop(daemon);
}

#[test]
fn sighup_reloads_the_log_filter_from_the_file() {
    let dir = TempDir::new("hup");
    let file = dir.file("broker.toml", "[log]\nlevel = \"info\"\n");
    let daemon = Daemon::start(&["--config", file.to_str().unwrap()], &[]);
    wait_for_service(&daemon.endpoint, "nobody", b"404");
    assert!(
        daemon.child.find("DEBUG").is_none(),
        "DEBUG line before the reload"
    );
    std::fs::write(&file, "[log]\nlevel = \"debug\"\nformat = \"json\"\n").unwrap();
    daemon.child.signal("HUP");
    daemon.child.wait_line("Log filter applied");
    daemon.child.wait_line("needs a restart");
    // A new peer is logged at DEBUG now.
    wait_for_service(&daemon.endpoint, "nobody", b"404");
    daemon.child.wait_line("DEBUG");
    // A bad file on reload is reported and the broker keeps running.
    std::fs::write(&file, "[log]\nlevl = \"debug\"\n").unwrap();
    daemon.child.signal("HUP");
    daemon.child.wait_line("Reload failed");
    wait_for_service(&daemon.endpoint, "nobody", b"404");
}

#[test]
fn json_log_format_writes_one_object_per_line() {
    let daemon = Daemon::start(&["--log-format", "json"], &[]);
    let line = daemon.child.wait_line("Broker listening");
    assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    assert!(line.contains("\"level\":\"INFO\""), "{line}");
}
