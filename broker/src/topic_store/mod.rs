//! The disk store of `persist=disk` topics: one redb file (`topics.redb`), one writer thread,
//! group commit.
//!
//! Design: the topics task keeps every topic in memory (the pure core serves reads and
//! subscriptions); this store is the durable copy of the disk topics. The task sends it
//! [`Op`]s without waiting ([`TopicStore::submit`]); the writer thread takes everything
//! queued, applies it in one write transaction and commits once (`Durability::Immediate`:
//! the data and the commit slot are fsynced before `commit` returns), then reports the
//! batch's tokens back ([`Committed`]), in order. Only then does the task keep a message
//! (and fan it out) and acknowledge it: a subscriber never sees a message that a crash could
//! take back, and an offset is never handed out twice.
//!
//! Tables: `topics` (name -> [`Meta`]: stream, retention and the next offset) and `messages`
//! ((stream, offset) -> [`Record`]: when published and the frames after the topic). A
//! message whose topic was deleted before it was written is skipped. Pruning (below the
//! offset the retention keeps) rides in the next batch.
//!
//! The same ops go to PostgreSQL instead with `[topics] store = "postgres"`
//! ([`postgres`]): the same records in two tables, one transaction per batch.

pub mod postgres;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use domo_mdp::topic::{Persist, Retention};
use domo_mdp::LockExt;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

const TOPICS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("topics");
const MESSAGES: TableDefinition<'static, (u64, u64), &[u8]> = TableDefinition::new("messages");

/// The store file inside the data directory.
pub const TOPIC_STORE_FILE: &str = "topics.redb";

/// Ops queued for the writer at most; past it a submission is refused (the write answered
/// `500`, a PUB message dropped and counted).
const QUEUE: usize = 65_536;
/// Most ops in one commit.
const BATCH: usize = 4096;

/// A disk topic's description, as kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Its stream id.
    pub stream: u64,
    /// Retention: most messages.
    pub max_messages: u64,
    /// Retention: most bytes.
    pub max_bytes: u64,
    /// Retention: oldest age in milliseconds (0: none).
    pub max_age_ms: u64,
    /// The offset its next message gets (kept so offsets never repeat, even when nothing
    /// is retained).
    pub next: u64,
}

impl Meta {
    /// The retention it describes.
    pub fn retention(&self) -> Retention {
        Retention {
            max_messages: self.max_messages,
            max_bytes: self.max_bytes,
            max_age_ms: self.max_age_ms,
            persist: Persist::Disk,
        }
    }
}

/// One message, as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// When it was published, milliseconds since the Unix epoch.
    at_ms: u64,
    /// Its frames after the topic.
    frames: Vec<Vec<u8>>,
}

/// A disk topic as found at open.
#[derive(Debug)]
pub struct Loaded {
    /// Its name.
    pub name: Bytes,
    /// Its description.
    pub meta: Meta,
    /// Its messages, oldest first: offset, when published (ms since the epoch), the frames
    /// with the topic first.
    pub messages: Vec<(u64, u64, Vec<Bytes>)>,
}

/// What the writer is asked to do.
#[derive(Debug)]
pub enum Op {
    /// Keep a new topic (and, if it had a last value, that as its offset 0).
    Create {
        /// Its name.
        name: Bytes,
        /// Its description.
        meta: Meta,
        /// Its first message (ms since the epoch, frames with the topic first).
        first: Option<(u64, Vec<Bytes>)>,
        /// Reported back once committed.
        token: u64,
    },
    /// Keep a message.
    Append {
        /// Its topic's stream.
        stream: u64,
        /// Its offset.
        offset: u64,
        /// When published, ms since the epoch.
        at_ms: u64,
        /// The frames, topic first.
        frames: Vec<Bytes>,
        /// Reported back once committed.
        token: u64,
    },
    /// Forget a topic's messages below `below`.
    Prune {
        /// The topic's stream.
        stream: u64,
        /// The oldest offset to keep.
        below: u64,
    },
    /// Forget a topic and its messages.
    Delete {
        /// Its name.
        name: Bytes,
        /// Its stream.
        stream: u64,
        /// Reported back once committed.
        token: u64,
    },
}

