//! The raw-socket paths of `domo bench`: the broker's load generator
//! (`broker/examples/loadgen.rs`) on bare DEALER sockets, and the brokerless ceiling.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use domo_client::{Client, ClientOptions};
use domo_mdp::{client, worker, ServiceName, WorkerCommand};
use domo_zmtp::{Dealer, Options, Router};

use super::{body, collect, latency_us, progress, take, wait_workers, BenchArgs, Phase};
/// How the raw clients use their connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// `clients` connections with `window` requests in flight on each (the broker's load
    /// generator; replies are matched by nothing, which only a benchmark can afford).
    Pipelined,
    /// `clients x window` connections with one request in flight each: the shape MDP/0.1
    /// forces on a client that must match replies to requests, as domo-client does.
    OnePerConnection,
}

/// Raw DEALER clients, raw DEALER echo workers.
pub(super) async fn raw_phase(
    args: &BenchArgs,
    endpoint: &str,
    round: usize,
    shape: Shape,
) -> Phase {
    let (name, connections, window) = match shape {
        Shape::Pipelined => ("raw", args.clients, args.window),
        Shape::OnePerConnection => ("raw1", args.clients * args.window, 1),
    };
    let service = ServiceName::new(format!("bench.{name}.{round}"))
        .unwrap_or(ServiceName::from_static("bench.raw"));
    let workers: Vec<_> = (0..args.workers)
        .map(|_| tokio::spawn(raw_worker(endpoint.to_string(), service.clone())))
        .collect();
    if let Ok(c) = Client::connect(ClientOptions::new([endpoint])) {
        wait_workers(&c, &service.to_string(), args.workers).await;
    }
    let budget = Arc::new(AtomicU64::new(args.requests));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let ticker = progress(name, args.requests, budget.clone());
    for _ in 0..connections {
        let (ep, budget, svc) = (endpoint.to_string(), budget.clone(), service.clone());
        let size = args.size;
        tasks.spawn(async move {
            let next = move || client::encode_request(&svc, [body(size, t0)]);
            pipeline(&ep, window, &budget, t0, next).await
        });
    }
    let phase = collect(name, t0, tasks).await;
    ticker.abort();
    for w in workers {
        w.abort();
    }
    phase
}

/// DEALER <-> ROUTER echo, no broker.
pub(super) async fn direct_phase(args: &BenchArgs) -> Phase {
    let router = Router::new(Options::default());
    let Ok(ep) = router.bind("tcp://127.0.0.1:0").await else {
        return collect("direct", Instant::now(), tokio::task::JoinSet::new()).await;
    };
    let echo = tokio::spawn(async move {
        while let Ok((peer, msg)) = router.recv().await {
            let _ = router.send(&peer, msg).await;
        }
    });
    let budget = Arc::new(AtomicU64::new(args.requests));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.clients {
        let (ep, budget, size, window) = (ep.to_string(), budget.clone(), args.size, args.window);
        tasks.spawn(
            async move { pipeline(&ep, window, &budget, t0, || vec![body(size, t0)]).await },
        );
    }
    let phase = collect("direct", t0, tasks).await;
    echo.abort();
    phase
}

/// One raw client: keeps `window` messages in flight until the budget is used up.
async fn pipeline(
    ep: &str,
    window: usize,
    budget: &AtomicU64,
    t0: Instant,
    next: impl Fn() -> Vec<Bytes>,
) -> Vec<u32> {
    let Ok(dealer) = Dealer::connect(ep, Options::default()) else {
        return Vec::new();
    };
    let mut lat = Vec::new();
    let mut in_flight = 0usize;
    loop {
        while in_flight < window && take(budget) {
            if dealer.send(next()).await.is_err() {
                return lat;
            }
            in_flight += 1;
        }
        if in_flight == 0 {
            return lat;
        }
        let Ok(reply) = dealer.recv().await else {
            return lat;
        };
        in_flight -= 1;
        lat.push(latency_us(t0, reply.last()));
    }
}

async fn raw_worker(endpoint: String, service: ServiceName) {
    let Ok(dealer) = Dealer::connect(&endpoint, Options::default()) else {
        return;
    };
    let _ = dealer.send(worker::encode_ready(&service)).await;
    let mut heartbeat = tokio::time::interval(domo_mdp::Heartbeat::DEFAULT_INTERVAL);
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
