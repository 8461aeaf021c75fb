//! The single writer thread, its group commit, and its recovery after a failed write.
//!
//! Callers queue an [`Op`] with a one-shot answer channel and block on it (or, from async
//! code, await it). The writer takes the first queued op, may linger for more (see `queue.rs`),
//! drains whatever is queued (up to `max_batch`), applies them all in one write transaction
//! and commits once, which is one fsync (`Durability::Immediate`). Only then does it answer
//! each caller. So under load many requests share one fsync, and no caller hears
//! "stored" before its bytes are durable. If any write or the commit fails, every op in the
//! batch gets the error and nothing of the batch is visible (the transaction is aborted). A
//! request refused by the byte limit fails alone: it is checked before anything is written.
//!
//! A write failure (disk full, I/O error) leaves redb refusing writes on that handle. If the
//! store can be reopened, the writer then answers every op at once with that failure, and
//! reopens the database on the schedule of [`Recovery`] until the reopened file takes a probe
//! write (see the parent module's docs).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{Database, ReadableTable, StorageBackend, Table, WriteTransaction};

use super::split::{self, REPLY_PARTS, REQUEST_PARTS};
use super::{
    init_tables, map_err, open_database, probe_write, Opened, Shared, KEYS, KEY_OF, REPLIES,
    REQUESTS,
};
use crate::clock::TimeSource;
use crate::error::{Error, Result};
use crate::id::{Id, IdGenerator};
use crate::record::{encode_reply, Reply, Request};
use crate::store::op::{fail_all, refuse_until, Answer, Kind, Op, Value};
use crate::store::queue::{Linger, Queue, Waited};
use crate::store::recovery::Recovery;
use crate::store::Limits;

/// Makes a fresh backend on the store's storage, for a reopen.
pub(super) type Reopen = Box<dyn FnMut() -> Result<Box<dyn StorageBackend>> + Send>;

/// The tables, opened once per batch (opening a table per op costs a tree lookup); the parts
/// tables only once a large record needs them.
struct Tables<'txn> {
    txn: &'txn WriteTransaction,
    requests: Table<'txn, u128, &'static [u8]>,
    replies: Table<'txn, u128, &'static [u8]>,
    request_parts: Option<Table<'txn, (u128, u32), &'static [u8]>>,
    reply_parts: Option<Table<'txn, (u128, u32), &'static [u8]>>,
    /// The key tables, opened when a keyed request or a request with a key needs them.
    keys: Option<Table<'txn, &'static [u8], u128>>,
    key_of: Option<Table<'txn, u128, &'static [u8]>>,
}

/// The parts table in `slot`, opened on first use.
fn parts<'p, 'txn>(
    txn: &'txn WriteTransaction,
    slot: &'p mut Option<Table<'txn, (u128, u32), &'static [u8]>>,
    table: split::PartsTable,
) -> Result<&'p mut Table<'txn, (u128, u32), &'static [u8]>> {
    if slot.is_none() {
        *slot = Some(txn.open_table(table).map_err(map_err)?);
    }
    slot.as_mut()
        .ok_or_else(|| Error::Unavailable("the parts table did not open".into()))
}

impl<'txn> Tables<'txn> {
    /// Both key tables, opened on first use.
    #[allow(clippy::type_complexity)]
    fn key_tables(
        &mut self,
    ) -> Result<(
        &mut Table<'txn, &'static [u8], u128>,
        &mut Table<'txn, u128, &'static [u8]>,
    )> {
        if self.keys.is_none() {
            self.keys = Some(self.txn.open_table(KEYS).map_err(map_err)?);
        }
        if self.key_of.is_none() {
            self.key_of = Some(self.txn.open_table(KEY_OF).map_err(map_err)?);
        }
        match (self.keys.as_mut(), self.key_of.as_mut()) {
            (Some(keys), Some(key_of)) => Ok((keys, key_of)),
            _ => Err(Error::Unavailable("the key tables did not open".into())),
        }
    }

    fn open(txn: &'txn WriteTransaction) -> Result<Self> {
        Ok(Self {
            requests: txn.open_table(REQUESTS).map_err(map_err)?,
            replies: txn.open_table(REPLIES).map_err(map_err)?,
            request_parts: None,
            reply_parts: None,
            keys: None,
            key_of: None,
            txn,
        })
    }
}

