//! kill -9 at random moments: every acknowledged write survives and the store reopens, for
//! both disk stores (redb, and the log with small segments).
//!
//! The test binary runs itself as the writer child: `crash_child`, an ignored test that the
//! parent runs with `--ignored --exact crash_child`, `TITANIC_CRASH_CHILD` naming the store
//! and `TITANIC_CRASH_STORE` its kind. The child prints `W <id>` after each acknowledged
//! request, `D <id>` after each acknowledged reply, `X <id>` before a close and `C <id>`
//! after it is acknowledged; the parent SIGKILLs it a random 20-350 ms after its first acknowledgement, reopens
//! the store and checks every printed id (a closed one must stay gone).
//! `TITANIC_CRASH_ITERATIONS` (default 3) sets how many kills; `scripts/titanic-crash.sh`
//! runs a long campaign.

#![allow(clippy::unwrap_used)] // test helpers: a failed setup step should panic

use std::collections::HashSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use domo_titanic::store::log::LogStore;
use domo_titanic::{Id, Lookup, RedbOptions, RedbStore, Store};

const CHILD_ENV: &str = "TITANIC_CRASH_CHILD";
/// Which store the child writes: `redb` or `log`.
const STORE_ENV: &str = "TITANIC_CRASH_STORE";

/// The store at `path`: redb's file, or the log's directory with 256 KiB segments (so that
/// kills land in rotations, deletions and compactions too).
fn open(kind: &str, path: &std::path::Path) -> Result<Arc<dyn Store>, domo_titanic::Error> {
    Ok(if kind == "log" {
        let options = RedbOptions {
            segment_bytes: 256 * 1024,
            ..RedbOptions::default()
        };
        Arc::new(LogStore::open(path, options)?) as Arc<dyn Store>
    } else {
        Arc::new(RedbStore::open(path, RedbOptions::default())?)
    })
}

/// The reply stored for `id`: one in eight (by the id's last bits) about 5 KB, so the store
/// keeps it in parts.
fn body_for(id: Id) -> Bytes {
    let text = format!("reply for {id}");
    Bytes::from(if id.as_u128() & 7 == 1 {
        text.repeat(110)
    } else {
        text
    })
}

/// The child: 8 threads (the blocking calls) and 32 tasks (the async ones the broker uses)
/// submit and complete requests until killed (or for at most 30 s). It checks nothing
/// itself, so it runs only as the parent's child (ignored otherwise) and fails without a
/// store to write to.
#[test]
#[ignore = "the writer child of acknowledged_writes_survive_kill_9_at_random_moments, run by it"]
fn crash_child() {
    let path = std::env::var(CHILD_ENV).unwrap_or_else(|_| {
        panic!(
            "{CHILD_ENV} is not set: crash_child is the writer child of \
             acknowledged_writes_survive_kill_9_at_random_moments, which runs it"
        )
    });
    let kind = std::env::var(STORE_ENV).unwrap_or_else(|_| "redb".into());
    let store = open(&kind, std::path::Path::new(&path)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let id = store
                        .put_request(
                            Bytes::from_static(b"svc"),
                            vec![Bytes::from(format!("{t}/{n}"))],
                        )
                        .unwrap();
                    emit('W', id);
                    if n.is_multiple_of(2) {
                        store.complete(id, vec![body_for(id)]).unwrap();
                        emit('D', id);
                    }
                    if n % 4 == 2 {
                        // Said before the close: a kill between its commit and `C` leaves
                        // a request that may be either there or gone.
                        emit('X', id);
                        store.close(id).unwrap();
                        emit('C', id);
                    }
                    n += 1;
                }
            })
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..32 {
            let store = store.clone();
            tasks.spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    // One in sixteen about 5 KB (kept in parts).
                    let mut text = format!("async {t}/{n}");
                    if n % 16 == 1 {
                        text = text.repeat(500);
                    }
                    let body = vec![Bytes::from(text)];
                    let id = store
                        .put_request_async(Bytes::from_static(b"svc"), body)
                        .await
                        .unwrap();
                    emit('W', id);
                    if n.is_multiple_of(2) {
                        store.complete_async(id, vec![body_for(id)]).await.unwrap();
                        emit('D', id);
                    }
                    n += 1;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    for t in threads {
        t.join().unwrap();
    }
}

fn emit(kind: char, id: Id) {
    let line = format!("{kind} {id}\n");
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes()).unwrap();
    out.flush().unwrap();
}

