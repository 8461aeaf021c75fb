//! The crash campaign of Titanic on PostgreSQL (issue #18): a Binary Star pair of real
//! `domo-broker` processes on one database that has a synchronous standby, clients submitting
//! durable requests all the time (each under an idempotency key, retried with that key until
//! acknowledged), and in every round, at a random moment, kill -9 of the database primary (its
//! postmaster and every process of it at once) and of the active broker, in random order. The
//! standby is promoted, the other broker follows the multi-host URL to it and takes over, the
//! killed broker comes back as passive, and the crashed database node comes back as the new
//! primary's synchronous standby. Then the next round, until `DOMO_PG_CRASH_ROUNDS` (20 by
//! default; `scripts/pg-crash-campaign.sh` runs the long version).
//!
//! At the end every id that was acknowledged with `200` must be answered (`300` pending or
//! `200` done) by the surviving pair, 0 lost, and every key submitted again must get the id
//! acknowledged for it. Needs Debian's PostgreSQL server; without it the test says so and
//! passes, except under `CI=true`.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_client::{Client, ClientOptions, TitanicId, TitanicReply};
use domo_tests::pair::{pair_specs_with_titanic, pair_worker, wait_one_active, Node};
use domo_tests::{pg_server_or_skip, poll_until, PgCluster, Rng, TempDir};

const SERVICE: &str = "ledger";
const SUBMITTERS: usize = 4;

/// What the submitters share with the campaign.
#[derive(Default)]
struct Ledger {
    /// Every acknowledged (key, id).
    acked: Mutex<Vec<(String, TitanicId)>>,
    /// Attempts that ended in an error (timeouts, 500s around the kills).
    failed: AtomicU64,
    stop: AtomicBool,
}

