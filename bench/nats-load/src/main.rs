//! `domo-nats-load`: request-reply through nats-server in the shape of `domo bench --phases
//! raw`, so the two servers can be compared on one machine in one session.
//!
//! N client connections each keep `window` requests in flight (core NATS request-reply on one
//! subject); M responder connections in one queue group echo every request. Bodies carry their
//! send time in the first 8 bytes, so the latency is read from the echoed reply exactly as
//! `domo bench` reads it. After `--warmup` requests through the same connections, `--requests`
//! are measured; with `--server-pid` the nats-server process's CPU time (user + system, from
//! `/proc/PID/stat`) around the measured requests gives its CPU per request.
//!
//! `--json` prints one object with the shape fields of `domo bench --json` and one phase object,
//! `nats`, whose fields mean what the same fields of a `domo bench` phase mean.
//!
//! With `--jetstream` it measures durable publishes instead, in the shape of `domo bench
//! --phases titanic`: a file-backed stream on one subject (made afresh), N connections each
//! with `window` publishes awaiting their JetStream acknowledgement; latency is publish to
//! acknowledgement, and no responder runs. nats-server must run with `-js`. Note that
//! nats-server 2.9 acknowledges a publish once it is written to the stream's file, before
//! any fsync (it syncs every 2 minutes by default), where Titanic fsyncs before its `200`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions};
use bytes::{BufMut, Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::json;

/// The subject the responders serve.
const SUBJECT: &str = "bench.echo";

/// The responders' queue group: each request goes to one of them.
const QUEUE_GROUP: &str = "bench";

/// The JetStream stream and its one subject (`--jetstream`).
const STREAM: &str = "DOMOBENCH";
const JS_SUBJECT: &str = "bench.durable";

/// How long one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags.
#[derive(Debug, clap::Parser)]
#[command(version, about)]
struct Args {
    /// The nats-server to load.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    server: String,
    /// Client connections.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Echo responders (a queue group, one connection each).
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Measured requests, all clients together.
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// Requests sent first through the same connections, not counted.
    #[arg(long, value_name = "N", default_value_t = 0)]
    warmup: u64,
    /// Request body size in bytes (at least 8: it carries the send time).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Requests in flight per client.
    #[arg(long, default_value_t = 50)]
    window: usize,
    /// The nats-server process, whose CPU time per request is reported.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Durable publishes to a JetStream stream (file storage) instead of request-reply; the
    /// phase is named `jetstream` in the JSON.
    #[arg(long)]
    jetstream: bool,
    /// Core pub/sub fan-out instead, in the shape of `domo bench --phases topics`: one
    /// publisher connection, N subscriber connections on one subject, `--requests` messages;
    /// the rate is messages delivered per second, all subscribers together. Named `fanout` in
    /// the JSON.
    #[arg(long, value_name = "N")]
    fanout: Option<usize>,
    /// With --fanout: the publisher waits for the server (a flush: PING/PONG) after every N
    /// messages, so it cannot run ahead of the server by more than N; 0 (the default): it
    /// publishes as fast as its connection takes, as a NATS publisher does by default.
    #[arg(long, value_name = "N", default_value_t = 0)]
    flush_every: u64,
}

/// The measured requests.
struct Phase {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    /// Sorted.
    latencies_us: Vec<u32>,
    /// CPU seconds nats-server spent meanwhile, when `--server-pid` was given and readable.
    cpu_s: Option<f64>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p` quantile (nearest rank), 0 when nothing was measured.
    fn pct(&self, p: f64) -> u32 {
        let s = &self.latencies_us;
        if s.is_empty() {
            return 0;
        }
        s[((s.len() as f64 - 1.0) * p).round() as usize]
    }

    fn cpu_us_per_req(&self) -> Option<f64> {
        self.cpu_s
            .map(|cpu| cpu * 1e6 / self.requests.max(1) as f64)
    }

    fn json(&self) -> serde_json::Value {
        json!({ "requests": self.requests, "seconds": self.elapsed.as_secs_f64(),
            "req_per_s": self.rate(), "p50_us": self.pct(0.5), "p99_us": self.pct(0.99),
            "p999_us": self.pct(0.999), "cpu_us_per_req": self.cpu_us_per_req(),
            "errors": self.errors })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = <Args as clap::Parser>::parse();
    args.size = args.size.max(8);
    args.window = args.window.max(1);
    match run(&args).await {
        Ok(phase) => {
            report(&args, &phase);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("domo-nats-load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Connects everything, warms up, measures, stops the responders.
async fn run(args: &Args) -> Result<Phase, String> {
    let cpu = args.server_pid.map(CpuClock::process);
    if let Some(clock) = &cpu {
        clock
            .seconds()
            .ok_or_else(|| format!("cannot read the CPU time of pid {} from /proc", clock.pid))?;
    }
    if args.jetstream {
        return run_jetstream(args, cpu).await;
    }
    if let Some(n) = args.fanout {
        return run_fanout(args, n.max(1), cpu).await;
    }
    let mut responders = Vec::new();
    for _ in 0..args.workers {
        let client = connect(&args.server).await?;
        let subscriber = client
            .queue_subscribe(SUBJECT, QUEUE_GROUP.to_string())
            .await
            .map_err(|e| format!("cannot subscribe: {e}"))?;
        // The server has the subscription once it answers the flush's PING: no request below
        // finds no responder.
        client
            .flush()
            .await
            .map_err(|e| format!("cannot flush: {e}"))?;
        responders.push(tokio::spawn(echo(client, subscriber)));
    }
    let mut clients = Vec::new();
    for _ in 0..args.clients {
        clients.push(connect(&args.server).await?);
    }
    if args.warmup > 0 {
        requests(args, &clients, args.warmup).await;
    }
    let cpu0 = cpu.as_ref().and_then(CpuClock::seconds);
    let mut phase = requests(args, &clients, args.requests).await;
    let cpu1 = cpu.as_ref().and_then(CpuClock::seconds);
    phase.cpu_s = cpu0.zip(cpu1).map(|(before, after)| after - before);
    for task in responders {
        task.abort();
    }
    Ok(phase)
}

/// The fan-out subject.
const FAN_SUBJECT: &str = "bench.fan";
/// A subscriber that gets nothing for this long after the publisher flushed has all it will.
const FAN_IDLE: Duration = Duration::from_secs(2);

/// `--fanout N`: one publisher, `n` subscribers, `--requests` messages each should get.
async fn run_fanout(args: &Args, n: usize, cpu: Option<CpuClock>) -> Result<Phase, String> {
    let mut subscribers = Vec::new();
    for _ in 0..n {
        // async-nats drops what does not fit in a subscription's channel (64 Ki messages by
        // default) on the client side: room for the whole run, so what is measured is the
        // server's delivery, not this process's reading.
        let client = ConnectOptions::new()
            .subscription_capacity(
                usize::try_from(args.requests)
                    .unwrap_or(usize::MAX)
                    .max(1024),
            )
            .connect(&args.server)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", args.server))?;
        let sub = client
            .subscribe(FAN_SUBJECT)
            .await
            .map_err(|e| format!("cannot subscribe: {e}"))?;
        client
            .flush()
            .await
            .map_err(|e| format!("cannot flush: {e}"))?;
        subscribers.push((client, sub));
    }
    let publisher = connect(&args.server).await?;
    let total = args.requests;
    let t0 = Instant::now();
    let cpu0 = cpu.as_ref().and_then(CpuClock::seconds);
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for (client, mut sub) in subscribers {
        let mut done = done_rx.clone();
        tasks.spawn(async move {
            let _keep = client;
            let (mut got, mut last, mut lat) = (0u64, t0, Vec::new());
            while got < total {
                let next = if *done.borrow() {
                    match tokio::time::timeout(FAN_IDLE, sub.next()).await {
                        Ok(m) => m,
                        Err(_) => break,
                    }
                } else {
                    tokio::select! {
                        m = sub.next() => m,
                        _ = done.changed() => continue,
                    }
                };
                let Some(message) = next else { break };
                got += 1;
                last = Instant::now();
                if got.is_multiple_of(16) {
                    lat.push(latency_us(t0, &message.payload));
                }
            }
            (got, last, lat)
        });
    }
    for i in 1..=total {
        publisher
            .publish(FAN_SUBJECT, body(args.size, t0))
            .await
            .map_err(|e| format!("cannot publish: {e}"))?;
        if args.flush_every > 0 && i.is_multiple_of(args.flush_every) {
            publisher
                .flush()
                .await
                .map_err(|e| format!("cannot flush: {e}"))?;
        }
    }
    publisher
        .flush()
        .await
        .map_err(|e| format!("cannot flush: {e}"))?;
    let _ = done_tx.send(true);
    let (mut delivered, mut end, mut latencies_us) = (0u64, t0, Vec::new());
    while let Some(r) = tasks.join_next().await {
        let (got, last, lat) = r.map_err(|e| format!("subscriber task: {e}"))?;
        delivered += got;
        end = end.max(last);
        latencies_us.extend(lat);
    }
    let cpu1 = cpu.as_ref().and_then(CpuClock::seconds);
    latencies_us.sort_unstable();
    let expected = total * n as u64;
    if delivered < expected {
        eprintln!(
            "fanout: {delivered} of {expected} delivered ({} dropped: slow consumers)",
            expected - delivered
        );
    }
    Ok(Phase {
        requests: delivered,
        errors: expected - delivered,
        elapsed: end.duration_since(t0),
        latencies_us,
        cpu_s: cpu0.zip(cpu1).map(|(before, after)| after - before),
    })
}

/// `--jetstream`: a fresh file-backed stream, then durable publishes.
async fn run_jetstream(args: &Args, cpu: Option<CpuClock>) -> Result<Phase, String> {
    let admin = async_nats::jetstream::new(connect(&args.server).await?);
    // A stream left by an earlier run would make this one's writes start on a bigger file.
    let _ = admin.delete_stream(STREAM).await;
    admin
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: STREAM.to_string(),
            subjects: vec![JS_SUBJECT.to_string()],
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot create the stream (is nats-server running with -js?): {e}"))?;
    let mut contexts = Vec::new();
    for _ in 0..args.clients {
        contexts.push(async_nats::jetstream::new(connect(&args.server).await?));
    }
    if args.warmup > 0 {
        publishes(args, &contexts, args.warmup).await;
    }
    let cpu0 = cpu.as_ref().and_then(CpuClock::seconds);
    let mut phase = publishes(args, &contexts, args.requests).await;
    let cpu1 = cpu.as_ref().and_then(CpuClock::seconds);
    phase.cpu_s = cpu0.zip(cpu1).map(|(before, after)| after - before);
    let _ = admin.delete_stream(STREAM).await;
    Ok(phase)
}

/// `count` acknowledged publishes through `contexts`, `window` in flight on each.
async fn publishes(args: &Args, contexts: &[async_nats::jetstream::Context], count: u64) -> Phase {
    let budget = Arc::new(AtomicU64::new(count));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for js in contexts {
        let (js, budget) = (js.clone(), budget.clone());
        let (window, size) = (args.window, args.size);
        tasks.spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            let mut in_flight = FuturesUnordered::new();
            loop {
                while in_flight.len() < window && take(&budget) {
                    let (js, payload) = (js.clone(), body(size, t0));
                    in_flight.push(async move {
                        let sent = Instant::now();
                        let ack = js.publish(JS_SUBJECT, payload).await.ok()?;
                        ack.await.ok()?;
                        Some(sent.elapsed())
                    });
                }
                match in_flight.next().await {
                    Some(Some(took)) => {
                        lat.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                    }
                    Some(None) => errors += 1,
                    None => return (lat, errors),
                }
            }
        });
    }
    collect(tasks, t0).await
}

async fn connect(server: &str) -> Result<Client, String> {
    ConnectOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .connect(server)
        .await
        .map_err(|e| format!("cannot connect to {server}: {e}"))
}

/// One responder: publishes each request's body back to its reply subject.
async fn echo(client: Client, mut subscriber: async_nats::Subscriber) {
    while let Some(message) = subscriber.next().await {
        if let Some(reply) = message.reply {
            if client.publish(reply, message.payload).await.is_err() {
                return;
            }
        }
    }
}

/// `count` requests through `clients`, `window` in flight on each, sharing one budget.
async fn requests(args: &Args, clients: &[Client], count: u64) -> Phase {
    let budget = Arc::new(AtomicU64::new(count));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in clients {
        let (client, budget) = (client.clone(), budget.clone());
        let (window, size) = (args.window, args.size);
        tasks.spawn(async move { pipeline(&client, window, size, &budget, t0).await });
    }
    collect(tasks, t0).await
}

/// The phase of `tasks`' latencies and errors, timed from `t0` until the last ends.
async fn collect(mut tasks: tokio::task::JoinSet<(Vec<u32>, u64)>, t0: Instant) -> Phase {
    let (mut latencies_us, mut errors) = (Vec::new(), 0);
    while let Some(done) = tasks.join_next().await {
        if let Ok((lat, err)) = done {
            latencies_us.extend(lat);
            errors += err;
        }
    }
    let elapsed = t0.elapsed();
    latencies_us.sort_unstable();
    Phase {
        requests: latencies_us.len() as u64,
        errors,
        elapsed,
        latencies_us,
        cpu_s: None,
    }
}

/// One client: keeps `window` requests in flight until the budget is used up; returns the
/// latencies of the answered requests and the number that failed.
async fn pipeline(
    client: &Client,
    window: usize,
    size: usize,
    budget: &AtomicU64,
    t0: Instant,
) -> (Vec<u32>, u64) {
    let (mut lat, mut errors) = (Vec::new(), 0);
    let mut in_flight = FuturesUnordered::new();
    loop {
        while in_flight.len() < window && take(budget) {
            in_flight.push(client.request(SUBJECT, body(size, t0)));
        }
        match in_flight.next().await {
            Some(Ok(reply)) => lat.push(latency_us(t0, &reply.payload)),
            Some(Err(_)) => errors += 1,
            None => return (lat, errors),
        }
    }
}

fn take(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
        .is_ok()
}

/// `size` bytes starting with the nanoseconds since `t0`, big-endian (as `domo bench`).
fn body(size: usize, t0: Instant) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.put_u64(t0.elapsed().as_nanos() as u64);
    b.resize(size, 0xAB);
    b.freeze()
}

/// Microseconds since the send time carried by an echoed body.
fn latency_us(t0: Instant, body: &Bytes) -> u32 {
    let sent = body
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes);
    let now = t0.elapsed().as_nanos() as u64;
    (now.saturating_sub(sent) / 1000) as u32
}

fn report(args: &Args, phase: &Phase) {
    if args.json {
        let name = if args.jetstream {
            "jetstream"
        } else if args.fanout.is_some() {
            "fanout"
        } else {
            "nats"
        };
        let mut o = json!({ "clients": args.clients, "workers": args.workers, "size": args.size,
            "window": args.window });
        o[name] = phase.json();
        println!("{o}");
        return;
    }
    println!(
        "{} clients x {} responders, {} B, window {}",
        args.clients, args.workers, args.size, args.window
    );
    let cpu = phase
        .cpu_us_per_req()
        .map_or_else(String::new, |us| format!("  cpu {us:.2} us/req"));
    println!(
        "{:<6} {:>9.0} req/s  p50 {} us  p99 {} us  p99.9 {} us{cpu}",
        if args.jetstream { "js" } else { "nats" },
        phase.rate(),
        phase.pct(0.5),
        phase.pct(0.99),
        phase.pct(0.999),
    );
    if phase.errors > 0 {
        println!("{} requests failed", phase.errors);
    }
}

/// The CPU time (user + system) of a process, from its `/proc` stat file.
struct CpuClock {
    pid: u32,
    path: PathBuf,
}

impl CpuClock {
    fn process(pid: u32) -> Self {
        Self {
            pid,
            path: PathBuf::from(format!("/proc/{pid}/stat")),
        }
    }

    /// CPU seconds so far; `None` where there is no `/proc` or the process is gone.
    fn seconds(&self) -> Option<f64> {
        cpu_seconds(&std::fs::read_to_string(&self.path).ok()?)
    }
}

/// User + system time in seconds from the text of a `/proc/PID/stat` file.
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // Clock ticks of USER_HZ, which is 100 on Linux.
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_user_plus_system_ticks() {
        let stat = "42 (nats server) S 1 42 42 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 3 0";
        assert_eq!(cpu_seconds(stat), Some(2.0));
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[test]
    fn the_body_carries_its_send_time() {
        let t0 = Instant::now() - Duration::from_millis(5);
        let b = body(64, t0);
        assert_eq!(b.len(), 64);
        assert!(latency_us(t0, &b) < 1_000_000);
    }
}
