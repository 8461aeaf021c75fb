//! A [`Store`] on PostgreSQL (issue #18): the requests and replies of Titanic in
//! a table, written by group commits, so that they are as safe as the database (its WAL,
//! and with `synchronous_commit` and a synchronous standby, two machines).
//!
//! # Schema (version 2, created by [`PostgresStore::open`]; version 1 is moved to 2)
//!
//! ```sql
//! CREATE TABLE titanic_meta (key text PRIMARY KEY, value text NOT NULL);
//!   -- ('schema_version', '2')
//! CREATE TABLE titanic_requests (
//!     id       bytea PRIMARY KEY,  -- the UUIDv7 id, 16 bytes big-endian: sorts as the ids do
//!     request  bytea NOT NULL,     -- the request record, as the redb store encodes it
//!     reply    bytea,              -- the reply record; NULL while pending
//!     size     bigint NOT NULL,    -- encoded bytes of both, charged against the limit
//!     idem_key bytea               -- the idempotency key, if any (version 2)
//! );
//! CREATE INDEX titanic_pending ON titanic_requests (id) WHERE reply IS NULL;
//! CREATE UNIQUE INDEX titanic_keys ON titanic_requests (idem_key);  -- version 2
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
//! until a commit succeeds. Reads connect again the same way. A database not reachable at
//! open is tried again every second until it answers; the schema is checked then.
//!
//! Ids come from this store's generator, which starts above the largest id stored. Several
//! brokers may write to one database (a Binary Star pair after a failover, where the clocks
//! of the two machines differ): every commit that inserts reads the largest id right after
//! its insert, in the same round trip, and if another broker stored a larger one it rolls
//! back and makes its ids again above it, so ids keep increasing in commit order as the
//! dispatcher's cursor needs. A key stored before (by this broker or another) inserts
//! nothing: the unique index on `idem_key` decides, and the id stored under it is answered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use domo_mdp::LockExt;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, Statement};

use super::{request_size, Durable, Limits, Lookup, Stats, Store};
use crate::clock::{SystemClock, TimeSource};
use crate::error::{Error, Result};
use crate::id::{Id, IdGenerator};
use crate::record::{decode_reply, decode_request, encode_reply, encode_request, Reply, Request};

/// The schema this code writes.
pub const SCHEMA_VERSION: u32 = 2;

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
    /// With `sslmode=require` in the URL: the CA certificates (PEM) that the server's
    /// certificate must chain to; `None`: the system's trust store.
    pub ca_file: Option<std::path::PathBuf>,
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
            ca_file: None,
        }
    }
}

