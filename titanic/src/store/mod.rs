//! The Titanic store: a small synchronous interface, durable on return.
//!
//! Design: every call blocks until its effect is durable (for [`RedbStore`](redb::RedbStore),
//! until the group commit that carries it has been fsynced), so the service layer can answer
//! `200` right after a call returns. The store does not dispatch, retry or time out requests;
//! it only keeps them. Calls are meant for a blocking thread, not an async task.

pub mod memory;
pub mod redb;

use bytes::Bytes;

use crate::error::Result;
use crate::id::Id;
use crate::record::{Reply, Request};

/// What the store knows about an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Stored and not answered yet.
    Pending,
    /// Answered: the stored reply (kept until the request is closed or expires).
    Done(Reply),
    /// Never stored, closed, or expired.
    Unknown,
}

/// Counts for metrics and health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Requests without a reply.
    pub pending: u64,
    /// Requests with a reply, not closed yet.
    pub done: u64,
    /// Encoded bytes of all live records (what [`Limits::max_bytes`] limits).
    pub live_bytes: u64,
    /// Size of the store file (its high-water mark: freed pages are reused, not returned).
    pub file_bytes: u64,
    /// Successful write commits since the store was opened (for [`RedbStore`](redb::RedbStore)
    /// each is one fsync; writes divided by commits is the mean group-commit size).
    pub commits: u64,
}

/// Limits on what the store accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum encoded bytes of live records. A request that would go past it is refused with
    /// [`crate::Error::StoreFull`]. Replies and closes are always accepted: refusing a reply
    /// would keep its request pending (and stored) forever, and closing frees space.
    pub max_bytes: u64,
}

impl Default for Limits {
    /// 1 GiB of live records.
    fn default() -> Self {
        Self { max_bytes: 1 << 30 }
    }
}

/// A durable store of Titanic requests and replies.
///
/// Ids come from the store and increase in commit order (see [`crate::id`]), so
/// [`Store::pending`] is FIFO and a cursor never misses a later request.
pub trait Store: Send + Sync {
    /// Stores a new request for `service` and returns its id once it is durable.
    ///
    /// # Errors
    ///
    /// [`crate::Error::StoreFull`] past the limit; a write failure otherwise.
    fn put_request(&self, service: Bytes, body: Vec<Bytes>) -> Result<Id>;

    /// Stores the reply for `id` and marks it done, atomically.
    ///
    /// The first reply wins: completing a done request keeps the stored reply. Completing an
    /// unknown (closed or expired) id stores nothing and is not an error.
    ///
    /// # Errors
    ///
    /// A write failure.
    fn complete(&self, id: Id, reply: Vec<Bytes>) -> Result<()>;

    /// Whether `id` is pending, done (with its reply) or unknown. Never deletes anything.
    ///
    /// # Errors
    ///
    /// A read failure or a corrupt record.
    fn get(&self, id: Id) -> Result<Lookup>;

    /// Forgets `id` and its reply; succeeds for unknown ids too.
    ///
    /// # Errors
    ///
    /// A write failure.
    fn close(&self, id: Id) -> Result<()>;

    /// Up to `limit` pending requests with ids greater than `after`, oldest first.
    ///
    /// # Errors
    ///
    /// A read failure or a corrupt record.
    fn pending(&self, after: Option<Id>, limit: usize) -> Result<Vec<(Id, Request)>>;

    /// Deletes every request (pending or done) created more than `older_than_millis` ago, with
    /// its reply, and returns how many requests were deleted.
    ///
    /// # Errors
    ///
    /// A write failure.
    fn expire(&self, older_than_millis: u64) -> Result<usize>;

    /// Current counts and sizes.
    ///
    /// # Errors
    ///
    /// A read failure.
    fn stats(&self) -> Result<Stats>;

    /// Whether the store takes writes now, for health checks (`/readyz`). The default says
    /// yes.
    ///
    /// # Errors
    ///
    /// While writes are refused after a failed write (disk full or failing), the error of
    /// that write ([`crate::Error::is_write_failure`]). [`RedbStore`](redb::RedbStore) reopens
    /// itself and is `Ok` again once it takes writes.
    fn check_writes(&self) -> Result<()> {
        Ok(())
    }
}

/// The encoded size the limit charges for a request (the same for every store).
pub(crate) fn request_size(r: &Request) -> u64 {
    crate::record::encode_request(r).len() as u64
}

#[cfg(test)]
pub(crate) mod contract;
