//! The disk topics in PostgreSQL (`[topics] store = "postgres"`, issue #18): the same ops and
//! the same encoded records as `topics.redb`, one transaction per batch of the writer.
//!
//! # Schema (version 1, created at the first open)
//!
//! ```sql
//! CREATE TABLE topics_meta (key text PRIMARY KEY, value text NOT NULL);
//!   -- ('schema_version', '1')
//! CREATE TABLE topics_list (name bytea PRIMARY KEY, meta bytea NOT NULL);
//!   -- meta: stream, retention and next offset, postcard-encoded as in topics.redb
//! CREATE TABLE topics_messages (
//!     stream   bigint NOT NULL,   -- the topic's stream id (its 64 bits)
//!     "offset" bigint NOT NULL,
//!     record   bytea NOT NULL,    -- when published and the frames after the topic
//!     PRIMARY KEY (stream, "offset")
//! );
//! ```
//!
//! One broker per database (or schema): the writer's connection holds a session advisory
//! lock named after the schema, and a second broker's store does not open ("another broker
//! keeps its topics here"). Stream ids and offsets are handed out by the broker that owns
//! them, so two brokers must not share the tables.
//!
//! A failed commit (the connection lost, the database failing over) fails its batch, which
//! the topics task answers as not stored; the next batch connects again (a multi-host URL
//! with `target_session_attrs=read-write` follows the new primary) and takes the lock again.

use std::time::Duration;

use bytes::Bytes;
use tokio_postgres::{Client, Statement};

use super::{Backend, Change, Loaded, Meta, Record};

/// The schema this code writes.
const SCHEMA_VERSION: &str = "1";

/// A store's error with its causes (tokio-postgres says only "db error" on its own).
fn why(e: &dyn std::error::Error) -> String {
    let mut out = format!("PostgreSQL: {e}");
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

/// The connection, with its statement for messages.
struct Conn {
    client: Client,
    append: Statement,
}

/// The PostgreSQL backend of the topic store: a small runtime of its own, driven by the
/// store's writer thread.
pub(super) struct PgBackend {
    runtime: tokio::runtime::Runtime,
    connector: domo_titanic::pg::Connector,
    timeout: Duration,
    conn: Option<Conn>,
}

impl PgBackend {
    /// Connects, creates or checks the schema, and takes the database for this broker.
    pub(super) fn open(
        url: &str,
        password: Option<&str>,
        ca_file: Option<&std::path::Path>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let connector =
            domo_titanic::pg::Connector::new(url, password, ca_file, timeout, "domo-topics")?;
        let mut backend = Self {
            runtime,
            connector,
            timeout,
            conn: None,
        };
        backend.connection()?;
        Ok(backend)
    }

    /// The open connection, or a new one (schema checked, lock taken).
    fn connection(&mut self) -> Result<&Conn, String> {
        if self.conn.as_ref().is_some_and(|c| c.client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let (connector, timeout) = (&self.connector, self.timeout);
            let conn = self.runtime.block_on(async {
                tokio::time::timeout(timeout, connect(connector))
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!("PostgreSQL: no connection within {timeout:?}"))
                    })
            })?;
            self.conn = Some(conn);
        }
        self.conn
            .as_ref()
            .ok_or_else(|| "not connected".to_string())
    }
}

