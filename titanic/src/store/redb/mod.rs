//! The durable [`Store`]: one redb file, written by a single group-committing thread.
//!
//! Tables (keys are ids as big-endian `u128`, so key order is id order is creation order):
//!
//! - `requests`: id -> encoded [`crate::record::StoredRequest`], for every live request;
//! - `replies`: id -> encoded [`crate::record::StoredReply`], once a request is done;
//! - `pending`: id -> `()`, the requests without a reply, so a FIFO scan of pending work
//!   never walks over done requests that clients have not closed yet.
//!
//! Reads run on the caller's thread in a redb read transaction (they see the last commit);
//! writes go to the writer thread (group commit, see `writer.rs`). Every commit uses redb's
//! default `Durability::Immediate`: it returns after the data and the commit slot are fsynced,
//! and on reopen after a crash redb recovers to the last completed commit.
//!
//! After a failed write (disk full, I/O error) redb may refuse further writes on this handle
//! (`PreviousIo`); they fail with [`Error::WriteFailed`] until the store is dropped and opened
//! again. Everything committed before the failure stays readable and intact.

mod backend;
mod writer;

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use redb::backends::FileBackend;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, StorageBackend,
    TableDefinition,
};

use self::writer::{Answer, Kind, Op, Writer};
use super::{Limits, Lookup, Stats, Store};
use crate::clock::{SystemClock, TimeSource};
use crate::error::{Error, Result};
use crate::id::{Id, IdGenerator};
use crate::record::{decode_reply, decode_request, Request};

pub(crate) const REQUESTS: TableDefinition<'static, u128, &[u8]> = TableDefinition::new("requests");
pub(crate) const REPLIES: TableDefinition<'static, u128, &[u8]> = TableDefinition::new("replies");
pub(crate) const PENDING: TableDefinition<'static, u128, ()> = TableDefinition::new("pending");

/// How to open a [`RedbStore`].
#[derive(Clone)]
pub struct RedbOptions {
    /// Limits on accepted requests.
    pub limits: Limits,
    /// The wall clock for creation, completion and expiry times.
    pub clock: Arc<dyn TimeSource>,
    /// The most ops in one group commit.
    pub max_batch: usize,
    /// How many ops may wait for the writer; callers block beyond that (backpressure).
    pub queue_capacity: usize,
    /// Called on the writer thread with the duration of every successful group commit (write
    /// transaction begin to durable commit), e.g. for a latency histogram. Keep it cheap.
    pub on_commit: Option<CommitObserver>,
}

/// See [`RedbOptions::on_commit`].
pub type CommitObserver = Arc<dyn Fn(std::time::Duration) + Send + Sync>;

impl Default for RedbOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            clock: Arc::new(SystemClock),
            max_batch: 1024,
            queue_capacity: 4096,
            on_commit: None,
        }
    }
}

impl std::fmt::Debug for RedbOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbOptions")
            .field("limits", &self.limits)
            .field("max_batch", &self.max_batch)
            .field("queue_capacity", &self.queue_capacity)
            .field("on_commit", &self.on_commit.is_some())
            .finish_non_exhaustive()
    }
}

/// A durable Titanic store in one redb file. Dropping it stops the writer after the queued ops.
pub struct RedbStore {
    db: Arc<Database>,
    tx: Mutex<Option<SyncSender<Op>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    live: Arc<AtomicU64>,
    file_len: Arc<AtomicU64>,
    commits: Arc<AtomicU64>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens the store at `path`, creating the file if needed. After a crash this runs redb's
    /// recovery, which rolls back to the last completed commit.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] if the file cannot be opened (or is locked by another process),
    /// or a write failure while initializing it.
    pub fn open(path: impl AsRef<Path>, options: RedbOptions) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path.as_ref())
            .map_err(|e| Error::Unavailable(format!("{}: {e}", path.as_ref().display())))?;
        let backend = FileBackend::new(file).map_err(map_err)?;
        Self::open_with_backend(backend, options)
    }

    /// Opens the store on any redb storage backend (tests use one that injects failures).
    ///
    /// # Errors
    ///
    /// As [`RedbStore::open`].
    pub fn open_with_backend(backend: impl StorageBackend, options: RedbOptions) -> Result<Self> {
        let file_len = Arc::new(AtomicU64::new(0));
        let tracked = backend::Tracked::new(Box::new(backend), file_len.clone());
        let db = Arc::new(
            Database::builder()
                .create_with_backend(tracked)
                .map_err(map_err)?,
        );
        let (floor, live) = init_tables(&db)?;
        let live_shared = Arc::new(AtomicU64::new(live));
        let commits = Arc::new(AtomicU64::new(0));
        let writer = Writer {
            db: db.clone(),
            clock: options.clock,
            limits: options.limits,
            ids: IdGenerator::after(floor),
            live,
            live_shared: live_shared.clone(),
            commits: commits.clone(),
            max_batch: options.max_batch.max(1),
            on_commit: options.on_commit,
        };
        let (tx, rx) = mpsc::sync_channel(options.queue_capacity.max(1));
        let handle = std::thread::Builder::new()
            .name("titanic-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            db,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            live: live_shared,
            file_len,
            commits,
        })
    }

    fn submit<T>(
        &self,
        kind: Kind,
        answer: impl FnOnce(SyncSender<Result<T>>) -> Answer,
    ) -> Result<T> {
        let (done, wait) = mpsc::sync_channel(1);
        let tx = self
            .tx
            .lock()
            .map_err(|_| Error::Closed)?
            .clone()
            .ok_or(Error::Closed)?;
        tx.send(Op {
            kind,
            answer: answer(done),
        })
        .map_err(|_| Error::Closed)?;
        wait.recv().map_err(|_| Error::Closed)?
    }
}

