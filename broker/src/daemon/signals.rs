//! Signals: SIGTERM/SIGINT drain the broker (a second one stops it at once), SIGHUP reloads
//! the configuration.

use tokio::sync::mpsc;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use super::logging::FilterHandle;
use super::systemd::{notify, NotifyState};
use std::sync::Arc;

use crate::config::{ConfigSource, Settings};
use crate::security::AuthorizedKeys;
use crate::shell::Control;

/// SIGTERM/SIGINT: drain (a second one stops at once). SIGHUP: reload the configuration
/// and, with CURVE, the authorized keys.
pub async fn handle(
    source: ConfigSource,
    mut settings: Settings,
    control: mpsc::Sender<Control>,
    filter: FilterHandle,
    keys: Option<Arc<AuthorizedKeys>>,
    mut titanic: Option<(
        tokio::sync::oneshot::Sender<()>,
        Option<tokio::task::JoinHandle<()>>,
    )>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        error!("Cannot install signal handlers");
        return;
    };
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = hup.recv() => {
                reload(&source, &mut settings, &control, &filter, keys.as_deref()).await;
                continue;
            }
        }
        if stopping {
            info!("Second signal: stopping without waiting for in-flight requests");
            let _ = control.send(Control::Stop).await;
            continue;
        }
        stopping = true;
        info!(timeout = ?settings.shutdown.drain_timeout, "Shutting down: draining");
        notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
        if settings.ha.is_some() {
            // First of all, so the peer can take over while Titanic and the drain finish.
            let _ = control.send(Control::LeavePair).await;
        }
        if let Some((stop, task)) = titanic.take() {
            // Titanic first: it stops taking requests, finishes the ones it holds and
            // disconnects its workers while the broker still routes their replies.
            info!("Stopping Titanic");
            let _ = stop.send(());
            if let Some(task) = task {
                let interrupted = tokio::select! {
                    _ = task => false,
                    _ = term.recv() => true,
                    _ = int.recv() => true,
                };
                if interrupted {
                    info!("Second signal: stopping without waiting for in-flight requests");
                    let _ = control.send(Control::Stop).await;
                    continue;
                }
            }
        }
        let timeout = settings.shutdown.drain_timeout;
        let _ = control.send(Control::Drain { timeout }).await;
    }
}

/// Re-reads the file, applies what can change live and logs what needs a restart; with
/// CURVE, re-reads the authorized keys and has the loop apply them.
async fn reload(
    source: &ConfigSource,
    settings: &mut Settings,
    control: &mpsc::Sender<Control>,
    filter: &FilterHandle,
    keys: Option<&AuthorizedKeys>,
) {
    notify(&[NotifyState::Reloading]);
    info!("SIGHUP: reloading the configuration");
    let new = match source.load() {
        Ok(new) => new,
        Err(error) => {
            error!(%error, "Reload failed; keeping the running configuration");
            notify(&[NotifyState::Ready]);
            return;
        }
    };
    if std::env::var_os("RUST_LOG").is_some() {
        if new.log.level != settings.log.level {
            warn!("RUST_LOG is set; log.level change ignored");
        }
    } else if let Err(error) = filter.reload(EnvFilter::new(&new.log.level)) {
        warn!(%error, "Cannot change the log filter");
    } else {
        info!(filter = %new.log.level, "Log filter applied");
    }
    let _ = control.send(Control::Reconfigure(new.core())).await;
    if let (Some(keys), Some(dir)) = (keys, &new.security.authorized_keys) {
        match keys.reload(dir) {
            Ok(summary) => {
                info!(%summary, dir = %dir.display(), "Authorized keys reloaded");
                let _ = control.send(Control::KeysReloaded).await;
            }
            Err(error) => error!(%error, "Authorized keys not reloaded; the keys in force stay"),
        }
    }
    for key in settings.restart_needed(&new) {
        warn!(key, "Changed setting needs a restart to apply");
    }
    // What needs a restart keeps running with the old value until then.
    *settings = new.live_part_over(settings);
    notify(&[NotifyState::Ready]);
}
