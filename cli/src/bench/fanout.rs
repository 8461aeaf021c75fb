//! The topics phase of `domo bench`: one publisher (a PUB connection to the broker's publish
//! endpoint) and `--subscribers` subscribers (SUB connections to its subscribe endpoint),
//! `--requests` messages of `--size` bytes on one topic, every subscriber subscribed to it.
//!
//! What counts is what the subscribers get: delivered messages per second (all subscribers
//! together, from the first publish to the last delivery), the latency of each from its
//! publication (sampled), and the broker's CPU per delivered message. The publisher sends as
//! fast as its connection takes (TCP pushes back when the broker reads slower); a subscriber
//! that falls behind loses its oldest messages at its queue bound, so the delivered count
//! can be below `subscribers x requests`, and the report says so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_zmtp::{Dealer, SocketType};

use super::broker::CpuClock;
use super::{body, cpu_since, latency_us, BenchArgs, Phase};

/// The topic the phase publishes on.
const TOPIC: &[u8] = b"bench.fan";
/// Probes that tell when every subscription is in place.
const PROBE: &[u8] = b"bench.probe";
/// A subscriber that gets nothing for this long after the publisher finished has all it
/// will get.
const IDLE: Duration = Duration::from_secs(2);
/// One latency sample per this many deliveries.
const SAMPLE: u64 = 16;

/// Runs the phase against the topic endpoints `subscribe` and `publish`.
pub(super) async fn fanout_phase(
    args: &BenchArgs,
    subscribe: &str,
    publish: &str,
    cpu: Option<&CpuClock>,
) -> Result<Phase, String> {
    let transport = args.transport();
    let mut subs = Vec::new();
    for _ in 0..args.subscribers.max(1) {
        let s = Dealer::connect_with_socket_type(SocketType::Sub, subscribe, transport.clone())
            .map_err(|e| format!("subscriber: {e}"))?;
        s.subscribe(TOPIC).map_err(|e| format!("subscriber: {e}"))?;
        s.subscribe(PROBE).map_err(|e| format!("subscriber: {e}"))?;
        subs.push(Arc::new(s));
    }
    let publisher = Dealer::connect_with_socket_type(SocketType::Pub, publish, transport)
        .map_err(|e| format!("publisher: {e}"))?;
    sync(&publisher, &subs).await?;
    let t0 = Instant::now();
    let cpu_before = cpu.and_then(CpuClock::seconds);
    let total = args.requests;
    let mut tasks = tokio::task::JoinSet::new();
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    for s in &subs {
        let s = s.clone();
        let mut done = done_rx.clone();
        tasks.spawn(async move {
            let mut got = 0u64;
            let mut latencies = Vec::new();
            let mut last = t0;
            while got < total {
                let next = if *done.borrow() {
                    match tokio::time::timeout(IDLE, s.recv()).await {
                        Ok(r) => r,
                        Err(_) => break,
                    }
                } else {
                    tokio::select! {
                        r = s.recv() => r,
                        _ = done.changed() => continue,
                    }
                };
                let Ok(msg) = next else { break };
                if msg.first().map(|t| &t[..]) != Some(TOPIC) {
                    continue;
                }
                got += 1;
                last = Instant::now();
                if got.is_multiple_of(SAMPLE) {
                    latencies.push(latency_us(t0, msg.get(1)));
                }
            }
            (got, last, latencies)
        });
    }
    let topic = Bytes::from_static(TOPIC);
    for _ in 0..total {
        publisher
            .send(vec![topic.clone(), body(args.size, t0)])
            .await
            .map_err(|e| format!("publisher: {e}"))?;
    }
    let _ = done_tx.send(true);
    let mut delivered = 0;
    let mut end = t0;
    let mut latencies_us = Vec::new();
    while let Some(r) = tasks.join_next().await {
        let (got, last, lat) = r.map_err(|e| format!("subscriber task: {e}"))?;
        delivered += got;
        end = end.max(last);
        latencies_us.extend(lat);
    }
    let cpu_s = cpu_since(cpu, cpu_before);
    latencies_us.sort_unstable();
    publisher.shutdown().await;
    for s in &subs {
        s.shutdown().await;
    }
    let expected = total * args.subscribers.max(1) as u64;
    if delivered < expected {
        eprintln!(
            "\rtopics: {delivered} of {expected} delivered ({} dropped at slow subscribers' bounds)",
            expected - delivered
        );
    }
    Ok(Phase {
        name: "topics",
        requests: delivered,
        elapsed: end.duration_since(t0),
        latencies_us,
        cpu_s,
    })
}

/// Publishes probes until every subscriber has one (its subscriptions are in place), then
/// lets the rest drain.
async fn sync(publisher: &Dealer, subs: &[Arc<Dealer>]) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = vec![false; subs.len()];
    while seen.iter().any(|s| !s) {
        if Instant::now() > deadline {
            return Err("the subscriptions did not take effect within 10 s".into());
        }
        publisher
            .send(vec![Bytes::from_static(PROBE)])
            .await
            .map_err(|e| format!("publisher: {e}"))?;
        tokio::time::sleep(Duration::from_millis(20)).await;
        for (i, s) in subs.iter().enumerate() {
            while let Ok(Some(_)) = s.try_recv() {
                seen[i] = true;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    for s in subs {
        while let Ok(Some(_)) = s.try_recv() {}
    }
    Ok(())
}
