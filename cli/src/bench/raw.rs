//! The raw-socket paths of `domo bench`: MDP clients and echo workers on bare DEALER sockets
//! with hand-built frames, and the brokerless ceiling (DEALER <-> ROUTER echo).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_client::Client;
use domo_mdp::{client, worker, ServiceName, WorkerCommand};
use domo_zmtp::{Dealer, Options, Router};

use super::broker::CpuClock;
use super::{
    body, collect, cpu_since, latency_us, progress, service_name, take, wait_workers, BenchArgs,
    Phase,
};

/// How the raw clients use their connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    /// `clients` connections with `window` requests in flight on each (a load generator's
    /// shape; replies are matched by nothing, which only a benchmark can afford).
    Pipelined,
    /// `clients x window` connections with one request in flight each: the shape MDP/0.1
    /// forces on a client that must match replies to requests, as domo-client does.
    OnePerConnection,
}

/// Raw DEALER clients, raw DEALER echo workers; `cpu` is the broker's clock, read around the
/// measured requests.
pub(super) async fn raw_phase(
    args: &BenchArgs,
    endpoint: &str,
    round: usize,
    shape: Shape,
    cpu: Option<&CpuClock>,
) -> Phase {
    let (name, connections, window) = match shape {
        Shape::Pipelined => ("raw", args.clients, args.window),
        Shape::OnePerConnection => ("raw1", args.clients * args.window, 1),
    };
    let names: Vec<String> = (0..args.services)
        .map(|i| service_name(&format!("bench.{name}.{round}"), i, args.services))
        .collect();
    let services: Arc<[ServiceName]> = names
        .iter()
        .map(|n| ServiceName::new(n.clone()).unwrap_or(ServiceName::from_static("bench.raw")))
        .collect();
    let workers: Vec<_> = (0..args.workers)
        .map(|w| {
            let service = services[w % services.len()].clone();
            tokio::spawn(raw_worker(
                endpoint.to_string(),
                service,
                args.heartbeat,
                args.worker_transport(),
            ))
        })
        .collect();
    if let Ok(c) = Client::new(args.client_options(endpoint)) {
        wait_workers(&c, &names, args.workers).await;
    }
    let size = args.size;
    let transport = args.transport();
    let requests = |count| {
        let services = services.clone();
        drive(
            name,
            endpoint,
            &transport,
            connections,
            window,
            count,
            move |c, t0| {
                let services = services.clone();
                let mut n = c;
                move || {
                    n += 1;
                    client::encode_request(&services[n % services.len()], [body(size, t0)])
                }
            },
        )
    };
    if args.warmup > 0 {
        requests(args.warmup).await;
    }
    let cpu0 = cpu.and_then(CpuClock::seconds);
    let mut phase = requests(args.requests).await;
    phase.cpu_s = cpu_since(cpu, cpu0);
    for w in workers {
        w.abort();
    }
    phase
}

/// DEALER <-> ROUTER echo, no broker: the echo runs on a thread of its own, whose CPU time
/// is reported.
pub(super) async fn direct_phase(args: &BenchArgs) -> Phase {
    let (ready, endpoint) = tokio::sync::oneshot::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async move {
            let router = Router::new(Options::default());
            let Ok(ep) = router.bind("tcp://127.0.0.1:0").await else {
                return;
            };
            let _ = ready.send((ep.to_string(), CpuClock::this_thread()));
            let echo = async {
                while let Ok((peer, msg)) = router.recv().await {
                    let _ = router.send(&peer, msg).await;
                }
            };
            tokio::select! {
                () = echo => {}
                _ = stopped => {}
            }
        });
    });
    let Ok((ep, clock)) = endpoint.await else {
        return collect("direct", Instant::now(), tokio::task::JoinSet::new()).await;
    };
    let size = args.size;
    let null = Options::default();
    let requests = |count| {
        drive(
            "direct",
            &ep,
            &null,
            args.clients,
            args.window,
            count,
            move |_, t0| move || vec![body(size, t0)],
        )
    };
    if args.warmup > 0 {
        requests(args.warmup).await;
    }
    let cpu0 = clock.as_ref().and_then(CpuClock::seconds);
    let mut phase = requests(args.requests).await;
    phase.cpu_s = cpu_since(clock.as_ref(), cpu0);
    let _ = stop.send(());
    phase
}

/// `requests` messages over `connections` DEALERs to `ep`, `window` in flight on each; the
/// messages of connection `c` come from `messages(c, t0)`.
async fn drive<M>(
    name: &'static str,
    ep: &str,
    transport: &Options,
    connections: usize,
    window: usize,
    requests: u64,
    messages: impl Fn(usize, Instant) -> M,
) -> Phase
where
    M: FnMut() -> Vec<Bytes> + Send + 'static,
{
    let budget = Arc::new(AtomicU64::new(requests));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let ticker = progress(name, requests, budget.clone());
    for c in 0..connections {
        let (ep, budget, next) = (ep.to_string(), budget.clone(), messages(c, t0));
        let transport = transport.clone();
        tasks.spawn(async move { pipeline(&ep, transport, window, &budget, t0, next).await });
    }
    let phase = collect(name, t0, tasks).await;
    ticker.abort();
    phase
}

/// One raw client: keeps `window` messages in flight until the budget is used up.
async fn pipeline(
    ep: &str,
    transport: Options,
    window: usize,
    budget: &AtomicU64,
    t0: Instant,
    mut next: impl FnMut() -> Vec<Bytes>,
) -> Vec<u32> {
    let Ok(dealer) = Dealer::connect(ep, transport) else {
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

async fn raw_worker(
    endpoint: String,
    service: ServiceName,
    heartbeat: Duration,
    transport: Options,
) {
    let Ok(dealer) = Dealer::connect(&endpoint, transport) else {
        return;
    };
    let _ = dealer.send(worker::encode_ready(&service)).await;
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
