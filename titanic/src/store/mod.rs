//! The Titanic store: a small synchronous interface, durable on return.
//!
//! Design: every call blocks until its effect is durable (for [`RedbStore`](redb::RedbStore),
//! until the group commit that carries it has been fsynced), so the service layer can answer
//! `200` right after a call returns. The store does not dispatch, retry or time out requests;
//! it only keeps them. Calls are meant for a blocking thread, not an async task.
//!
//! The writes also come as `*_async` methods, which queue the write and return a [`Durable`]
//! future instead of blocking: async code (the Titanic services, the dispatcher) awaits the
//! group commit without holding a thread, so a commit can carry as many submissions as are
//! waiting, and the writer's answer wakes the task directly (no blocking thread to wake and
//! switch back from). A store whose writes never block long may keep the defaults, which
//! run the blocking call inline.

pub mod log;
pub mod memory;
pub(crate) mod op;
pub mod postgres;
pub(crate) mod queue;
pub(crate) mod recovery;
pub mod redb;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
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

/// A store write in progress: resolves once it is durable, or failed.
#[derive(Debug)]
#[must_use = "a write is acknowledged only once its Durable resolves"]
pub struct Durable<T>(Inner<T>);

#[derive(Debug)]
enum Inner<T> {
    Ready(Option<Result<T>>),
    Waiting(oneshot::Receiver<Result<T>>),
}

impl<T> Durable<T> {
    /// An outcome known already.
    pub fn ready(r: Result<T>) -> Self {
        Self(Inner::Ready(Some(r)))
    }

    /// An outcome a writer will send; a dropped sender resolves to [`Error::Closed`].
    pub(crate) fn waiting(rx: oneshot::Receiver<Result<T>>) -> Self {
        Self(Inner::Waiting(rx))
    }
}

// Neither variant is structurally pinned: an Option and a oneshot receiver.
impl<T> Unpin for Durable<T> {}

impl<T> Future for Durable<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut self.get_mut().0;
        match this {
            Inner::Ready(r) => Poll::Ready(r.take().unwrap_or(Err(Error::Closed))),
            Inner::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(Error::Closed))),
        }
    }
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

    /// [`Store::put_request`] without blocking: the future resolves once the request is
    /// durable. The default runs the blocking call inline; a store whose writes wait for a
    /// disk overrides it.
    fn put_request_async(&self, service: Bytes, body: Vec<Bytes>) -> Durable<Id> {
        Durable::ready(self.put_request(service, body))
    }

    /// [`Store::put_request`] under an idempotency key (docs/extensions.md section 6): if a
    /// request stored under `key` is still in the store (pending or done, not closed or
    /// expired), returns its id and stores nothing; otherwise stores the request as
    /// [`Store::put_request`] does, under `key`. Two submissions with the same key, even at
    /// the same moment (and, on a shared database, through different brokers), get one id.
    /// The key is not checked against the request: it names it.
    ///
    /// # Errors
    ///
    /// As [`Store::put_request`].
    fn put_keyed(&self, key: Bytes, service: Bytes, body: Vec<Bytes>) -> Result<Id>;

    /// [`Store::put_keyed`] without blocking (see [`Store::put_request_async`]).
    fn put_keyed_async(&self, key: Bytes, service: Bytes, body: Vec<Bytes>) -> Durable<Id> {
        Durable::ready(self.put_keyed(key, service, body))
    }

    /// Stores the reply for `id` and marks it done, atomically.
    ///
    /// The first reply wins: completing a done request keeps the stored reply. Completing an
    /// unknown (closed or expired) id stores nothing and is not an error.
    ///
    /// # Errors
    ///
    /// A write failure.
    fn complete(&self, id: Id, reply: Vec<Bytes>) -> Result<()>;

    /// [`Store::complete`] without blocking (see [`Store::put_request_async`]).
    fn complete_async(&self, id: Id, reply: Vec<Bytes>) -> Durable<()> {
        Durable::ready(self.complete(id, reply))
    }

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

    /// [`Store::close`] without blocking (see [`Store::put_request_async`]).
    fn close_async(&self, id: Id) -> Durable<()> {
        Durable::ready(self.close(id))
    }

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

    /// A line about the store for `/readyz`, when there is more to say than the file (the
    /// PostgreSQL store names itself and its synchronous standbys). Must not block.
    fn describe(&self) -> Option<String> {
        None
    }
}

/// The encoded size the limit charges for a request (the same for every store).
pub(crate) fn request_size(r: &Request) -> u64 {
    crate::record::encode_request(r).len() as u64
}

#[cfg(test)]
pub(crate) mod contract;
