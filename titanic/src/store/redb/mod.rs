//! The durable [`Store`]: one redb file, written by a single group-committing thread.
//!
//! Tables (keys are ids as big-endian `u128`, so key order is id order is creation order):
//!
//! - `requests`: id -> encoded [`crate::record::StoredRequest`], for every live request;
//! - `replies`: id -> encoded [`crate::record::StoredReply`], once a request is done;
//! - `request_parts`, `reply_parts`: (id, n) -> the page-sized parts of records of 4,000 bytes
//!   or more, whose own value then holds only a header and the tail (see `split.rs`).
//!
//! A request is pending while it has no reply. A FIFO scan of pending work walks `requests`
//! from a cursor and `replies` beside it (both in id order) and skips the done ones; the
//! dispatcher keeps its cursor past what it has seen, so only a scan from the start (after a
//! restart) walks over requests that are done and not closed yet. Storing a request writes
//! one table, so a group commit dirties the pages of one tree, not two.
//!
//! Format 3 (the `meta` table records it). Stores of format 1 also have a `pending` table
//! (id -> `()`, the requests without a reply, which is what they are by construction);
//! opening one deletes it. Format 2 had no parts tables (every record whole); such a store
//! opens as it is. A broker of an earlier version must not open a format-3 store: it would
//! find no pending requests, and could not read a record kept in parts. A store of a newer
//! format is refused.
//!
//! Reads run on the caller's thread in a redb read transaction (they see the last commit);
//! writes go to the writer thread (group commit, see `writer.rs`). Every commit uses redb's
//! default `Durability::Immediate`: it returns after the data and the commit slot are fsynced,
//! and on reopen after a crash redb recovers to the last completed commit.
//!
//! # After a failed write
//!
//! After a failed write (disk full, I/O error) redb refuses further writes on that handle
//! (`PreviousIo`), so the store recovers by reopening the file. From the failure on, the
//! writer refuses writes at once (with the error of the failed write, which
//! [`Store::check_writes`] also reports) and, after a backoff delay
//! ([`RedbOptions::reopen_backoff`]: 100 ms doubling to 5 s, jittered; see `recovery.rs`),
//! drops the failed handle and opens the file again. The attempt succeeds once the reopened
//! file takes a probe write (a 64 KiB scratch table, written and deleted again); then writes
//! are accepted again. A failed attempt waits the next delay. Nothing acknowledged is lost:
//! every acknowledgement followed a completed commit, and reopening recovers to the last one.
//! Reads use the failed handle until the first attempt, then the handle of the latest attempt
//! that opened the file (even one whose probe write failed); during an attempt they wait for
//! it. [`RedbStore::open_with_backend`] cannot reopen its backend: after a failed write it
//! refuses writes until it is dropped.

mod backend;
mod split;
mod writer;

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use domo_mdp::{BackoffOptions, LockExt};
use redb::backends::FileBackend;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, StorageBackend,
    TableDefinition,
};

pub use super::queue::Linger;

use self::writer::{Reopen, Writer};
use super::op::{submit, submit_async, Answer, Kind, Op};
use super::queue::Queue;
use super::recovery::Recovery;
use super::{Durable, Limits, Lookup, Stats, Store};
use crate::clock::{SystemClock, TimeSource};
use crate::error::{Error, Result};
use crate::id::{Id, IdGenerator};
use crate::record::{decode_reply, decode_request, encode_request, Request};

pub(crate) const REQUESTS: TableDefinition<'static, u128, &[u8]> = TableDefinition::new("requests");
pub(crate) const REPLIES: TableDefinition<'static, u128, &[u8]> = TableDefinition::new("replies");
/// Idempotency key -> the id of the request stored under it (see [`Store::put_keyed`]).
/// Format 3 stores may lack both key tables; a key whose request is gone (closed by a version
/// that did not know keys) is ignored and replaced.
pub(crate) const KEYS: TableDefinition<'static, &[u8], u128> =
    TableDefinition::new("idempotency_keys");
/// Id -> its idempotency key, so that closing or expiring a request drops its key.
pub(crate) const KEY_OF: TableDefinition<'static, u128, &[u8]> =
    TableDefinition::new("idempotency_key_of");
