//! Topics kept on disk (`persist=disk`) across a `kill -9` of the broker: every write the
//! broker acknowledged is delivered to the SDK subscriber exactly once, in offset order, in
//! the same stream, after the broker restarts on the same endpoints and data directory; the
//! same with the topics kept in PostgreSQL (`[topics] store = "postgres"`, a real server from
//! `DOMO_TEST_PG_URL`).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use domo_client::{Client, ClientOptions, Persist, Retention, Subscriber, SubscriberEvent};
use domo_tests::*;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(30);

/// Where a broker runs: fixed endpoints and data directory, so a restart is the same
/// broker.
#[derive(Clone)]
struct Fixed {
    mdp: String,
    subscribe: String,
    publish: String,
    dir: std::path::PathBuf,
    /// A configuration file (the PostgreSQL store), if any.
    config: Option<std::path::PathBuf>,
}

impl Fixed {
    /// Starts the broker and waits until its topic endpoints listen.
    fn start(&self) -> LoggedChild {
        let mut cmd = std::process::Command::new(DOMO_BROKER);
        cmd.args([
            "--bind",
            &self.mdp,
            "--metrics-listen",
            "off",
            "--no-titanic",
        ])
        .args(["--topics-subscribe", &self.subscribe])
        .args(["--topics-publish", &self.publish])
        .arg("--topics-data-dir")
        .arg(&self.dir)
        .args(
            self.config
                .iter()
                .flat_map(|c| [std::ffi::OsStr::new("--config"), c.as_os_str()]),
        )
        .env_remove("RUST_LOG")
        .env_remove("DOMO_CONFIG")
        .stdout(std::process::Stdio::null());
        let child = LoggedChild::spawn(&mut cmd);
        child.wait_line("Topics listening");
        child
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_to_a_disk_topic_survive_kill_9_exactly_once_in_order() {
    let scratch = TempDir::new("topics-durable");
    survive_kill_9(Fixed {
        mdp: dead_endpoint(),
        subscribe: dead_endpoint(),
        publish: dead_endpoint(),
        dir: scratch.path().to_path_buf(),
        config: None,
    })
    .await;
    assert!(scratch.path().join("topics.redb").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_with_the_topics_in_postgresql() {
    let Some(url) = fresh_pg_database("DOMO_TEST_PG_URL") else {
        return;
    };
    let scratch = TempDir::new("topics-durable-pg");
    let config = scratch.path().join("broker.toml");
    std::fs::write(
        &config,
        format!("[topics]\nstore = \"postgres\"\nurl = \"{url}\"\n"),
    )
    .unwrap();
    survive_kill_9(Fixed {
        mdp: dead_endpoint(),
        subscribe: dead_endpoint(),
        publish: dead_endpoint(),
        dir: scratch.path().to_path_buf(),
        config: Some(config),
    })
    .await;
    // Nothing on disk: it is all in the database.
    assert!(!scratch.path().join("topics.redb").exists());
    let out = std::process::Command::new("psql")
        .args([
            url.as_str(),
            "-qAtc",
            "SELECT count(*) > 0 FROM topics_messages",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t", "{out:?}");
}

async fn survive_kill_9(fixed: Fixed) {
    let mut broker = blocking({
        let f = fixed.clone();
        move || f.start()
    })
    .await;
    let client = Client::new(
        ClientOptions::new([fixed.mdp.as_str()])
            .timeout(Duration::from_millis(500))
            .retries(0),
    )
    .unwrap();
    let retention = Retention {
        max_messages: 1_000_000,
        max_bytes: 256 << 20,
        persist: Persist::Disk,
        ..Retention::default()
    };
    assert!(client.topic_create("ledger", retention).await.unwrap());
    let mut sub = Subscriber::new(&fixed.subscribe, client.clone()).unwrap();
    sub.subscribe("ledger").unwrap();
    // The writer: acknowledged writes, each payload unique; failures (the broker is down)
    // are retried with a new payload, acknowledged or not.
    let acked: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let payload = format!("w{n}");
                if let Ok(offset) = client
                    .topic_write("ledger", vec![Bytes::from(payload.clone())])
                    .await
                {
                    let previous = acked.lock().unwrap().insert(offset, payload);
                    assert!(previous.is_none(), "offset {offset} acknowledged twice");
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    // The subscriber collects concurrently.
    let got: Arc<Mutex<Vec<(u64, u64, String)>>> = Arc::default();
    let reader = {
        let got = got.clone();
        tokio::spawn(async move {
            loop {
                match sub.next().await.unwrap() {
                    SubscriberEvent::Message(m) => {
                        let s = m.stamp.unwrap();
                        let body = String::from_utf8(m.frames[0].to_vec()).unwrap();
                        got.lock().unwrap().push((s.stream, s.offset, body));
                    }
                    other => panic!("nothing should be missed: {other:?}"),
                }
            }
        })
    };
    let wait_acked = |n: usize| {
        let acked = acked.clone();
        async move {
            timeout(T, async {
                while acked.lock().unwrap().len() < n {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("writes stalled");
        }
    };
    wait_acked(300).await;
    for round in 0..3 {
        broker.kill();
        broker = blocking({
            let f = fixed.clone();
            move || f.start()
        })
        .await;
        let before = acked.lock().unwrap().len();
        wait_acked(before + 300).await;
        eprintln!(
            "round {round}: {} acknowledged",
            acked.lock().unwrap().len()
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let last = *acked.keys().last().unwrap();
    // Everything acknowledged reaches the subscriber, whatever came around it.
    timeout(T, async {
        while got.lock().unwrap().last().is_none_or(|(_, o, _)| *o < last) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the subscriber did not catch up");
    reader.abort();
    let got = got.lock().unwrap().clone();
    let streams: std::collections::BTreeSet<u64> = got.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(streams.len(), 1, "one stream across restarts");
    let offsets: Vec<u64> = got.iter().map(|(_, o, _)| *o).collect();
    assert!(
        offsets.windows(2).all(|w| w[1] > w[0]),
        "in order, no duplicates"
    );
    let delivered: BTreeMap<u64, String> = got.into_iter().map(|(_, o, b)| (o, b)).collect();
    for (offset, payload) in &acked {
        assert_eq!(
            delivered.get(offset),
            Some(payload),
            "acknowledged offset {offset} not delivered as written"
        );
    }
    eprintln!(
        "{} acknowledged, {} delivered (the rest: written but not acknowledged before a kill)",
        acked.len(),
        delivered.len()
    );
    broker.kill();
}
