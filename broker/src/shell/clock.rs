//! The shell's clock.

/// The core's clock, from tokio so paused-time tests control it.
pub(crate) fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