/// A batch the writer has finished: its tokens, in submission order, and whether the
/// commit is durable.
#[derive(Debug)]
pub struct Committed {
    /// The tokens of the batch's ops.
    pub tokens: Vec<u64>,
    /// `Err` with the reason if nothing of the batch was kept.
    pub result: Result<(), String>,
}

/// The store's state for `/readyz`.
#[derive(Debug, Default)]
pub struct StoreStatus {
    failed: Mutex<Option<String>>,
}

impl StoreStatus {
    /// `Err(reason)` while the store cannot be opened or its last commit failed.
    pub fn readiness(&self) -> Result<(), String> {
        match &*self.failed.lock_unpoisoned() {
            Some(reason) => Err(format!("topic store: {reason}")),
            None => Ok(()),
        }
    }

    /// Records a failure (or its end, with `None`).
    pub fn set(&self, failed: Option<String>) {
        *self.failed.lock_unpoisoned() = failed;
    }
}

/// Where the disk topics are kept.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreAt {
    /// `topics.redb` in this directory (the default).
    Dir(PathBuf),
    /// A PostgreSQL database.
    Postgres {
        /// The connection URL (never with a password: the configuration refuses one).
        url: String,
        /// The password, read from `[topics] password_file`.
        password: Option<String>,
        /// With `sslmode=require`: the CA certificates the server's must chain to (`None`:
        /// the system's trust store).
        ca_file: Option<PathBuf>,
        /// A commit or a connection not done within this fails.
        timeout: std::time::Duration,
    },
}

impl std::fmt::Debug for StoreAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(dir) => f.debug_tuple("Dir").field(dir).finish(),
            // No password shown.
            Self::Postgres { url, .. } => f.debug_struct("Postgres").field("url", url).finish(),
        }
    }
}

impl std::fmt::Display for StoreAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(dir) => write!(f, "{}", dir.join(TOPIC_STORE_FILE).display()),
            Self::Postgres { url, .. } => write!(f, "postgres {url}"),
        }
    }
}

impl StoreAt {
    /// Whether there is a store to load at start: a directory holding the file (a broker
    /// with topics in memory only leaves no file behind), or a database (it may hold topics).
    pub fn exists(&self) -> bool {
        match self {
            Self::Dir(dir) => dir.join(TOPIC_STORE_FILE).exists(),
            Self::Postgres { .. } => true,
        }
    }
}

/// One change to the kept tables; a batch of ops comes to a list of them ([`plan`]).
#[derive(Debug, PartialEq, Eq)]
enum Change {
    /// Keep (or replace) a topic's description.
    Meta { name: Bytes, meta: Meta },
    /// Keep a message, its [`Record`] encoded.
    Message {
        stream: u64,
        offset: u64,
        record: Vec<u8>,
    },
    /// Forget a topic's messages below `below`.
    Prune { stream: u64, below: u64 },
    /// Forget a topic and all its messages.
    Forget { name: Bytes, stream: u64 },
}

/// What keeps the changes: the writer thread's only dependency on the engine.
trait Backend: Send {
    /// Every disk topic with its messages.
    fn load(&mut self) -> Result<Vec<Loaded>, String>;
    /// Applies `changes` in order in one transaction, all or nothing.
    fn commit(&mut self, changes: Vec<Change>) -> Result<(), String>;
}

