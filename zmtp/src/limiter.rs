//! Handshake rate limiting per source address.
//!
//! A CURVE handshake costs the server a key generation and three Diffie-Hellman operations,
//! and a client configured with a wrong key retries forever (libzmq every 100 ms). So an
//! address whose handshakes keep failing gets its later handshakes spaced out: after
//! [`FREE_FAILURES`] recent failures, one handshake per [`SLOT`] from that address, the
//! others waiting their turn (or refused when the wait would exceed [`MAX_WAIT`]). Failures
//! are forgotten gradually (halved every [`HALF_LIFE`]), and an address with good handshakes
//! only is never slowed, so a correct client behind the same address as a broken one still
//! gets through, at worst a slot later.
//!
//! Pure: the caller passes the time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures an address may have before its handshakes are spaced out.
pub(crate) const FREE_FAILURES: f64 = 5.0;
/// Spacing of the handshakes of an address over its allowance.
pub(crate) const SLOT: Duration = Duration::from_millis(500);
/// Longest a handshake waits for its slot; beyond it the connection is refused.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(5);
/// Failures are halved every this long.
pub(crate) const HALF_LIFE: Duration = Duration::from_secs(60);
/// Most addresses tracked; past it the least troublesome are forgotten first.
const MAX_ADDRESSES: usize = 65_536;

/// What to do with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Handshake now.
    Now,
    /// Handshake after this wait.
    After(Duration),
    /// Refuse: too many waiting already.
    Refuse,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: f64,
    updated: Instant,
    next_slot: Instant,
}

impl Entry {
    fn decay(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.updated).as_secs_f64();
        self.failures *= 0.5f64.powf(dt / HALF_LIFE.as_secs_f64());
        self.updated = now;
    }
}

/// Recent handshake failures per address.
#[derive(Debug, Default)]
pub(crate) struct Limiter {
    by_addr: HashMap<IpAddr, Entry>,
}

impl Limiter {
    /// Whether a connection from `addr` may start its handshake now.
    pub(crate) fn admit(&mut self, addr: IpAddr, now: Instant) -> Admit {
        let Some(entry) = self.by_addr.get_mut(&addr) else {
            return Admit::Now;
        };
        entry.decay(now);
        if entry.failures < FREE_FAILURES {
            return Admit::Now;
        }
        let slot = entry.next_slot.max(now);
        let wait = slot - now;
        if wait > MAX_WAIT {
            return Admit::Refuse;
        }
        entry.next_slot = slot + SLOT;
        if wait.is_zero() {
            Admit::Now
        } else {
            Admit::After(wait)
        }
    }

    /// A handshake from `addr` failed.
    pub(crate) fn failed(&mut self, addr: IpAddr, now: Instant) {
        if self.by_addr.len() >= MAX_ADDRESSES && !self.by_addr.contains_key(&addr) {
            self.prune(now);
        }
        let entry = self.by_addr.entry(addr).or_insert(Entry {
            failures: 0.0,
            updated: now,
            next_slot: now,
        });
        entry.decay(now);
        entry.failures += 1.0;
    }

    /// Forgets addresses whose failures have faded, then, if still full, the half with the
    /// fewest failures.
    fn prune(&mut self, now: Instant) {
        self.by_addr.retain(|_, e| {
            e.decay(now);
            e.failures >= 0.5
        });
        if self.by_addr.len() >= MAX_ADDRESSES {
            let mut f: Vec<f64> = self.by_addr.values().map(|e| e.failures).collect();
            f.sort_by(f64::total_cmp);
            let median = f[f.len() / 2];
            self.by_addr.retain(|_, e| e.failures > median);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.by_addr.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn good_addresses_are_never_slowed() {
        let mut l = Limiter::default();
        let t = Instant::now();
        for i in 0..1000 {
            assert_eq!(l.admit(ip(1), t + Duration::from_millis(i)), Admit::Now);
        }
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn a_failing_address_gets_one_handshake_per_slot() {
        let mut l = Limiter::default();
        let t = Instant::now();
        for _ in 0..5 {
            assert_eq!(l.admit(ip(1), t), Admit::Now);
            l.failed(ip(1), t);
        }
        // Over the allowance: the first goes now, the next ones a slot apart.
        assert_eq!(l.admit(ip(1), t), Admit::Now);
        assert_eq!(l.admit(ip(1), t), Admit::After(SLOT));
        assert_eq!(l.admit(ip(1), t), Admit::After(SLOT * 2));
        // Another address is not affected.
        assert_eq!(l.admit(ip(2), t), Admit::Now);
        // A retry every 100 ms (libzmq's reconnect) gets at most one handshake per slot.
        let mut admitted = 0;
        let mut l = Limiter::default();
        for _ in 0..10 {
            l.failed(ip(3), t);
        }
        let mut now = t;
        let mut busy_until = t;
        for _ in 0..100 {
            now += Duration::from_millis(100);
            if now < busy_until {
                continue; // its previous connection is still waiting for its slot
            }
            match l.admit(ip(3), now) {
                Admit::Now => admitted += 1,
                Admit::After(w) => {
                    admitted += 1;
                    busy_until = now + w;
                }
                Admit::Refuse => {}
            }
            l.failed(ip(3), now);
        }
        assert!(admitted <= 21, "10 s of retries cost {admitted} handshakes");
    }

    #[test]
    fn the_wait_is_bounded_and_failures_fade() {
        let mut l = Limiter::default();
        let t = Instant::now();
        for _ in 0..20 {
            l.failed(ip(1), t);
        }
        let mut refused = false;
        for _ in 0..20 {
            if l.admit(ip(1), t) == Admit::Refuse {
                refused = true;
            }
        }
        assert!(
            refused,
            "past MAX_WAIT of queued slots, connections are refused"
        );
        // 20 failures halve to under 5 in two half-lives (plus the slots queued meanwhile).
        let later = t + HALF_LIFE * 3;
        assert_eq!(l.admit(ip(1), later), Admit::Now);
    }
}
