//! What health checks and the service manager see of the running loop: when it last woke,
//! whether it is ready or draining, and the figures for systemd's `STATUS=`.
//!
//! Design: plain atomics written by the loop and read by anyone, so `/healthz`, `/readyz` and
//! the watchdog never wait on the loop (a wedged loop shows as a stale tick, not a hang).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use crate::core::ha::{Conflict, HaStatus, Role, State};
use crate::core::Broker;

/// State shared with health checks and the service manager; written only by the loop.
#[derive(Debug, Default)]
pub struct Health {
    /// Milliseconds since [`Health::epoch`] at the loop's last wake-up.
    last_tick_ms: AtomicU64,
    epoch: std::sync::OnceLock<tokio::time::Instant>,
    ready: AtomicBool,
    draining: AtomicBool,
    services: AtomicU64,
    workers: AtomicU64,
    queued: AtomicU64,
    ha: HaHealth,
}

/// The pair's state as last seen by the loop; 0 means none/unknown in every field.
#[derive(Debug, Default)]
struct HaHealth {
    /// 1 primary, 2 backup.
    role: AtomicU8,
    /// Binary Star state number.
    state: AtomicU8,
    /// The peer's last state number.
    peer: AtomicU8,
    peer_up: AtomicBool,
    term: AtomicU64,
    /// Unresolved conflict: index in [`Conflict::ALL`] plus one.
    conflict: AtomicU8,
    resyncing: AtomicBool,
}

fn state_name(n: u8) -> &'static str {
    State::ALL
        .get(usize::from(n).wrapping_sub(1))
        .map_or("unknown", |s| s.as_str())
}

impl Health {
    fn epoch(&self) -> tokio::time::Instant {
        *self.epoch.get_or_init(tokio::time::Instant::now)
    }

    /// Records a wake-up of the loop and the figures for `STATUS=`.
    pub(crate) fn tick(&self, core: &Broker) {
        let ms = self.epoch().elapsed().as_millis();
        self.last_tick_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
        let s = core.stats();
        self.services.store(s.services as u64, Ordering::Relaxed);
        self.workers
            .store((s.workers_idle + s.workers_busy) as u64, Ordering::Relaxed);
        self.queued
            .store(s.queued_requests as u64, Ordering::Relaxed);
        if let Some(ha) = core.ha_status() {
            self.record_ha(&ha);
        }
    }

    fn record_ha(&self, ha: &HaStatus) {
        let h = &self.ha;
        h.state.store(ha.state as u8, Ordering::Relaxed);
        h.peer
            .store(ha.peer.map_or(0, |p| p.state as u8), Ordering::Relaxed);
        h.peer_up.store(ha.peer_up, Ordering::Relaxed);
        h.term.store(ha.term, Ordering::Relaxed);
        let conflict = ha
            .conflict
            .and_then(|c| Conflict::ALL.iter().position(|k| *k == c))
            .map_or(0, |i| i as u8 + 1);
        h.conflict.store(conflict, Ordering::Relaxed);
        h.resyncing.store(ha.resyncing, Ordering::Relaxed);
    }

    /// Records that the broker is one of a pair, with this role.
    pub(crate) fn set_ha_role(&self, role: Role) {
        let n = match role {
            Role::Primary => 1,
            Role::Backup => 2,
        };
        self.ha.role.store(n, Ordering::Relaxed);
    }

    /// One line on the pair (`ha: role=primary state=active term=1 peer=passive peer_up=1`),
    /// or `None` on a lone broker.
    pub fn ha_line(&self) -> Option<String> {
        let h = &self.ha;
        let role = match h.role.load(Ordering::Relaxed) {
            1 => "primary",
            2 => "backup",
            _ => return None,
        };
        let conflict = match h.conflict.load(Ordering::Relaxed) {
            0 => String::new(),
            n => Conflict::ALL
                .get(usize::from(n) - 1)
                .map_or(String::new(), |c| format!(" conflict={}", c.as_str())),
        };
        let resync = if h.resyncing.load(Ordering::Relaxed) {
            " resyncing=1"
        } else {
            ""
        };
        Some(format!(
            "ha: role={role} state={} term={} peer={} peer_up={}{conflict}{resync}",
            state_name(h.state.load(Ordering::Relaxed)),
            h.term.load(Ordering::Relaxed),
            state_name(h.peer.load(Ordering::Relaxed)),
            u8::from(h.peer_up.load(Ordering::Relaxed)),
        ))
    }

    /// Time since the loop last woke up.
    pub fn since_tick(&self) -> Duration {
        let last = Duration::from_millis(self.last_tick_ms.load(Ordering::Relaxed));
        self.epoch().elapsed().saturating_sub(last)
    }

    /// A counter that changes whenever the loop wakes (for the watchdog).
    pub fn tick_stamp(&self) -> u64 {
        self.last_tick_ms.load(Ordering::Relaxed)
    }

    /// `Ok` when every socket is bound and no drain is in progress; otherwise why not.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Relaxed) {
            Err("draining")
        } else if !self.ready.load(Ordering::Relaxed) {
            Err("not serving yet")
        } else {
            match self.ha.conflict.load(Ordering::Relaxed) {
                1 => Err("Binary Star conflict: both brokers active (resolving)"),
                2 => Err("Binary Star conflict: both brokers passive (resolving)"),
                3 => Err("Binary Star misconfiguration: both brokers have the same [ha] role"),
                4 => Err("Binary Star misconfiguration: [ha] peer is this broker itself"),
                _ => Ok(()),
            }
        }
    }

    /// Marks a drain in progress: `/readyz` fails from now on.
    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Marks the broker ready (called once every socket is bound).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    /// One line for the service manager: services, workers, queued requests.
    pub fn status(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let state = if self.draining.load(Ordering::Relaxed) {
            "draining; "
        } else {
            ""
        };
        let ha = match self.ha.role.load(Ordering::Relaxed) {
            0 => String::new(),
            _ => format!("{}; ", state_name(self.ha.state.load(Ordering::Relaxed))),
        };
        format!(
            "{state}{ha}{} services, {} workers, {} queued",
            get(&self.services),
            get(&self.workers),
            get(&self.queued)
        )
    }
}
