//! The writes a store's callers queue for its writer thread, and how their outcomes reach
//! them (shared by the redb and the log engines).

use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::queue::{Queue, Refused, Waited};
use super::Durable;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::record::Request;

/// What a queued write does.
pub(crate) enum Kind {
    /// A request, encoded by its caller (off the writer thread).
    Put {
        request: Request,
        encoded: Vec<u8>,
        /// Its idempotency key, if any.
        key: Option<Bytes>,
    },
    Complete {
        id: Id,
        frames: Vec<Bytes>,
    },
    Close {
        id: Id,
    },
    Expire {
        older_than_millis: u64,
    },
}

/// Where one caller waits for its outcome: a blocked thread or an async task.
pub(crate) enum Waiter<T> {
    Blocking(SyncSender<Result<T>>),
    Async(oneshot::Sender<Result<T>>),
}

impl<T> Waiter<T> {
    /// Hands `r` over; false if the caller no longer listens.
    pub(crate) fn send(self, r: Result<T>) -> bool {
        match self {
            Self::Blocking(tx) => tx.send(r).is_ok(),
            Self::Async(tx) => tx.send(r).is_ok(),
        }
    }
}

/// Where a queued write's outcome goes.
pub(crate) enum Answer {
    Id(Waiter<Id>),
    Unit(Waiter<()>),
    Count(Waiter<usize>),
}

/// A value an op produced, sent once its batch is durable.
pub(crate) enum Value {
    Id(Id),
    Unit,
    Count(usize),
}

/// One queued write.
pub(crate) struct Op {
    pub(crate) kind: Kind,
    pub(crate) answer: Answer,
}

impl Answer {
    pub(crate) fn send(self, r: Result<Value>) {
        // A caller that gave up (its thread or task ended) no longer listens; nothing to do.
        let delivered = match (self, r) {
            (Self::Id(tx), Ok(Value::Id(id))) => tx.send(Ok(id)),
            (Self::Id(tx), Err(e)) => tx.send(Err(e)),
            (Self::Unit(tx), Ok(_)) => tx.send(Ok(())),
            (Self::Unit(tx), Err(e)) => tx.send(Err(e)),
            (Self::Count(tx), Ok(Value::Count(n))) => tx.send(Ok(n)),
            (Self::Count(tx), Err(e)) => tx.send(Err(e)),
            (Self::Id(tx), Ok(_)) => tx.send(Err(Error::Unavailable("no id".into()))),
            (Self::Count(tx), Ok(_)) => tx.send(Err(Error::Unavailable("no count".into()))),
        };
        if !delivered {
            tracing::debug!("Titanic store caller left before its answer");
        }
    }
}

/// Answers every op of a failed batch with `e` (an op refused on its own keeps its error).
pub(crate) fn fail_all(results: impl Iterator<Item = (Answer, Result<Value>)>, e: &Error) {
    for (answer, r) in results {
        // An op already refused on its own (store full) keeps its own error.
        let r = match r {
            Err(own @ Error::StoreFull { .. }) => Err(own),
            _ => Err(e.duplicate()),
        };
        answer.send(r);
    }
}

/// Queues a write and blocks the calling thread until it is durable (or refused).
pub(crate) fn submit<T>(
    queue: &Queue<Op>,
    kind: Kind,
    answer: impl FnOnce(Waiter<T>) -> Answer,
) -> Result<T> {
    let (done, wait) = mpsc::sync_channel(1);
    queue
        .push(Op {
            kind,
            answer: answer(Waiter::Blocking(done)),
        })
        .map_err(|_| Error::Closed)?;
    wait.recv().map_err(|_| Error::Closed)?
}

/// Queues a write without blocking; the returned future resolves once it is durable. On a
/// full queue the op waits for room on a blocking thread (backpressure without blocking the
/// caller's runtime thread).
pub(crate) fn submit_async<T: Send + 'static>(
    queue: &Arc<Queue<Op>>,
    kind: Kind,
    answer: impl FnOnce(Waiter<T>) -> Answer,
) -> Durable<T> {
    let (done, wait) = oneshot::channel();
    let op = Op {
        kind,
        answer: answer(Waiter::Async(done)),
    };
    match queue.try_push(op) {
        Ok(()) => {}
        Err(Refused::Closed(_)) => return Durable::ready(Err(Error::Closed)),
        Err(Refused::Full(op)) => {
            let queue = queue.clone();
            // Dropping a refused op drops its answer: the future then says Closed.
            let push = move || drop(queue.push(op));
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(push)),
                Err(_) => push(),
            }
        }
    }
    Durable::waiting(wait)
}

/// A writer's wait while its store refuses writes after a failed one: until `retry_at`, the
/// next attempt to repair it, every op that arrives is answered at once with `refusal()`.
/// False once the queue is closed and empty (the writer then stops).
pub(crate) fn refuse_until(
    queue: &Queue<Op>,
    retry_at: Instant,
    batch: &mut Vec<Op>,
    max_batch: usize,
    refusal: impl Fn() -> Error,
) -> bool {
    let now = Instant::now();
    if now >= retry_at {
        return true;
    }
    match queue.wait(Some(retry_at - now)) {
        Waited::Ready => {
            queue.take(batch, max_batch, super::queue::Linger::default(), false);
            batch
                .drain(..)
                .for_each(|op| op.answer.send(Err(refusal())));
            true
        }
        Waited::TimedOut => true,
        Waited::Closed => false,
    }
}
