//! ROUTER<->DEALER echo benchmark: `domo-zmtp` against libzmq (the `zmq` crate, libzmq 4.3.4)
//! as the reference, in one process over `tcp://127.0.0.1`.
//!
//! # What it measures
//!
//! For each implementation an echo server (a ROUTER that sends every message straight back to
//! its sender) and a client (a DEALER) run on two OS threads:
//!
//! - `pipelined`: messages of 3 frames of 32 B with a window of 100 in flight; round trips
//!   per second.
//! - `pingpong`: the same messages one at a time (window 1); round-trip latency p50, p99 and
//!   p99.9 in microseconds.
//! - `large`: one frame of 1 MiB with a window of 8; round trips per second and MiB/s (each
//!   way).
//!
//! Threading is comparable: libzmq gets one context per side (one I/O thread each) plus the
//! application thread of each side; domo runs each side on its own thread with a
//! current-thread tokio runtime (the socket's connection task shares that thread). Both
//! echo loops are zero-copy: they hand the received frames back to the socket. The client
//! re-sends each reply it receives, so payloads are allocated only where a socket receives.
//!
//! Runs are interleaved (round after round, case by case, domo and libzmq alternating which
//! goes first) and the median of the rounds is reported, with the ratio domo/libzmq. Targets
//! (the transport issue, #2): throughput >= 1.2x libzmq and ping-pong p99 <= libzmq's.
//!
//! # Running it
//!
//! ```text
//! cargo bench -p domo-zmtp --bench echo                  # full run (~1 min)
//! cargo bench -p domo-zmtp --bench echo -- --quick       # smoke run (or BENCH_QUICK=1)
//! cargo bench -p domo-zmtp --bench echo -- --json        # also print one JSON line
//! cargo bench -p domo-zmtp --bench echo -- domo/pipelined    # only cases matching a filter
//! ```
//!
//! Each run also reports how much CPU other processes used meanwhile (from `/proc/stat`);
//! above 10% of the machine the summary warns that the numbers are not trustworthy. On a
//! 2-core machine a busy neighbour distorts the comparison in both directions.
//!
//! A filter is a substring of `IMPL/CASE` (`domo/pipelined`, `libzmq/pingpong`, `large`, ...).
//! Environment overrides: `BENCH_ROUNDS`, `BENCH_PIPELINED_N`, `BENCH_PINGPONG_N`,
//! `BENCH_LARGE_N` (message counts per run, warm-up excluded). For a profile of the domo
//! path, run the built binary under callgrind with a reduced count, e.g.
//! `BENCH_ROUNDS=1 BENCH_PIPELINED_N=50000 valgrind --tool=callgrind <bench binary> domo/pipelined`.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_zmtp::{Dealer, Options, Router, TrySendError};

/// Frames per small message.
const SMALL_FRAMES: usize = 3;
/// Bytes per small frame.
const SMALL_SIZE: usize = 32;
/// Messages in flight in the pipelined case.
const WINDOW: usize = 100;
/// Body of the large message.
const LARGE_SIZE: usize = 1 << 20;
/// Messages in flight in the large case.
const LARGE_WINDOW: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Impl {
    Domo,
    Libzmq,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Self::Domo => "domo",
            Self::Libzmq => "libzmq",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Pipelined,
    PingPong,
    Large,
}

const CASES: [Case; 3] = [Case::Pipelined, Case::PingPong, Case::Large];

impl Case {
    fn name(self) -> &'static str {
        match self {
            Self::Pipelined => "pipelined",
            Self::PingPong => "pingpong",
            Self::Large => "large",
        }
    }
}

/// What one client run does: `warmup` round trips, then `n` measured ones.
#[derive(Debug, Clone, Copy)]
struct Workload {
    frames: usize,
    size: usize,
    window: usize,
    warmup: usize,
    n: usize,
    /// Record each round trip's latency (window 1 only).
    latency: bool,
}