/// What `batch` does to the tables, in order (the same for every engine): a new topic's
/// first message and description; each message of a topic still kept (one deleted before
/// it was written is skipped); prunes; deletions; last, the new `next` offset of every
/// topic that got messages. `streams` (stream -> name and description of the topics kept)
/// is updated as the ops go.
fn plan(batch: Vec<Op>, streams: &mut HashMap<u64, (Bytes, Meta)>) -> Result<Vec<Change>, String> {
    let mut changes = Vec::with_capacity(batch.len() + 1);
    // Streams whose `next` moved in this batch.
    let mut advanced: HashMap<u64, u64> = HashMap::new();
    for op in batch {
        match op {
            Op::Create {
                name,
                mut meta,
                first,
                ..
            } => {
                if let Some((at_ms, frames)) = first {
                    changes.push(Change::Message {
                        stream: meta.stream,
                        offset: 0,
                        record: encode_record(at_ms, &frames)?,
                    });
                    meta.next = meta.next.max(1);
                }
                changes.push(Change::Meta {
                    name: name.clone(),
                    meta,
                });
                streams.insert(meta.stream, (name, meta));
            }
            Op::Append {
                stream,
                offset,
                at_ms,
                frames,
                ..
            } => {
                if !streams.contains_key(&stream) {
                    continue; // deleted before it was written
                }
                changes.push(Change::Message {
                    stream,
                    offset,
                    record: encode_record(at_ms, &frames)?,
                });
                let next = advanced.entry(stream).or_insert(0);
                *next = (*next).max(offset + 1);
            }
            Op::Prune { stream, below } => {
                if below > 0 {
                    changes.push(Change::Prune { stream, below });
                }
            }
            Op::Delete { name, stream, .. } => {
                changes.push(Change::Forget { name, stream });
                streams.remove(&stream);
                advanced.remove(&stream);
            }
        }
    }
    for (stream, next) in advanced {
        if let Some((name, meta)) = streams.get_mut(&stream) {
            if next > meta.next {
                meta.next = next;
                changes.push(Change::Meta {
                    name: name.clone(),
                    meta: *meta,
                });
            }
        }
    }
    Ok(changes)
}

/// A message as kept: when published and its frames after the topic.
fn encode_record(at_ms: u64, frames: &[Bytes]) -> Result<Vec<u8>, String> {
    let record = Record {
        at_ms,
        frames: frames.iter().skip(1).map(|f| f.to_vec()).collect(),
    };
    postcard::to_allocvec(&record).map_err(|e| e.to_string())
}

/// The open store: submit ops, get [`Committed`] batches back on the channel given to
/// [`TopicStore::open`].
#[derive(Debug)]
pub struct TopicStore {
    tx: Option<SyncSender<Op>>,
    thread: Option<JoinHandle<()>>,
    at: StoreAt,
}

