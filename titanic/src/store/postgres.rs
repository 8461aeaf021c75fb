//! A [`Store`] on PostgreSQL (issue #18, first slice): the requests and replies of Titanic in
//! a table, written by group commits, so that they are as safe as the database (its WAL,
//! and with `synchronous_commit` and a synchronous standby, two machines).
//!
//! # Schema (version 1, created by [`PostgresStore::open`])
//!
//! ```sql
//! CREATE TABLE titanic_meta (key text PRIMARY KEY, value text NOT NULL);
//!   -- ('schema_version', '1')
//! CREATE TABLE titanic_requests (
//!     id      bytea PRIMARY KEY,  -- the UUIDv7 id, 16 bytes big-endian: sorts as the ids do
//!     request bytea NOT NULL,     -- the request record, as the redb store encodes it
//!     reply   bytea,              -- the reply record; NULL while pending
//!     size    bigint NOT NULL     -- encoded bytes of both, charged against the limit
//! );
//! CREATE INDEX titanic_pending ON titanic_requests (id) WHERE reply IS NULL;
//! ```
//!
//! # Writes
//!
//! One writer task on a connection of its own takes every write waiting when it is free and
//! commits them in one transaction (requests with one multi-row `INSERT`, replies and closes
//! in statements pipelined on the connection); each caller is answered when that transaction
//! has committed. Reads go over a second connection. Both run on a small runtime of the
//! store's own, so the blocking calls of [`Store`] work from any thread, and the `*_async`
//! ones from any runtime.
//!
//! A write that fails (the connection lost, the database down) fails every caller of its
//! commit, and the writer connects again before the next one; [`Store::check_writes`] says so
//! until a commit succeeds.
//!
//! One broker writes to one database: ids come from this store's generator, which starts
//! above the largest id stored. Several brokers sharing one database (a Binary Star pair) is
//! the next step of #18.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use domo_mdp::LockExt;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, NoTls};

use super::{request_size, Durable, Limits, Lookup, Stats, Store};
use crate::clock::{SystemClock, TimeSource};
use crate::error::{Error, Result};
use crate::id::{Id, IdGenerator};
use crate::record::{decode_reply, decode_request, encode_reply, encode_request, Reply, Request};

/// The schema this code writes.
pub const SCHEMA_VERSION: u32 = 1;

/// How the store is opened.
#[derive(Clone)]
pub struct PostgresOptions {
    /// A libpq-style URL or key=value string (`postgres://user@host:5432/db`; several hosts
    /// and `target_session_attrs=read-write` follow a failover).
    pub url: String,
    /// The password, when not in the URL (read from a file by the caller).
    pub password: Option<String>,
    /// Limits on what is accepted.
    pub limits: Limits,
    /// The clock of creation times and expiry.
    pub clock: Arc<dyn TimeSource>,
    /// A commit not done within this is an error to its callers (never an acknowledgement);
    /// the connection is then replaced.
    pub commit_timeout: std::time::Duration,
    /// Refuse to open unless the server commits synchronously to a standby
    /// (`synchronous_standby_names` set, `synchronous_commit` neither `off` nor `local`).
    pub require_sync_standby: bool,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: never shown.
        f.debug_struct("PostgresOptions")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl PostgresOptions {
    /// Options for `url`, with the default limits and the system clock.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password: None,
            limits: Limits::default(),
            clock: Arc::new(SystemClock),
            commit_timeout: std::time::Duration::from_secs(5),
            require_sync_standby: false,
        }
    }
}

/// One write, and who waits for it.
enum Write {
    Put {
        service: Bytes,
        body: Vec<Bytes>,
        tx: oneshot::Sender<Result<Id>>,
    },
    Complete {
        id: Id,
        frames: Vec<Bytes>,
        tx: oneshot::Sender<Result<()>>,
    },
    Close {
        id: Id,
        tx: oneshot::Sender<Result<()>>,
    },
    Expire {
        before: Id,
        tx: oneshot::Sender<Result<usize>>,
    },
}

/// What the writer and the callers share.
struct Shared {
    live_bytes: AtomicU64,
    commits: AtomicU64,
    /// The error of the last failed commit, until one succeeds.
    failed: Mutex<Option<String>>,
    /// What the server says of its synchronous standbys, read every [`REPLICATION_EVERY`].
    replication: Mutex<String>,
}

