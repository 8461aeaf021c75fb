//! Durable `put_request` acknowledgements per second with 1, 16 and 64 concurrent submitters,
//! 64-byte bodies, on a real file (fsync per group commit).
//!
//! `cargo bench -p domo-titanic --bench durable_acks` (`TITANIC_BENCH_SECS`, default 5, sets
//! the time per run; `TITANIC_BENCH_DIR` the directory for the store file, default the system
//! temp dir, which must be on a real disk, not tmpfs, for the numbers to mean anything).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_titanic::{RedbOptions, RedbStore, Store};

fn main() {
    let secs: u64 = std::env::var("TITANIC_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let base = std::env::var_os("TITANIC_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    println!(
        "durable put_request acks, 64 B bodies, {secs} s per run, store in {}",
        base.display()
    );
    for submitters in [1, 16, 64] {
        let dir = tempfile::tempdir_in(&base).expect("temp dir");
        let store = Arc::new(
            RedbStore::open(dir.path().join("bench.redb"), RedbOptions::default()).expect("open"),
        );
        let (acks, elapsed) = run(&store, submitters, Duration::from_secs(secs));
        let stats = store.stats().expect("stats");
        println!(
            "{submitters:>3} submitters: {acks:>8} acks in {:.2} s = {:>8.0} acks/s, \
             {:.1} requests per commit (file {} KiB)",
            elapsed.as_secs_f64(),
            acks as f64 / elapsed.as_secs_f64(),
            stats.pending as f64 / stats.commits.max(1) as f64,
            stats.file_bytes / 1024
        );
    }
}

fn run(store: &Arc<RedbStore>, submitters: usize, time: Duration) -> (u64, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let body = Bytes::from(vec![0x5a; 64]);
    let started = Instant::now();
    let threads: Vec<_> = (0..submitters)
        .map(|_| {
            let (store, stop, acks, body) =
                (store.clone(), stop.clone(), acks.clone(), body.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    store
                        .put_request(Bytes::from_static(b"echo"), vec![body.clone()])
                        .expect("put_request");
                    acks.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(time);
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let n = acks.load(Ordering::Relaxed);
    for t in threads {
        t.join().expect("submitter");
    }
    (n, elapsed)
}
