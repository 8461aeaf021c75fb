//! The rules of one worker session, with no I/O: when to heartbeat, when the broker is dead,
//! when and where to reconnect.
//!
//! Design: [`Session`] is driven by `now` arguments (quinn-proto style). The driver reports
//! what happened (`handle_*`), asks when to wake up ([`Session::poll_timeout`]) and what to do
//! then ([`Session::poll_action`]). It never reads a clock, sends nothing and does not know
//! about requests: a worker busy with a request heartbeats like an idle one.
//!
//! Rules (RFC 7 and the zguide's `ppworker`):
//! * any command from the broker except DISCONNECT is a sign of life: it pushes the broker's
//!   deadline back to `now + interval × liveness` and resets the backoff;
//! * a HEARTBEAT is due one interval after the last message we sent;
//! * silence until the deadline means the broker is dead: wait the backoff delay, then
//!   reconnect to the *next* endpoint of the list on a new connection;
//! * DISCONNECT means the broker forgot us: wait the backoff delay, then re-register with the
//!   *same* endpoint on a new connection. DISCONNECT does not reset the backoff, so a broker
//!   that keeps refusing us is retried ever more slowly.

use std::time::Instant;

use domo_mdp::{Backoff, Heartbeat, Liveness};

/// What the driver must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send a HEARTBEAT to the broker (then call [`Session::handle_sent`]).
    SendHeartbeat,
    /// The broker is gone: drop the connection and everything queued on it. A
    /// [`Action::Connect`] follows after the backoff delay.
    Abandon,
    /// Open a new connection to endpoint number `endpoint` and send READY.
    Connect {
        /// Index into the endpoint list.
        endpoint: usize,
    },
}

#[derive(Debug, Clone)]
enum State {
    /// Registered (READY sent) on `endpoint`.
    Live(Liveness),
    /// Between connections since `since`: abandon the old connection at once, connect at
    /// `until`.
    Waiting {
        since: Instant,
        until: Instant,
        abandoned: bool,
    },
}

/// One worker session's liveness and reconnect state.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    heartbeat: Heartbeat,
    backoff: Backoff,
    endpoints: usize,
    endpoint: usize,
    state: State,
}

impl Session {
    /// A session that has just connected to endpoint 0 and sent READY at `now`.
    ///
    /// `endpoints` is the length of the endpoint list (at least 1).
    pub(crate) fn new(
        now: Instant,
        heartbeat: Heartbeat,
        backoff: Backoff,
        endpoints: usize,
    ) -> Self {
        Self {
            heartbeat,
            backoff,
            endpoints: endpoints.max(1),
            endpoint: 0,
            state: State::Live(Liveness::new(now, heartbeat)),
        }
    }

    /// The endpoint index the session is connected to, or will connect to next.
    pub(crate) fn endpoint(&self) -> usize {
        self.endpoint
    }

    /// Whether the session is registered (not waiting to reconnect).
    pub(crate) fn is_live(&self) -> bool {
        matches!(self.state, State::Live(_))
    }

    /// The broker sent a command other than DISCONNECT at `now`.
    pub(crate) fn handle_traffic(&mut self, now: Instant) {
        if let State::Live(liveness) = &mut self.state {
            liveness.on_traffic(now);
            self.backoff.reset();
        }
    }

    /// We sent a message (READY, REPLY or HEARTBEAT) at `now`.
    pub(crate) fn handle_sent(&mut self, now: Instant) {
        if let State::Live(liveness) = &mut self.state {
            liveness.on_heartbeat_sent(now);
        }
    }

    /// The broker sent DISCONNECT at `now`: re-register with it after the backoff delay.
    pub(crate) fn handle_disconnect(&mut self, now: Instant) {
        if self.is_live() {
            self.wait(now);
        }
    }

    /// The driver started over at `now` on a new connection to the same endpoint (after a
    /// failed request) and sent READY.
    pub(crate) fn handle_restart(&mut self, now: Instant) {
        self.state = State::Live(Liveness::new(now, self.heartbeat));
    }

    /// When [`Session::poll_action`] next has something to say.
    pub(crate) fn poll_timeout(&self) -> Instant {
        match &self.state {
            State::Live(l) => l.deadline().min(l.next_heartbeat_due()),
            State::Waiting {
                since, abandoned, ..
            } if !abandoned => *since,
            State::Waiting { until, .. } => *until,
        }
    }

    /// What to do at `now`, if anything. Call it until it returns `None`.
    pub(crate) fn poll_action(&mut self, now: Instant) -> Option<Action> {
        match &mut self.state {
            State::Live(l) if l.is_expired(now) => {
                self.endpoint = (self.endpoint + 1) % self.endpoints;
                self.wait(now);
                self.poll_action(now)
            }
            State::Live(l) if now >= l.next_heartbeat_due() => Some(Action::SendHeartbeat),
            State::Live(_) => None,
            State::Waiting { abandoned, .. } if !*abandoned => {
                *abandoned = true;
                Some(Action::Abandon)
            }
            State::Waiting { until, .. } if now >= *until => {
                self.state = State::Live(Liveness::new(now, self.heartbeat));
                Some(Action::Connect {
                    endpoint: self.endpoint,
                })
            }
            State::Waiting { .. } => None,
        }
    }

    fn wait(&mut self, now: Instant) {
        let until = now + self.backoff.next_delay();
        self.state = State::Waiting {
            since: now,
            until,
            abandoned: false,
        };
    }
}

#[cfg(test)]
mod tests;
