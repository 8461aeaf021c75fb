//! [`WorkerStatus`]: what the sessions learned about their brokers that the application
//! should know while the worker serves, for now a handshake the broker keeps refusing.
//!
//! Each session owns one slot ([`Reporter`]) of a shared `watch` value; [`WorkerStatus`] reads
//! them all and can wait for a change.

use std::sync::Arc;

use domo_zmtp::HandshakeError;
use tokio::sync::watch;

use crate::error::Error;

/// A session's failed handshake: the endpoint and the transport's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) endpoint: String,
    pub(crate) error: HandshakeError,
}

/// The slots, one per session.
type Slots = Vec<Option<Refusal>>;

/// The health of a worker's sessions, from [`crate::Worker::status`]: cheap to clone, and
/// readable while [`crate::Worker::serve`] runs.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(worker: domo_worker::Worker) {
/// let mut status = worker.status();
/// tokio::spawn(async move {
///     while status.changed().await {
///         if let Some(error) = status.handshake_error() {
///             eprintln!("{error}"); // handshake failed: not authorized (tcp://...)
///         }
///     }
/// });
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct WorkerStatus {
    rx: watch::Receiver<Slots>,
}

impl WorkerStatus {
    /// Why a session cannot register, if its broker refuses the handshake (a CURVE key it
    /// does not allow, a wrong server key, another security mechanism), as an
    /// [`crate::ErrorKind::Handshake`] error; `None` while every session's broker accepts
    /// it or has not answered yet. A session's refusal is cleared by the first message from
    /// its broker. The session keeps retrying meanwhile, with its backoff.
    pub fn handshake_error(&self) -> Option<Error> {
        let slots = self.rx.borrow();
        let refusal = slots.iter().flatten().next()?;
        Some(Error::handshake(&refusal.endpoint, refusal.error.clone()))
    }

    /// Waits until the status changes; false once the worker is gone (then it never will).
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
}

/// The sessions' side: creates the reporters and the status.
#[derive(Debug, Clone)]
pub(crate) struct Board {
    tx: Arc<watch::Sender<Slots>>,
}

impl Board {
    /// A board for `sessions` sessions.
    pub(crate) fn new(sessions: usize) -> Self {
        let (tx, _) = watch::channel(vec![None; sessions]);
        Self { tx: Arc::new(tx) }
    }

    /// The reporter of session `slot`.
    pub(crate) fn reporter(&self, slot: usize) -> Reporter {
        Reporter {
            tx: self.tx.clone(),
            slot,
        }
    }

    pub(crate) fn status(&self) -> WorkerStatus {
        WorkerStatus {
            rx: self.tx.subscribe(),
        }
    }
}

/// One session's slot.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    tx: Arc<watch::Sender<Slots>>,
    slot: usize,
}

impl Reporter {
    /// Sets the slot; true if that changed it (so the caller logs only news).
    pub(crate) fn set(&self, refusal: Option<Refusal>) -> bool {
        self.tx
            .send_if_modified(|slots| match slots.get_mut(self.slot) {
                Some(current) if *current != refusal => {
                    *current = refusal;
                    true
                }
                _ => false,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[tokio::test]
    async fn a_refusal_shows_until_cleared_and_wakes_the_status() {
        let board = Board::new(2);
        let mut status = board.status();
        let second = board.reporter(1);
        assert!(status.handshake_error().is_none());
        let refusal = Refusal {
            endpoint: "tcp://b:1".into(),
            error: HandshakeError::NotAuthorized,
        };
        assert!(second.set(Some(refusal.clone())));
        assert!(!second.set(Some(refusal)), "no news, no change");
        assert!(status.changed().await);
        let error = status.handshake_error().expect("refused");
        assert_eq!(error.kind(), ErrorKind::Handshake);
        assert_eq!(
            error.to_string(),
            "handshake failed: not authorized (tcp://b:1)"
        );
        assert!(second.set(None));
        assert!(status.changed().await);
        assert!(status.handshake_error().is_none());
        drop((board, second));
        assert!(!status.changed().await, "the worker is gone");
    }
}
