//! The writes a store's callers queue for its writer thread, and how their outcomes reach
//! them (shared by the redb and the log engines).

use std::sync::mpsc::SyncSender;

use bytes::Bytes;
use tokio::sync::oneshot;

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