async fn submitter(n: usize, client: Client, ledger: Arc<Ledger>) {
    let mut seq = 0u64;
    while !ledger.stop.load(Ordering::SeqCst) {
        let key = format!("s{n}-{seq}");
        let body = vec![Bytes::from(format!("entry {key}"))];
        // The same key until acknowledged: a retry whose first attempt was stored (its
        // acknowledgement lost in a kill) gets that id, and nothing is stored twice.
        loop {
            match client.submit_keyed(&key, SERVICE, body.clone()).await {
                Ok(id) => {
                    ledger.acked.lock().unwrap().push((key.clone(), id));
                    break;
                }
                Err(_) => {
                    ledger.failed.fetch_add(1, Ordering::SeqCst);
                    if ledger.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        seq += 1;
    }
}

fn pair_client(a: &str, b: &str) -> Client {
    let options = ClientOptions::pair(a.to_string(), b.to_string())
        .timeout(Duration::from_millis(1500))
        .settle(Duration::from_millis(300));
    Client::new(options).unwrap()
}

#[test]
fn acknowledged_requests_survive_kill_9_of_the_database_primary_and_the_active_broker() {
    if !pg_server_or_skip() {
        return;
    }
    let db = PgCluster::start(&["ha-start"], "DOMO_PG_HA_DIR");
    let url = db.var("DOMO_PG_HA_URL");
    let rounds: usize = std::env::var("DOMO_PG_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("DOMO_PG_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash campaign: {rounds} rounds, seed {seed} (DOMO_PG_CRASH_SEED)");
    let mut rng = Rng::new(seed);
    let started = Instant::now();

    let dir = TempDir::new("titanic-pg-crash");
    let config = dir.path().join("broker.toml");
    std::fs::write(
        &config,
        format!(
            "[titanic]\nstore = \"postgres\"\nurl = \"{}\"\nrequire_sync_standby = true\n\
             commit_timeout = \"2s\"\n",
            url
        ),
    )
    .unwrap();
    let (mut sa, mut sb) = pair_specs_with_titanic(&dir, Duration::from_millis(200));
    for s in [&mut sa, &mut sb] {
        s.extra_args = vec!["--config".into(), config.to_str().unwrap().into()];
    }
    let mut a = Node::start(&sa);
    let mut b = Node::start(&sb);
    wait_one_active(&a, &b, Duration::ZERO, Duration::from_secs(10));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ledger = Arc::new(Ledger::default());
    let calls = Arc::new(AtomicU64::new(0));
    let submitters: Vec<_> = {
        let _in = runtime.enter();
        let counted = calls.clone();
        // Runs on the runtime until it is dropped at the end.
        drop(pair_worker(&sa, &sb, SERVICE, move |body| {
            counted.fetch_add(1, Ordering::SeqCst);
            body
        }));
        (0..SUBMITTERS)
            .map(|n| {
                let client = pair_client(&sa.frontend, &sb.frontend);
                runtime.spawn(submitter(n, client, ledger.clone()))
            })
            .collect()
    };
    let acked = || ledger.acked.lock().unwrap().len();
    let logs = |a: &Node, b: &Node| format!("A:\n{}\nB:\n{}", a.log(), b.log());

    for round in 0..rounds {
        // Acknowledgements flow before the kills.
        let before = acked();
        poll_until(Duration::from_secs(60), || (acked() > before).then_some(()))
            .unwrap_or_else(|| panic!("round {round}: nothing acknowledged\n{}", logs(&a, &b)));
        std::thread::sleep(Duration::from_millis(100 + rng.below(900)));
        let a_active = a.state() == "active";
        let gap = Duration::from_millis(rng.below(300));
        let kill_broker = |a: &mut Node, b: &mut Node| {
            if a_active {
                a.kill9();
            } else {
                b.kill9();
            }
        };
        if rng.below(2) == 0 {
            kill_broker(&mut a, &mut b);
            std::thread::sleep(gap);
            db.run("ha-crash");
        } else {
            db.run("ha-crash");
            std::thread::sleep(gap);
            kill_broker(&mut a, &mut b);
        }
        let t = Instant::now();
        db.run("ha-promote");

        // The killed broker comes back (as passive: its peer took over or will).
        if a_active {
            a = Node::start(&sa);
        } else {
            b = Node::start(&sb);
        }
        db.run("ha-rejoin");
        wait_one_active(&a, &b, Duration::ZERO, Duration::from_secs(30));
        eprintln!(
            "round {round}: killed the {} broker and the database primary; back in {:.1} s, \
             {} acknowledged so far",
            if a_active { "primary" } else { "backup" },
            t.elapsed().as_secs_f64(),
            acked(),
        );
    }
    // Acknowledgements flow again after the last round, then the submitters stop.
    let before = acked();
    poll_until(Duration::from_secs(60), || (acked() > before).then_some(()))
        .unwrap_or_else(|| panic!("nothing acknowledged after the campaign\n{}", logs(&a, &b)));
    ledger.stop.store(true, Ordering::SeqCst);
    runtime.block_on(async {
        for s in submitters {
            let _ = tokio::time::timeout(Duration::from_secs(30), s).await;
        }
    });

    // Every acknowledged id is known to the pair, and its key still names it.
    let acked = ledger.acked.lock().unwrap().clone();
    let checker = pair_client(&sa.frontend, &sb.frontend);
    let (mut pending, mut done, mut lost) = (0, 0, Vec::new());
    runtime.block_on(async {
        for (key, id) in &acked {
            let reply = loop {
                // A 500 while the store settles is asked again; an unknown id is lost.
                match checker.titanic_reply(id).await {
                    Ok(reply) => break reply,
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            };
            match reply {
                TitanicReply::Pending => pending += 1,
                TitanicReply::Done(_) => done += 1,
                TitanicReply::Unknown => lost.push(format!("{key} {id}")),
            }
            let again = checker
                .submit_keyed(key, SERVICE, vec![Bytes::from(format!("entry {key}"))])
                .await
                .unwrap();
            assert_eq!(again, *id, "key {key} names another request now");
        }
    });
    let summary = format!(
        "{rounds} rounds (kill -9 of the database primary and of the active broker each), \
         seed {seed}: {} acknowledged, {} failed attempts (retried), {done} done and {pending} \
         pending afterwards, lost: {}, {} deliveries, {:.1} s",
        acked.len(),
        ledger.failed.load(Ordering::SeqCst),
        lost.len(),
        calls.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64()
    );
    eprintln!("{summary}");
    if let Ok(path) = std::env::var("DOMO_PG_CRASH_RESULT") {
        std::fs::write(Path::new(&path), format!("{summary}\n")).unwrap();
    }
    assert!(lost.is_empty(), "lost: {lost:?}\n{}", logs(&a, &b));
}
