//! [`ClientOptions`]: endpoints, timeout, retries, pool size.

use std::time::Duration;

use crate::error::Error;

/// How a [`crate::Client`] sends requests.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Broker endpoints. Requests go to the current one; after a timed-out attempt the
    /// client moves to the next (round robin) for all later requests. Default
    /// `["tcp://127.0.0.1:5555"]`.
    pub endpoints: Vec<String>,
    /// How long one attempt waits for its reply. Default 2500 ms (the zguide's).
    pub timeout: Duration,
    /// Attempts after the first, each on a fresh connection. Default 2 (3 sends in all, as
    /// the zguide's `mdcliapi`).
    pub retries: u32,
    /// Pause before an attempt on a different endpoint, so a Binary Star backup has time to
    /// take over. Default 100 ms.
    pub settle: Duration,
    /// Connections in the pool, which is also the number of requests in flight at once
    /// (MDP/0.1 allows one outstanding request per connection); more requests wait for a
    /// free connection. Default 16.
    pub pool_size: usize,
    /// Largest request body accepted, in bytes; also the largest reply accepted.
    /// Default 64 MiB.
    pub max_message_size: usize,
    /// After a request times out on every attempt, ask the broker's `mmi.service` whether
    /// the service has workers, to report [`Error::ServiceUnavailable`]. Default on.
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
            timeout: Duration::from_millis(2500),
            retries: 2,
            settle: Duration::from_millis(100),
            pool_size: 16,
            max_message_size: 64 * 1024 * 1024,
            check_service: true,
            transport: domo_zmtp::Options::default(),
        }
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
