//! `domo bench`: N clients x M echo workers through a broker, first on raw sockets (bare
//! DEALERs with hand-built MDP frames, in two shapes), then through domo-client and
//! domo-worker, in the same run so the rates compare on the same machine state. Without
//! `--broker` it runs the `domo-broker` binary as a child process (`broker.rs`) and reports
//! that process's CPU time per request.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use domo_client::{Client, ClientOptions};
use domo_worker::{Worker, WorkerOptions};
use serde_json::json;

use self::broker::{free_endpoint, CpuClock, LocalBroker};
use self::raw::{direct_phase, raw_phase, Shape};
use crate::duration::parse_duration;

mod broker;
mod fanout;
mod raw;

/// A phase of `domo bench`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum PhaseKind {
    /// Raw DEALER clients, `window` requests in flight on each.
    Raw,
    /// Raw DEALER clients, one request in flight on each of `clients x window` connections.
    Raw1,
    /// domo-client clients and domo-worker workers.
    Sdk,
    /// Durable submissions to Titanic (`titanic.request`): `clients` domo-client clients,
    /// each with `window` submissions in flight, each acknowledged once stored (fsynced).
    /// Not in the default list; the broker this bench starts then runs its embedded Titanic
    /// on a scratch directory.
    Titanic,
    /// Topic fan-out: one publisher (PUB), `--subscribers` subscribers (SUB) of one topic,
    /// `--requests` messages; counts what the subscribers get. Not in the default list; the
    /// broker this bench starts then has its topic endpoints on free ports.
    Topics,
    /// Acknowledged writes to a topic kept on disk (`topic.write`, durable before each
    /// answer, group commit): `clients` domo-client clients, each with `window` writes in
    /// flight. Not in the default list; the broker this bench starts then keeps its topics
    /// on a scratch directory.
    TopicWrites,
    /// DEALER <-> ROUTER echo with no broker (once, after the rounds).
    Direct,
}

/// `domo bench` flags.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// A running broker, from the global --broker (or DOMO_BROKER); without it, the
    /// domo-broker binary is started as a child process on a free port.
    #[arg(skip)]
    pub(crate) broker: Option<String>,
    /// The domo-broker binary to start when no --broker is given [default: domo-broker in
    /// the directory of this domo, else on PATH].
    // An OsString: an empty DOMO_BROKER_BIN means the default, not a usage error.
    #[arg(
        long,
        value_name = "PATH",
        env = "DOMO_BROKER_BIN",
        value_parser = clap::builder::OsStringValueParser::new()
    )]
    broker_bin: Option<OsString>,
    /// Client connections (SDK: clients, each with a pool of `window` connections).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Echo workers.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Spread the workers and the requests over N services (worker i serves service i mod N;
    /// at most --workers).
    #[arg(long, value_name = "N", default_value_t = 1)]
    services: usize,
    /// Requests per phase, all clients together.
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// Requests sent before each phase's measurement through the same workers, not counted.
    #[arg(long, value_name = "N", default_value_t = 0)]
    warmup: u64,
    /// Request body size in bytes (at least 8: it carries the send time).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Requests in flight per client.
    #[arg(long, default_value_t = 50)]
    window: usize,
    /// Heartbeat interval of the echo workers and of the broker started without --broker
    /// (with --broker, give that broker's).
    #[arg(long, value_name = "DURATION", default_value = "2500ms", value_parser = parse_duration)]
    heartbeat: Duration,
    /// Rounds of (raw, SDK), alternating; the best round of each is reported, which
    /// filters out noise from other load on the machine.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The phases to run, comma-separated: raw, raw1, sdk and titanic go through the broker
    /// in each round; direct (no broker) runs once after the rounds. titanic (durable
    /// submissions; try --clients 64 --window 1) needs a broker with Titanic: the one this
    /// bench starts then runs it on a scratch directory.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "raw,raw1,sdk"
    )]
    phases: Vec<PhaseKind>,
    /// Also measure DEALER <-> ROUTER echo with no broker: the ceiling (adds direct to
    /// --phases).
    #[arg(long)]
    direct: bool,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Run the broker this bench starts with CURVE security (fresh keys in a scratch
    /// directory; every client and worker connection is CURVE), to compare with a run
    /// without. Not with --broker.
    #[arg(long)]
    curve: bool,
    /// Credit the raw phases' echo workers announce (`X-Domo-Credit`): requests a worker
    /// may hold at once on a broker that lists `credit` in its `X-Domo-Extensions`; 1 is
    /// RFC 7's one at a time, and an RFC 7 broker gives 1 whatever is announced. The SDK
    /// phase uses what the worker SDK negotiates by default.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    credit: u32,
    /// Subscribers of the topics phase.
    #[arg(long, value_name = "N", default_value_t = 10)]
    subscribers: usize,
    /// The topics phase with --broker: that broker's topic subscribe endpoint.
    #[arg(long, value_name = "EP", default_value = "tcp://127.0.0.1:5557")]
    topics_subscribe: String,
    /// The topics phase with --broker: that broker's topic publish endpoint.
    #[arg(long, value_name = "EP", default_value = "tcp://127.0.0.1:5558")]
    topics_publish: String,
    /// With --broker: the pid of that broker on this machine, to report its CPU per request
    /// (read from /proc/PID/stat around each phase).
    #[arg(long, value_name = "PID")]
    broker_pid: Option<u32>,
    /// With --curve: the broker's public key and the clients' and workers' keypair.
    #[arg(skip)]
    keys: Option<Arc<BenchKeys>>,
}

