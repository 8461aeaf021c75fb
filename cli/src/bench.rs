//! `domo bench`: N clients x M echo workers through a broker, first on raw sockets (the
//! broker's own load generator, `broker/examples/loadgen.rs`), then through domo-client and
//! domo-worker, in the same run so the two rates compare on the same machine state.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use domo_client::{Client, ClientOptions};
use domo_worker::{Worker, WorkerOptions};
use serde_json::json;

use self::raw::{direct_phase, raw_phase, Shape};

mod raw;

/// `domo bench` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// A running broker, from the global --broker (or DOMO_BROKER); without it, one is
    /// started in this process on a free port.
    #[arg(skip)]
    pub(crate) broker: Option<String>,
    /// Client connections (SDK: clients, each with a pool of `window` connections).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Echo workers.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Requests per phase, all clients together.
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// Request body size in bytes (at least 8: it carries the send time).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Requests in flight per client.
    #[arg(long, default_value_t = 50)]
    window: usize,
    /// Rounds of (raw, SDK), alternating; the best round of each is reported, which
    /// filters out noise from other load on the machine.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Also measure DEALER <-> ROUTER echo with no broker: the ceiling.
    #[arg(long)]
    direct: bool,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// One measured phase.
struct Phase {
    name: &'static str,
    requests: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn pct(&self, p: f64) -> u32 {
        let s = &self.latencies_us;
        if s.is_empty() {
            return 0;
        }
        s[((s.len() as f64 - 1.0) * p).round() as usize]
    }

    fn json(&self) -> serde_json::Value {
        json!({ "requests": self.requests, "seconds": self.elapsed.as_secs_f64(),
            "req_per_s": self.rate(), "p50_us": self.pct(0.5), "p99_us": self.pct(0.99),
            "p999_us": self.pct(0.999) })
    }
}

pub(crate) async fn run(mut args: BenchArgs) -> ExitCode {
    args.size = args.size.max(8);
    args.window = args.window.max(1);
    let (endpoint, _stop) = match &args.broker {
        Some(ep) => (ep.clone(), None),
        None => match local_broker().await {
            Ok((ep, stop)) => (ep, Some(stop)),
            Err(e) => {
                eprintln!("domo: cannot start a broker: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let mut best: Vec<Phase> = Vec::new();
    for round in 0..args.rounds.max(1) {
        for (i, phase) in [
            raw_phase(&args, &endpoint, round, Shape::Pipelined).await,
            raw_phase(&args, &endpoint, round, Shape::OnePerConnection).await,
            sdk_phase(&args, &endpoint, round).await,
        ]
        .into_iter()
        .enumerate()
        {
            eprintln!(
                "\rround {} {}: {:.0} req/s  p50 {} us  p99 {} us  p99.9 {} us  max {} us",
                round + 1,
                phase.name,
                phase.rate(),
                phase.pct(0.5),
                phase.pct(0.99),
                phase.pct(0.999),
                phase.pct(1.0)
            );
            match best.get(i) {
                Some(b) if b.rate() >= phase.rate() => {}
                Some(_) => best[i] = phase,
                None => best.push(phase),
            }
        }
    }
    let mut phases = best;
    if args.direct {
        phases.push(direct_phase(&args).await);
    }
    report(&args, &phases);
    ExitCode::SUCCESS
}

fn report(args: &BenchArgs, phases: &[Phase]) {
    let ratio = phases[2].rate() / phases[0].rate().max(1e-9);
    let same_shape = phases[2].rate() / phases[1].rate().max(1e-9);
    if args.json {
        let mut o = json!({ "clients": args.clients, "workers": args.workers,
            "size": args.size, "window": args.window, "sdk_over_raw": ratio,
            "sdk_over_raw1": same_shape });
        for p in phases {
            o[p.name] = p.json();
        }
        println!("{o}");
        return;
    }
    println!(
        "{} clients x {} workers, {} B, window {}",
        args.clients, args.workers, args.size, args.window
    );
    for p in phases {
        println!(
            "{:<6} {:>9.0} req/s  p50 {} us  p99 {} us  p99.9 {} us",
            p.name,
            p.rate(),
            p.pct(0.5),
            p.pct(0.99),
            p.pct(0.999)
        );
    }
    println!(
        "sdk/raw {:.1}%  sdk/raw1 {:.1}%",
        ratio * 100.0,
        same_shape * 100.0
    );
}

async fn local_broker() -> Result<(String, tokio::sync::oneshot::Sender<()>), String> {
    use domo_broker::shell::{self, ShellConfig};
    let config = ShellConfig {
        binds: vec!["tcp://127.0.0.1:0".into()],
        ..ShellConfig::default()
    };
    let bound = shell::bind(config).await.map_err(|e| e.to_string())?;
    let endpoint = bound.endpoints()[0].to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.run(async {
        let _ = rx.await;
    }));
    Ok((endpoint, tx))
}

fn body(size: usize, t0: Instant) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.put_u64(t0.elapsed().as_nanos() as u64);
    b.resize(size, 0xAB);
    b.freeze()
}

fn latency_us(t0: Instant, frame: Option<&Bytes>) -> u32 {
    let sent = frame
        .and_then(|f| f.get(..8))
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes);
    let now = t0.elapsed().as_nanos() as u64;
    (now.saturating_sub(sent) / 1000) as u32
}

/// On a terminal, a progress line on stderr updated five times a second; nothing otherwise
/// (the per-round lines are the plain output).
fn progress(name: &'static str, total: u64, budget: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    use std::io::{IsTerminal, Write};
    tokio::spawn(async move {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            let done = total - budget.load(Ordering::Relaxed).min(total);
            let bar = "#".repeat((done * 30 / total.max(1)) as usize);
            eprint!("\r{name:<5} [{bar:<30}] {done}/{total}");
            let _ = std::io::stderr().flush();
            if done == total {
                eprint!("\r{:60}\r", "");
                return;
            }
        }
    })
}

