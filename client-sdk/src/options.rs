//! [`ClientOptions`]: endpoints, timeout, retries, pool size.

use std::time::Duration;

use crate::error::Error;

/// When a [`crate::Client`] moves to the next endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Failover {
    /// After an attempt that timed out while its connection was not even up: the broker is
    /// unreachable. A connected broker that is merely slow keeps the client. The default.
    #[default]
    Unreachable,
    /// After every attempt that timed out, connected or not, alternating between the
    /// endpoints (the zguide's `bstarcli`). For a Binary Star pair (see
    /// [`ClientOptions::pair`]): the passive broker accepts the connection but never
    /// answers, so only a timeout tells the client it is talking to the wrong one. The
    /// retry waits until `settle` after the start of the attempt that timed out, and so do
    /// new requests that would reach the newly chosen broker earlier. A request that is
    /// merely slower than `timeout` also moves the client, so `timeout` must exceed the
    /// slowest service's time.
    AnyTimeout,
}

/// How a [`crate::Client`] sends requests.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Broker endpoints. Requests go to the current one; after a timed-out attempt (as
    /// `failover` says) the client moves to the next (round robin) for all later requests.
    /// Default `["tcp://127.0.0.1:5555"]`.
    pub endpoints: Vec<String>,
    /// Which timed-out attempts move the client to the next endpoint. Default
    /// [`Failover::Unreachable`].
    pub failover: Failover,
    /// How long one attempt waits for its reply. Default 2500 ms (the zguide's).
    pub timeout: Duration,
    /// Attempts after the first, each on a fresh connection. Default 2 (3 sends in all, as
    /// the zguide's `mdcliapi`).
    pub retries: u32,
    /// Pause before an attempt on a different endpoint, so a Binary Star backup has time to
    /// take over. With [`Failover::Unreachable`] it is waited after the timeout; with
    /// [`Failover::AnyTimeout`] it is counted from the start of the attempt that timed out
    /// (so a `timeout` at least as long as `settle` adds no wait), and must be at least the
    /// pair's failover time. Default 100 ms, 2 s with [`ClientOptions::pair`].
    pub settle: Duration,
    /// Connections in the pool, which is also the number of requests in flight at once
    /// (MDP/0.1 allows one outstanding request per connection); more requests wait for a
    /// free connection. Default 16.
    pub pool_size: usize,
    /// Largest request body accepted, in bytes; also the largest reply accepted.
    /// Default 64 MiB.
    pub max_message_size: usize,
    /// After a request times out on every attempt, ask the broker's `mmi.service` whether
    /// the service has workers, to report [`Error::ServiceUnavailable`]. The question is a
    /// request like any other (same timeout, retries and failover), so with a pair it may
    /// just time out too. Default on.
    pub check_service: bool,
    /// Options of the DEALER sockets. `max_message_size` overrides theirs, and `identity` is
    /// ignored: every fresh connection must get a new routing id, or a late reply to an
    /// abandoned attempt could reach it.
    pub transport: domo_zmtp::Options,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self::new(["tcp://127.0.0.1:5555"])
    }
}

impl ClientOptions {
    /// Default options for the given broker endpoints.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            failover: Failover::Unreachable,
            timeout: Duration::from_millis(2500),
            retries: 2,
            settle: Duration::from_millis(100),
            pool_size: 16,
            max_message_size: 64 * 1024 * 1024,
            check_service: true,
            transport: domo_zmtp::Options::default(),
        }
    }

    /// Default options for a Binary Star pair: requests go to `primary` first, and every
    /// timed-out attempt switches all the client's requests to the other broker
    /// ([`Failover::AnyTimeout`]), retrying there `settle` after the failed attempt
    /// started.
    ///
    /// `settle` defaults to 2 s: a passive broker takes over only once its peer has been
    /// silent for 2 pair heartbeats (2 x the broker's default 1000 ms), and a request it
    /// gets before that is dropped. Raise it with a longer pair heartbeat. With the
    /// defaults (2500 ms timeout, 2 retries) a request tries primary, backup, primary; a
    /// shorter timeout fails over sooner, but never before `settle`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use domo_client::{ClientOptions, Failover};
    /// let options = ClientOptions::pair("tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555")
    ///     .timeout(Duration::from_secs(1));
    /// assert_eq!(options.failover, Failover::AnyTimeout);
    /// assert_eq!(options.settle, Duration::from_secs(2));
    /// ```
    pub fn pair(primary: impl Into<String>, backup: impl Into<String>) -> Self {
        Self::new([primary.into(), backup.into()])
            .failover(Failover::AnyTimeout)
            .settle(Duration::from_secs(2))
    }

    /// Sets when the client moves to the next endpoint.
    pub fn failover(mut self, failover: Failover) -> Self {
        self.failover = failover;
        self
    }

    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the number of retries after the first attempt.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets the pool size (at least 1).
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Sets the settle delay between endpoints.
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
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

    pub(crate) fn transport(&self) -> domo_zmtp::Options {
        let mut t = self.transport.clone();
        t.max_message_size = self.max_message_size as u64 + 64 * 1024;
        t.identity = None;
        t
    }
}
