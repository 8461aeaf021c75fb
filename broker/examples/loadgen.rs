//! Load generator for domo-broker: N MDP clients x M echo workers through a broker.
//!
//! ```text
//! cargo run --release -p domo-broker --example loadgen -- [options]
//!   --spawn PATH        start this broker binary on a free port (default: target dir's domo-broker)
//!   --endpoint EP       use a running broker instead of spawning one
//!   --clients N         client connections (default 4)
//!   --workers M         echo workers (default 4)
//!   --requests R        requests in the measured phase, all clients together (default 200000)
//!   --size B            request body size in bytes, at least 8 (default 64)
//!   --window W          requests in flight per client (default 50)
//!   --services S        spread workers and requests over S services (default 1)
//!   --heartbeat MS      heartbeat interval of the spawned broker and the workers (default 2500)
//!   --direct            no broker: DEALER <-> ROUTER echo, the ceiling
//!   --json              one JSON object instead of text
//! ```
//!
//! Prints requests/s, latency p50/p99/p999, and (when it spawned the broker, or in direct
//! mode) the CPU time the broker (or the echo thread) spent per request, from /proc.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use domo_mdp::{client, worker, ServiceName, WorkerCommand};
use domo_zmtp::{Dealer, Options, Router};

#[derive(Debug, Clone)]
struct Args {
    spawn: Option<String>,
    endpoint: Option<String>,
    clients: usize,
    workers: usize,
    requests: u64,
    size: usize,
    window: usize,
    services: usize,
    heartbeat_ms: u64,
    direct: bool,
    json: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        spawn: None,
        endpoint: None,
        clients: 4,
        workers: 4,
        requests: 200_000,
        size: 64,
        window: 50,
        services: 1,
        heartbeat_ms: 2500,
        direct: false,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--spawn" => a.spawn = Some(val()),
            "--endpoint" => a.endpoint = Some(val()),
            "--clients" => a.clients = val().parse().expect("--clients"),
            "--workers" => a.workers = val().parse().expect("--workers"),
            "--requests" => a.requests = val().parse().expect("--requests"),
            "--size" => a.size = val().parse::<usize>().expect("--size").max(8),
            "--window" => a.window = val().parse().expect("--window"),
            "--services" => a.services = val().parse::<usize>().expect("--services").max(1),
            "--heartbeat" => a.heartbeat_ms = val().parse().expect("--heartbeat"),
            "--direct" => a.direct = true,
            "--json" => a.json = true,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// CPU seconds (user + system) of a process or thread, from its /proc stat line.
fn cpu_seconds(stat_path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0) // USER_HZ is 100 on Linux
}

struct Broker {
    child: Child,
    endpoint: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_broker(path: &str, heartbeat_ms: u64) -> Broker {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(path)
        .args([
            "--bind",
            &endpoint,
            "--heartbeat",
            &format!("{heartbeat_ms}ms"),
            // A free port, so several brokers (or a running one) never collide on 9464.
            "--metrics-listen",
            "127.0.0.1:0",
            // The broker alone: no Titanic workers (nor their heartbeats) in the figures.
            "--no-titanic",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {path}: {e}"));
    Broker { child, endpoint }
}

fn default_broker_path() -> String {
    // examples live in target/<profile>/examples; the broker binary one level up.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|p| p.parent()).unwrap();
    dir.join("domo-broker").display().to_string()
}

fn service(i: usize) -> ServiceName {
    ServiceName::new(format!("echo.{i}")).unwrap()
}

async fn echo_worker(endpoint: String, service: ServiceName, heartbeat: Duration) {
    let dealer = Dealer::connect(&endpoint, Options::default()).unwrap();
    dealer.send(worker::encode_ready(&service)).await.unwrap();
    let mut heartbeat = tokio::time::interval(heartbeat);
    loop {
        tokio::select! {
            msg = dealer.recv() => {
                let Ok(msg) = msg else { return };
                let reply = match worker::decode_from_broker(msg) {
                    Ok(WorkerCommand::Request { client, body }) => worker::encode_reply(&client, body),
                    Ok(WorkerCommand::Disconnect) => return,
                    _ => continue,
                };
                if dealer.send(reply).await.is_err() {
                    return;
                }
            }
            _ = heartbeat.tick() => {
                let _ = dealer.try_send(worker::encode_heartbeat());
            }
        }
    }
}

fn body(size: usize, t0: Instant) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.put_u64(t0.elapsed().as_nanos() as u64);
    b.resize(size, 0xAB);
    b.freeze()
}

fn sent_at(frame: &[u8]) -> u64 {
    let mut be = [0u8; 8];
    be.copy_from_slice(&frame[..8]);
    u64::from_be_bytes(be)
}

/// One client: keeps `window` requests in flight until the shared budget is used up.
async fn client(
    args: Args,
    endpoint: String,
    t0: Instant,
    budget: Arc<AtomicU64>,
    id: usize,
) -> Vec<u32> {
    let dealer = Dealer::connect(&endpoint, Options::default()).unwrap();
    let mut latencies = Vec::new();
    let mut in_flight = 0usize;
    let mut n = id;
    let next = |n: &mut usize| {
        *n += 1;
        let b = body(args.size, t0);
        if args.direct {
            vec![b]
        } else {
            client::encode_request(&service(*n % args.services), [b])
        }
    };
    loop {
        while in_flight < args.window && take(&budget) {
            dealer.send(next(&mut n)).await.unwrap();
            in_flight += 1;
        }
        if in_flight == 0 {
            return latencies;
        }
        let reply = dealer.recv().await.unwrap();
        in_flight -= 1;
        let payload = reply.last().unwrap();
        let now = t0.elapsed().as_nanos() as u64;
        latencies.push(((now - sent_at(payload)) / 1000) as u32);
    }
}

fn take(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
        .is_ok()
}

/// In-process echo ROUTER on its own thread and runtime; returns its endpoint and the path of
/// its thread's /proc stat file.
fn direct_echo() -> (String, String) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let router = Router::new(Options::default());
            let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
            let stat = format!("/proc/self/task/{}/stat", thread_id());
            tx.send((ep.to_string(), stat)).unwrap();
            loop {
                let (peer, msg) = router.recv().await.unwrap();
                let _ = router.send(&peer, msg).await;
            }
        });
    });
    rx.recv().unwrap()
}