/// The writer's state; it lives on the writer thread.
pub(super) struct Writer {
    /// The database; `None` only while broken, after an attempt that could not open it.
    pub(super) db: Option<Arc<Database>>,
    pub(super) shared: Arc<Shared>,
    pub(super) clock: Arc<dyn TimeSource>,
    pub(super) limits: Limits,
    pub(super) ids: IdGenerator,
    /// Live record bytes as committed; published in `shared` after each commit.
    pub(super) live: u64,
    /// Requests with an idempotency key, as committed (while 0, a close skips the key tables).
    pub(super) keyed: u64,
    pub(super) max_batch: usize,
    /// How long a commit may wait to fill.
    pub(super) linger: Linger,
    /// Ops the previous successful commit carried (it lingers only after one of several).
    pub(super) last_batch: usize,
    /// Told the duration of each successful commit.
    pub(super) on_commit: Option<super::CommitObserver>,
    /// Given the requests of each successful commit.
    pub(super) feed: Option<super::StoredFeed>,
    /// How to reopen the store; `None` if it cannot be.
    pub(super) reopen: Option<Reopen>,
    pub(super) recovery: Recovery,
    /// Told of each successful reopen.
    pub(super) on_reopen: Option<super::ReopenObserver>,
}

impl Writer {
    /// Runs until the queue is closed (the store was dropped) and drained.
    pub(super) fn run(mut self, queue: &Queue<Op>) {
        let mut batch = Vec::with_capacity(self.max_batch.min(4096));
        loop {
            if let Some(at) = self.recovery.retry_at() {
                // Broken: refuse ops at once until it is time to reopen.
                let refusal = || {
                    self.shared
                        .failure()
                        .unwrap_or_else(|| Error::WriteFailed("the store is being reopened".into()))
                };
                if Instant::now() >= at {
                    self.reopen();
                } else if !refuse_until(queue, at, &mut batch, self.max_batch, refusal) {
                    return;
                }
                continue;
            }
            match queue.wait(None) {
                Waited::Ready => {}
                Waited::TimedOut => continue,
                Waited::Closed => return,
            }
            queue.take(&mut batch, self.max_batch, self.linger, self.last_batch > 1);
            self.commit_batch(std::mem::take(&mut batch));
        }
    }

    fn commit_batch(&mut self, batch: Vec<Op>) {
        let Some(db) = self.db.clone() else {
            let e = Error::Unavailable("the store is not open".into());
            return fail_all(batch.into_iter().map(|op| (op.answer, Ok(Value::Unit))), &e);
        };
        let (live_before, keyed_before) = (self.live, self.keyed);
        let started = Instant::now();
        let txn = match db.begin_write().map_err(map_err) {
            Ok(t) => t,
            Err(e) => {
                let results = batch.into_iter().map(|op| (op.answer, Ok(Value::Unit)));
                return self.failed(results.collect(), e);
            }
        };
        let now = self.clock.now_millis();
        let mut results = Vec::with_capacity(batch.len());
        let mut stored = self.feed.as_ref().map(|_| Vec::with_capacity(batch.len()));
        let mut fatal = None;
        match Tables::open(&txn) {
            Err(e) => {
                fatal = Some(e);
                results.extend(batch.into_iter().map(|op| (op.answer, Ok(Value::Unit))));
            }
            Ok(mut tables) => {
                for op in batch {
                    if fatal.is_some() {
                        results.push((op.answer, Ok(Value::Unit)));
                        continue;
                    }
                    match self.apply(&mut tables, now, op.kind, stored.as_mut()) {
                        Err(e @ Error::StoreFull { .. }) => results.push((op.answer, Err(e))),
                        Err(e) => {
                            fatal = Some(e);
                            results.push((op.answer, Ok(Value::Unit)));
                        }
                        Ok(v) => results.push((op.answer, Ok(v))),
                    }
                }
            }
        }
        let outcome = match fatal {
            Some(e) => Err(e), // dropping `txn` aborts it
            None => txn.commit().map_err(map_err),
        };
        match outcome {
            Ok(()) => {
                self.shared.live.store(self.live, Ordering::Relaxed);
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
                self.recovery.committed();
                self.shared.set_failure(None);
                self.last_batch = results.len();
                if let (Some(feed), Some(stored)) = (&self.feed, stored) {
                    if !stored.is_empty() {
                        // Before the answers: the dispatcher hears of a request no later
                        // than its client does. A dispatcher that is gone is no error.
                        let _ = feed.send(stored);
                    }
                }
                if let Some(observe) = &self.on_commit {
                    observe(started.elapsed(), results.len());
                }
                results.into_iter().for_each(|(a, r)| a.send(r));
            }
            Err(e) => {
                self.live = live_before;
                self.keyed = keyed_before;
                self.failed(results, e);
            }
        }
    }