/// One write, and who waits for it.
enum Write {
    Put {
        key: Option<Bytes>,
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
    /// Deletes up to `limit` requests older than `before`.
    Expire {
        before: Id,
        limit: i64,
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

/// Requests deleted by one expiry commit.
const EXPIRE_BATCH: i64 = 1000;

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

/// Reads the replication state for [`Store::describe`].
async fn read_replication(reader: &Reader, shared: &Shared) {
    let now = match reader.client().await {
        Ok(c) => replication(&c).await,
        Err(e) => format!("replication state unknown: {e}"),
    };
    *shared.replication.lock_unpoisoned() = now;
}

/// The Titanic store on PostgreSQL.
pub struct PostgresStore {
    writes: mpsc::UnboundedSender<Write>,
    reader: Arc<Reader>,
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

/// How the store connects (see [`crate::pg::Connector`]).
///
/// # Errors
///
/// [`Error::Unavailable`] naming what is wrong with the URL or the CA file.
fn connector(options: &PostgresOptions) -> Result<crate::pg::Connector> {
    crate::pg::Connector::new(
        &options.url,
        options.password.as_deref(),
        options.ca_file.as_deref(),
        options.commit_timeout,
        "domo-titanic",
    )
    .map_err(Error::Unavailable)
}

async fn connect(options: &PostgresOptions) -> Result<Client> {
    connector(options)?
        .connect()
        .await
        .map_err(|e| unavailable(&e))
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
    let version = || async {
        let row = client
            .query_opt(
                "SELECT value FROM titanic_meta WHERE key = 'schema_version'",
                &[],
            )
            .await
            .map_err(|e| unavailable(&e))?;
        Ok::<Option<String>, Error>(row.map(|r| r.get(0)))
    };
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS titanic_meta (key text PRIMARY KEY, value text NOT NULL);",
        )
        .await
        .map_err(|e| unavailable(&e))?;
    if version().await?.is_none() {
        // Brokers opening at once: IF NOT EXISTS and ON CONFLICT make the second a no-op.
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS titanic_requests (
                     id bytea PRIMARY KEY, request bytea NOT NULL, reply bytea,
                     size bigint NOT NULL, idem_key bytea);
                 CREATE INDEX IF NOT EXISTS titanic_pending
                     ON titanic_requests (id) WHERE reply IS NULL;
                 CREATE UNIQUE INDEX IF NOT EXISTS titanic_keys ON titanic_requests (idem_key);
                 INSERT INTO titanic_meta (key, value) VALUES ('schema_version', '2')
                     ON CONFLICT (key) DO NOTHING;",
            )
            .await
            .map_err(|e| unavailable(&e))?;
    }
    if version().await?.as_deref() == Some("1") {
        // Version 2 adds idempotency keys. Brokers opening at once: the ALTER's lock orders
        // them and the second finds it done.
        client
            .batch_execute(
                "BEGIN;
                 ALTER TABLE titanic_requests ADD COLUMN IF NOT EXISTS idem_key bytea;
                 CREATE UNIQUE INDEX IF NOT EXISTS titanic_keys ON titanic_requests (idem_key);
                 UPDATE titanic_meta SET value = '2' WHERE key = 'schema_version' AND value = '1';
                 COMMIT;",
            )
            .await
            .map_err(|e| unavailable(&e))?;
        tracing::info!("Titanic PostgreSQL schema moved to version 2 (idempotency keys)");
    }
    let version = version().await?.unwrap_or_default();
    if version != SCHEMA_VERSION.to_string() {
        return Err(Error::Unavailable(format!(
            "PostgreSQL: the Titanic schema is version {version}; this broker knows {SCHEMA_VERSION}"
        )));
    }
    Ok(())
}

impl PostgresStore {
    /// Connects, creates or checks the schema, and starts the writer. A database that cannot
    /// be reached is no error: the store opens, fails writes with the reason
    /// ([`Store::check_writes`] says it) and connects in the background.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the URL does not parse, the CA file cannot be used, the
    /// schema is of another version, or `require_sync_standby` is set and the server does
    /// not commit to a synchronous standby.
    pub fn open(options: PostgresOptions) -> Result<Self> {
        // A URL or CA file that cannot work is an error now, not a retry in the background.
        connector(&options)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unavailable(&e))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (writes, queue) = mpsc::unbounded_channel();
        let clock = options.clock.clone();
        let shared = Arc::new(Shared {
            live_bytes: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            failed: Mutex::new(None),
            replication: Mutex::new("replication state not read yet".into()),
        });
        let reader = Arc::new(Reader {
            options: options.clone(),
            client: tokio::sync::Mutex::new(None),
        });
        let mut writer = Writer {
            client: None,
            options,
            ids: IdGenerator::after(None),
            shared: shared.clone(),
            initialized: false,
        };
        {
            let (reader, shared) = (reader.clone(), shared.clone());
            std::thread::Builder::new()
                .name("titanic-postgres".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        // The first attempt decides what `open` returns.
                        let first = writer.init().await;
                        // Known before `open` returns, when the server is there.
                        if first.is_ok() {
                            read_replication(&reader, &shared).await;
                        }
                        let _ = ready_tx.send(first);
                        tokio::spawn(async move {
                            loop {
                                tokio::time::sleep(REPLICATION_EVERY).await;
                                read_replication(&reader, &shared).await;
                            }
                        });
                        tokio::select! {
                            () = writer.run(queue) => {}
                            _ = stopped => {}
                        }
                    });
                })
                .map_err(|e| unavailable(&e))?;
        }
        match ready_rx.recv().map_err(|_| Error::Closed)? {
            Ok(()) => {}
            // No server reached (down, failing over, not started yet): the store opens
            // anyway and connects in the background; until then every write fails with
            // the reason (500 to clients), and `check_writes` (`/readyz`) says it.
            Err(Init::Unreachable(e)) => {
                tracing::warn!(error = %e, "Titanic PostgreSQL not reachable; connecting in the background");
            }
            // A server that answers but does not do: the schema, the standby setting.
            Err(Init::Refused(e)) => return Err(e),
        }
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
                -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send>>
            + Send
            + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let reader = self.reader.clone();
        let timeout = reader.options.commit_timeout;
        self.runtime.spawn(async move {
            let read = async {
                let client = reader.client().await?;
                let done = tokio::time::timeout(timeout, f(client.clone())).await;
                let done = done.unwrap_or_else(|_| {
                    Err(Error::Unavailable(format!(
                        "PostgreSQL: no answer to a read within {timeout:?} (commit_timeout)"
                    )))
                });
                if done.is_err() {
                    // A lost connection or a server that does not answer: the next read
                    // connects again (to whichever host of the URL takes writes now).
                    reader.forget(&client).await;
                }
                done
            };
            let _ = tx.send(read.await);
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

/// The connection for reads, made again when it is lost (a failover of the database).
struct Reader {
    options: PostgresOptions,
    client: tokio::sync::Mutex<Option<Arc<Client>>>,
}

impl Reader {
    /// The open connection, or a new one.
    async fn client(&self) -> Result<Arc<Client>> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        *slot = None;
        let c = Arc::new(connect(&self.options).await?);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Drops `client` if it is still the current one and no longer works.
    async fn forget(&self, client: &Arc<Client>) {
        let mut slot = self.client.lock().await;
        let same = slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, client));
        if same && (client.is_closed() || client.simple_query("").await.is_err()) {
            *slot = None;
        }
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
        self.send(|tx| Write::Put {
            key: None,
            service,
            body,
            tx,
        })
    }

    fn put_keyed(&self, key: Bytes, service: Bytes, body: Vec<Bytes>) -> Result<Id> {
        wait(self.put_keyed_async(key, service, body))
    }

    fn put_keyed_async(&self, key: Bytes, service: Bytes, body: Vec<Bytes>) -> Durable<Id> {
        self.send(|tx| Write::Put {
            key: Some(key),
            service,
            body,
            tx,
        })
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
        let before = Id::lowest_at(cutoff);
        // In batches, each its own commit, so that other writes go on between them.
        let mut total = 0;
        loop {
            let n = wait(self.send(|tx| Write::Expire {
                before,
                limit: EXPIRE_BATCH,
                tx,
            }))?;
            total += n;
            if n < usize::try_from(EXPIRE_BATCH).unwrap_or(usize::MAX) {
                return Ok(total);
            }
        }
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
    client: Option<(Client, Statements)>,
    options: PostgresOptions,
    ids: IdGenerator,
    shared: Arc<Shared>,
    /// Whether the schema is checked and the id floor and live bytes read (done once, at the
    /// first connection that works).
    initialized: bool,
}

/// Why the store could not start.
enum Init {
    /// No server reached: retried in the background.
    Unreachable(Error),
    /// A server that refuses (the schema, `require_sync_standby`): `open` fails.
    Refused(Error),
}

/// How often a store that has not reached its database tries again (without writes to
/// carry the attempt).
const INIT_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The writer's statements, prepared once per connection (a prepared statement is sent
/// without the round trip of parsing it, and statements issued together are pipelined in
/// the order issued).
struct Statements {
    /// Every request of a commit in one statement; a key already stored inserts nothing.
    insert: Statement,
    /// The largest id, read in the same transaction right after the insert.
    max_id: Statement,
    /// The ids stored under some keys.
    keyed: Statement,
    /// Every reply of a commit in one statement (the first reply wins).
    complete: Statement,
    close: Statement,
    expire: Statement,
}

impl Statements {
    async fn prepare(c: &Client) -> std::result::Result<Self, tokio_postgres::Error> {
        Ok(Self {
            insert: c
                .prepare(
                    "INSERT INTO titanic_requests (id, request, size, idem_key)
                     SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bigint[], $4::bytea[])
                     ON CONFLICT (idem_key) DO NOTHING RETURNING id",
                )
                .await?,
            max_id: c
                .prepare("SELECT id FROM titanic_requests ORDER BY id DESC LIMIT 1")
                .await?,
            keyed: c
                .prepare("SELECT idem_key, id FROM titanic_requests WHERE idem_key = ANY($1)")
                .await?,
            complete: c
                .prepare(
                    "WITH done AS (
                         UPDATE titanic_requests t SET reply = u.reply, size = t.size + u.size
                         FROM unnest($1::bytea[], $2::bytea[], $3::bigint[]) AS u(id, reply, size)
                         WHERE t.id = u.id AND t.reply IS NULL RETURNING u.size)
                     SELECT coalesce(sum(size), 0)::bigint FROM done",
                )
                .await?,
            close: c
                .prepare(
                    "WITH gone AS (DELETE FROM titanic_requests WHERE id = ANY($1) RETURNING size)
                     SELECT coalesce(sum(size), 0)::bigint FROM gone",
                )
                .await?,
            // A bounded batch: a large expiry is many small transactions between the others.
            expire: c
                .prepare(
                    "WITH gone AS (DELETE FROM titanic_requests WHERE id IN (
                         SELECT id FROM titanic_requests WHERE id < $1 ORDER BY id LIMIT $2)
                         RETURNING size)
                     SELECT count(*), coalesce(sum(size), 0)::bigint FROM gone",
                )
                .await?,
        })
    }
}