fn thread_id() -> String {
    // /proc/thread-self links to /proc/<pid>/task/<tid>.
    let link = std::fs::read_link("/proc/thread-self").unwrap();
    link.file_name().unwrap().to_string_lossy().into_owned()
}

async fn wait_for_workers(endpoint: &str, services: usize) {
    let dealer = Dealer::connect(endpoint, Options::default()).unwrap();
    for i in 0..services {
        let name = service(i);
        loop {
            let req = client::encode_request(
                &ServiceName::new("mmi.service").unwrap(),
                [name.clone().into_bytes()],
            );
            dealer.send(req).await.unwrap();
            let reply = tokio::time::timeout(Duration::from_secs(10), dealer.recv())
                .await
                .expect("broker not answering")
                .unwrap();
            if reply.last().map(|f| &f[..]) == Some(b"200") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut spawned = None;
    let (endpoint, stat_path) = if args.direct {
        let (ep, stat) = direct_echo();
        (ep, Some(stat))
    } else if let Some(ep) = &args.endpoint {
        (ep.clone(), None)
    } else {
        let path = args.spawn.clone().unwrap_or_else(default_broker_path);
        let b = spawn_broker(&path, args.heartbeat_ms);
        let stat = format!("/proc/{}/stat", b.child.id());
        let ep = b.endpoint.clone();
        spawned = Some(b);
        (ep, Some(stat))
    };
    let report = rt.block_on(async {
        if !args.direct {
            for w in 0..args.workers {
                let hb = Duration::from_millis(args.heartbeat_ms);
                tokio::spawn(echo_worker(
                    endpoint.clone(),
                    service(w % args.services),
                    hb,
                ));
            }
            wait_for_workers(&endpoint, args.services).await;
        }
        // Warm-up: 5% of the requests, not measured.
        let t0 = Instant::now();
        run_clients(&args, &endpoint, t0, args.requests / 20).await;
        let cpu0 = stat_path.as_deref().and_then(cpu_seconds);
        let started = Instant::now();
        let mut lat = run_clients(&args, &endpoint, t0, args.requests).await;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu1 = stat_path.as_deref().and_then(cpu_seconds);
        lat.sort_unstable();
        let cpu_us = match (cpu0, cpu1) {
            (Some(a), Some(b)) => Some((b - a) * 1e6 / args.requests as f64),
            _ => None,
        };
        (
            lat.len() as f64 / elapsed,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            percentile(&lat, 0.999),
            cpu_us,
        )
    });
    drop(spawned);
    let (rps, p50, p99, p999, cpu_us) = report;
    let mode = if args.direct { "direct" } else { "broker" };
    if args.json {
        let cpu = cpu_us.map_or("null".to_string(), |c| format!("{c:.2}"));
        println!(
            "{{\"mode\":\"{mode}\",\"clients\":{},\"workers\":{},\"services\":{},\"size\":{},\"window\":{},\"requests\":{},\"req_per_s\":{rps:.0},\"p50_us\":{p50},\"p99_us\":{p99},\"p999_us\":{p999},\"cpu_us_per_req\":{cpu}}}",
            args.clients, args.workers, args.services, args.size, args.window, args.requests
        );
    } else {
        println!(
            "{mode}: {} clients x {} workers, {} services, {} B, window {}: {rps:.0} req/s, p50 {p50} us, p99 {p99} us, p999 {p999} us, cpu {}",
            args.clients,
            args.workers,
            args.services,
            args.size,
            args.window,
            cpu_us.map_or("n/a".into(), |c| format!("{c:.2} us/req"))
        );
    }
}

async fn run_clients(args: &Args, endpoint: &str, t0: Instant, requests: u64) -> Vec<u32> {
    let budget = Arc::new(AtomicU64::new(requests));
    let tasks: Vec<_> = (0..args.clients)
        .map(|i| {
            tokio::spawn(client(
                args.clone(),
                endpoint.to_string(),
                t0,
                budget.clone(),
                i,
            ))
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}