    /// A batch failed with `e`: after a write failure the store refuses writes (and reopens,
    /// if it can) before the callers hear of it, so a caller that checks the store's health
    /// after its `500` sees the failure.
    fn failed(&mut self, results: Vec<(Answer, Result<Value>)>, e: Error) {
        if e.is_write_failure() {
            if self.reopen.is_some() {
                let delay = self.recovery.failed(Instant::now());
                tracing::warn!(error = %e, batch = results.len(), ?delay,
                    "Titanic store commit failed; refusing writes until the store is reopened");
            } else {
                tracing::warn!(error = %e, batch = results.len(), "Titanic store commit failed");
            }
            self.shared.set_failure(Some(e.duplicate()));
        } else {
            tracing::warn!(error = %e, batch = results.len(), "Titanic store commit failed");
        }
        fail_all(results.into_iter(), &e);
    }

    /// One attempt to reopen the broken store: drop the failed handle, open the storage
    /// again and check that it takes a write.
    fn reopen(&mut self) {
        let Some(make) = self.reopen.as_mut() else {
            return self.recovery.reopened();
        };
        // The file stays locked while any handle on it is open: drop them all first.
        self.db = None;
        if let Some(old) = self.shared.take_db() {
            release(old);
        }
        let opened = make().and_then(|backend| open_database(backend, &self.shared.file_len));
        let db = match opened {
            Ok(db) => Arc::new(db),
            Err(e) => {
                self.shared.install(None);
                return self.reopen_failed(e);
            }
        };
        // Reads go to the reopened file at once, even if it does not take writes yet.
        self.shared.install(Some(db.clone()));
        self.db = Some(db.clone());
        let checked = init_tables(&db).and_then(|o| probe_write(&db).map(|()| o));
        match checked {
            Ok(Opened { live, keyed, .. }) => {
                self.live = live;
                self.keyed = keyed;
                self.shared.live.store(live, Ordering::Relaxed);
                self.recovery.reopened();
                self.shared.set_failure(None);
                tracing::info!("Titanic store reopened after a failed write; taking writes again");
                if let Some(observe) = &self.on_reopen {
                    observe();
                }
            }
            Err(e) => self.reopen_failed(e),
        }
    }

    fn reopen_failed(&mut self, e: Error) {
        let delay = self.recovery.failed(Instant::now());
        tracing::warn!(error = %e, ?delay, "Titanic store still refuses writes; retrying");
        // Callers see the latest write failure; another error (the file is still locked, say)
        // leaves the one that broke the store.
        if e.is_write_failure() {
            self.shared.set_failure(Some(e));
        }
    }

    /// Applies one op; a stored request goes to `stored` (when there is a feed).
    fn apply(
        &mut self,
        t: &mut Tables<'_>,
        now: u64,
        kind: Kind,
        stored: Option<&mut Vec<(Id, Request)>>,
    ) -> Result<Value> {
        match kind {
            Kind::Put {
                request,
                encoded,
                key,
            } => {
                if let Some(key) = &key {
                    if let Some(id) = self.keyed_id(t, key)? {
                        // Stored before under this key: its id, nothing new to dispatch.
                        return Ok(Value::Id(id));
                    }
                }
                let id = self.put(t, now, &encoded)?;
                if let Some(key) = key {
                    let (keys, key_of) = t.key_tables()?;
                    keys.insert(&key[..], id.as_u128()).map_err(map_err)?;
                    key_of.insert(id.as_u128(), &key[..]).map_err(map_err)?;
                    self.keyed += 1;
                }
                if let Some(stored) = stored {
                    stored.push((id, request));
                }
                Ok(Value::Id(id))
            }
            Kind::Complete { id, frames } => {
                self.complete(t, now, id, frames).map(|()| Value::Unit)
            }
            Kind::Close { id } => self.remove(t, id).map(|()| Value::Unit),
            Kind::Expire { older_than_millis } => self
                .expire(t, now.saturating_sub(older_than_millis))
                .map(Value::Count),
        }
    }

