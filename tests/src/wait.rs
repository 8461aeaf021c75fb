//! Bounded waits: look again every few milliseconds until a condition holds, and fail with a
//! message saying what never happened. Every wait in the tests goes through these.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long the waits sleep between two looks.
pub const POLL: Duration = Duration::from_millis(10);

/// Calls `check` until it returns `Some`, sleeping [`POLL`] between calls, and returns that
/// value. Panics with `what` if `within` passes first. `check` is called at least once, and
/// may itself panic when it sees something that must never happen.
#[track_caller]
pub fn eventually<T>(within: Duration, what: impl Display, check: impl FnMut() -> Option<T>) -> T {
    match poll_until(within, check) {
        Some(value) => value,
        None => panic!("{what} (waited {within:?})"),
    }
}

/// [`eventually`] without the panic: `None` if `within` passed first. For a failure message
/// that needs what is known only once the time is up (a process log, the last state seen).
pub fn poll_until<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// [`eventually`] for async tests: `check` returns a future, the sleep is tokio's.
pub async fn eventually_async<T, F>(
    within: Duration,
    what: impl Display,
    check: impl FnMut() -> F,
) -> T
where
    F: Future<Output = Option<T>>,
{
    match poll_until_async(within, check).await {
        Some(value) => value,
        None => panic!("{what} (waited {within:?})"),
    }
}

/// [`poll_until`] for async tests.
pub async fn poll_until_async<T, F>(within: Duration, mut check: impl FnMut() -> F) -> Option<T>
where
    F: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}
