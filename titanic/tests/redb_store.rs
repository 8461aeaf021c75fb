//! The durable store across reopen, and under a full disk: refusing writes while it is full,
//! and taking them again by itself once space is freed.

#![allow(clippy::unwrap_used)] // test helpers: a failed setup step should panic

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_titanic::service::{handle_reply, handle_request};
use domo_titanic::{BackoffOptions, Error, Id, Lookup, ManualClock, RedbOptions, RedbStore, Store};
use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn options(clock: &ManualClock) -> RedbOptions {
    RedbOptions {
        clock: Arc::new(clock.clone()),
        ..RedbOptions::default()
    }
}

#[test]
fn reopening_keeps_pending_requests_in_fifo_order_and_replies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let clock = ManualClock::new(1_700_000_000_000);
    let mut ids = Vec::new();
    {
        let store = RedbStore::open(&path, options(&clock)).unwrap();
        for i in 0..20 {
            ids.push(
                store
                    .put_request(b("svc"), vec![b(&format!("{i}"))])
                    .unwrap(),
            );
        }
        store.complete(ids[3], vec![b("three")]).unwrap();
        store.close(ids[5]).unwrap();
    }
    // The clock stepped back across the restart: new ids still sort after the stored ones.
    clock.set(1_600_000_000_000);
    let store = RedbStore::open(&path, options(&clock)).unwrap();
    let pending: Vec<Id> = store
        .pending(None, 100)
        .unwrap()
        .into_iter()
        .map(|p| p.0)
        .collect();
    let want: Vec<Id> = ids
        .iter()
        .copied()
        .filter(|id| *id != ids[3] && *id != ids[5])
        .collect();
    assert_eq!(pending, want);
    assert!(matches!(store.get(ids[3]).unwrap(), Lookup::Done(r) if r.frames == vec![b("three")]));
    assert_eq!(store.get(ids[5]).unwrap(), Lookup::Unknown);
    let newer = store.put_request(b("svc"), vec![b("new")]).unwrap();
    assert!(newer > ids[19]);
    let stats = store.stats().unwrap();
    assert_eq!((stats.pending, stats.done), (19, 1));
    assert!(stats.file_bytes > 0 && stats.live_bytes > 0);
}

#[test]
fn a_second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let _store = RedbStore::open(&path, RedbOptions::default()).unwrap();
    let err = RedbStore::open(&path, RedbOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
}

/// A file backend whose writes fail with ENOSPC once its byte budget is spent.
#[derive(Debug)]
struct FullDisk {
    inner: FileBackend,
    budget: Arc<AtomicU64>,
}

impl FullDisk {
    fn open(path: &Path, budget: Arc<AtomicU64>) -> Self {
        let file: File = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap();
        Self {
            inner: FileBackend::new(file).unwrap(),
            budget,
        }
    }

    fn spend(&self, n: u64) -> io::Result<()> {
        self.budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(n)
            })
            .map(|_| ())
            .map_err(|_| io::Error::from_raw_os_error(28))
    }
}

impl StorageBackend for FullDisk {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let grow = len.saturating_sub(self.inner.len()?);
        self.spend(grow)?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.spend(data.len() as u64)?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }
    fn try_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(s, e)
    }
    fn try_lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(s, e)
    }
    fn lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(s, e)
    }
    fn lock_shared_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(s, e)
    }
    fn unlock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(s, e)
    }
    fn query_lock_range(&self, s: Bound<u64>, e: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(s, e)
    }
}

#[test]
fn a_full_disk_answers_500_and_damages_nothing_already_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let budget = Arc::new(AtomicU64::new(u64::MAX));
    let clock = ManualClock::new(1_700_000_000_000);
    let mut acked = Vec::new();
    {
        let store =
            RedbStore::open_with_backend(FullDisk::open(&path, budget.clone()), options(&clock))
                .unwrap();
        for i in 0..50 {
            acked.push(
                store
                    .put_request(b("svc"), vec![b(&format!("body {i}"))])
                    .unwrap(),
            );
        }
        store.complete(acked[0], vec![b("reply 0")]).unwrap();

        // The disk fills up: nothing more is acknowledged.
        budget.store(100, Ordering::SeqCst);
        let err = store
            .put_request(b("svc"), vec![Bytes::from(vec![1; 4096])])
            .unwrap_err();
        assert!(err.is_write_failure(), "{err}");
        assert!(matches!(err, Error::DiskFull(_)), "{err}");
        let out = handle_request(&store, vec![b("svc"), Bytes::from(vec![1; 4096])]);
        assert_eq!(out, vec![b("500")]);
        // Reads still work and see what was acknowledged.
        let frame = vec![Bytes::from(acked[0].to_hex())];
        assert_eq!(handle_reply(&store, frame), vec![b("200"), b("reply 0")]);
        // Space comes back, but this store (on one backend, which it cannot reopen) stays
        // failed: redb refuses writes after an I/O error until the file is reopened.
        budget.store(u64::MAX, Ordering::SeqCst);
        let again = store.put_request(b("svc"), vec![b("retry")]).unwrap_err();
        assert!(matches!(again, Error::WriteFailed(_)), "{again}");
    }
    // Space is freed; the store opens (redb repairs if needed) with everything acknowledged.
    budget.store(u64::MAX, Ordering::SeqCst);
    let store =
        RedbStore::open_with_backend(FullDisk::open(&path, budget.clone()), options(&clock))
            .unwrap();
    let pending = store.pending(None, 1000).unwrap();
    assert_eq!(pending.len(), 49);
    for (i, (id, request)) in pending.iter().enumerate() {
        assert_eq!(*id, acked[i + 1]);
        assert_eq!(request.body, vec![b(&format!("body {}", i + 1))]);
    }
    assert!(
        matches!(store.get(acked[0]).unwrap(), Lookup::Done(r) if r.frames == vec![b("reply 0")])
    );
    store.put_request(b("svc"), vec![b("after")]).unwrap();
}