fn take(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
        .is_ok()
}

async fn wait_workers(client: &Client, service: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.workers(service.to_string()).await.unwrap_or(0) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// domo-worker workers and domo-client clients.
async fn sdk_phase(args: &BenchArgs, endpoint: &str, round: usize) -> Phase {
    let service = Bytes::from(format!("bench.sdk.{round}"));
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        if let Ok(w) = Worker::connect(service.clone(), WorkerOptions::new([endpoint])) {
            let echo = |b: Vec<Bytes>| async move { Ok::<_, std::convert::Infallible>(b) };
            workers.push((
                stop,
                tokio::spawn(w.serve(echo, async {
                    let _ = stopped.await;
                })),
            ));
        }
    }
    let options = ClientOptions::new([endpoint])
        .pool_size(args.window)
        .timeout(Duration::from_secs(30));
    let clients: Vec<Client> = (0..args.clients)
        .filter_map(|_| Client::connect(options.clone()).ok())
        .collect();
    if let Some(c) = clients.first() {
        wait_workers(c, &String::from_utf8_lossy(&service), args.workers).await;
    }
    let budget = Arc::new(AtomicU64::new(args.requests));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let ticker = progress("sdk", args.requests, budget.clone());
    for c in &clients {
        for _ in 0..args.window {
            let (c, budget, size, service) =
                (c.clone(), budget.clone(), args.size, service.clone());
            tasks.spawn(async move {
                let mut lat = Vec::new();
                while take(&budget) {
                    if let Ok(r) = c.request(service.clone(), vec![body(size, t0)]).await {
                        lat.push(latency_us(t0, r.last()));
                    }
                }
                lat
            });
        }
    }
    let phase = collect("sdk", t0, tasks).await;
    ticker.abort();
    for (stop, task) in workers {
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    phase
}

async fn collect(
    name: &'static str,
    t0: Instant,
    mut tasks: tokio::task::JoinSet<Vec<u32>>,
) -> Phase {
    let mut latencies_us = Vec::new();
    while let Some(r) = tasks.join_next().await {
        latencies_us.extend(r.unwrap_or_default());
    }
    let elapsed = t0.elapsed();
    latencies_us.sort_unstable();
    Phase {
        name,
        requests: latencies_us.len() as u64,
        elapsed,
        latencies_us,
    }
}