/// How often the replication state shown by [`Store::describe`] is read again.
const REPLICATION_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The server's synchronous replication as one phrase.
async fn replication(client: &Client) -> String {
    let row = client
        .query_one(
            "SELECT current_setting('synchronous_standby_names'),
                    (SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum'))",
            &[],
        )
        .await;
    match row {
        Ok(row) => {
            let (names, sync): (String, i64) = (row.get(0), row.get(1));
            match (names.trim().is_empty(), sync) {
                (true, _) => "no synchronous standby configured".to_string(),
                (false, 0) => "no synchronous standby attached (or not visible to this role: grant pg_monitor)".to_string(),
                (false, 1) => "1 synchronous standby attached".to_string(),
                (false, n) => format!("{n} synchronous standbys attached"),
            }
        }
        Err(e) => format!("replication state unknown: {}", Why(&e)),
    }
}

/// The Titanic store on PostgreSQL.
pub struct PostgresStore {
    writes: mpsc::UnboundedSender<Write>,
    reader: Arc<Client>,
    runtime: tokio::runtime::Handle,
    shared: Arc<Shared>,
    clock: Arc<dyn TimeSource>,
    /// Stops the store's runtime when the store is dropped.
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

/// What went wrong, with the server's message or the I/O cause (tokio-postgres shows only
/// "db error" on its own).
struct Why<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for Why<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

fn unavailable(e: &dyn std::error::Error) -> Error {
    Error::Unavailable(format!("PostgreSQL: {}", Why(e)))
}

fn write_failed(e: &dyn std::error::Error) -> Error {
    Error::WriteFailed(format!("PostgreSQL: {}", Why(e)))
}

fn id_bytes(id: Id) -> Vec<u8> {
    id.as_u128().to_be_bytes().to_vec()
}

fn id_of(bytes: &[u8]) -> Result<Id> {
    let raw: [u8; 16] = bytes.try_into().map_err(|_| Error::Corrupt {
        id: format!("{bytes:02x?}"),
        reason: "an id is not 16 bytes".into(),
    })?;
    Ok(Id::from_u128(u128::from_be_bytes(raw)))
}

async fn connect(options: &PostgresOptions) -> Result<Client> {
    let mut config: tokio_postgres::Config = options
        .url
        .parse()
        .map_err(|e: tokio_postgres::Error| unavailable(&e))?;
    if let Some(p) = &options.password {
        config.password(p.as_bytes());
    }
    config.application_name("domo-titanic");
    let (client, connection) = config.connect(NoTls).await.map_err(|e| unavailable(&e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "Titanic PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// `Ok` if the server acknowledges a commit only once a synchronous standby has it.
async fn check_sync_standby(client: &Client) -> Result<()> {
    let row = client
        .query_one(
            "SELECT current_setting('synchronous_standby_names'), current_setting('synchronous_commit')",
            &[],
        )
        .await
        .map_err(|e| unavailable(&e))?;
    let (names, commit): (String, String) = (row.get(0), row.get(1));
    if names.trim().is_empty() || commit == "off" || commit == "local" {
        return Err(Error::Unavailable(format!(
            "PostgreSQL: require_sync_standby is set but the server does not commit to a \
             synchronous standby (synchronous_standby_names = {names:?}, synchronous_commit = {commit})"
        )));
    }
    Ok(())
}

/// Creates the schema, or checks the one there.
async fn migrate(client: &Client) -> Result<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS titanic_meta (key text PRIMARY KEY, value text NOT NULL);
             CREATE TABLE IF NOT EXISTS titanic_requests (
                 id bytea PRIMARY KEY, request bytea NOT NULL, reply bytea, size bigint NOT NULL);
             CREATE INDEX IF NOT EXISTS titanic_pending
                 ON titanic_requests (id) WHERE reply IS NULL;
             INSERT INTO titanic_meta (key, value) VALUES ('schema_version', '1')
                 ON CONFLICT (key) DO NOTHING;",
        )
        .await
        .map_err(|e| unavailable(&e))?;
    let row = client
        .query_one(
            "SELECT value FROM titanic_meta WHERE key = 'schema_version'",
            &[],
        )
        .await
        .map_err(|e| unavailable(&e))?;
    let version: String = row.get(0);
    if version != SCHEMA_VERSION.to_string() {
        return Err(Error::Unavailable(format!(
            "PostgreSQL: the Titanic schema is version {version}; this broker knows {SCHEMA_VERSION}"
        )));
    }
    Ok(())
}

impl PostgresStore {
    /// Connects, creates or checks the schema, and starts the writer.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the database cannot be reached, the URL does not parse, or
    /// the schema is of another version.
    pub fn open(options: PostgresOptions) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unavailable(&e))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (writes, queue) = mpsc::unbounded_channel();
        let opts = options.clone();
        let clock = options.clock.clone();
        std::thread::Builder::new()
            .name("titanic-postgres".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let setup = async {
                        let reader = connect(&opts).await?;
                        if opts.require_sync_standby {
                            check_sync_standby(&reader).await?;
                        }
                        migrate(&reader).await?;
                        let row = reader
                            .query_one(
                                "SELECT (SELECT id FROM titanic_requests ORDER BY id DESC LIMIT 1),
                                        (SELECT coalesce(sum(size), 0)::bigint FROM titanic_requests)",
                                &[],
                            )
                            .await
                            .map_err(|e| unavailable(&e))?;
                        let floor = row.get::<_, Option<Vec<u8>>>(0).map(|b| id_of(&b)).transpose()?;
                        let live: i64 = row.get(1);
                        let writer = connect(&opts).await?;
                        Ok::<_, Error>((reader, writer, floor, live))
                    };
                    match setup.await {
                        Ok((reader, writer, floor, live)) => {
                            let shared = Arc::new(Shared {
                                live_bytes: AtomicU64::new(u64::try_from(live).unwrap_or(0)),
                                commits: AtomicU64::new(0),
                                failed: Mutex::new(None),
                                replication: Mutex::new(replication(&reader).await),
                            });
                            let reader = Arc::new(reader);
                            {
                                let (reader, shared) = (reader.clone(), shared.clone());
                                tokio::spawn(async move {
                                    loop {
                                        tokio::time::sleep(REPLICATION_EVERY).await;
                                        let now = replication(&reader).await;
                                        *shared.replication.lock_unpoisoned() = now;
                                    }
                                });
                            }
                            let _ = ready_tx.send(Ok((reader, shared.clone())));
                            let w = Writer {
                                client: Some(writer),
                                options: opts,
                                ids: IdGenerator::after(floor),
                                shared,
                            };
                            tokio::select! {
                                () = w.run(queue) => {}
                                _ = stopped => {}
                            }
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(|e| unavailable(&e))?;
        let (reader, shared) = ready_rx.recv().map_err(|_| Error::Closed)??;
        Ok(Self {
            writes,
            reader,
            runtime: handle,
            shared,
            clock,
            _stop: stop,
        })
    }

    /// Runs a read on the store's runtime and waits for it (from any thread but the store's).
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(
            Arc<Client>,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send>>,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let fut = f(self.reader.clone());
        self.runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.blocking_recv().map_err(|_| Error::Closed)?
    }

    fn send<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Write) -> Durable<T> {
        let (tx, rx) = oneshot::channel();
        if self.writes.send(make(tx)).is_err() {
            return Durable::ready(Err(Error::Closed));
        }
        Durable::waiting(rx)
    }
}

/// Blocks this thread on a write's answer: a minimal executor for one future, woken by the
/// writer's oneshot (works from any thread that is not running the store's runtime).
fn wait<T>(f: Durable<T>) -> Result<T> {
    use std::task::{Context, Poll, Wake, Waker};
    struct Thread(std::thread::Thread);
    impl Wake for Thread {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Thread(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = std::future::Future::poll(f.as_mut(), &mut cx) {
            return v;
        }
        std::thread::park();
    }
}

impl Store for PostgresStore {
    fn put_request(&self, service: Bytes, body: Vec<Bytes>) -> Result<Id> {
        wait(self.put_request_async(service, body))
    }

    fn put_request_async(&self, service: Bytes, body: Vec<Bytes>) -> Durable<Id> {
        self.send(|tx| Write::Put { service, body, tx })
    }

    fn complete(&self, id: Id, reply: Vec<Bytes>) -> Result<()> {
        wait(self.complete_async(id, reply))
    }

    fn complete_async(&self, id: Id, frames: Vec<Bytes>) -> Durable<()> {
        self.send(|tx| Write::Complete { id, frames, tx })
    }

    fn get(&self, id: Id) -> Result<Lookup> {
        self.read(move |c| {
            Box::pin(async move {
                let row = c
                    .query_opt(
                        "SELECT reply FROM titanic_requests WHERE id = $1",
                        &[&id_bytes(id)],
                    )
                    .await
                    .map_err(|e| unavailable(&e))?;
                Ok(match row {
                    None => Lookup::Unknown,
                    Some(row) => match row.get::<_, Option<Vec<u8>>>(0) {
                        None => Lookup::Pending,
                        Some(bytes) => {
                            Lookup::Done(decode_reply(&bytes).map_err(|e| Error::Corrupt {
                                id: id.to_string(),
                                reason: e.to_string(),
                            })?)
                        }
                    },
                })
            })
        })
    }

    fn close(&self, id: Id) -> Result<()> {
        wait(self.close_async(id))
    }

    fn close_async(&self, id: Id) -> Durable<()> {
        self.send(|tx| Write::Close { id, tx })
    }

    fn pending(&self, after: Option<Id>, limit: usize) -> Result<Vec<(Id, Request)>> {
        let from = after.map_or_else(Vec::new, id_bytes);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            Box::pin(async move {
                let rows = c
                    .query(
                        "SELECT id, request FROM titanic_requests
                         WHERE reply IS NULL AND id > $1 ORDER BY id LIMIT $2",
                        &[&from, &limit],
                    )
                    .await
                    .map_err(|e| unavailable(&e))?;
                rows.iter()
                    .map(|row| {
                        let id = id_of(row.get::<_, &[u8]>(0))?;
                        let request =
                            decode_request(row.get::<_, &[u8]>(1)).map_err(|e| Error::Corrupt {
                                id: id.to_string(),
                                reason: e.to_string(),
                            })?;
                        Ok((id, request))
                    })
                    .collect()
            })
        })
    }

    fn expire(&self, older_than_millis: u64) -> Result<usize> {
        let cutoff = self.clock.now_millis().saturating_sub(older_than_millis);
        wait(self.send(|tx| Write::Expire {
            before: Id::lowest_at(cutoff),
            tx,
        }))
    }

    fn stats(&self) -> Result<Stats> {
        let (live, commits) = (
            self.shared.live_bytes.load(Ordering::Relaxed),
            self.shared.commits.load(Ordering::Relaxed),
        );
        self.read(move |c| {
            Box::pin(async move {
                let row = c
                    .query_one(
                        "SELECT count(*) FILTER (WHERE reply IS NULL),
                                count(*) FILTER (WHERE reply IS NOT NULL),
                                pg_total_relation_size('titanic_requests')
                         FROM titanic_requests",
                        &[],
                    )
                    .await
                    .map_err(|e| unavailable(&e))?;
                let n = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or(0);
                Ok(Stats {
                    pending: n(0),
                    done: n(1),
                    live_bytes: live,
                    file_bytes: n(2),
                    commits,
                })
            })
        })
    }

    fn describe(&self) -> Option<String> {
        Some(format!(
            "titanic store: postgres, {}",
            self.shared.replication.lock_unpoisoned()
        ))
    }

    fn check_writes(&self) -> Result<()> {
        match self.shared.failed.lock_unpoisoned().as_ref() {
            Some(e) => Err(Error::WriteFailed(e.clone())),
            None => Ok(()),
        }
    }
}

/// The writer: group commits on its own connection.
struct Writer {
    client: Option<Client>,
    options: PostgresOptions,
    ids: IdGenerator,
    shared: Arc<Shared>,
}

/// The answers of one commit, sent once it is known whether it committed.
enum Answer {
    Id(oneshot::Sender<Result<Id>>, Id),
    Unit(oneshot::Sender<Result<()>>),
    Count(oneshot::Sender<Result<usize>>),
    Refused(oneshot::Sender<Result<Id>>, Error),
}

impl Writer {
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Write>) {
        let mut batch = Vec::new();
        while queue.recv_many(&mut batch, 4096).await > 0 {
            self.commit(std::mem::take(&mut batch)).await;
        }
    }

    async fn commit(&mut self, batch: Vec<Write>) {
        let now = self.options.clock.now_millis();
        let limit = self.options.limits.max_bytes;
        let mut live = self.shared.live_bytes.load(Ordering::Relaxed);
        let mut answers = Vec::with_capacity(batch.len());
        let (mut ids, mut records, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
        let mut completes = Vec::new();
        let mut closes = Vec::new();
        let mut expire = None;
        for w in batch {
            match w {
                Write::Put { service, body, tx } => {
                    let request = Request {
                        service,
                        body,
                        created_millis: now,
                        attempts: 0,
                    };
                    let size = request_size(&request);
                    if live + size > limit {
                        let e = Error::StoreFull {
                            used: live,
                            limit,
                            needed: size,
                        };
                        answers.push(Answer::Refused(tx, e));
                        continue;
                    }
                    live += size;
                    let id = self.ids.next(now);
                    ids.push(id_bytes(id));
                    records.push(encode_request(&request));
                    sizes.push(i64::try_from(size).unwrap_or(i64::MAX));
                    answers.push(Answer::Id(tx, id));
                }
                Write::Complete { id, frames, tx } => {
                    let reply = encode_reply(&Reply {
                        frames,
                        completed_millis: now,
                    });
                    completes.push((id_bytes(id), reply));
                    answers.push(Answer::Unit(tx));
                }
                Write::Close { id, tx } => {
                    closes.push(id_bytes(id));
                    answers.push(Answer::Unit(tx));
                }
                Write::Expire { before, tx } => {
                    expire = Some(id_bytes(before));
                    answers.push(Answer::Count(tx));
                }
            }
        }
        let timeout = self.options.commit_timeout;
        let outcome = tokio::time::timeout(
            timeout,
            self.transaction(
                &ids,
                &records,
                &sizes,
                &completes,
                &closes,
                expire.as_deref(),
            ),
        )
        .await
        .unwrap_or_else(|_| {
            // Whether it committed is unknown: an error to every caller, never an
            // acknowledgement, and a new connection for the next commit.
            Err(Error::WriteFailed(format!(
                "PostgreSQL: no commit within {timeout:?} (commit_timeout)"
            )))
        });
        match outcome {
            Ok((delta, expired)) => {
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
                *self.shared.failed.lock_unpoisoned() = None;
                let added: u64 = sizes.iter().map(|s| u64::try_from(*s).unwrap_or(0)).sum();
                let base = self.shared.live_bytes.load(Ordering::Relaxed);
                let next = i128::from(base) + i128::from(added) + i128::from(delta);
                self.shared.live_bytes.store(
                    u64::try_from(next.max(0)).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                for a in answers {
                    match a {
                        Answer::Id(tx, id) => drop(tx.send(Ok(id))),
                        Answer::Unit(tx) => drop(tx.send(Ok(()))),
                        Answer::Count(tx) => drop(tx.send(Ok(expired))),
                        Answer::Refused(tx, e) => drop(tx.send(Err(e))),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Titanic PostgreSQL commit failed");
                *self.shared.failed.lock_unpoisoned() = Some(e.to_string());
                // Connect again for the next commit.
                self.client = None;
                for a in answers {
                    match a {
                        Answer::Id(tx, _) => drop(tx.send(Err(e.duplicate()))),
                        Answer::Unit(tx) => drop(tx.send(Err(e.duplicate()))),
                        Answer::Count(tx) => drop(tx.send(Err(e.duplicate()))),
                        Answer::Refused(tx, refused) => drop(tx.send(Err(refused))),
                    }
                }
            }
        }
    }

    /// One transaction with every write of the batch; the change of live bytes from replies,
    /// closes and expiry (inserts are counted by the caller), and how many expired.
    async fn transaction(
        &mut self,
        ids: &[Vec<u8>],
        records: &[Vec<u8>],
        sizes: &[i64],
        completes: &[(Vec<u8>, Vec<u8>)],
        closes: &[Vec<u8>],
        expire: Option<&[u8]>,
    ) -> Result<(i64, usize)> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(connect(&self.options).await.map_err(|e| write_failed(&e))?);
        }
        let client = self.client.as_mut().ok_or(Error::Closed)?;
        let tx = client.transaction().await.map_err(|e| write_failed(&e))?;
        let mut delta = 0i64;
        if !ids.is_empty() {
            tx.execute(
                "INSERT INTO titanic_requests (id, request, size)
                 SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bigint[])",
                &[&ids, &records, &sizes],
            )
            .await
            .map_err(|e| write_failed(&e))?;
        }
        // The first reply wins; a reply to an unknown id stores nothing.
        for (id, reply) in completes {
            let size = i64::try_from(reply.len()).unwrap_or(i64::MAX);
            let n = tx
                .execute(
                    "UPDATE titanic_requests SET reply = $2, size = size + $3
                     WHERE id = $1 AND reply IS NULL",
                    &[id, reply, &size],
                )
                .await
                .map_err(|e| write_failed(&e))?;
            if n == 1 {
                delta += size;
            }
        }
        if !closes.is_empty() {
            let row = tx
                .query_one(
                    "WITH gone AS (DELETE FROM titanic_requests WHERE id = ANY($1) RETURNING size)
                     SELECT coalesce(sum(size), 0)::bigint FROM gone",
                    &[&closes],
                )
                .await
                .map_err(|e| write_failed(&e))?;
            delta -= row.get::<_, i64>(0);
        }
        let mut expired = 0;
        if let Some(before) = expire {
            let row = tx
                .query_one(
                    "WITH gone AS (DELETE FROM titanic_requests WHERE id < $1 RETURNING size)
                     SELECT count(*), coalesce(sum(size), 0)::bigint FROM gone",
                    &[&before],
                )
                .await
                .map_err(|e| write_failed(&e))?;
            expired = usize::try_from(row.get::<_, i64>(0)).unwrap_or(0);
            delta -= row.get::<_, i64>(1);
        }
        tx.commit().await.map_err(|e| write_failed(&e))?;
        Ok((delta, expired))
    }
}

/// For tests: a URL of the test database (`DOMO_TEST_PG_URL`, which `.ci/run` sets from
/// `scripts/pg-test-cluster.sh`) whose tables go into a fresh schema of their own; `None`
/// without one, except under `CI=true`, where that is a failure.
#[cfg(test)]
pub(crate) fn test_url() -> Option<String> {
    let Ok(base) = std::env::var("DOMO_TEST_PG_URL") else {
        assert!(
            std::env::var("CI").is_err(),
            "CI=true but DOMO_TEST_PG_URL is not set (scripts/pg-test-cluster.sh)"
        );
        eprintln!("PostgreSQL store not tested: DOMO_TEST_PG_URL is not set");
        return None;
    };
    static N: AtomicU64 = AtomicU64::new(0);
    let schema = format!(
        "t_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        SystemClock.now_millis()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, conn) = tokio_postgres::connect(&base, NoTls).await.unwrap();
        tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
    });
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn what_was_acknowledged_is_there_after_reopening_and_ids_keep_increasing() {
        let Some(url) = test_url() else { return };
        let clock = ManualClock::new(1_700_000_000_000);
        let options = PostgresOptions {
            clock: Arc::new(clock.clone()),
            ..PostgresOptions::new(url)
        };
        let store = PostgresStore::open(options.clone()).unwrap();
        // Many submitters at once: one commit carries several of them.
        let ids: Vec<Id> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    let store = &store;
                    s.spawn(move || {
                        store
                            .put_request(b("svc"), vec![b(&i.to_string())])
                            .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        store.complete(ids[0], vec![b("done")]).unwrap();
        let stats = store.stats().unwrap();
        assert_eq!((stats.pending, stats.done), (15, 1));
        assert!(stats.commits >= 1 && stats.commits <= 17, "{stats:?}");
        let last = *ids.iter().max().unwrap();
        drop(store);
        let store = PostgresStore::open(options).unwrap();
        assert_eq!(store.pending(None, 100).unwrap().len(), 15);
        assert!(
            matches!(store.get(ids[0]).unwrap(), Lookup::Done(r) if r.frames == vec![b("done")])
        );
        // The clock has not moved: the next id still sorts after every stored one.
        let next = store.put_request(b("svc"), vec![b("after")]).unwrap();
        assert!(next > last);
        assert_eq!(store.stats().unwrap().live_bytes, {
            let mut expected = 0;
            for (_, r) in store.pending(None, 100).unwrap() {
                expected += request_size(&r);
            }
            expected
                + request_size(&Request {
                    service: b("svc"),
                    body: vec![b("0")],
                    created_millis: 1_700_000_000_000,
                    attempts: 0,
                })
                + encode_reply(&Reply {
                    frames: vec![b("done")],
                    completed_millis: 1_700_000_000_000,
                })
                .len() as u64
        });
    }

    #[test]
    fn a_database_that_cannot_be_reached_is_an_error_naming_it() {
        let e = PostgresStore::open(PostgresOptions::new(
            "postgres://nobody@127.0.0.1:1/none?connect_timeout=2",
        ))
        .unwrap_err();
        assert!(matches!(e, Error::Unavailable(_)), "{e}");
        assert!(e.to_string().contains("PostgreSQL"), "{e}");
    }
}