/// The table of pending ids that stores before format 2 kept (deleted when opened).
const LEGACY_PENDING: TableDefinition<'static, u128, ()> = TableDefinition::new("pending");
/// `"format"` -> the store's format (2: no `pending` table; 3: large records in parts).
const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");
/// The format this version writes.
const FORMAT: u64 = 3;

/// How long a read waits for a reopen in progress before it fails.
const READ_WAIT: Duration = Duration::from_secs(10);

/// How to open a [`RedbStore`].
#[derive(Clone)]
pub struct RedbOptions {
    /// Limits on accepted requests.
    pub limits: Limits,
    /// The wall clock for creation, completion and expiry times.
    pub clock: Arc<dyn TimeSource>,
    /// The most ops in one group commit.
    pub max_batch: usize,
    /// Whether and how long a group commit waits to fill once the writer has its first op
    /// (only after a commit that carried several; a step that brings no new op ends the
    /// wait). Default: off, each commit takes what is queued; see [`Linger`] for when it
    /// pays.
    pub linger: Linger,
    /// How many ops may wait for the writer; callers block beyond that (backpressure).
    pub queue_capacity: usize,
    /// Called on the writer thread after every successful group commit with its duration
    /// (write transaction begin to durable commit) and the number of writes it carried
    /// (requests stored, replies, closes, expiries), e.g. for histograms. Keep it cheap.
    pub on_commit: Option<CommitObserver>,
    /// The delays between attempts to reopen the store after a failed write (see the module
    /// docs). Default: 100 ms doubling to 5 s, jittered down
    /// by up to a quarter.
    pub reopen_backoff: BackoffOptions,
    /// Called on the writer thread after each successful reopen after a failed write, e.g.
    /// for a counter. Keep it cheap.
    pub on_reopen: Option<ReopenObserver>,
    /// Receives, after each successful commit that stored requests and before their
    /// callers hear of it, those requests with their ids, in id order: a dispatcher then
    /// needs no read of the store to learn what was just stored (see
    /// [`crate::dispatcher::Dispatcher::with_feed`]).
    pub feed: Option<StoredFeed>,
    /// The log store only ([`crate::store::log::LogStore`]): the size at which a segment is
    /// closed and the next one started. Default 64 MiB.
    pub segment_bytes: u64,
    /// The log store only: write each commit with `O_DIRECT | O_DSYNC` where the file
    /// system takes it (one write, durable when it returns), else with `pwrite` and
    /// `fdatasync`. Default true; a file system that refuses direct I/O gets the latter
    /// anyway.
    pub direct_io: bool,
}

/// See [`RedbOptions::feed`].
pub type StoredFeed = tokio::sync::mpsc::UnboundedSender<Vec<(Id, Request)>>;

/// See [`RedbOptions::on_commit`].
pub type CommitObserver = Arc<dyn Fn(std::time::Duration, usize) + Send + Sync>;

/// See [`RedbOptions::on_reopen`].
pub type ReopenObserver = Arc<dyn Fn() + Send + Sync>;

impl Default for RedbOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            clock: Arc::new(SystemClock),
            max_batch: 1024,
            linger: Linger::default(),
            queue_capacity: 4096,
            on_commit: None,
            reopen_backoff: BackoffOptions::default()
                .initial(Duration::from_millis(100))
                .max(Duration::from_secs(5))
                .jitter(true),
            on_reopen: None,
            feed: None,
            segment_bytes: crate::store::log::SEGMENT_BYTES,
            direct_io: true,
        }
    }
}

impl std::fmt::Debug for RedbOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbOptions")
            .field("limits", &self.limits)
            .field("max_batch", &self.max_batch)
            .field("linger", &self.linger)
            .field("queue_capacity", &self.queue_capacity)
            .field("on_commit", &self.on_commit.is_some())
            .field("reopen_backoff", &self.reopen_backoff)
            .field("on_reopen", &self.on_reopen.is_some())
            .field("feed", &self.feed.is_some())
            .field("segment_bytes", &self.segment_bytes)
            .field("direct_io", &self.direct_io)
            .finish_non_exhaustive()
    }
}

