//! Bounded waits: look again every few milliseconds until a condition holds, and fail with a
//! message saying what never happened. The waits of the kit and of the tests go through these
//! instead of each writing its own deadline loop.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long the waits sleep between two looks.
pub const POLL: Duration = Duration::from_millis(10);

/// What a check passed to [`eventually`] returns: `Some` or `Ok` when it is done, with the
/// value to return; `None` or `Err` to look again (the last error goes into the message if the
/// time runs out).
pub trait Outcome {
    /// The value once done.
    type Value;

    /// The value, or the reason (if any) to look again.
    fn into_result(self) -> Result<Self::Value, Option<String>>;
}

impl<T> Outcome for Option<T> {
    type Value = T;

    fn into_result(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Outcome for Result<T, E> {
    type Value = T;

    fn into_result(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(e.to_string()))
    }
}

/// Calls `check` until it returns `Some` or `Ok`, sleeping [`POLL`] between calls, and returns
/// the value. Panics with `what` (and the last error) if `within` passes first. `check` runs
/// at least once, and may itself panic on something that must never happen.
#[track_caller]
pub fn eventually<C: Outcome>(
    within: Duration,
    what: impl Display,
    mut check: impl FnMut() -> C,
) -> C::Value {
    let deadline = Instant::now() + within;
    loop {
        match check().into_result() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => timed_out(&what, within, last),
            Err(_) => std::thread::sleep(POLL),
        }
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
pub async fn eventually_async<C, F>(
    within: Duration,
    what: impl Display,
    mut check: impl FnMut() -> F,
) -> C::Value
where
    C: Outcome,
    F: Future<Output = C>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await.into_result() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => timed_out(&what, within, last),
            Err(_) => tokio::time::sleep(POLL).await,
        }
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

#[track_caller]
fn timed_out(what: &dyn Display, within: Duration, last: Option<String>) -> ! {
    match last {
        Some(error) => panic!("{what}: {error} (waited {within:?})"),
        None => panic!("{what} (waited {within:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventually_returns_the_first_value_found() {
        let mut calls = 0;
        let value = eventually(Duration::from_secs(10), "never 3", || {
            calls += 1;
            (calls == 3).then_some(calls * 10)
        });
        assert_eq!((value, calls), (30, 3));
    }

    #[test]
    #[should_panic(expected = "no answer: refused (waited 20ms)")]
    fn eventually_fails_with_what_and_the_last_error() {
        eventually(Duration::from_millis(20), "no answer", || {
            Err::<(), _>("refused")
        });
    }

    #[test]
    fn poll_until_looks_once_more_at_the_deadline_then_gives_up() {
        let started = Instant::now();
        let mut calls = 0;
        let found = poll_until(Duration::from_millis(30), || {
            calls += 1;
            None::<()>
        });
        assert_eq!(found, None);
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(calls >= 2, "{calls}");
    }

    #[tokio::test]
    async fn eventually_async_awaits_each_check() {
        let mut calls = 0;
        let value = eventually_async(Duration::from_secs(10), "never 2", || {
            calls += 1;
            let n = calls;
            async move { (n == 2).then_some(n) }
        })
        .await;
        assert_eq!(value, 2);
        assert_eq!(
            poll_until_async(Duration::ZERO, || async { None::<()> }).await,
            None
        );
    }
}