/// Milliseconds since the Unix epoch now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl TopicStore {
    /// Opens (or creates) the store at `at` (`dir/topics.redb`, or the tables in a
    /// PostgreSQL database), loads every disk topic, and starts the writer, which reports
    /// each batch on `done`. Blocks (call it off the runtime's threads).
    ///
    /// # Errors
    /// Why the store cannot be used (the directory, the file, the database, a record that
    /// does not decode).
    pub fn open(
        at: &StoreAt,
        done: tokio::sync::mpsc::UnboundedSender<Committed>,
        status: Arc<StoreStatus>,
    ) -> Result<(Self, Vec<Loaded>), String> {
        let mut backend: Box<dyn Backend> = match at {
            StoreAt::Dir(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                let path = dir.join(TOPIC_STORE_FILE);
                let db = Database::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                Box::new(RedbBackend { db })
            }
            StoreAt::Postgres {
                url,
                password,
                ca_file,
                timeout,
            } => Box::new(postgres::PgBackend::open(
                url,
                password.as_deref(),
                ca_file.as_deref(),
                *timeout,
            )?),
        };
        let loaded = backend.load().map_err(|e| format!("{at}: {e}"))?;
        let streams = loaded
            .iter()
            .map(|l| (l.meta.stream, (l.name.clone(), l.meta)))
            .collect();
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let writer = Writer {
            backend,
            rx,
            done,
            status,
            streams,
        };
        let thread = std::thread::Builder::new()
            .name("domo-topic-store".into())
            .spawn(move || writer.run())
            .map_err(|e| format!("cannot start the writer thread: {e}"))?;
        info!(store = %at, topics = loaded.len(), "Topic store open");
        Ok((
            Self {
                tx: Some(tx),
                thread: Some(thread),
                at: at.clone(),
            },
            loaded,
        ))
    }

    /// Queues `op` without waiting; `false` if the queue is full or the writer has stopped.
    pub fn submit(&self, op: Op) -> bool {
        match self.tx.as_ref().map(|tx| tx.try_send(op)) {
            Some(Ok(())) => true,
            Some(Err(TrySendError::Full(_))) => {
                warn!(store = %self.at, "Topic store queue full: write refused");
                false
            }
            _ => false,
        }
    }

    /// Stops the writer after what is queued, and waits for it.
    pub fn close(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TopicStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// The embedded store: `topics.redb`.
struct RedbBackend {
    db: Database,
}

impl Backend for RedbBackend {
    fn load(&mut self) -> Result<Vec<Loaded>, String> {
        load(&self.db)
    }

    fn commit(&mut self, changes: Vec<Change>) -> Result<(), String> {
        commit_redb(&self.db, changes)
    }
}

fn load(db: &Database) -> Result<Vec<Loaded>, String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    // Created on first open, so the read below finds both tables.
    txn.open_table(TOPICS).map_err(|e| e.to_string())?;
    txn.open_table(MESSAGES).map_err(|e| e.to_string())?;
    txn.commit().map_err(|e| e.to_string())?;
    let read = db.begin_read().map_err(|e| e.to_string())?;
    let topics = read.open_table(TOPICS).map_err(|e| e.to_string())?;
    let messages = read.open_table(MESSAGES).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for entry in topics.iter().map_err(|e| e.to_string())? {
        let (name, meta) = entry.map_err(|e| e.to_string())?;
        let name = Bytes::copy_from_slice(name.value());
        let meta: Meta =
            postcard::from_bytes(meta.value()).map_err(|e| format!("topic meta: {e}"))?;
        let mut kept = Vec::new();
        let range = messages
            .range((meta.stream, 0)..=(meta.stream, u64::MAX))
            .map_err(|e| e.to_string())?;
        for entry in range {
            let (key, value) = entry.map_err(|e| e.to_string())?;
            let record: Record =
                postcard::from_bytes(value.value()).map_err(|e| format!("message: {e}"))?;
            let mut frames = Vec::with_capacity(1 + record.frames.len());
            frames.push(name.clone());
            frames.extend(record.frames.into_iter().map(Bytes::from));
            kept.push((key.value().1, record.at_ms, frames));
        }
        out.push(Loaded {
            name,
            meta,
            messages: kept,
        });
    }
    Ok(out)
}

struct Writer {
    backend: Box<dyn Backend>,
    rx: Receiver<Op>,
    done: tokio::sync::mpsc::UnboundedSender<Committed>,
    status: Arc<StoreStatus>,
    /// Stream -> (name, description) of every topic kept.
    streams: HashMap<u64, (Bytes, Meta)>,
}

impl Writer {
    fn run(mut self) {
        while let Ok(first) = self.rx.recv() {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match self.rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            let tokens: Vec<u64> = batch.iter().filter_map(token).collect();
            // Only creations and deletions change the topics list (a failed batch's advanced
            // `next` is harmless: it only has to be at least the truth).
            let saved = batch
                .iter()
                .any(|op| matches!(op, Op::Create { .. } | Op::Delete { .. }))
                .then(|| self.streams.clone());
            let result = plan(batch, &mut self.streams).and_then(|c| self.backend.commit(c));
            match &result {
                Ok(()) => self.status.set(None),
                Err(e) => {
                    error!(error = %e, "Topic store commit failed: those writes are not acknowledged");
                    self.status.set(Some(format!("write failed: {e}")));
                    // What the failed batch did to the topics list is undone.
                    if let Some(saved) = saved {
                        self.streams = saved;
                    }
                }
            }
            if self.done.send(Committed { tokens, result }).is_err() {
                return;
            }
        }
    }
}

