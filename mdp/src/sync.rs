//! The one lock helper of the crates above `domo-zmtp`: take a [`Mutex`] even if a thread
//! panicked while holding it.
//!
//! Every user in this workspace keeps plain data behind its mutexes (queues, metrics handles,
//! slots that are assigned or cloned whole), so a panic elsewhere cannot leave that data
//! half-updated in a way that matters; refusing to go on would turn one bug into a stuck
//! process. `domo-zmtp` sits below this crate and has a private copy of the same helper.

use std::sync::{Mutex, MutexGuard, PoisonError};

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