/// Polls `done` every millisecond until it holds; panics after `within`.
fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_full_disk_refuses_writes_then_heals_by_itself_once_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.redb");
    let budget = Arc::new(AtomicU64::new(u64::MAX));
    let clock = ManualClock::new(1_700_000_000_000);
    // Every backend the store makes (its first, and one per reopen attempt).
    let backends = Arc::new(AtomicUsize::new(0));
    let reopens = Arc::new(AtomicUsize::new(0));
    let healing = RedbOptions {
        reopen_backoff: BackoffOptions::default()
            .initial(Duration::from_millis(10))
            .max(Duration::from_millis(40))
            .jitter(false),
        on_reopen: Some(Arc::new({
            let reopens = reopens.clone();
            move || {
                reopens.fetch_add(1, Ordering::SeqCst);
            }
        })),
        ..options(&clock)
    };
    let store = RedbStore::open_with_backends(
        {
            let (path, budget, backends) = (path.clone(), budget.clone(), backends.clone());
            move || {
                backends.fetch_add(1, Ordering::SeqCst);
                Ok(FullDisk::open(&path, budget.clone()))
            }
        },
        healing,
    )
    .unwrap();
    let mut acked = Vec::new();
    for i in 0..50 {
        acked.push(
            store
                .put_request(b("svc"), vec![b(&format!("body {i}"))])
                .unwrap(),
        );
    }
    store.complete(acked[0], vec![b("reply 0")]).unwrap();
    store.check_writes().unwrap();

    // The disk fills up: the write fails and the store refuses writes from then on.
    budget.store(100, Ordering::SeqCst);
    let err = store
        .put_request(b("svc"), vec![Bytes::from(vec![1; 4096])])
        .unwrap_err();
    assert!(matches!(err, Error::DiskFull(_)), "{err}");
    let broken = store.check_writes().unwrap_err();
    assert!(broken.is_write_failure(), "{broken}");
    // Reopen attempts go on while the disk stays full; every write is refused meanwhile.
    let made = backends.load(Ordering::SeqCst);
    wait_until(
        Duration::from_secs(10),
        "two reopen attempts failed",
        || backends.load(Ordering::SeqCst) >= made + 2,
    );
    for service in ["svc", "other"] {
        let out = handle_request(&store, vec![b(service), b("while full")]);
        assert_eq!(out, vec![b("500")]);
    }
    assert!(store.complete(acked[1], vec![b("lost")]).is_err());
    assert!(store.close(acked[2]).is_err());
    assert!(store.check_writes().unwrap_err().is_write_failure());
    assert_eq!(reopens.load(Ordering::SeqCst), 0);

    // Space is freed: without a restart the store reopens and takes writes again.
    budget.store(u64::MAX, Ordering::SeqCst);
    wait_until(Duration::from_secs(10), "the store takes writes", || {
        store.check_writes().is_ok()
    });
    assert_eq!(reopens.load(Ordering::SeqCst), 1);
    let after = store.put_request(b("svc"), vec![b("after")]).unwrap();
    assert!(after > acked[49]);

    // Everything acknowledged before the disk filled up is there, and nothing refused.
    let pending = store.pending(None, 1000).unwrap();
    let ids: Vec<Id> = pending.iter().map(|p| p.0).collect();
    let mut want = acked[1..].to_vec();
    want.push(after);
    assert_eq!(ids, want);
    for (i, (_, request)) in pending.iter().take(49).enumerate() {
        assert_eq!(request.body, vec![b(&format!("body {}", i + 1))]);
    }
    let frame = vec![Bytes::from(acked[0].to_hex())];
    assert_eq!(handle_reply(&store, frame), vec![b("200"), b("reply 0")]);
    for id in &acked[1..] {
        let frame = vec![Bytes::from(id.to_hex())];
        assert_eq!(handle_reply(&store, frame), vec![b("300")]);
    }
    store.complete(acked[1], vec![b("reply 1")]).unwrap();
    assert!(
        matches!(store.get(acked[1]).unwrap(), Lookup::Done(r) if r.frames == vec![b("reply 1")])
    );
    let stats = store.stats().unwrap();
    assert_eq!((stats.pending, stats.done), (49, 2));

    // And it all survives a restart.
    drop(store);
    let store =
        RedbStore::open_with_backend(FullDisk::open(&path, budget.clone()), options(&clock))
            .unwrap();
    let stats = store.stats().unwrap();
    assert_eq!((stats.pending, stats.done), (49, 2));
}

#[test]
fn concurrent_requests_share_group_commits_and_are_all_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(RedbStore::open(dir.path().join("t.redb"), RedbOptions::default()).unwrap());
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..20)
                    .map(|n| {
                        store
                            .put_request(b("svc"), vec![b(&format!("{t}/{n}"))])
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<Id> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let stats = store.stats().unwrap();
    assert_eq!(stats.pending, 640);
    // One commit per request would be 640 (+1 for opening): batches must have formed.
    assert!(
        stats.commits < 640,
        "{} commits for 640 requests",
        stats.commits
    );
    ids.sort();
    let fifo: Vec<Id> = store
        .pending(None, 1000)
        .unwrap()
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(fifo, ids);
}