async fn connect(connector: &domo_titanic::pg::Connector) -> Result<Conn, String> {
    let client = connector.connect().await.map_err(|e| why(&e))?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS topics_meta (key text PRIMARY KEY, value text NOT NULL);
             CREATE TABLE IF NOT EXISTS topics_list (name bytea PRIMARY KEY, meta bytea NOT NULL);
             CREATE TABLE IF NOT EXISTS topics_messages (
                 stream bigint NOT NULL, \"offset\" bigint NOT NULL, record bytea NOT NULL,
                 PRIMARY KEY (stream, \"offset\"));
             INSERT INTO topics_meta (key, value) VALUES ('schema_version', '1')
                 ON CONFLICT (key) DO NOTHING;",
        )
        .await
        .map_err(|e| why(&e))?;
    let row = client
        .query_one(
            "SELECT (SELECT value FROM topics_meta WHERE key = 'schema_version'),
                    pg_try_advisory_lock(hashtext('domo-topics:' || current_schema())),
                    current_schema()::text",
            &[],
        )
        .await
        .map_err(|e| why(&e))?;
    let (version, locked, schema): (String, bool, String) = (row.get(0), row.get(1), row.get(2));
    if version != SCHEMA_VERSION {
        return Err(format!(
            "PostgreSQL: the topics schema is version {version}; this broker knows {SCHEMA_VERSION}"
        ));
    }
    if !locked {
        return Err(format!(
            "PostgreSQL: another broker keeps its topics in this database (schema {schema}); \
             give each broker its own database or schema"
        ));
    }
    let append = client
        .prepare(
            "INSERT INTO topics_messages (stream, \"offset\", record)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])
             ON CONFLICT (stream, \"offset\") DO UPDATE SET record = excluded.record",
        )
        .await
        .map_err(|e| why(&e))?;
    Ok(Conn { client, append })
}

/// A u64 id or offset as the bigint that keeps its 64 bits.
#[allow(clippy::cast_possible_wrap)]
fn big(v: u64) -> i64 {
    v as i64
}

#[allow(clippy::cast_sign_loss)]
fn unbig(v: i64) -> u64 {
    v as u64
}

/// Messages waiting to be inserted together.
#[derive(Default)]
struct Appends {
    streams: Vec<i64>,
    offsets: Vec<i64>,
    records: Vec<Vec<u8>>,
}

impl Appends {
    async fn flush(
        &mut self,
        tx: &tokio_postgres::Transaction<'_>,
        append: &Statement,
    ) -> Result<(), String> {
        if self.streams.is_empty() {
            return Ok(());
        }
        tx.execute(append, &[&self.streams, &self.offsets, &self.records])
            .await
            .map_err(|e| why(&e))?;
        *self = Self::default();
        Ok(())
    }
}

/// The changes in order in one transaction; consecutive messages in one statement.
async fn apply(conn: &mut Conn, changes: Vec<Change>) -> Result<(), String> {
    let Conn { client, append } = conn;
    let tx = client.transaction().await.map_err(|e| why(&e))?;
    let mut pending = Appends::default();
    for change in changes {
        if let Change::Message {
            stream,
            offset,
            record,
        } = change
        {
            pending.streams.push(big(stream));
            pending.offsets.push(big(offset));
            pending.records.push(record);
            continue;
        }
        pending.flush(&tx, append).await?;
        match change {
            Change::Meta { name, meta } => {
                let meta = postcard::to_allocvec(&meta).map_err(|e| e.to_string())?;
                tx.execute(
                    "INSERT INTO topics_list (name, meta) VALUES ($1, $2)
                     ON CONFLICT (name) DO UPDATE SET meta = excluded.meta",
                    &[&name.as_ref(), &meta],
                )
                .await
                .map_err(|e| why(&e))?;
            }
            Change::Prune { stream, below } => {
                tx.execute(
                    "DELETE FROM topics_messages WHERE stream = $1 AND \"offset\" < $2",
                    &[&big(stream), &big(below)],
                )
                .await
                .map_err(|e| why(&e))?;
            }
            Change::Forget { name, stream } => {
                tx.execute("DELETE FROM topics_list WHERE name = $1", &[&name.as_ref()])
                    .await
                    .map_err(|e| why(&e))?;
                tx.execute(
                    "DELETE FROM topics_messages WHERE stream = $1",
                    &[&big(stream)],
                )
                .await
                .map_err(|e| why(&e))?;
            }
            Change::Message { .. } => {}
        }
    }
    pending.flush(&tx, append).await?;
    tx.commit().await.map_err(|e| why(&e))
}

impl Backend for PgBackend {
    fn load(&mut self) -> Result<Vec<Loaded>, String> {
        let timeout = self.timeout;
        self.connection()?;
        let (runtime, conn) = (&self.runtime, self.conn.as_ref());
        let client = &conn.ok_or("not connected")?.client;
        runtime.block_on(async {
            let read = async {
                let mut out = Vec::new();
                let topics = client
                    .query("SELECT name, meta FROM topics_list", &[])
                    .await
                    .map_err(|e| why(&e))?;
                for row in topics {
                    let name = Bytes::from(row.get::<_, Vec<u8>>(0));
                    let meta: Meta = postcard::from_bytes(row.get::<_, &[u8]>(1))
                        .map_err(|e| format!("topic meta: {e}"))?;
                    let rows = client
                        .query(
                            "SELECT \"offset\", record FROM topics_messages
                             WHERE stream = $1 ORDER BY \"offset\"",
                            &[&big(meta.stream)],
                        )
                        .await
                        .map_err(|e| why(&e))?;
                    let mut messages = Vec::with_capacity(rows.len());
                    for row in rows {
                        let record: Record = postcard::from_bytes(row.get::<_, &[u8]>(1))
                            .map_err(|e| format!("message: {e}"))?;
                        let mut frames = Vec::with_capacity(1 + record.frames.len());
                        frames.push(name.clone());
                        frames.extend(record.frames.into_iter().map(Bytes::from));
                        messages.push((unbig(row.get(0)), record.at_ms, frames));
                    }
                    out.push(Loaded {
                        name,
                        meta,
                        messages,
                    });
                }
                Ok(out)
            };
            tokio::time::timeout(timeout * 12, read)
                .await
                .unwrap_or_else(|_| Err("PostgreSQL: loading the topics took too long".into()))
        })
    }

    fn commit(&mut self, changes: Vec<Change>) -> Result<(), String> {
        let timeout = self.timeout;
        self.connection()?;
        let Some(conn) = self.conn.as_mut() else {
            return Err("not connected".into());
        };
        let done = self.runtime.block_on(async {
            tokio::time::timeout(timeout, apply(conn, changes))
                .await
                .unwrap_or_else(|_| Err(format!("PostgreSQL: no commit within {timeout:?}")))
        });
        if done.is_err() {
            // Whatever went wrong, the next batch starts on a new connection.
            self.conn = None;
        }
        done
    }
}