/// A durable Titanic store in one redb file. Dropping it stops the writer after the queued ops.
pub struct RedbStore {
    shared: Arc<Shared>,
    /// For the creation time of requests, which their callers encode.
    clock: Arc<dyn TimeSource>,
    queue: Arc<Queue<Op>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

/// What the store's callers and its writer thread share.
struct Shared {
    slot: Mutex<Slot>,
    /// Signalled when a reopen attempt ends.
    reopened: Condvar,
    /// The error of the failed write, while the store refuses writes.
    failure: Mutex<Option<Error>>,
    /// Live record bytes as committed.
    live: AtomicU64,
    /// The storage length, kept by the backend wrapper.
    file_len: Arc<AtomicU64>,
    /// Successful group commits.
    commits: AtomicU64,
}

/// The open database, if any.
struct Slot {
    db: Option<Arc<Database>>,
    /// True while the writer reopens the file: reads wait for it.
    reopening: bool,
}

impl Shared {
    /// A handle on the database for a read; waits while the writer reopens it.
    fn db(&self) -> Result<Arc<Database>> {
        let slot = self.slot.lock_unpoisoned();
        let (slot, _) = self
            .reopened
            .wait_timeout_while(slot, READ_WAIT, |s| s.reopening)
            .unwrap_or_else(PoisonError::into_inner);
        slot.db.clone().ok_or_else(|| {
            Error::Unavailable("the store is being reopened after a failed write".into())
        })
    }

    /// Takes the database away for a reopen; reads wait until [`Shared::install`].
    fn take_db(&self) -> Option<Arc<Database>> {
        let mut slot = self.slot.lock_unpoisoned();
        slot.reopening = true;
        slot.db.take()
    }

    /// Ends a reopen attempt with the database it opened, if any.
    fn install(&self, db: Option<Arc<Database>>) {
        let mut slot = self.slot.lock_unpoisoned();
        slot.db = db;
        slot.reopening = false;
        self.reopened.notify_all();
    }

    fn failure(&self) -> Option<Error> {
        self.failure
            .lock_unpoisoned()
            .as_ref()
            .map(Error::duplicate)
    }

    fn set_failure(&self, failure: Option<Error>) {
        *self.failure.lock_unpoisoned() = failure;
    }
}

impl RedbStore {
    /// Opens the store at `path`, creating the file if needed. After a crash this runs redb's
    /// recovery, which rolls back to the last completed commit. After a failed write the store
    /// reopens the file by itself (see the module docs).
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] if the file cannot be opened (or is locked by another process),
    /// or a write failure while initializing it.
    pub fn open(path: impl AsRef<Path>, options: RedbOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        Self::open_with_backends(move || file_backend(&path), options)
    }

    /// Opens the store on the backend `make` returns, and calls `make` again for a fresh
    /// backend on the same storage each time the store reopens itself after a failed write
    /// (tests use backends that inject failures).
    ///
    /// # Errors
    ///
    /// As [`RedbStore::open`], or the error of `make`.
    pub fn open_with_backends<B: StorageBackend>(
        mut make: impl FnMut() -> Result<B> + Send + 'static,
        options: RedbOptions,
    ) -> Result<Self> {
        let first: Box<dyn StorageBackend> = Box::new(make()?);
        let reopen: Reopen = Box::new(move || make().map(|b| Box::new(b) as Box<_>));
        Self::start(first, Some(reopen), options)
    }

    /// Opens the store on one storage backend. It cannot be reopened: after a failed write
    /// the store refuses writes until it is dropped.
    ///
    /// # Errors
    ///
    /// As [`RedbStore::open`].
    pub fn open_with_backend(backend: impl StorageBackend, options: RedbOptions) -> Result<Self> {
        Self::start(Box::new(backend), None, options)
    }

