//! What CURVE costs in domo-zmtp: handshakes per second, and echo throughput and CPU with
//! CURVE against NULL, in one process over `tcp://127.0.0.1`.
//!
//! - `handshake`: a ROUTER (CURVE server with an authorizer) and a client that opens a
//!   DEALER, waits for the handshake, and drops it, one after another; handshakes per second
//!   and process CPU per handshake (both sides: the server does a keygen and three DH, the
//!   client a keygen and three DH too).
//! - `pipelined`: 3 frames of 32 B, 100 in flight, echoed by the ROUTER; round trips per
//!   second and process CPU per round trip (each round trip seals and opens 6 frames).
//! - `large`: one 1 MiB frame, 8 in flight; MiB/s each way.
//!
//! Rounds alternate NULL and CURVE; medians are reported with the CURVE/NULL ratio.
//!
//! ```text
//! cargo bench -p domo-zmtp --bench curve             # ~30 s
//! cargo bench -p domo-zmtp --bench curve -- --quick  # smoke run
//! ```
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_zmtp::curve::Authorizer;
use domo_zmtp::{Dealer, KeyPair, Options, PublicKey, Router, Security};

#[derive(Debug)]
struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _: &PublicKey) -> bool {
        true
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mech {
    Null,
    Curve,
}

impl Mech {
    fn name(self) -> &'static str {
        match self {
            Self::Null => "NULL",
            Self::Curve => "CURVE",
        }
    }
}

struct Keys {
    server: KeyPair,
    client: KeyPair,
}

fn server_opts(m: Mech, k: &Keys) -> Options {
    let mut o = Options::default();
    if m == Mech::Curve {
        o.security = Security::curve_server_with(k.server.secret.clone(), Arc::new(AllowAll));
    }
    o
}

fn client_opts(m: Mech, k: &Keys) -> Options {
    let mut o = Options::default();
    if m == Mech::Curve {
        o.security = Security::curve_client(k.server.public, k.client.clone());
    }
    o
}

/// Process CPU time (user + system) from /proc/self/stat, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// An echo ROUTER on its own thread; returns its endpoint.
fn echo_server(opts: Options) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let router = Router::new(opts);
            let ep = router.bind("tcp://127.0.0.1:0").await.unwrap();
            tx.send(ep.to_string()).unwrap();
            while let Ok((peer, msg)) = router.recv().await {
                let _ = router.send(&peer, msg).await;
            }
        });
    });
    rx.recv().unwrap()
}

fn client_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// (per second, CPU microseconds per unit)
fn handshakes(m: Mech, k: &Keys, n: usize) -> (f64, f64) {
    let ep = echo_server(server_opts(m, k));
    let rt = client_rt();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    rt.block_on(async {
        for _ in 0..n {
            let d = Dealer::connect(&ep, client_opts(m, k)).unwrap();
            tokio::time::timeout(Duration::from_secs(10), d.connected())
                .await
                .unwrap()
                .unwrap();
            drop(d);
        }
    });
    let (dt, dc) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    (n as f64 / dt, dc * 1e6 / n as f64)
}

fn echo(m: Mech, k: &Keys, frames: Vec<Bytes>, window: usize, n: usize) -> (f64, f64) {
    let ep = echo_server(server_opts(m, k));
    let rt = client_rt();
    rt.block_on(async {
        let d = Dealer::connect(&ep, client_opts(m, k)).unwrap();
        d.connected().await.unwrap();
        // Warm-up.
        for _ in 0..window {
            d.send(frames.clone()).await.unwrap();
        }
        for _ in 0..window {
            d.recv().await.unwrap();
        }
        let (t0, c0) = (Instant::now(), cpu_seconds());
        for _ in 0..window {
            d.send(frames.clone()).await.unwrap();
        }
        for _ in 0..n {
            let msg = d.recv().await.unwrap();
            d.send(msg).await.unwrap();
        }
        for _ in 0..window {
            d.recv().await.unwrap();
        }
        let (dt, dc) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
        let total = (n + window) as f64;
        (total / dt, dc * 1e6 / total)
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick") || std::env::var("BENCH_QUICK").is_ok();
    let (rounds, hs_n, small_n, large_n) = if quick {
        (1, 50, 5_000, 20)
    } else {
        (5, 300, 100_000, 400)
    };
    let k = Keys {
        server: KeyPair::generate(),
        client: KeyPair::generate(),
    };
    let small: Vec<Bytes> = (0..3).map(|_| Bytes::from(vec![7u8; 32])).collect();
    let large = vec![Bytes::from(vec![9u8; 1 << 20])];
    type Case<'a> = (&'a str, &'a str, Box<dyn Fn(Mech) -> (f64, f64) + 'a>);
    let cases: Vec<Case<'_>> = vec![
        (
            "handshake",
            "handshakes/s",
            Box::new(|m| handshakes(m, &k, hs_n)),
        ),
        (
            "pipelined 3x32 B",
            "round trips/s",
            Box::new(|m| echo(m, &k, small.clone(), 100, small_n)),
        ),
        (
            "large 1 MiB",
            "round trips/s",
            Box::new(|m| echo(m, &k, large.clone(), 8, large_n)),
        ),
    ];
    println!("| case | NULL | CURVE | CURVE/NULL | CPU/unit NULL | CPU/unit CURVE |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, unit, run) in &cases {
        let (mut rate, mut cpu) = ([vec![], vec![]], [vec![], vec![]]);
        for round in 0..rounds {
            let order = if round % 2 == 0 {
                [Mech::Null, Mech::Curve]
            } else {
                [Mech::Curve, Mech::Null]
            };
            for m in order {
                let (r, c) = run(m);
                let i = usize::from(m == Mech::Curve);
                eprintln!(
                    "  round {} {name} {}: {r:.0} {unit}, {c:.2} us CPU",
                    round + 1,
                    m.name()
                );
                rate[i].push(r);
                cpu[i].push(c);
            }
        }
        let (rn, rc) = (median(rate[0].clone()), median(rate[1].clone()));
        let (cn, cc) = (median(cpu[0].clone()), median(cpu[1].clone()));
        println!(
            "| {name} ({unit}) | {rn:.0} | {rc:.0} | {:.2}x | {cn:.1} us | {cc:.1} us |",
            rc / rn
        );
    }
}
