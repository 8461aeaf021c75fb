//! [`WorkerOptions`]: endpoints, sessions, heartbeat and backoff settings.

use std::sync::Arc;

use domo_mdp::Heartbeat;

use crate::backoff::{Backoff, BackoffOptions};
use crate::error::Error;

/// How a worker's sessions use [`WorkerOptions::endpoints`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EndpointMode {
    /// Each session registers with one endpoint at a time: it starts on the first and, on
    /// losing the broker, moves to the next one, round robin. For brokers that do not know
    /// of each other, where one of them serves at a time. The default.
    #[default]
    Failover,
    /// Every endpoint gets its own `sessions` sessions at once, each pinned to its endpoint:
    /// on losing its broker it re-registers with that same endpoint after the backoff delay
    /// and never moves to another. For a Binary Star pair (see [`WorkerOptions::pair`]):
    /// the backup must already know every worker at the moment it takes over, and the
    /// passive broker dispatches nothing, so requests only come from the active one.
    EachBroker,
}

/// How a [`crate::Worker`] connects and stays connected.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Broker endpoints, used as `mode` says. Default `["tcp://127.0.0.1:5555"]`.
    pub endpoints: Vec<String>,
    /// Whether the endpoints are a failover list (one broker at a time per session) or
    /// brokers to register with all at once. Default [`EndpointMode::Failover`].
    pub mode: EndpointMode,
    /// Concurrent sessions (MDP worker connections) for the service, per endpoint in
    /// [`EndpointMode::EachBroker`]. Default 1.
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
            mode: EndpointMode::Failover,
            sessions: 1,
            heartbeat: Heartbeat::default(),
            backoff: BackoffOptions::default(),
            transport: domo_zmtp::Options::default(),
        }
    }

    /// Default options for a Binary Star pair: [`EndpointMode::EachBroker`] on `primary`
    /// and `backup`, so the worker is registered with both brokers and serves whichever is
    /// active.
    ///
    /// # Examples
    ///
    /// ```
    /// use domo_worker::{EndpointMode, WorkerOptions};
    /// let options = WorkerOptions::pair("tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555").sessions(4);
    /// assert_eq!(options.mode, EndpointMode::EachBroker);
    /// assert_eq!(options.total_sessions(), 8);
    /// ```
    pub fn pair(primary: impl Into<String>, backup: impl Into<String>) -> Self {
        Self::new([primary.into(), backup.into()]).mode(EndpointMode::EachBroker)
    }

    /// Sets how the endpoints are used.
    pub fn mode(mut self, mode: EndpointMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the number of sessions (at least 1), per endpoint in
    /// [`EndpointMode::EachBroker`].
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

    /// How many sessions the worker runs in all: `sessions`, or `sessions` per endpoint in
    /// [`EndpointMode::EachBroker`]. It is also how many requests it holds at once.
    pub fn total_sessions(&self) -> usize {
        let sessions = self.sessions.max(1);
        match self.mode {
            EndpointMode::Failover => sessions,
            EndpointMode::EachBroker => sessions.saturating_mul(self.endpoints.len()),
        }
    }

    /// The endpoint lists of the sessions to run, one list per session: the whole list for
    /// each session in failover mode, one endpoint per session otherwise.
    pub(crate) fn session_endpoints(&self) -> Vec<Arc<[String]>> {
        let sessions = self.sessions.max(1);
        match self.mode {
            EndpointMode::Failover => {
                let all: Arc<[String]> = self.endpoints.clone().into();
                vec![all; sessions]
            }
            EndpointMode::EachBroker => self
                .endpoints
                .iter()
                .flat_map(|ep| {
                    let one: Arc<[String]> = vec![ep.clone()].into();
                    std::iter::repeat_n(one, sessions)
                })
                .collect(),
        }
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