/// One request of a commit.
struct Row {
    id: Id,
    record: Vec<u8>,
    size: i64,
    key: Option<Vec<u8>>,
}

/// The answers of one commit, sent once it is known whether it committed.
enum Answer {
    /// The request in this row of the commit (or the one stored before under its key).
    Put(oneshot::Sender<Result<Id>>, usize),
    Unit(oneshot::Sender<Result<()>>),
    Count(oneshot::Sender<Result<usize>>),
    Refused(oneshot::Sender<Result<Id>>, Error),
}

/// What a committed transaction did besides inserting its rows.
struct Committed {
    /// The change of live bytes from replies, closes and expiry.
    delta: i64,
    expired: usize,
    /// Keyed rows not inserted: the id already stored under the key (`None` if that request
    /// was closed between the insert and the lookup).
    existing: Vec<(usize, Option<Id>)>,
}

/// Why a transaction did not commit.
enum Failed {
    Error(Error),
    /// Another broker stored a larger id than this commit's: ids are made again above it.
    Behind(Id),
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        Self::Error(e)
    }
}

/// Attempts at a commit whose ids were below another broker's.
const ID_ATTEMPTS: usize = 3;

impl Writer {
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Write>) {
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                n = queue.recv_many(&mut batch, 4096) => {
                    if n == 0 {
                        return;
                    }
                    self.commit(std::mem::take(&mut batch)).await;
                }
                () = tokio::time::sleep(INIT_RETRY), if !self.initialized => {
                    if let Err(Init::Unreachable(e) | Init::Refused(e)) = self.init().await {
                        tracing::debug!(error = %e, "Titanic PostgreSQL still not reachable");
                    }
                }
            }
        }
    }

    /// Connects (if need be), then, the first time, checks the server and the schema and
    /// reads where ids start and how many bytes are live. A failure is recorded for
    /// `check_writes` until a commit succeeds.
    async fn init(&mut self) -> std::result::Result<(), Init> {
        let timeout = self.options.commit_timeout;
        let attempt = tokio::time::timeout(timeout, self.try_init()).await;
        let outcome = attempt.unwrap_or_else(|_| {
            Err(Init::Unreachable(Error::Unavailable(format!(
                "PostgreSQL: no connection within {timeout:?} (commit_timeout)"
            ))))
        });
        match &outcome {
            Ok(()) => *self.shared.failed.lock_unpoisoned() = None,
            Err(Init::Unreachable(e) | Init::Refused(e)) => {
                self.client = None;
                *self.shared.failed.lock_unpoisoned() = Some(e.to_string());
            }
        }
        outcome
    }

    async fn try_init(&mut self) -> std::result::Result<(), Init> {
        if self.initialized && self.client.as_ref().is_some_and(|(c, _)| !c.is_closed()) {
            return Ok(());
        }
        self.client = None;
        let client = connect(&self.options).await.map_err(Init::Unreachable)?;
        if !self.initialized {
            if self.options.require_sync_standby {
                check_sync_standby(&client).await.map_err(Init::Refused)?;
            }
            migrate(&client).await.map_err(Init::Refused)?;
            let row = client
                .query_one(
                    "SELECT (SELECT id FROM titanic_requests ORDER BY id DESC LIMIT 1),
                            (SELECT coalesce(sum(size), 0)::bigint FROM titanic_requests)",
                    &[],
                )
                .await
                .map_err(|e| Init::Unreachable(unavailable(&e)))?;
            let floor = row
                .get::<_, Option<Vec<u8>>>(0)
                .map(|b| id_of(&b))
                .transpose()
                .map_err(Init::Refused)?;
            let live = u64::try_from(row.get::<_, i64>(1)).unwrap_or(0);
            self.ids = IdGenerator::after(floor);
            self.shared.live_bytes.store(live, Ordering::Relaxed);
        }
        let statements = Statements::prepare(&client)
            .await
            .map_err(|e| Init::Unreachable(unavailable(&e)))?;
        self.client = Some((client, statements));
        self.initialized = true;
        Ok(())
    }

    async fn commit(&mut self, batch: Vec<Write>) {
        let now = self.options.clock.now_millis();
        let limit = self.options.limits.max_bytes;
        let mut live = self.shared.live_bytes.load(Ordering::Relaxed);
        let mut answers = Vec::with_capacity(batch.len());
        let mut rows: Vec<Row> = Vec::new();
        let mut keyed_rows: std::collections::HashMap<Bytes, usize> =
            std::collections::HashMap::new();
        let mut completes: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut completed = std::collections::HashSet::new();
        let mut closes = Vec::new();
        let mut expire = None;
        for w in batch {
            match w {
                Write::Put {
                    key,
                    service,
                    body,
                    tx,
                } => {
                    // The same key twice in one commit: one row, one id.
                    if let Some(row) = key.as_ref().and_then(|k| keyed_rows.get(k)) {
                        answers.push(Answer::Put(tx, *row));
                        continue;
                    }
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
                    if let Some(k) = &key {
                        keyed_rows.insert(k.clone(), rows.len());
                    }
                    answers.push(Answer::Put(tx, rows.len()));
                    rows.push(Row {
                        id: self.ids.next(now),
                        record: encode_request(&request),
                        size: i64::try_from(size).unwrap_or(i64::MAX),
                        key: key.map(|k| k.to_vec()),
                    });
                }
                Write::Complete { id, frames, tx } => {
                    // The first reply wins, also within one commit.
                    if completed.insert(id) {
                        let reply = encode_reply(&Reply {
                            frames,
                            completed_millis: now,
                        });
                        completes.push((id_bytes(id), reply));
                    }
                    answers.push(Answer::Unit(tx));
                }
                Write::Close { id, tx } => {
                    closes.push(id_bytes(id));
                    answers.push(Answer::Unit(tx));
                }
                Write::Expire { before, limit, tx } => {
                    expire = Some((id_bytes(before), limit));
                    answers.push(Answer::Count(tx));
                }
            }
        }
        let timeout = self.options.commit_timeout;
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            let done = tokio::time::timeout(
                timeout,
                self.transaction(&rows, &completes, &closes, expire.as_ref()),
            )
            .await
            .unwrap_or_else(|_| {
                // Whether it committed is unknown: an error to every caller, never an
                // acknowledgement, and a new connection for the next commit.
                Err(Failed::Error(Error::WriteFailed(format!(
                    "PostgreSQL: no commit within {timeout:?} (commit_timeout)"
                ))))
            });
            match done {
                Err(Failed::Behind(max)) if attempt < ID_ATTEMPTS => {
                    // Ids keep increasing across brokers (the dispatcher's cursor relies on
                    // it): make them again above the largest stored.
                    tracing::info!("Titanic ids made again above another broker's");
                    self.ids = IdGenerator::after(Some(max));
                    for row in &mut rows {
                        row.id = self.ids.next(now);
                    }
                }
                Err(Failed::Behind(_)) => {
                    break Err(Error::WriteFailed(
                        "PostgreSQL: other brokers keep storing larger ids".into(),
                    ))
                }
                Err(Failed::Error(e)) => break Err(e),
                Ok(c) => break Ok(c),
            }
        };
        match outcome {
            Ok(c) => {
                self.shared.commits.fetch_add(1, Ordering::Relaxed);
                *self.shared.failed.lock_unpoisoned() = None;
                let mut ids: Vec<Result<Id>> = rows.iter().map(|r| Ok(r.id)).collect();
                let mut added: i64 = rows.iter().map(|r| r.size).sum();
                for (row, existing) in c.existing {
                    added -= rows[row].size;
                    ids[row] = existing.ok_or_else(|| {
                        Error::WriteFailed(
                            "the request stored under this idempotency key was closed meanwhile; \
                             retry"
                                .into(),
                        )
                    });
                }
                let base = self.shared.live_bytes.load(Ordering::Relaxed);
                let next = i128::from(base) + i128::from(added) + i128::from(c.delta);
                self.shared.live_bytes.store(
                    u64::try_from(next.max(0)).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                for a in answers {
                    match a {
                        Answer::Put(tx, row) => {
                            drop(tx.send(ids[row].as_ref().map(|id| *id).map_err(Error::duplicate)))
                        }
                        Answer::Unit(tx) => drop(tx.send(Ok(()))),
                        Answer::Count(tx) => drop(tx.send(Ok(c.expired))),
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
                        Answer::Put(tx, _) => drop(tx.send(Err(e.duplicate()))),
                        Answer::Unit(tx) => drop(tx.send(Err(e.duplicate()))),
                        Answer::Count(tx) => drop(tx.send(Err(e.duplicate()))),
                        Answer::Refused(tx, refused) => drop(tx.send(Err(refused))),
                    }
                }
            }
        }
    }

    /// One transaction with every write of the batch.
    async fn transaction(
        &mut self,
        rows: &[Row],
        completes: &[(Vec<u8>, Vec<u8>)],
        closes: &[Vec<u8>],
        expire: Option<&(Vec<u8>, i64)>,
    ) -> std::result::Result<Committed, Failed> {
        if !self.initialized || self.client.as_ref().is_none_or(|(c, _)| c.is_closed()) {
            self.try_init()
                .await
                .map_err(|(Init::Unreachable(e) | Init::Refused(e))| {
                    Failed::Error(Error::WriteFailed(e.to_string()))
                })?;
        }
        let (client, st) = self.client.as_mut().ok_or(Error::Closed)?;
        let tx = client.transaction().await.map_err(|e| write_failed(&e))?;
        let mut existing = Vec::new();
        if !rows.is_empty() {
            let ids: Vec<Vec<u8>> = rows.iter().map(|r| id_bytes(r.id)).collect();
            let records: Vec<&[u8]> = rows.iter().map(|r| r.record.as_slice()).collect();
            let sizes: Vec<i64> = rows.iter().map(|r| r.size).collect();
            let keys: Vec<Option<&[u8]>> = rows.iter().map(|r| r.key.as_deref()).collect();
            // Pipelined: the largest id is read right after the insert, in one round trip.
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
                [&ids, &records, &sizes, &keys];
            let (inserted, max) =
                tokio::try_join!(tx.query(&st.insert, &params), tx.query_opt(&st.max_id, &[]),)
                    .map_err(|e| write_failed(&e))?;
            let ours = rows.iter().map(|r| r.id).max();
            if let Some(max) = max {
                let max = id_of(max.get::<_, &[u8]>(0))?;
                if ours.is_some_and(|ours| max > ours) {
                    return Err(Failed::Behind(max));
                }
            }
            if inserted.len() < rows.len() {
                // Keys stored before: the ids they name.
                let new: std::collections::HashSet<&[u8]> =
                    inserted.iter().map(|r| r.get::<_, &[u8]>(0)).collect();
                let missing: Vec<usize> = (0..rows.len())
                    .filter(|i| !new.contains(ids[*i].as_slice()))
                    .collect();
                let wanted: Vec<&[u8]> = missing
                    .iter()
                    .filter_map(|i| rows[*i].key.as_deref())
                    .collect();
                let found = tx
                    .query(&st.keyed, &[&wanted])
                    .await
                    .map_err(|e| write_failed(&e))?;
                let mut by_key = std::collections::HashMap::new();
                for row in &found {
                    by_key.insert(row.get::<_, Vec<u8>>(0), id_of(row.get::<_, &[u8]>(1))?);
                }
                for i in missing {
                    let id = rows[i].key.as_ref().and_then(|k| by_key.get(k)).copied();
                    existing.push((i, id));
                }
            }
        }
        let mut delta = 0i64;
        if !completes.is_empty() {
            let ids: Vec<&[u8]> = completes.iter().map(|(id, _)| id.as_slice()).collect();
            let replies: Vec<&[u8]> = completes.iter().map(|(_, r)| r.as_slice()).collect();
            let sizes: Vec<i64> = completes
                .iter()
                .map(|(_, r)| i64::try_from(r.len()).unwrap_or(i64::MAX))
                .collect();
            let row = tx
                .query_one(&st.complete, &[&ids, &replies, &sizes])
                .await
                .map_err(|e| write_failed(&e))?;
            delta += row.get::<_, i64>(0);
        }
        if !closes.is_empty() {
            let row = tx
                .query_one(&st.close, &[&closes])
                .await
                .map_err(|e| write_failed(&e))?;
            delta -= row.get::<_, i64>(0);
        }
        let mut expired = 0;
        if let Some((before, limit)) = expire {
            let row = tx
                .query_one(&st.expire, &[before, limit])
                .await
                .map_err(|e| write_failed(&e))?;
            expired = usize::try_from(row.get::<_, i64>(0)).unwrap_or(0);
            delta -= row.get::<_, i64>(1);
        }
        tx.commit().await.map_err(|e| write_failed(&e))?;
        Ok(Committed {
            delta,
            expired,
            existing,
        })
    }
}