    fn start(
        backend: Box<dyn StorageBackend>,
        reopen: Option<Reopen>,
        options: RedbOptions,
    ) -> Result<Self> {
        let file_len = Arc::new(AtomicU64::new(0));
        let db = Arc::new(open_database(backend, &file_len)?);
        let Opened { floor, live, keyed } = init_tables(&db)?;
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                db: Some(db.clone()),
                reopening: false,
            }),
            reopened: Condvar::new(),
            failure: Mutex::new(None),
            live: AtomicU64::new(live),
            file_len,
            commits: AtomicU64::new(0),
        });
        let clock = options.clock.clone();
        let writer = Writer {
            db: Some(db),
            shared: shared.clone(),
            clock: options.clock,
            limits: options.limits,
            ids: IdGenerator::after(floor),
            live,
            keyed,
            max_batch: options.max_batch.max(1),
            linger: options.linger,
            last_batch: 0,
            on_commit: options.on_commit,
            feed: options.feed,
            reopen,
            recovery: Recovery::new(options.reopen_backoff),
            on_reopen: options.on_reopen,
        };
        let queue = Arc::new(Queue::new(options.queue_capacity));
        let writer_queue = queue.clone();
        let handle = std::thread::Builder::new()
            .name("titanic-writer".into())
            .spawn(move || writer.run(&writer_queue))
            .map_err(|e| Error::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            shared,
            clock,
            queue,
            writer: Mutex::new(Some(handle)),
        })
    }

    /// A new request as the writer stores it: encoded here, on the caller's thread, so the
    /// single writer only inserts it.
    fn put_op(&self, service: Bytes, body: Vec<Bytes>) -> Kind {
        let request = Request {
            service,
            body,
            created_millis: self.clock.now_millis(),
            attempts: 0,
        };
        let encoded = encode_request(&request);
        Kind::Put {
            request,
            encoded,
            key: None,
        }
    }

    /// [`RedbStore::put_op`] under an idempotency key.
    fn keyed_op(&self, key: Bytes, service: Bytes, body: Vec<Bytes>) -> Kind {
        match self.put_op(service, body) {
            Kind::Put {
                request, encoded, ..
            } => Kind::Put {
                request,
                encoded,
                key: Some(key),
            },
            other => other,
        }
    }
}

impl RedbStore {
    /// Calls `each` with every live request in id order: its id, its encoded request, its
    /// encoded reply if done, and its idempotency key if any (to move a store elsewhere).
    pub(crate) fn for_each_live(
        &self,
        mut each: impl FnMut(u128, &[u8], Option<&[u8]>, Option<&[u8]>) -> Result<()>,
    ) -> Result<()> {
        let db = self.shared.db()?;
        let txn = db.begin_read().map_err(map_err)?;
        let requests = txn.open_table(REQUESTS).map_err(map_err)?;
        let replies = txn.open_table(REPLIES).map_err(map_err)?;
        let request_parts = txn.open_table(split::REQUEST_PARTS).map_err(map_err)?;
        let reply_parts = txn.open_table(split::REPLY_PARTS).map_err(map_err)?;
        let key_of = txn.open_table(KEY_OF).map_err(map_err)?;
        for entry in requests.iter().map_err(map_err)? {
            let (id, value) = entry.map_err(map_err)?;
            let id = id.value();
            let request =
                split::read(value.value(), &request_parts, id).map_err(|e| damaged(id, e))?;
            let reply = match replies.get(id).map_err(map_err)? {
                Some(v) => Some(
                    split::read(v.value(), &reply_parts, id)
                        .map_err(|e| damaged(id, e))?
                        .into_owned(),
                ),
                None => None,
            };
            let key = key_of.get(id).map_err(map_err)?.map(|k| k.value().to_vec());
            each(id, &request, reply.as_deref(), key.as_deref())?;
        }
        Ok(())
    }
}

/// The file at `path` (created if missing) as a redb backend, locked.
fn file_backend(path: &Path) -> Result<FileBackend> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::Unavailable(format!("{}: {e}", path.display())))?;
    FileBackend::new(file).map_err(map_err)
}

/// Opens (or creates) the database on `backend`, recording its length in `file_len`.
fn open_database(backend: Box<dyn StorageBackend>, file_len: &Arc<AtomicU64>) -> Result<Database> {
    let tracked = backend::Tracked::new(backend, file_len.clone());
    Database::builder()
        .create_with_backend(tracked)
        .map_err(map_err)
}

impl Store for RedbStore {
    fn put_request(&self, service: Bytes, body: Vec<Bytes>) -> Result<Id> {
        submit(&self.queue, self.put_op(service, body), Answer::Id)
    }

    fn put_request_async(&self, service: Bytes, body: Vec<Bytes>) -> Durable<Id> {
        submit_async(&self.queue, self.put_op(service, body), Answer::Id)
    }

    fn put_keyed(&self, key: Bytes, service: Bytes, body: Vec<Bytes>) -> Result<Id> {
        submit(&self.queue, self.keyed_op(key, service, body), Answer::Id)
    }