#[derive(Debug)]
struct Config {
    rounds: usize,
    pipelined_n: usize,
    pingpong_n: usize,
    large_n: usize,
    quick: bool,
    json: bool,
    filter: Option<String>,
}

impl Config {
    fn from_env() -> Self {
        let mut quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v != "0" && !v.is_empty());
        let mut json = false;
        let mut filter = None;
        for arg in std::env::args().skip(1) {
            match arg.as_str() {
                "--quick" => quick = true,
                "--json" => json = true,
                // `cargo bench` passes `--bench` to harness = false targets.
                a if a.starts_with("--bench") => {}
                a if a.starts_with('-') => eprintln!("echo bench: ignoring unknown option {a}"),
                a => filter = Some(a.to_owned()),
            }
        }
        let env = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let (rounds, pipelined_n, pingpong_n, large_n) = if quick {
            (1, 20_000, 2_000, 100)
        } else {
            (5, 1_000_000, 20_000, 2_000)
        };
        Self {
            rounds: env("BENCH_ROUNDS", rounds).max(1),
            pipelined_n: env("BENCH_PIPELINED_N", pipelined_n).max(1),
            pingpong_n: env("BENCH_PINGPONG_N", pingpong_n).max(1),
            large_n: env("BENCH_LARGE_N", large_n).max(1),
            quick,
            json,
            filter,
        }
    }

    fn selected(&self, imp: Impl, case: Case) -> bool {
        let key = format!("{}/{}", imp.name(), case.name());
        self.filter.as_deref().is_none_or(|f| key.contains(f))
    }

    fn workload(&self, case: Case) -> Workload {
        match case {
            Case::Pipelined => Workload {
                frames: SMALL_FRAMES,
                size: SMALL_SIZE,
                window: WINDOW,
                warmup: (self.pipelined_n / 10).clamp(1, 20_000),
                n: self.pipelined_n,
                latency: false,
            },
            Case::PingPong => Workload {
                frames: SMALL_FRAMES,
                size: SMALL_SIZE,
                window: 1,
                warmup: (self.pingpong_n / 10).clamp(1, 2_000),
                n: self.pingpong_n,
                latency: true,
            },
            Case::Large => Workload {
                frames: 1,
                size: LARGE_SIZE,
                window: LARGE_WINDOW,
                warmup: (self.large_n / 10).clamp(1, 50),
                n: self.large_n,
                latency: false,
            },
        }
    }
}

/// The measured part of one client run.
#[derive(Debug, Clone)]
struct RunResult {
    elapsed: Duration,
    n: usize,
    /// Round-trip latencies in nanoseconds, when recorded.
    latencies: Vec<u64>,
}

/// One run's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    msgs_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    /// CPU used by other processes during the run, in percent of the machine.
    others_pct: f64,
}

impl Sample {
    fn from_run(mut r: RunResult) -> Self {
        let mut s = Self {
            msgs_per_s: r.n as f64 / r.elapsed.as_secs_f64(),
            ..Self::default()
        };
        if !r.latencies.is_empty() {
            r.latencies.sort_unstable();
            s.p50_us = percentile(&r.latencies, 0.50);
            s.p99_us = percentile(&r.latencies, 0.99);
            s.p999_us = percentile(&r.latencies, 0.999);
        }
        s
    }
}