/// The keys of a `--curve` run; the files live as long as this.
#[derive(Debug)]
pub(crate) struct BenchKeys {
    broker: domo_zmtp::PublicKey,
    client: domo_zmtp::KeyPair,
    broker_args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl BenchKeys {
    /// A broker keypair (secret file 0600) and one client keypair in `authorized/`.
    fn new() -> Result<Self, String> {
        use domo_zmtp::curve::Certificate;
        let dir = tempfile::tempdir().map_err(|e| format!("cannot make a key directory: {e}"))?;
        let broker = domo_zmtp::KeyPair::generate();
        let client = domo_zmtp::KeyPair::generate();
        let authorized = dir.path().join("authorized");
        let io = |e: std::io::Error| format!("cannot write bench keys: {e}");
        std::fs::create_dir(&authorized).map_err(io)?;
        let (_, secret) = Certificate::new(broker.secret.clone())
            .save(dir.path(), "broker")
            .map_err(io)?;
        Certificate::new(client.secret.clone())
            .save(&authorized, "bench")
            .map_err(io)?;
        std::fs::remove_file(authorized.join("bench.key_secret")).map_err(io)?;
        let secret = secret.ok_or("no secret file written")?;
        let broker_args = vec![
            "--security-mechanism".into(),
            "curve".into(),
            "--security-secret-key-file".into(),
            secret.display().to_string(),
            "--security-authorized-keys".into(),
            authorized.display().to_string(),
        ];
        Ok(Self {
            broker: broker.public,
            client,
            broker_args,
            _dir: dir,
        })
    }
}

impl BenchArgs {
    /// Transport options of a raw connection to the broker (CURVE with --curve).
    pub(crate) fn transport(&self) -> domo_zmtp::Options {
        let mut options = domo_zmtp::Options::default();
        if let Some(keys) = &self.keys {
            options.security = domo_zmtp::Security::curve_client(keys.broker, keys.client.clone());
        }
        options
    }

    /// Transport options of a raw echo worker: [`BenchArgs::transport`], announcing
    /// `--credit` when above 1.
    pub(crate) fn worker_transport(&self) -> domo_zmtp::Options {
        let mut options = self.transport();
        if self.credit > 1 {
            // As domo-worker does for a worker that holds several requests.
            options.coalesce_writes = true;
            options.metadata.insert(
                domo_mdp::extensions::CREDIT_PROPERTY,
                self.credit.to_string(),
            );
        }
        options
    }