    fn put_keyed_async(&self, key: Bytes, service: Bytes, body: Vec<Bytes>) -> Durable<Id> {
        submit_async(&self.queue, self.keyed_op(key, service, body), Answer::Id)
    }

    fn complete(&self, id: Id, frames: Vec<Bytes>) -> Result<()> {
        submit(&self.queue, Kind::Complete { id, frames }, Answer::Unit)
    }

    fn complete_async(&self, id: Id, frames: Vec<Bytes>) -> Durable<()> {
        submit_async(&self.queue, Kind::Complete { id, frames }, Answer::Unit)
    }

    fn get(&self, id: Id) -> Result<Lookup> {
        let key = id.as_u128();
        let db = self.shared.db()?;
        let txn = db.begin_read().map_err(map_err)?;
        let replies = txn.open_table(REPLIES).map_err(map_err)?;
        if let Some(v) = replies.get(key).map_err(map_err)? {
            let value = v.value();
            let parts = if split::is_split(value) {
                Some(txn.open_table(split::REPLY_PARTS).map_err(map_err)?)
            } else {
                None
            };
            let whole = match &parts {
                Some(parts) => split::read(value, parts, key),
                None => Ok(std::borrow::Cow::Borrowed(value)),
            }
            .map_err(|e| damaged(key, e))?;
            return decode_reply(&whole)
                .map(Lookup::Done)
                .map_err(|e| corrupt(key, e));
        }
        let requests = txn.open_table(REQUESTS).map_err(map_err)?;
        Ok(match requests.get(key).map_err(map_err)? {
            Some(_) => Lookup::Pending,
            None => Lookup::Unknown,
        })
    }

    fn close(&self, id: Id) -> Result<()> {
        submit(&self.queue, Kind::Close { id }, Answer::Unit)
    }

    fn close_async(&self, id: Id) -> Durable<()> {
        submit_async(&self.queue, Kind::Close { id }, Answer::Unit)
    }

    fn pending(&self, after: Option<Id>, limit: usize) -> Result<Vec<(Id, Request)>> {
        let db = self.shared.db()?;
        let txn = db.begin_read().map_err(map_err)?;
        let requests = txn.open_table(REQUESTS).map_err(map_err)?;
        let replies = txn.open_table(REPLIES).map_err(map_err)?;
        let parts = txn.open_table(split::REQUEST_PARTS).map_err(map_err)?;
        let from = after.map_or(0, |a| a.as_u128().saturating_add(1));
        // Both tables in id order: a reply's id is skipped when the request walk reaches it.
        let mut done = replies.range(from..).map_err(map_err)?.peekable();
        let mut out = Vec::new();
        for entry in requests.range(from..).map_err(map_err)? {
            if out.len() >= limit {
                break;
            }
            let (key, value) = entry.map_err(map_err)?;
            let key = key.value();
            // Move the reply walk up to this id; it is done if a reply has the same id.
            let answered = loop {
                match done.peek() {
                    None => break false,
                    Some(Ok((k, _))) if k.value() < key => {
                        done.next();
                    }
                    Some(Ok((k, _))) => break k.value() == key,
                    Some(Err(_)) => {
                        if let Some(Err(e)) = done.next() {
                            return Err(map_err(e));
                        }
                    }
                }
            };
            if answered {
                continue;
            }
            let whole = split::read(value.value(), &parts, key).map_err(|e| damaged(key, e))?;
            let request = decode_request(&whole).map_err(|e| corrupt(key, e))?;
            out.push((Id::from_u128(key), request));
        }
        Ok(out)
    }

    fn expire(&self, older_than_millis: u64) -> Result<usize> {
        submit(
            &self.queue,
            Kind::Expire { older_than_millis },
            Answer::Count,
        )
    }

    fn stats(&self) -> Result<Stats> {
        let db = self.shared.db()?;
        let txn = db.begin_read().map_err(map_err)?;
        let requests = txn
            .open_table(REQUESTS)
            .map_err(map_err)?
            .len()
            .map_err(map_err)?;
        let done = txn
            .open_table(REPLIES)
            .map_err(map_err)?
            .len()
            .map_err(map_err)?;
        // Every reply's request is stored (a close or expiry removes both).
        let pending = requests.saturating_sub(done);
        Ok(Stats {
            pending,
            done,
            live_bytes: self.shared.live.load(Ordering::Relaxed),
            file_bytes: self.shared.file_len.load(Ordering::Relaxed),
            commits: self.shared.commits.load(Ordering::Relaxed),
        })
    }