/// [`RedbBackend::commit`].
fn commit_redb(db: &Database, changes: Vec<Change>) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut topics = txn.open_table(TOPICS).map_err(|e| e.to_string())?;
        let mut messages = txn.open_table(MESSAGES).map_err(|e| e.to_string())?;
        for change in changes {
            match change {
                Change::Meta { name, meta } => {
                    let value = postcard::to_allocvec(&meta).map_err(|e| e.to_string())?;
                    topics
                        .insert(name.as_ref(), value.as_slice())
                        .map_err(|e| e.to_string())?;
                }
                Change::Message {
                    stream,
                    offset,
                    record,
                } => {
                    messages
                        .insert((stream, offset), record.as_slice())
                        .map_err(|e| e.to_string())?;
                }
                Change::Prune { stream, below } => {
                    messages
                        .retain_in((stream, 0)..(stream, below), |_, _| false)
                        .map_err(|e| e.to_string())?;
                }
                Change::Forget { name, stream } => {
                    topics.remove(name.as_ref()).map_err(|e| e.to_string())?;
                    messages
                        .retain_in((stream, 0)..=(stream, u64::MAX), |_, _| false)
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

fn token(op: &Op) -> Option<u64> {
    match op {
        Op::Create { token, .. } | Op::Append { token, .. } | Op::Delete { token, .. } => {
            Some(*token)
        }
        Op::Prune { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn open(
        at: &StoreAt,
    ) -> (
        TopicStore,
        Vec<Loaded>,
        tokio::sync::mpsc::UnboundedReceiver<Committed>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (store, loaded) = TopicStore::open(at, tx, Arc::default()).unwrap();
        (store, loaded, rx)
    }

    /// A fresh schema on the test server (`DOMO_TEST_PG_URL`, which `.ci/run` sets); `None`
    /// without one, except under `CI=true`.
    fn postgres() -> Option<StoreAt> {
        let Ok(base) = std::env::var("DOMO_TEST_PG_URL") else {
            assert!(
                std::env::var("CI").is_err(),
                "CI=true but DOMO_TEST_PG_URL is not set"
            );
            eprintln!("PostgreSQL topic store not tested: DOMO_TEST_PG_URL is not set");
            return None;
        };
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let schema = format!(
            "topics_t_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            now_ms()
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
                .batch_execute(&format!("CREATE SCHEMA {schema}"))
                .await
                .unwrap();
        });
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(StoreAt::Postgres {
            url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
            password: None,
            ca_file: None,
            timeout: std::time::Duration::from_secs(5),
        })
    }

    #[test]
    fn a_batch_plans_its_changes_in_order_skipping_deleted_topics() {
        let mut streams = HashMap::new();
        let changes = plan(
            vec![
                Op::Create {
                    name: b("a"),
                    meta: meta(7),
                    first: Some((5, vec![b("a"), b("seed")])),
                    token: 1,
                },
                Op::Append {
                    stream: 7,
                    offset: 1,
                    at_ms: 6,
                    frames: vec![b("a"), b("m1")],
                    token: 2,
                },
                Op::Prune {
                    stream: 7,
                    below: 0,
                },
                Op::Create {
                    name: b("gone"),
                    meta: meta(8),
                    first: None,
                    token: 3,
                },
                Op::Delete {
                    name: b("gone"),
                    stream: 8,
                    token: 4,
                },
                Op::Append {
                    stream: 8,
                    offset: 0,
                    at_ms: 7,
                    frames: vec![b("gone"), b("late")],
                    token: 5,
                },
            ],
            &mut streams,
        )
        .unwrap();
        let record = |at_ms, frame: &str| encode_record(at_ms, &[b("t"), b(frame)]).unwrap();
        let next = |stream, next| Meta {
            next,
            ..meta(stream)
        };
        assert_eq!(
            changes,
            vec![
                Change::Message {
                    stream: 7,
                    offset: 0,
                    record: record(5, "seed")
                },
                Change::Meta {
                    name: b("a"),
                    meta: next(7, 1)
                },
                Change::Message {
                    stream: 7,
                    offset: 1,
                    record: record(6, "m1")
                },
                Change::Meta {
                    name: b("gone"),
                    meta: meta(8)
                },
                Change::Forget {
                    name: b("gone"),
                    stream: 8
                },
                // The late message of the deleted topic is skipped; a's next offset last.
                Change::Meta {
                    name: b("a"),
                    meta: next(7, 2)
                },
            ]
        );
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[&7].1.next, 2);
    }

    #[test]
    fn a_second_broker_cannot_open_the_same_postgres_topics() {
        let Some(at) = postgres() else { return };
        let (first, _, _done) = open(&at);
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let err = TopicStore::open(&at, tx, Arc::default()).unwrap_err();
        assert!(err.contains("another broker keeps its topics"), "{err}");
        drop(first);
        // Its connection gone, the lock is free again.
        let (_again, _, _done) = open(&at);
    }

    fn meta(stream: u64) -> Meta {
        Meta {
            stream,
            max_messages: 10,
            max_bytes: 1000,
            max_age_ms: 0,
            next: 0,
        }
    }

    #[test]
    fn topics_and_messages_survive_a_reopen_and_prunes_and_deletes_stick() {
        let dir = tempfile::tempdir().unwrap();
        survive_a_reopen(&StoreAt::Dir(dir.path().to_path_buf()));
        if let Some(at) = postgres() {
            survive_a_reopen(&at);
        }
    }

    fn survive_a_reopen(at: &StoreAt) {
        {
            let (store, loaded, mut done) = open(at);
            assert!(loaded.is_empty());
            store.submit(Op::Create {
                name: b("a"),
                meta: meta(7),
                first: Some((5, vec![b("a"), b("seed")])),
                token: 1,
            });
            for offset in 1..5 {
                store.submit(Op::Append {
                    stream: 7,
                    offset,
                    at_ms: 10 + offset,
                    frames: vec![b("a"), b(&format!("m{offset}")), Bytes::new()],
                    token: 1 + offset,
                });
            }
            store.submit(Op::Prune {
                stream: 7,
                below: 2,
            });
            store.submit(Op::Create {
                name: b("gone"),
                meta: meta(8),
                first: None,
                token: 9,
            });
            store.submit(Op::Delete {
                name: b("gone"),
                stream: 8,
                token: 10,
            });
            // A message for a deleted stream is skipped, not an error.
            store.submit(Op::Append {
                stream: 8,
                offset: 0,
                at_ms: 1,
                frames: vec![b("gone"), b("x")],
                token: 11,
            });
            let mut tokens = Vec::new();
            while tokens.len() < 8 {
                let c = done.blocking_recv().unwrap();
                assert_eq!(c.result, Ok(()));
                tokens.extend(c.tokens);
            }
            assert_eq!(tokens, [1, 2, 3, 4, 5, 9, 10, 11]);
        }
        let (_store, loaded, _done) = open(at);
        assert_eq!(loaded.len(), 1);
        let a = &loaded[0];
        assert_eq!(
            (a.name.as_ref(), a.meta.stream, a.meta.next),
            (&b"a"[..], 7, 5)
        );
        let offsets: Vec<u64> = a.messages.iter().map(|m| m.0).collect();
        assert_eq!(offsets, [2, 3, 4]);
        assert_eq!(a.messages[0].1, 12);
        assert_eq!(a.messages[0].2, vec![b("a"), b("m2"), Bytes::new()]);
    }
}