    /// The id stored under `key`, if its request is still there. A key left behind by a
    /// request closed without its key (by a version that did not know keys) is dropped.
    fn keyed_id(&mut self, t: &mut Tables<'_>, key: &[u8]) -> Result<Option<Id>> {
        let found = t
            .key_tables()?
            .0
            .get(key)
            .map_err(map_err)?
            .map(|v| v.value());
        let Some(raw) = found else {
            return Ok(None);
        };
        if t.requests.get(raw).map_err(map_err)?.is_some() {
            return Ok(Some(Id::from_u128(raw)));
        }
        let (keys, key_of) = t.key_tables()?;
        keys.remove(key).map_err(map_err)?;
        if key_of.remove(raw).map_err(map_err)?.is_some() {
            self.keyed = self.keyed.saturating_sub(1);
        }
        Ok(None)
    }

    fn put(&mut self, t: &mut Tables<'_>, now: u64, encoded: &[u8]) -> Result<Id> {
        let size = encoded.len() as u64;
        if self.live + size > self.limits.max_bytes {
            return Err(Error::StoreFull {
                used: self.live,
                limit: self.limits.max_bytes,
                needed: size,
            });
        }
        let id = self.ids.next(now);
        let key = id.as_u128();
        let (txn, slot) = (t.txn, &mut t.request_parts);
        split::insert(
            &mut t.requests,
            || parts(txn, slot, REQUEST_PARTS),
            key,
            encoded,
        )?;
        self.live += size;
        Ok(id)
    }

    fn complete(&mut self, t: &mut Tables<'_>, now: u64, id: Id, frames: Vec<Bytes>) -> Result<()> {
        let key = id.as_u128();
        // Only a pending request (stored, without a reply) takes a reply: a closed or expired
        // id stays unknown, and the first reply of a done request is never replaced.
        if t.requests.get(key).map_err(map_err)?.is_none()
            || t.replies.get(key).map_err(map_err)?.is_some()
        {
            return Ok(());
        }
        let bytes = encode_reply(&Reply {
            frames,
            completed_millis: now,
        });
        let (txn, slot) = (t.txn, &mut t.reply_parts);
        split::insert(
            &mut t.replies,
            || parts(txn, slot, REPLY_PARTS),
            key,
            &bytes,
        )?;
        self.live += bytes.len() as u64;
        Ok(())
    }

    fn remove(&mut self, t: &mut Tables<'_>, id: Id) -> Result<()> {
        let key = id.as_u128();
        let (txn, slot) = (t.txn, &mut t.request_parts);
        let request = split::remove(&mut t.requests, || parts(txn, slot, REQUEST_PARTS), key);
        let mut freed = request?.unwrap_or(0);
        let slot = &mut t.reply_parts;
        let reply = split::remove(&mut t.replies, || parts(txn, slot, REPLY_PARTS), key);
        freed += reply?.unwrap_or(0);
        self.live = self.live.saturating_sub(freed);
        if self.keyed > 0 {
            let (keys, key_of) = t.key_tables()?;
            let key = key_of
                .remove(key)
                .map_err(map_err)?
                .map(|k| k.value().to_vec());
            if let Some(key) = key {
                keys.remove(key.as_slice()).map_err(map_err)?;
                self.keyed -= 1;
            }
        }
        Ok(())
    }

    /// Removes every request whose id was made before `cutoff_millis`. An id's time is its
    /// creation time, or later if the clock stepped back (see [`IdGenerator::next`]), so this
    /// never removes a request younger than the cutoff.
    fn expire(&mut self, t: &mut Tables<'_>, cutoff_millis: u64) -> Result<usize> {
        let end = Id::lowest_at(cutoff_millis).as_u128();
        let old: Vec<u128> = {
            let range = t.requests.range(..end).map_err(map_err)?;
            range
                .map(|e| e.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()
                .map_err(map_err)?
        };
        for key in &old {
            self.remove(t, Id::from_u128(*key))?;
        }
        Ok(old.len())
    }
}

/// Drops `db` once no read holds it any more (reads hold a handle for one transaction), so
/// the database closes and releases the file. Gives up after a second: the reopen attempt
/// then finds the file still locked and fails, to be retried after the next delay.
fn release(mut db: Arc<Database>) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match Arc::try_unwrap(db) {
            Ok(db) => return drop(db),
            Err(shared) if Instant::now() < deadline => {
                db = shared;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => {
                tracing::warn!("A read still holds the failed Titanic store; reopening anyway");
                return;
            }
        }
    }
}
