//! Distributed cache invalidation over domo topics.
//!
//! Several cache nodes each keep a copy of some records and subscribe to `invalidate.`; a
//! writer that changes records publishes the key of each on `invalidate.<key>` (acknowledged:
//! the broker has it once `topic_write` returns); every node drops those keys from its cache.
//! A node whose connection drops for a while misses nothing: its subscriber reads what it
//! missed from the topic's retention when it is back (the `invalidate` topic is created with
//! one, in memory, here).
//!
//! ```text
//! domo-broker &                       # MDP on tcp://127.0.0.1:5555, topics on 5557/5558
//! cargo run -p domo-client --example cache_invalidation -- \
//!     [--broker tcp://127.0.0.1:5555] [--subscribe tcp://127.0.0.1:5557] [--nodes 3] [--changes 5]
//! ```
//!
//! It runs the nodes and the writer in one process for the demonstration, prints what each
//! node dropped, and exits 0 once every node has dropped exactly the changed keys (1 if not
//! within 10 seconds).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use domo_client::{Client, ClientOptions, Retention, Subscriber, SubscriberEvent};

/// The prefix every node subscribes to.
const PREFIX: &str = "invalidate.";

/// One cache node: records by key, and a subscriber of the invalidations.
async fn cache_node(
    id: usize,
    subscribe: String,
    client: Client,
    keys: Vec<String>,
    expect: usize,
) -> Result<BTreeSet<String>, domo_client::Error> {
    let mut cache: HashMap<String, String> = keys
        .iter()
        .map(|k| (k.clone(), format!("cached value of {k}")))
        .collect();
    let mut subscriber = Subscriber::new(&subscribe, client)?;
    subscriber.subscribe(PREFIX)?;
    let mut dropped = BTreeSet::new();
    while dropped.len() < expect {
        match subscriber.next().await? {
            SubscriberEvent::Message(m) => {
                let topic = String::from_utf8_lossy(&m.topic).into_owned();
                let Some(key) = topic.strip_prefix(PREFIX) else {
                    continue;
                };
                if cache.remove(key).is_some() {
                    println!("node {id}: dropped {key}");
                    dropped.insert(key.to_string());
                }
            }
            SubscriberEvent::Gap { topic, .. } => {
                // Too much missed to know which: the safe answer is to drop that key.
                let topic = String::from_utf8_lossy(&topic).into_owned();
                if let Some(key) = topic.strip_prefix(PREFIX) {
                    cache.remove(key);
                }
            }
            SubscriberEvent::StreamChanged { .. } => {}
        }
    }
    subscriber.close().await;
    Ok(dropped)
}

fn flag(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let broker = flag(&args, "--broker", "tcp://127.0.0.1:5555");
    let subscribe = flag(&args, "--subscribe", "tcp://127.0.0.1:5557");
    let nodes: usize = flag(&args, "--nodes", "3").parse().unwrap_or(3);
    let changes: usize = flag(&args, "--changes", "5").parse().unwrap_or(5);
    let client = match Client::new(ClientOptions::new([broker.as_str()])) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cache_invalidation: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let keys: Vec<String> = (0..20).map(|i| format!("user:{i}")).collect();
    let changed: BTreeSet<String> = keys.iter().step_by(3).take(changes).cloned().collect();
    // Each key's topic keeps its last 100 invalidations, so a node that reconnects reads
    // what it missed.
    for key in &changed {
        let topic = format!("{PREFIX}{key}");
        let retention = Retention {
            max_messages: 100,
            ..Retention::default()
        };
        if let Err(e) = client.topic_create(topic, retention).await {
            eprintln!("cache_invalidation: cannot create the topic: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..nodes {
        tasks.spawn(cache_node(
            id,
            subscribe.clone(),
            client.clone(),
            keys.clone(),
            changed.len(),
        ));
    }
    // The writer: changes records and says which. A node whose subscription arrives after an
    // invalidation still gets it: a new subscription first gets each matching topic's last
    // message.
    for key in &changed {
        match client
            .topic_write(format!("{PREFIX}{key}"), vec![Bytes::from("changed")])
            .await
        {
            Ok(offset) => println!("writer: changed {key} (invalidation {offset})"),
            Err(e) => {
                eprintln!("cache_invalidation: cannot publish: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let all = tokio::time::timeout(Duration::from_secs(10), async {
        let mut ok = 0;
        while let Some(result) = tasks.join_next().await {
            match result {
                Ok(Ok(dropped)) if dropped == changed => ok += 1,
                Ok(Ok(dropped)) => eprintln!("a node dropped {dropped:?}, not {changed:?}"),
                Ok(Err(e)) => eprintln!("a node failed: {e}"),
                Err(e) => eprintln!("a node panicked: {e}"),
            }
        }
        ok
    })
    .await;
    match all {
        Ok(ok) if ok == nodes => {
            println!(
                "all {nodes} nodes dropped the {} changed keys",
                changed.len()
            );
            std::process::ExitCode::SUCCESS
        }
        _ => {
            eprintln!("cache_invalidation: not every node dropped every changed key in time");
            std::process::ExitCode::FAILURE
        }
    }
}
