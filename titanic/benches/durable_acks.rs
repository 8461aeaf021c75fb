//! Durable `put_request` acknowledgements per second with 1, 16 and 64 concurrent submitters,
//! 64-byte bodies, on a real file (fsync per group commit).
//!
//! `cargo bench -p domo-titanic --bench durable_acks` (`TITANIC_BENCH_SECS`, default 5, sets
//! the time per run; `TITANIC_BENCH_DIR` the directory for the store file, default the system
//! temp dir, which must be on a real disk, not tmpfs, for the numbers to mean anything;
//! `TITANIC_BENCH_SIZE` the body size, default 64). Also prints the bytes this process wrote
//! to the disk per request (Linux `/proc/self/io`).
//!
//! With `TITANIC_BENCH_PG_URL` (e.g. from `scripts/pg-test-cluster.sh start`), the PostgreSQL
//! store runs right after redb at each concurrency, in a fresh schema each time: the two in one
//! session, alternating.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_titanic::store::log::LogStore;
use domo_titanic::store::postgres::{PostgresOptions, PostgresStore};
use domo_titanic::{RedbOptions, RedbStore, Store};

fn main() {
    let secs: u64 = std::env::var("TITANIC_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let base = std::env::var_os("TITANIC_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let size: usize = std::env::var("TITANIC_BENCH_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    println!(
        "durable put_request acks, {size} B bodies, {secs} s per run, store in {}",
        base.display()
    );
    let pg = std::env::var("TITANIC_BENCH_PG_URL").ok();
    for submitters in [1, 16, 64] {
        let dir = tempfile::tempdir_in(&base).expect("temp dir");
        let store: Arc<dyn Store> = Arc::new(
            RedbStore::open(dir.path().join("bench.redb"), RedbOptions::default()).expect("open"),
        );
        let written = disk_bytes_written();
        let (acks, elapsed) = run(&store, submitters, size, Duration::from_secs(secs));
        let written = disk_bytes_written().zip(written).map(|(b, a)| b - a);
        let stats = store.stats().expect("stats");
        println!(
            "redb      {submitters:>3} submitters: {acks:>8} acks in {:.2} s = {:>8.0} acks/s, \
             {:.1} requests per commit (file {} KiB, {} B to the disk per request)",
            elapsed.as_secs_f64(),
            acks as f64 / elapsed.as_secs_f64(),
            stats.pending as f64 / stats.commits.max(1) as f64,
            stats.file_bytes / 1024,
            written.map_or_else(|| "?".into(), |w| (w / acks.max(1)).to_string()),
        );
        drop(store);
        let store: Arc<dyn Store> = Arc::new(
            LogStore::open(dir.path().join("bench-log"), RedbOptions::default()).expect("open"),
        );
        let written = disk_bytes_written();
        let (acks, elapsed) = run(&store, submitters, size, Duration::from_secs(secs));
        let written = disk_bytes_written().zip(written).map(|(b, a)| b - a);
        let stats = store.stats().expect("stats");
        println!(
            "log       {submitters:>3} submitters: {acks:>8} acks in {:.2} s = {:>8.0} acks/s, \
             {:.1} requests per commit (files {} KiB, {} B to the disk per request)",
            elapsed.as_secs_f64(),
            acks as f64 / elapsed.as_secs_f64(),
            stats.pending as f64 / stats.commits.max(1) as f64,
            stats.file_bytes / 1024,
            written.map_or_else(|| "?".into(), |w| (w / acks.max(1)).to_string()),
        );
        drop(store);
        if let Some(url) = &pg {
            let store: Arc<dyn Store> = Arc::new(
                PostgresStore::open(PostgresOptions::new(fresh_schema(url))).expect("open"),
            );
            let (acks, elapsed) = run(&store, submitters, size, Duration::from_secs(secs));
            let stats = store.stats().expect("stats");
            println!(
                "postgres  {submitters:>3} submitters: {acks:>8} acks in {:.2} s = {:>8.0} acks/s, \
                 {:.1} requests per commit",
                elapsed.as_secs_f64(),
                acks as f64 / elapsed.as_secs_f64(),
                stats.pending as f64 / stats.commits.max(1) as f64,
            );
        }
    }
}

/// `url` with its tables in a new schema of their own.
fn fresh_schema(url: &str) -> String {
    let schema = format!(
        "bench_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("create schema");
    });
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// Bytes this process caused to be written to the disk so far (`write_bytes` of
/// `/proc/self/io`), where the system has it.
fn disk_bytes_written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes: "))
        .and_then(|v| v.trim().parse().ok())
}

fn run(store: &Arc<dyn Store>, submitters: usize, size: usize, time: Duration) -> (u64, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicU64::new(0));
    let body = Bytes::from(vec![0x5a; size]);
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