    /// Client options for `endpoint` (CURVE with --curve).
    pub(crate) fn client_options(&self, endpoint: &str) -> ClientOptions {
        let options = ClientOptions::new([endpoint]);
        match &self.keys {
            Some(keys) => options.curve(keys.broker, keys.client.clone()),
            None => options,
        }
    }

    /// Worker options for `endpoint` (CURVE with --curve).
    fn worker_options(&self, endpoint: &str) -> WorkerOptions {
        let options = WorkerOptions::new([endpoint]);
        match &self.keys {
            Some(keys) => options.curve(keys.broker, keys.client.clone()),
            None => options,
        }
    }
}

/// One measured phase.
struct Phase {
    name: &'static str,
    requests: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    /// CPU seconds the broker process (the echo thread for `direct`) spent meanwhile, when
    /// known: only for a broker this run started.
    cpu_s: Option<f64>,
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

    /// CPU microseconds per request, when known.
    fn cpu_us_per_req(&self) -> Option<f64> {
        self.cpu_s
            .map(|cpu| cpu * 1e6 / self.requests.max(1) as f64)
    }

    /// `  cpu X us/req`, or nothing when unknown.
    fn cpu_text(&self) -> String {
        self.cpu_us_per_req()
            .map_or_else(String::new, |us| format!("  cpu {us:.2} us/req"))
    }

