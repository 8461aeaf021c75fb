//! systemd's notify protocol: READY, STATUS, the watchdog, STOPPING and RELOADING (all no-ops
//! without `NOTIFY_SOCKET`).

use std::sync::Arc;
use std::time::Duration;

pub use sd_notify::NotifyState;
use tracing::{info, warn};

use crate::health::Health;

/// Tells systemd (when `NOTIFY_SOCKET` is set; a no-op otherwise) that the broker is ready,
/// then keeps `STATUS=` current and pings the watchdog, if one is enabled, only while the
/// loop keeps waking up.
pub async fn keep_notified(health: Arc<Health>) {
    notify(&[NotifyState::Ready, NotifyState::Status(&health.status())]);
    let watchdog = sd_notify::watchdog_enabled();
    if let Some(period) = watchdog {
        info!(period = ?period, "systemd watchdog enabled");
    }
    let every = watchdog.map_or(Duration::from_secs(5), |p| {
        (p / 2).min(Duration::from_secs(5))
    });
    let mut last_stamp = health.tick_stamp();
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let stamp = health.tick_stamp();
        let status = health.status();
        if watchdog.is_some() && stamp != last_stamp {
            notify(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
        } else {
            if watchdog.is_some() {
                warn!("Main loop has not ticked; withholding the watchdog ping");
            }
            notify(&[NotifyState::Status(&status)]);
        }
        last_stamp = stamp;
    }
}

/// Sends `states` to systemd; a failure is logged, never fatal.
pub fn notify(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        warn!(%error, "sd_notify failed");
    }
}