impl Store for RedbStore {
    fn put_request(&self, service: Bytes, body: Vec<Bytes>) -> Result<Id> {
        self.submit(Kind::Put { service, body }, Answer::Id)
    }

    fn complete(&self, id: Id, frames: Vec<Bytes>) -> Result<()> {
        self.submit(Kind::Complete { id, frames }, Answer::Unit)
    }

    fn get(&self, id: Id) -> Result<Lookup> {
        let key = id.as_u128();
        let txn = self.db.begin_read().map_err(map_err)?;
        let replies = txn.open_table(REPLIES).map_err(map_err)?;
        if let Some(v) = replies.get(key).map_err(map_err)? {
            return decode_reply(v.value())
                .map(Lookup::Done)
                .map_err(|e| corrupt(key, e));
        }
        let pending = txn.open_table(PENDING).map_err(map_err)?;
        Ok(match pending.get(key).map_err(map_err)? {
            Some(_) => Lookup::Pending,
            None => Lookup::Unknown,
        })
    }

    fn close(&self, id: Id) -> Result<()> {
        self.submit(Kind::Close { id }, Answer::Unit)
    }

    fn pending(&self, after: Option<Id>, limit: usize) -> Result<Vec<(Id, Request)>> {
        let txn = self.db.begin_read().map_err(map_err)?;
        let pending = txn.open_table(PENDING).map_err(map_err)?;
        let requests = txn.open_table(REQUESTS).map_err(map_err)?;
        let from = after.map_or(0, |a| a.as_u128().saturating_add(1));
        let mut out = Vec::new();
        for entry in pending.range(from..).map_err(map_err)?.take(limit) {
            let key = entry.map_err(map_err)?.0.value();
            let value = requests
                .get(key)
                .map_err(map_err)?
                .ok_or_else(|| Error::Corrupt {
                    id: Id::from_u128(key).to_hex(),
                    reason: "pending without a request".into(),
                })?;
            let request = decode_request(value.value()).map_err(|e| corrupt(key, e))?;
            out.push((Id::from_u128(key), request));
        }
        Ok(out)
    }

    fn expire(&self, older_than_millis: u64) -> Result<usize> {
        self.submit(Kind::Expire { older_than_millis }, Answer::Count)
    }

    fn stats(&self) -> Result<Stats> {
        let txn = self.db.begin_read().map_err(map_err)?;
        let pending = txn
            .open_table(PENDING)
            .map_err(map_err)?
            .len()
            .map_err(map_err)?;
        let done = txn
            .open_table(REPLIES)
            .map_err(map_err)?
            .len()
            .map_err(map_err)?;
        Ok(Stats {
            pending,
            done,
            live_bytes: self.live.load(Ordering::Relaxed),
            file_bytes: self.file_len.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
        })
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish the queued ops and exit.
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(handle) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = handle.join();
        }
    }
}

/// Creates the tables if missing; returns the largest stored id and the live record bytes.
fn init_tables(db: &Database) -> Result<(Option<Id>, u64)> {
    let txn = db.begin_write().map_err(map_err)?;
    let (floor, live) = {
        let requests = txn.open_table(REQUESTS).map_err(map_err)?;
        let replies = txn.open_table(REPLIES).map_err(map_err)?;
        txn.open_table(PENDING).map_err(map_err)?;
        let floor = requests
            .last()
            .map_err(map_err)?
            .map(|(k, _)| Id::from_u128(k.value()));
        let live = table_bytes(&requests)? + table_bytes(&replies)?;
        (floor, live)
    };
    txn.commit().map_err(map_err)?;
    Ok((floor, live))
}

fn table_bytes(table: &impl ReadableTable<u128, &'static [u8]>) -> Result<u64> {
    let mut total = 0;
    for entry in table.iter().map_err(map_err)? {
        total += entry.map_err(map_err)?.1.value().len() as u64;
    }
    Ok(total)
}

fn corrupt(key: u128, e: postcard::Error) -> Error {
    Error::Corrupt {
        id: Id::from_u128(key).to_hex(),
        reason: e.to_string(),
    }
}

/// Maps any redb error to ours: I/O errors keep their kind (disk full or other), an earlier
/// failure is a write failure, the rest make the store unavailable.
pub(crate) fn map_err(e: impl Into<redb::Error>) -> Error {
    match e.into() {
        redb::Error::Io(io) => Error::from_write_io(io),
        redb::Error::PreviousIo => {
            Error::WriteFailed("an earlier write failed; the store must be reopened".into())
        }
        other => Error::Unavailable(other.to_string()),
    }
}