    /// The phase as JSON. `broker_cpu_us_per_req` is the broker's CPU per request (null when
    /// unknown, and for `direct`, which has no broker); `cpu_us_per_req` is the measured
    /// process's (or, for `direct`, the echo thread's), kept for older readers.
    fn json(&self) -> serde_json::Value {
        let broker_cpu = if self.name == "direct" {
            None
        } else {
            self.cpu_us_per_req()
        };
        json!({ "requests": self.requests, "seconds": self.elapsed.as_secs_f64(),
            "req_per_s": self.rate(), "p50_us": self.pct(0.5), "p99_us": self.pct(0.99),
            "p999_us": self.pct(0.999), "cpu_us_per_req": self.cpu_us_per_req(),
            "broker_cpu_us_per_req": broker_cpu })
    }
}

/// A usage error: one line on stderr, exit 2.
fn usage(message: &str) -> ExitCode {
    eprintln!("domo: {message}");
    ExitCode::from(2)
}

pub(crate) async fn run(mut args: BenchArgs) -> ExitCode {
    args.size = args.size.max(8);
    args.window = args.window.max(1);
    if args.direct && !args.phases.contains(&PhaseKind::Direct) {
        args.phases.push(PhaseKind::Direct);
    }
    let through_broker: Vec<PhaseKind> = [
        PhaseKind::Raw,
        PhaseKind::Raw1,
        PhaseKind::Sdk,
        PhaseKind::Titanic,
        PhaseKind::Topics,
        PhaseKind::TopicWrites,
    ]
    .into_iter()
    .filter(|kind| args.phases.contains(kind))
    .collect();
    if args.services == 0 || (args.services > 1 && args.services > args.workers) {
        return usage("bench: --services must be at least 1 and at most --workers");
    }
    if args.heartbeat < Duration::from_millis(1) {
        return usage("bench: --heartbeat must be at least 1ms");
    }
    if through_broker.is_empty() {
        let phases = vec![direct_phase(&args).await];
        report(&args, &phases);
        return ExitCode::SUCCESS;
    }
    if args.broker_pid.is_some() && args.broker.is_none() {
        return usage("bench: --broker-pid goes with --broker (without it, bench measures the broker it starts)");
    }
    if let Some(endpoint) = &args.broker {
        if args.curve {
            return usage("bench: --curve runs a broker of its own: not with --broker");
        }
        let cpu = match args.broker_pid {
            Some(pid) => {
                let clock = CpuClock::process(pid);
                if clock.seconds().is_none() {
                    return usage(&format!(
                        "bench: --broker-pid {pid}: no such process (or no /proc/{pid}/stat)"
                    ));
                }
                Some(clock)
            }
            None => None,
        };
        return measure(&args, endpoint, cpu.as_ref(), &through_broker).await;
    }
    if args.broker.is_none()
        && (args.phases.contains(&PhaseKind::Topics)
            || args.phases.contains(&PhaseKind::TopicWrites))
    {
        // The broker this bench starts puts its topic endpoints on ports free now.
        match (free_endpoint(), free_endpoint()) {
            (Ok(s), Ok(p)) => {
                args.topics_subscribe = s;
                args.topics_publish = p;
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("domo: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if args.curve {
        match BenchKeys::new() {
            Ok(keys) => args.keys = Some(Arc::new(keys)),
            Err(e) => {
                eprintln!("domo: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // On a signal the future below is dropped, and with it the broker guard: the broker is
    // killed whichever way the bench ends.
    tokio::select! {
        code = with_own_broker(&args, &through_broker) => code,
        code = interrupted() => code,
    }
}

/// Starts the broker binary, measures against it, kills it.
async fn with_own_broker(args: &BenchArgs, kinds: &[PhaseKind]) -> ExitCode {
    let broker = match start_broker(args).await {
        Ok(broker) => broker,
        Err(e) => {
            eprintln!("domo: cannot start a broker: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cpu = CpuClock::process(broker.pid());
    let code = measure(args, broker.endpoint(), Some(&cpu), kinds).await;
    drop(broker);
    code
}

/// Finds the broker binary and starts it; says which and where on stderr.
async fn start_broker(args: &BenchArgs) -> Result<LocalBroker, String> {
    let explicit = args.broker_bin.as_deref().filter(|bin| !bin.is_empty());
    let bin = broker::locate(explicit.map(Path::new))?;
    let extra = args
        .keys
        .as_ref()
        .map_or_else(Vec::new, |k| k.broker_args.clone());
    let mut extra = extra;
    // The Titanic phase needs the embedded Titanic, on a scratch directory kept as long as
    // the broker runs.
    if args.phases.contains(&PhaseKind::Topics) || args.phases.contains(&PhaseKind::TopicWrites) {
        extra.extend([
            "--topics-subscribe".to_string(),
            args.topics_subscribe.clone(),
            "--topics-publish".to_string(),
            args.topics_publish.clone(),
        ]);
    }
    let titanic_dir = if args.phases.contains(&PhaseKind::Titanic) {
        let dir =
            tempfile::tempdir().map_err(|e| format!("cannot make a Titanic directory: {e}"))?;
        extra.push("--titanic-data-dir".into());
        extra.push(dir.path().display().to_string());
        Some(dir)
    } else {
        None
    };
    let topics_dir = if args.phases.contains(&PhaseKind::TopicWrites) {
        let dir =
            tempfile::tempdir().map_err(|e| format!("cannot make a topics directory: {e}"))?;
        extra.push("--topics-data-dir".into());
        extra.push(dir.path().display().to_string());
        Some(dir)
    } else {
        None
    };
    let mut broker = LocalBroker::start(&bin, args.heartbeat, &extra, args.transport()).await?;
    broker.keep(titanic_dir);
    broker.keep_also(topics_dir);
    eprintln!(
        "domo: started {} (pid {}) on {}{}",
        bin.display(),
        broker.pid(),
        broker.endpoint(),
        if args.keys.is_some() {
            " with CURVE (every connection encrypted)"
        } else {
            ""
        }
    );
    Ok(broker)
}

/// Resolves on SIGINT, SIGTERM or SIGHUP with the exit code a shell reports for that signal
/// (130, 143, 129).
async fn interrupted() -> ExitCode {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            let (what, code) = tokio::select! {
                _ = tokio::signal::ctrl_c() => ("interrupted", 130),
                _ = term.recv() => ("terminated", 143),
                _ = hup.recv() => ("hung up", 129),
            };
            eprintln!("\ndomo: {what}; stopping the broker");
            return ExitCode::from(code);
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
    eprintln!("\ndomo: interrupted; stopping the broker");
    ExitCode::from(130)
}

/// The rounds through the broker at `endpoint`, then the direct phase if asked, then the
/// report.
async fn measure(
    args: &BenchArgs,
    endpoint: &str,
    cpu: Option<&CpuClock>,
    kinds: &[PhaseKind],
) -> ExitCode {
    let mut best: Vec<Phase> = Vec::new();
    for round in 0..args.rounds.max(1) {
        let mut phases = Vec::new();
        for kind in kinds {
            phases.push(match kind {
                PhaseKind::Raw => raw_phase(args, endpoint, round, Shape::Pipelined, cpu).await,
                PhaseKind::Raw1 => {
                    raw_phase(args, endpoint, round, Shape::OnePerConnection, cpu).await
                }
                PhaseKind::Sdk => sdk_phase(args, endpoint, round, cpu).await,
                PhaseKind::Titanic => titanic_phase(args, endpoint, round, cpu).await,
                PhaseKind::TopicWrites => topic_writes_phase(args, endpoint, round, cpu).await,
                PhaseKind::Topics => {
                    match fanout::fanout_phase(
                        args,
                        &args.topics_subscribe,
                        &args.topics_publish,
                        cpu,
                    )
                    .await
                    {
                        Ok(phase) => phase,
                        Err(e) => {
                            eprintln!("domo: bench topics: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
                PhaseKind::Direct => continue,
            });
        }
        for (i, phase) in phases.into_iter().enumerate() {
            eprintln!(
                "\rround {} {}: {:.0} req/s  p50 {} us  p99 {} us  p99.9 {} us  max {} us{}",
                round + 1,
                phase.name,
                phase.rate(),
                phase.pct(0.5),
                phase.pct(0.99),
                phase.pct(0.999),
                phase.pct(1.0),
                phase.cpu_text()
            );
            match best.get(i) {
                Some(b) if b.rate() >= phase.rate() => {}
                Some(_) => best[i] = phase,
                None => best.push(phase),
            }
        }
    }
    let mut phases = best;
    if args.phases.contains(&PhaseKind::Direct) {
        phases.push(direct_phase(args).await);
    }
    report(args, &phases);
    ExitCode::SUCCESS
}

fn report(args: &BenchArgs, phases: &[Phase]) {
    let rate = |name: &str| phases.iter().find(|p| p.name == name).map(Phase::rate);
    let over = |base: &str| {
        rate("sdk")
            .zip(rate(base))
            .map(|(sdk, base)| sdk / base.max(1e-9))
    };
    let (ratio, same_shape) = (over("raw"), over("raw1"));
    if args.json {
        let mut o = json!({ "clients": args.clients, "workers": args.workers,
            "services": args.services, "size": args.size, "window": args.window });
        if let Some(r) = ratio {
            o["sdk_over_raw"] = json!(r);
        }
        if let Some(r) = same_shape {
            o["sdk_over_raw1"] = json!(r);
        }
        for p in phases {
            o[p.name] = p.json();
        }
        println!("{o}");
        return;
    }
    let services = match args.services {
        1 => String::new(),
        n => format!(", {n} services"),
    };
    println!(
        "{} clients x {} workers{services}, {} B, window {}",
        args.clients, args.workers, args.size, args.window
    );
    for p in phases {
        println!(
            "{:<6} {:>9.0} req/s  p50 {} us  p99 {} us  p99.9 {} us{}",
            p.name,
            p.rate(),
            p.pct(0.5),
            p.pct(0.99),
            p.pct(0.999),
            p.cpu_text()
        );
    }
    let ratios: Vec<String> = [("sdk/raw", ratio), ("sdk/raw1", same_shape)]
        .into_iter()
        .filter_map(|(label, r)| r.map(|r| format!("{label} {:.1}%", r * 100.0)))
        .collect();
    if !ratios.is_empty() {
        println!("{}", ratios.join("  "));
    }
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

/// The name of service `i` of `count` in a phase: `base` alone when there is one.
fn service_name(base: &str, i: usize, count: usize) -> String {
    if count == 1 {
        base.to_string()
    } else {
        format!("{base}.{i}")
    }
}

/// Waits (30 s at most in all) until each of `services` has its share of `workers` (worker
/// `w` serves service `w mod services.len()`).
async fn wait_workers(client: &Client, services: &[String], workers: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, service) in services.iter().enumerate() {
        let share = workers.saturating_sub(i).div_ceil(services.len());
        while client.workers(service.clone()).await.unwrap_or(0) < share
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The CPU seconds `clock` counted between `before` and now.
fn cpu_since(clock: Option<&CpuClock>, before: Option<f64>) -> Option<f64> {
    let now = clock.and_then(CpuClock::seconds)?;
    Some(now - before?)
}

/// domo-worker workers and domo-client clients.
async fn sdk_phase(
    args: &BenchArgs,
    endpoint: &str,
    round: usize,
    cpu: Option<&CpuClock>,
) -> Phase {
    let names: Vec<String> = (0..args.services)
        .map(|i| service_name(&format!("bench.sdk.{round}"), i, args.services))
        .collect();
    let services: Arc<[Bytes]> = names.iter().map(|n| Bytes::from(n.clone())).collect();
    let heartbeat = domo_mdp::Heartbeat {
        interval: args.heartbeat,
        ..domo_mdp::Heartbeat::default()
    };
    let mut workers = Vec::new();
    for w in 0..args.workers {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = args.worker_options(endpoint).heartbeat(heartbeat);
        if let Ok(w) = Worker::new(services[w % services.len()].clone(), options) {
            let echo = |b: Vec<Bytes>| async move { Ok::<_, std::convert::Infallible>(b) };
            workers.push((
                stop,
                tokio::spawn(w.serve(echo, async {
                    let _ = stopped.await;
                })),
            ));
        }
    }
    let clients = sdk_clients(args, endpoint);
    if let Some(c) = clients.first() {
        wait_workers(c, &names, args.workers).await;
    }
    if args.warmup > 0 {
        sdk_requests(args, &clients, &services, args.warmup).await;
    }
    let cpu0 = cpu.and_then(CpuClock::seconds);
    let mut phase = sdk_requests(args, &clients, &services, args.requests).await;
    phase.cpu_s = cpu_since(cpu, cpu0);
    for (stop, task) in workers {
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    phase
}

/// `clients` domo-client clients, each allowing `window` requests in flight.
fn sdk_clients(args: &BenchArgs, endpoint: &str) -> Vec<Client> {
    let options = args
        .client_options(endpoint)
        .pool_size(args.window)
        .timeout(Duration::from_secs(30));
    (0..args.clients)
        .filter_map(|_| Client::new(options.clone()).ok())
        .collect()
}

/// `requests` requests through `clients`, `window` at a time on each, spread over `services`.
async fn sdk_requests(
    args: &BenchArgs,
    clients: &[Client],
    services: &Arc<[Bytes]>,
    requests: u64,
) -> Phase {
    let (size, services) = (args.size, services.clone());
    per_client_task(args, clients, requests, "sdk", move |c, n, t0| {
        let service = services[n % services.len()].clone();
        async move {
            let reply = c.request(service, vec![body(size, t0)]).await.ok()?;
            Some(latency_us(t0, reply.last()))
        }
    })
    .await
}

/// `requests` operations through `clients`, `window` tasks on each, sharing one budget:
/// `op(client, n, t0)` makes a task's next operation (`n` counts up from the task's number,
/// one per operation), which returns its latency in microseconds, or `None` if it failed
/// (not counted).
async fn per_client_task<F, Fut>(
    args: &BenchArgs,
    clients: &[Client],
    requests: u64,
    name: &'static str,
    op: F,
) -> Phase
where
    F: Fn(Client, usize, Instant) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Option<u32>> + Send,
{
    let budget = Arc::new(AtomicU64::new(requests));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let ticker = progress(name, requests, budget.clone());
    for (k, c) in clients
        .iter()
        .flat_map(|c| std::iter::repeat_n(c, args.window))
        .enumerate()
    {
        let (c, budget, op) = (c.clone(), budget.clone(), op.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut n = k;
            while take(&budget) {
                n += 1;
                if let Some(us) = op(c.clone(), n, t0).await {
                    lat.push(us);
                }
            }
            lat
        });
    }
    let phase = collect(name, t0, tasks).await;
    ticker.abort();
    phase
}

/// Durable submissions: `clients` clients (one multiplexed connection each), `window`
/// submissions in flight on each, to one service with no worker (Titanic stores the
/// requests; the figure is the acknowledgement path alone). Latency is submission to `200`.
async fn titanic_phase(
    args: &BenchArgs,
    endpoint: &str,
    round: usize,
    cpu: Option<&CpuClock>,
) -> Phase {
    let service = Bytes::from(format!("bench.titanic.{round}"));
    let clients = sdk_clients(args, endpoint);
    if let Some(c) = clients.first() {
        let titanic = [String::from("titanic.request")];
        wait_workers(c, &titanic, 1).await;
    }
    let submit = |count| titanic_requests(args, &clients, &service, count);
    if args.warmup > 0 {
        submit(args.warmup).await;
    }
    let cpu0 = cpu.and_then(CpuClock::seconds);
    let mut phase = submit(args.requests).await;
    phase.cpu_s = cpu_since(cpu, cpu0);
    phase
}

/// Acknowledged writes to a disk topic made for this round.
async fn topic_writes_phase(
    args: &BenchArgs,
    endpoint: &str,
    round: usize,
    cpu: Option<&CpuClock>,
) -> Phase {
    let topic = Bytes::from(format!("bench.durable.{round}"));
    let clients = sdk_clients(args, endpoint);
    if let Some(c) = clients.first() {
        let retention = domo_client::Retention {
            max_messages: 100_000,
            max_bytes: 256 << 20,
            persist: domo_client::Persist::Disk,
            ..domo_client::Retention::default()
        };
        if let Err(e) = c.topic_create(topic.clone(), retention).await {
            eprintln!("domo: bench topic-writes: cannot create the topic: {e}");
        }
    }
    let write = |count| {
        let (size, topic) = (args.size, topic.clone());
        per_client_task(args, &clients, count, "writes", move |c, _, t0| {
            let topic = topic.clone();
            async move {
                let sent = Instant::now();
                c.topic_write(topic, vec![body(size, t0)]).await.ok()?;
                Some(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX))
            }
        })
    };
    if args.warmup > 0 {
        write(args.warmup).await;
    }
    let cpu0 = cpu.and_then(CpuClock::seconds);
    let mut phase = write(args.requests).await;
    phase.cpu_s = cpu_since(cpu, cpu0);
    phase
}

/// `requests` submissions through `clients`, `window` at a time on each.
async fn titanic_requests(
    args: &BenchArgs,
    clients: &[Client],
    service: &Bytes,
    requests: u64,
) -> Phase {
    let (size, service) = (args.size, service.clone());
    per_client_task(args, clients, requests, "titanic", move |c, _, t0| {
        let service = service.clone();
        async move {
            let sent = Instant::now();
            c.submit(service, vec![body(size, t0)]).await.ok()?;
            Some(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX))
        }
    })
    .await
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
        cpu_s: None,
    }
}