    fn check_writes(&self) -> Result<()> {
        self.shared.failure().map_or(Ok(()), Err)
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish the queued ops and exit.
        self.queue.close();
        if let Some(handle) = self.writer.lock().ok().and_then(|mut w| w.take()) {
            let _ = handle.join();
        }
    }
}

/// What [`init_tables`] found.
pub(super) struct Opened {
    /// The largest stored id.
    pub(super) floor: Option<Id>,
    /// The live record bytes.
    pub(super) live: u64,
    /// How many requests have an idempotency key.
    pub(super) keyed: u64,
}

/// Creates the tables if missing (and moves an older store to the current format); returns
/// what the writer starts from.
fn init_tables(db: &Database) -> Result<Opened> {
    let txn = db.begin_write().map_err(map_err)?;
    {
        let meta = txn.open_table(META).map_err(map_err)?;
        let format = meta.get("format").map_err(map_err)?.map(|v| v.value());
        if let Some(format) = format.filter(|f| *f > FORMAT) {
            return Err(Error::Unavailable(format!(
                "the store has format {format}, newer than this version reads ({FORMAT})"
            )));
        }
    }
    if txn.delete_table(LEGACY_PENDING).map_err(map_err)? {
        tracing::info!("Titanic store moved to format {FORMAT}: its pending table is gone");
    }
    txn.open_table(META)
        .map_err(map_err)?
        .insert("format", FORMAT)
        .map_err(map_err)?;
    let opened = {
        let requests = txn.open_table(REQUESTS).map_err(map_err)?;
        let replies = txn.open_table(REPLIES).map_err(map_err)?;
        txn.open_table(split::REQUEST_PARTS).map_err(map_err)?;
        txn.open_table(split::REPLY_PARTS).map_err(map_err)?;
        txn.open_table(KEYS).map_err(map_err)?;
        let keyed = txn
            .open_table(KEY_OF)
            .map_err(map_err)?
            .len()
            .map_err(map_err)?;
        let floor = requests
            .last()
            .map_err(map_err)?
            .map(|(k, _)| Id::from_u128(k.value()));
        let live = table_bytes(&requests)? + table_bytes(&replies)?;
        Opened { floor, live, keyed }
    };
    txn.commit().map_err(map_err)?;
    Ok(opened)
}

fn table_bytes(table: &impl ReadableTable<u128, &'static [u8]>) -> Result<u64> {
    let mut total = 0;
    for entry in table.iter().map_err(map_err)? {
        total += split::stored_len(entry.map_err(map_err)?.1.value());
    }
    Ok(total)
}

fn damaged(key: u128, e: split::ReadError) -> Error {
    match e {
        split::ReadError::Storage(e) => map_err(e),
        split::ReadError::Damaged(reason) => Error::Corrupt {
            id: Id::from_u128(key).to_hex(),
            reason: reason.into(),
        },
    }
}

fn corrupt(key: u128, e: postcard::Error) -> Error {
    Error::Corrupt {
        id: Id::from_u128(key).to_hex(),
        reason: e.to_string(),
    }
}

/// A scratch table the writer fills and deletes again to check that a reopened file takes
/// writes (see [`probe_write`]).
const PROBE: TableDefinition<'static, u8, &[u8]> = TableDefinition::new("reopen_probe");

/// Checks that `db` takes writes that need new pages: commits a 64 KiB value (16 pages,
/// more than a typical request), then commits the deletion of its table, leaving no trace.
fn probe_write(db: &Database) -> Result<()> {
    let txn = db.begin_write().map_err(map_err)?;
    txn.open_table(PROBE)
        .map_err(map_err)?
        .insert(0, vec![0x5a; 64 * 1024].as_slice())
        .map_err(map_err)?;
    txn.commit().map_err(map_err)?;
    let txn = db.begin_write().map_err(map_err)?;
    txn.delete_table(PROBE).map_err(map_err)?;
    txn.commit().map_err(map_err)
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