/// Nearest-rank percentile of sorted nanoseconds, in microseconds.
fn percentile(sorted: &[u64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Checks a reply's shape (cheap: frame count and first frame length).
fn check(frames: usize, first_len: usize, w: &Workload) {
    assert!(
        frames == w.frames && first_len == w.size,
        "bad echo: {frames} frames, first of {first_len} B"
    );
}

// ---------------------------------------------------------------------------------------------
// domo-zmtp

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Echo server: a Router on its own thread and current-thread runtime. Stops on a message
/// made of one empty frame.
fn domo_server(ready: mpsc::Sender<String>) {
    let rt = current_thread_runtime();
    rt.block_on(async {
        let router = Router::new(Options::default());
        let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
        ready.send(ep.to_string()).unwrap();
        loop {
            let (peer, msg) = router.recv().await.unwrap();
            if msg.len() == 1 && msg[0].is_empty() {
                break;
            }
            match router.try_send(&peer, msg) {
                Ok(()) => {}
                Err(TrySendError::Full(msg)) => router.send(&peer, msg).await.unwrap(),
                Err(e) => panic!("echo failed: {e}"),
            }
        }
    });
}

fn domo_client(ep: &str, w: Workload) -> RunResult {
    let rt = current_thread_runtime();
    rt.block_on(async {
        let dealer = Dealer::connect(ep, Options::default()).unwrap();
        dealer.connected().await.unwrap();
        let template: Vec<Bytes> = (0..w.frames)
            .map(|_| Bytes::from(vec![0xa5u8; w.size]))
            .collect();
        domo_rounds(&dealer, &template, &w, w.warmup).await;
        let result = domo_rounds(&dealer, &template, &w, w.n).await;
        dealer.send(vec![Bytes::new()]).await.unwrap();
        dealer.shutdown().await;
        result
    })
}

async fn domo_rounds(dealer: &Dealer, template: &[Bytes], w: &Workload, n: usize) -> RunResult {
    let mut latencies = Vec::with_capacity(if w.latency { n } else { 0 });
    let start = Instant::now();
    if w.latency {
        let mut msg = template.to_vec();
        for _ in 0..n {
            let t = Instant::now();
            dealer.send(msg).await.unwrap();
            msg = dealer.recv().await.unwrap();
            latencies.push(t.elapsed().as_nanos() as u64);
            check(msg.len(), msg[0].len(), w);
        }
    } else {
        let mut sent = 0;
        while sent < n.min(w.window) {
            dealer.send(template.to_vec()).await.unwrap();
            sent += 1;
        }
        for _ in 0..n {
            let msg = dealer.recv().await.unwrap();
            check(msg.len(), msg[0].len(), w);
            if sent < n {
                dealer.send(msg).await.unwrap();
                sent += 1;
            }
        }
    }
    RunResult {
        elapsed: start.elapsed(),
        n,
        latencies,
    }
}

// ---------------------------------------------------------------------------------------------
// libzmq

/// Receives one multipart message into `parts` (cleared first; no allocation for the
/// `Vec`, and none for frames up to libzmq's 33 B inline size).
fn zmq_recv(sock: &zmq::Socket, parts: &mut Vec<zmq::Message>) {
    parts.clear();
    loop {
        let mut m = zmq::Message::new();
        sock.recv(&mut m, 0).unwrap();
        let more = m.get_more();
        parts.push(m);
        if !more {
            return;
        }
    }
}

/// Sends the frames in `parts` as one message, handing them to libzmq (no copy).
fn zmq_send(sock: &zmq::Socket, parts: &mut Vec<zmq::Message>) {
    let last = parts.len().saturating_sub(1);
    for (i, m) in parts.drain(..).enumerate() {
        let flags = if i < last { zmq::SNDMORE } else { 0 };
        sock.send(m, flags).unwrap();
    }
}

fn zmq_send_template(sock: &zmq::Socket, payload: &[u8], frames: usize) {
    for i in 0..frames {
        let flags = if i + 1 < frames { zmq::SNDMORE } else { 0 };
        sock.send(payload, flags).unwrap();
    }
}

/// Echo server: a ROUTER in its own context (one I/O thread) on its own thread. The routing
/// id frame is received and sent back like the others. Stops on a message made of one
/// empty frame.
fn libzmq_server(ready: mpsc::Sender<String>) {
    let ctx = zmq::Context::new();
    let sock = ctx.socket(zmq::ROUTER).unwrap();
    sock.set_linger(0).unwrap();
    sock.bind("tcp://127.0.0.1:*").unwrap();
    let ep = sock.get_last_endpoint().unwrap().unwrap();
    ready.send(ep).unwrap();
    let mut parts = Vec::with_capacity(8);
    loop {
        zmq_recv(&sock, &mut parts);
        if parts.len() == 2 && parts[1].is_empty() {
            break;
        }
        zmq_send(&sock, &mut parts);
    }
}

fn libzmq_client(ep: &str, w: Workload) -> RunResult {
    let ctx = zmq::Context::new();
    let sock = ctx.socket(zmq::DEALER).unwrap();
    sock.connect(ep).unwrap();
    let payload = vec![0xa5u8; w.size];
    let mut parts = Vec::with_capacity(8);
    libzmq_rounds(&sock, &payload, &mut parts, &w, w.warmup);
    let result = libzmq_rounds(&sock, &payload, &mut parts, &w, w.n);
    sock.send(&[][..], 0).unwrap();
    // The default linger lets the stop message leave before the context ends.
    drop(sock);
    drop(ctx);
    result
}

fn libzmq_rounds(
    sock: &zmq::Socket,
    payload: &[u8],
    parts: &mut Vec<zmq::Message>,
    w: &Workload,
    n: usize,
) -> RunResult {
    let mut latencies = Vec::with_capacity(if w.latency { n } else { 0 });
    let start = Instant::now();
    if w.latency {
        for i in 0..n {
            let t = Instant::now();
            if i == 0 {
                zmq_send_template(sock, payload, w.frames);
            } else {
                zmq_send(sock, parts);
            }
            zmq_recv(sock, parts);
            latencies.push(t.elapsed().as_nanos() as u64);
            check(parts.len(), parts[0].len(), w);
        }
        parts.clear();
    } else {
        let mut sent = 0;
        while sent < n.min(w.window) {
            zmq_send_template(sock, payload, w.frames);
            sent += 1;
        }
        for _ in 0..n {
            zmq_recv(sock, parts);
            check(parts.len(), parts[0].len(), w);
            if sent < n {
                zmq_send(sock, parts);
                sent += 1;
            }
        }
        parts.clear();
    }
    RunResult {
        elapsed: start.elapsed(),
        n,
        latencies,
    }
}

// ---------------------------------------------------------------------------------------------
// Driver

/// CPU ticks (USER_HZ, 100/s) from `/proc`: all CPUs busy, and this process (all threads).
/// `None` where `/proc` is not available.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| cpu.get(i)).sum();
    let me = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = me.get(me.rfind(')')? + 1..)?.split_whitespace().collect();
    let own = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some((busy, own))
}

/// Share of the machine (percent of all CPUs) that other processes (or the hypervisor,
/// as steal) used between two `cpu_ticks` readings `wall` apart.
fn others_pct(before: Option<(u64, u64)>, after: Option<(u64, u64)>, wall: Duration) -> f64 {
    let (Some((b0, o0)), Some((b1, o1))) = (before, after) else {
        return 0.0;
    };
    let cpus = thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let others = b1.saturating_sub(b0).saturating_sub(o1.saturating_sub(o0)) as f64;
    (others / (wall.as_secs_f64() * 100.0 * cpus) * 100.0).min(100.0)
}

fn run_one(imp: Impl, w: Workload) -> Sample {
    let (before, t0) = (cpu_ticks(), Instant::now());
    let mut s = run_pair(imp, w);
    s.others_pct = others_pct(before, cpu_ticks(), t0.elapsed());
    s
}

fn run_pair(imp: Impl, w: Workload) -> Sample {
    let (tx, rx) = mpsc::channel();
    let server = thread::Builder::new()
        .name(format!("{}-server", imp.name()))
        .spawn(move || match imp {
            Impl::Domo => domo_server(tx),
            Impl::Libzmq => libzmq_server(tx),
        })
        .unwrap();
    let ep = rx.recv().unwrap();
    let client = thread::Builder::new()
        .name(format!("{}-client", imp.name()))
        .spawn(move || match imp {
            Impl::Domo => domo_client(&ep, w),
            Impl::Libzmq => libzmq_client(&ep, w),
        })
        .unwrap();
    let result = client.join().unwrap();
    server.join().unwrap();
    Sample::from_run(result)
}

/// The medians of one implementation's rounds for one case.
#[derive(Debug, Clone, Copy)]
struct Summary {
    msgs_per_s: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
}

fn summarize(samples: &[Sample]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let pick = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
    Some(Summary {
        msgs_per_s: pick(|s| s.msgs_per_s),
        p50_us: pick(|s| s.p50_us),
        p99_us: pick(|s| s.p99_us),
        p999_us: pick(|s| s.p999_us),
    })
}

/// One line of the results table.
struct Row {
    key: &'static str,
    label: &'static str,
    domo: Option<f64>,
    libzmq: Option<f64>,
    /// `Some(true)`: higher is better and the target is `ratio >= 1.2`; `Some(false)`: lower
    /// is better and the target is `ratio <= 1.0`; `None`: no target.
    target: Option<bool>,
    decimals: usize,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        Some(self.domo? / self.libzmq?)
    }

    fn met(&self) -> Option<bool> {
        let r = self.ratio()?;
        Some(match self.target? {
            true => r >= 1.2,
            false => r <= 1.0,
        })
    }
}

