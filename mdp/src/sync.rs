//! The one lock helper of the crates above `domo-zmtp`: take a [`Mutex`] even if a thread
//! panicked while holding it. Also [`CatchUnwind`], which turns a future's panic into an
//! error (the worker SDK around handlers, the broker around its in-process services).
//!
//! Every user in this workspace keeps plain data behind its mutexes (queues, metrics handles,
//! slots that are assigned or cloned whole), so a panic elsewhere cannot leave that data
//! half-updated in a way that matters; refusing to go on would turn one bug into a stuck
//! process. `domo-zmtp` sits below this crate and has a private copy of the same helper.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

/// [`Mutex::lock`] that ignores poisoning.
pub trait LockExt<T: ?Sized> {
    /// Locks, taking the guard out of a [`PoisonError`] if the mutex is poisoned.
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockExt<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A future whose panic becomes `Err(())` (what `futures::FutureExt::catch_unwind` does),
/// so one failing request handler does not take its task, or the caller's, down with it.
pub struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> CatchUnwind<F> {
    /// Wraps `future`.
    pub fn new(future: F) -> Self {
        Self(Box::pin(future))
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_mutex_is_still_locked() {
        let m = Mutex::new(1);
        let poisoned = std::panic::catch_unwind(|| {
            let _g = m.lock_unpoisoned();
            panic!("poison it");
        });
        assert!(poisoned.is_err());
        assert!(m.is_poisoned());
        *m.lock_unpoisoned() += 1;
        assert_eq!(*m.lock_unpoisoned(), 2);
    }
}