/// For tests: a URL of the test database (`DOMO_TEST_PG_URL`, which `.ci/run` sets from
/// `scripts/pg-test-cluster.sh`) whose tables go into a fresh schema of their own; `None`
/// without one, except under `CI=true`, where that is a failure.
#[cfg(test)]
pub(crate) fn test_url() -> Option<String> {
    use tokio_postgres::NoTls;
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
    fn a_database_that_cannot_be_reached_opens_and_fails_writes_naming_it() {
        let store = PostgresStore::open(PostgresOptions {
            commit_timeout: std::time::Duration::from_secs(2),
            ..PostgresOptions::new("postgres://nobody@127.0.0.1:1/none")
        })
        .unwrap();
        let e = store.check_writes().unwrap_err();
        assert!(e.to_string().contains("PostgreSQL"), "{e}");
        let e = store.put_request(b("svc"), vec![b("x")]).unwrap_err();
        assert!(e.to_string().contains("PostgreSQL"), "{e}");
        assert!(store.get(Id::from_u128(1)).is_err());
    }

    /// Runs `sql` on the database of `url`.
    fn execute(url: &str, sql: &str) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client.batch_execute(sql).await.unwrap();
        });
    }

    #[test]
    fn a_version_1_schema_is_moved_to_version_2_keeping_its_requests() {
        let Some(url) = test_url() else { return };
        // What version 1 created, with a request in it.
        let store = PostgresStore::open(PostgresOptions::new(url.clone())).unwrap();
        let id = store.put_request(b("svc"), vec![b("old")]).unwrap();
        drop(store);
        execute(
            &url,
            "DROP INDEX titanic_keys; ALTER TABLE titanic_requests DROP COLUMN idem_key;
             UPDATE titanic_meta SET value = '1' WHERE key = 'schema_version';",
        );
        let store = PostgresStore::open(PostgresOptions::new(url.clone())).unwrap();
        assert_eq!(store.get(id).unwrap(), Lookup::Pending);
        let keyed = store.put_keyed(b("k"), b("svc"), vec![b("new")]).unwrap();
        assert_eq!(
            store.put_keyed(b("k"), b("svc"), vec![b("new")]).unwrap(),
            keyed
        );
        drop(store);
        // A schema newer than this code: refused, naming both versions.
        execute(
            &url,
            "UPDATE titanic_meta SET value = '3' WHERE key = 'schema_version';",
        );
        let err = PostgresStore::open(PostgresOptions::new(url)).unwrap_err();
        assert!(
            err.to_string().contains("version 3; this broker knows 2"),
            "{err}"
        );
    }

    #[test]
    fn two_brokers_on_one_database_keep_ids_increasing_and_share_keys() {
        let Some(url) = test_url() else { return };
        // Broker A's clock is a minute ahead of broker B's (two machines).
        let ahead = ManualClock::new(1_700_000_060_000);
        let behind = ManualClock::new(1_700_000_000_000);
        let open = |clock: &ManualClock| {
            PostgresStore::open(PostgresOptions {
                clock: Arc::new(clock.clone()),
                ..PostgresOptions::new(url.clone())
            })
            .unwrap()
        };
        // Both open before either writes (a pair at start).
        let (a, b_store) = (open(&ahead), open(&behind));
        let from_a = a.put_keyed(b("k"), b("svc"), vec![b("a")]).unwrap();
        // B (its clock behind, its id floor read before A wrote) stores above A's ids.
        let from_b = b_store.put_request(b("svc"), vec![b("b")]).unwrap();
        assert!(from_b > from_a, "{from_b} after {from_a}");
        // The key A stored is known to B: the same id, nothing stored.
        assert_eq!(
            b_store.put_keyed(b("k"), b("svc"), vec![b("b")]).unwrap(),
            from_a
        );
        let pending: Vec<Id> = b_store
            .pending(None, 10)
            .unwrap()
            .iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(pending, vec![from_a, from_b]);
        // And A, whose generator has not seen B's id, stores above it too.
        let again = a.put_request(b("svc"), vec![b("a2")]).unwrap();
        assert!(again > from_b);
    }
}