fn fmt_num(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if decimals == 0 => {
            // Thousands separators for readability.
            let s = format!("{:.0}", v);
            let mut out = String::new();
            for (i, c) in s.chars().enumerate() {
                if i > 0 && (s.len() - i) % 3 == 0 {
                    out.push(',');
                }
                out.push(c);
            }
            out
        }
        Some(v) => format!("{v:.decimals$}"),
        None => "-".to_owned(),
    }
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.3}"),
        _ => "null".to_owned(),
    }
}

fn main() {
    let cfg = Config::from_env();
    let impls = [Impl::Domo, Impl::Libzmq];
    // samples[case][impl]
    let mut samples: Vec<[Vec<Sample>; 2]> = CASES.iter().map(|_| [vec![], vec![]]).collect();
    let started = Instant::now();
    let mut max_others: f64 = 0.0;
    eprintln!(
        "echo bench: {} round(s){}, pipelined n={}, pingpong n={}, large n={}",
        cfg.rounds,
        if cfg.quick { " (quick)" } else { "" },
        cfg.pipelined_n,
        cfg.pingpong_n,
        cfg.large_n
    );
    for round in 0..cfg.rounds {
        for (ci, &case) in CASES.iter().enumerate() {
            let w = cfg.workload(case);
            // Alternate which implementation goes first, against ordering bias.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for ii in order {
                let imp = impls[ii];
                if !cfg.selected(imp, case) {
                    continue;
                }
                let s = run_one(imp, w);
                max_others = max_others.max(s.others_pct);
                eprintln!(
                    "  round {} {:>6}/{:<9} {:>12.0} msg/s  (others {:>3.0}% cpu){}",
                    round + 1,
                    imp.name(),
                    case.name(),
                    s.msgs_per_s,
                    s.others_pct,
                    if w.latency {
                        format!(
                            "  p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us",
                            s.p50_us, s.p99_us, s.p999_us
                        )
                    } else {
                        String::new()
                    }
                );
                samples[ci][ii].push(s);
            }
        }
    }
    let sum = |case: Case, imp: Impl| {
        let ci = CASES.iter().position(|&c| c == case).unwrap_or(0);
        let ii = impls.iter().position(|&i| i == imp).unwrap_or(0);
        summarize(&samples[ci][ii])
    };
    let both = |case: Case, f: fn(&Summary) -> f64| {
        (
            sum(case, Impl::Domo).map(|s| f(&s)),
            sum(case, Impl::Libzmq).map(|s| f(&s)),
        )
    };
    let mib = LARGE_SIZE as f64 / (1024.0 * 1024.0);
    let mut rows = Vec::new();
    let mut row = |key, label, case, f: fn(&Summary) -> f64, target, decimals| {
        let (domo, libzmq) = both(case, f);
        rows.push(Row {
            key,
            label,
            domo,
            libzmq,
            target,
            decimals,
        });
    };
    row(
        "pipelined_msgs_per_s",
        "pipelined 3x32B w=100  msg/s",
        Case::Pipelined,
        |s| s.msgs_per_s,
        Some(true),
        0,
    );
    row(
        "pingpong_msgs_per_s",
        "ping-pong 3x32B        msg/s",
        Case::PingPong,
        |s| s.msgs_per_s,
        None,
        0,
    );
    row(
        "pingpong_p50_us",
        "ping-pong 3x32B        p50 us",
        Case::PingPong,
        |s| s.p50_us,
        None,
        1,
    );
    row(
        "pingpong_p99_us",
        "ping-pong 3x32B        p99 us",
        Case::PingPong,
        |s| s.p99_us,
        Some(false),
        1,
    );
    row(
        "pingpong_p999_us",
        "ping-pong 3x32B        p99.9 us",
        Case::PingPong,
        |s| s.p999_us,
        None,
        1,
    );
    row(
        "large_msgs_per_s",
        "1 MiB x1 w=8           msg/s",
        Case::Large,
        |s| s.msgs_per_s,
        Some(true),
        0,
    );
    let (d, l) = both(Case::Large, |s| s.msgs_per_s);
    rows.push(Row {
        key: "large_mib_per_s",
        label: "1 MiB x1 w=8           MiB/s",
        domo: d.map(|v| v * mib),
        libzmq: l.map(|v| v * mib),
        target: None,
        decimals: 0,
    });

    println!();
    println!(
        "ROUTER<->DEALER echo over tcp://127.0.0.1, median of {} round(s){}",
        cfg.rounds,
        if cfg.quick { " [quick]" } else { "" }
    );
    println!(
        "{:<32} {:>12} {:>12} {:>12}  target",
        "case", "domo", "libzmq", "domo/libzmq"
    );
    for r in &rows {
        if r.domo.is_none() && r.libzmq.is_none() {
            continue;
        }
        let target = match (r.target, r.met()) {
            (Some(true), Some(met)) => format!(">= 1.20x {}", if met { "MET" } else { "MISSED" }),
            (Some(false), Some(met)) => format!("<= 1.00x {}", if met { "MET" } else { "MISSED" }),
            _ => String::new(),
        };
        println!(
            "{:<32} {:>12} {:>12} {:>12}  {}",
            r.label,
            fmt_num(r.domo, r.decimals),
            fmt_num(r.libzmq, r.decimals),
            r.ratio().map_or("-".to_owned(), |x| format!("{x:.2}x")),
            target
        );
    }
    println!(
        "(total {:.1} s; other processes used up to {:.0}% of the CPUs during a run)",
        started.elapsed().as_secs_f64(),
        max_others
    );
    if max_others > 10.0 {
        println!("WARNING: the machine was not idle; these numbers are not trustworthy");
    }

    if cfg.json {
        let mut j = format!(
            "{{\"bench\":\"echo\",\"rounds\":{},\"quick\":{},\"others_cpu_max_pct\":{:.1},\"results\":{{",
            cfg.rounds, cfg.quick, max_others
        );
        for (i, r) in rows.iter().enumerate() {
            let sep = if i > 0 { "," } else { "" };
            let met = r.met().map_or("null".to_owned(), |m| m.to_string());
            let _ = write!(
                j,
                "{sep}\"{}\":{{\"domo\":{},\"libzmq\":{},\"ratio\":{},\"target_met\":{}}}",
                r.key,
                json_num(r.domo),
                json_num(r.libzmq),
                json_num(r.ratio()),
                met
            );
        }
        j.push_str("}}");
        println!("{j}");
    }
}