/// A small xorshift for the kill delays, seeded from the clock (printed for reproduction).
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn acknowledged_writes_survive_kill_9_at_random_moments() {
    campaign("redb", "crash.redb");
}

#[test]
fn acknowledged_writes_survive_kill_9_at_random_moments_in_the_log() {
    campaign("log", "crash-log");
}

/// `TITANIC_CRASH_ITERATIONS` kills of a child writing to a `kind` store at `name`.
fn campaign(kind: &str, name: &str) {
    let iterations: u32 = std::env::var("TITANIC_CRASH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash campaign ({kind}): {iterations} kills, seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    let (mut written, mut done) = (Vec::new(), Vec::new());
    let (mut closing, mut closed) = (HashSet::new(), HashSet::new());
    for i in 0..iterations {
        let delay = Duration::from_millis(20 + next(&mut seed) % 330);
        let output = run_and_kill(kind, &path, delay);
        let before = (written.len(), done.len());
        for line in output.lines() {
            let (kind, hex) = line.split_at_checked(2).unwrap_or(("", ""));
            let Ok(id) = hex.parse::<Id>() else { continue };
            match kind {
                "W " => written.push(id),
                "D " => done.push(id),
                "C " => drop(closed.insert(id)),
                "X " => drop(closing.insert(id)),
                _ => {}
            }
        }
        let store = open(kind, &path).unwrap_or_else(|e| panic!("kill {i}: reopen failed: {e}"));
        for id in &closed {
            assert_eq!(
                store.get(*id).unwrap(),
                Lookup::Unknown,
                "kill {i}: closed request {id} is back"
            );
        }
        for id in written.iter().filter(|id| !closing.contains(*id)) {
            assert_ne!(
                store.get(*id).unwrap(),
                Lookup::Unknown,
                "kill {i}: lost request {id}"
            );
        }
        for id in done.iter().filter(|id| !closing.contains(*id)) {
            match store.get(*id).unwrap() {
                Lookup::Done(r) => assert_eq!(r.frames, vec![body_for(*id)], "kill {i}: {id}"),
                other => panic!("kill {i}: reply for {id} lost: {other:?}"),
            }
        }
        eprintln!(
            "kill {i} after {delay:?}: +{} requests, +{} replies acknowledged, all present \
             ({} closed, all gone)",
            written.len() - before.0,
            done.len() - before.1,
            closed.len()
        );
        // Over a long campaign the child would fill the store (`max_bytes`, 1 GiB) and then
        // acknowledge nothing: past 256 MiB live, everything is expired (an expiry record,
        // then segments deleted by the next child's writer) and the checks start again
        // from there (the closed ones must stay gone all the same).
        if store.stats().unwrap().live_bytes > 256 << 20 {
            let expired = store.expire(0).unwrap();
            eprintln!("kill {i}: {expired} requests expired to keep the store small");
            written.clear();
            done.clear();
            closing.clear();
        }
    }
    assert!(!written.is_empty(), "the child never acknowledged anything");
}

/// Runs the child, SIGKILLs it `delay` after its first acknowledgement (so every kill lands
/// while it writes, however long the reopen of a grown store takes), and returns everything
/// it printed.
fn run_and_kill(kind: &str, path: &std::path::Path, delay: Duration) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--ignored", "--nocapture"])
        .arg("--test-threads=1")
        .env(CHILD_ENV, path)
        .env(STORE_ENV, kind)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // What the child says on stderr (a panic, an error), shown if it acknowledges nothing.
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut out);
        out
    });
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let mut lines = std::io::BufReader::new(stdout);
        let mut line = String::new();
        let mut told = false;
        while std::io::BufRead::read_line(&mut lines, &mut line).unwrap_or(0) > 0 {
            if !told && (line.starts_with("W ") || line.starts_with("D ")) {
                let _ = first_tx.send(());
                told = true;
            }
            out.push_str(&line);
            line.clear();
        }
        out
    });
    // The child acknowledges within seconds of starting; a minute is a hung child.
    if let Err(e) = first_rx.recv_timeout(Duration::from_secs(60)) {
        let _ = child.kill();
        let _ = child.wait();
        let printed = reader.join().unwrap();
        let said = errors.join().unwrap();
        let tail = |s: &str| s.lines().rev().take(30).collect::<Vec<_>>().join("\n");
        panic!(
            "the child acknowledged nothing within 60 s ({e:?}); its stdout, last lines \
             first:\n{}\nits stderr, last lines first:\n{}",
            tail(&printed),
            tail(&said)
        );
    }
    std::thread::sleep(delay);
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    drop(errors);
    reader.join().unwrap()
}
