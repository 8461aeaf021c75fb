//! [`WorkerOptions`]: endpoints, sessions, heartbeat and backoff settings.

use domo_mdp::Heartbeat;

use crate::backoff::{Backoff, BackoffOptions};
use crate::error::Error;

/// How a [`crate::Worker`] connects and stays connected.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Broker endpoints; on losing one the next is tried, round robin (for a Binary Star
    /// pair). Default `["tcp://127.0.0.1:5555"]`.
    pub endpoints: Vec<String>,
    /// Concurrent sessions (MDP worker connections) for the service. Default 1.
    pub sessions: usize,
    /// Heartbeat interval and liveness; must match the broker's. Default 2500 ms, 3.
    pub heartbeat: Heartbeat,
    /// Reconnect backoff. Default 1 s doubling to 32 s, jittered.
    pub backoff: BackoffOptions,
    /// Options of the DEALER sockets. `identity` is ignored: RFC 7 wants each new session
    /// on a new socket identity.
    pub transport: domo_zmtp::Options,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self::new(["tcp://127.0.0.1:5555"])
    }
}

impl WorkerOptions {
    /// Default options for the given broker endpoints.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            sessions: 1,
            heartbeat: Heartbeat::default(),
            backoff: BackoffOptions::default(),
            transport: domo_zmtp::Options::default(),
        }
    }

    /// Sets the number of sessions (at least 1).
    pub fn sessions(mut self, sessions: usize) -> Self {
        self.sessions = sessions.max(1);
        self
    }

    /// Sets the heartbeat settings.
    pub fn heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Sets the backoff settings.
    pub fn backoff(mut self, backoff: BackoffOptions) -> Self {
        self.backoff = backoff;
        self
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.endpoints.is_empty() {
            return Err(Error::NoEndpoints);
        }
        for ep in &self.endpoints {
            ep.parse::<domo_zmtp::Endpoint>()
                .map_err(Error::InvalidEndpoint)?;
        }
        Ok(())
    }

    pub(crate) fn new_backoff(&self) -> Backoff {
        Backoff::new(self.backoff)
    }
}
