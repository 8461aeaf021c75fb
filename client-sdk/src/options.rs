//! [`ClientOptions`]: endpoints, timeout, retries, pool size.
//!
//! Setters store what they are given; [`crate::Client::new`] checks the whole set and
//! refuses a zero where zero makes no sense (`timeout`, `pool_size`, `max_message_size`)
//! with [`crate::ErrorKind::InvalidOptions`]. The fields are public too, so this one check
//! covers values set either way. `retries` and `settle` may be zero (one attempt only; no
//! pause before another endpoint). A `transport` whose `security` is the CURVE server role
//! is refused too: a client is always the CURVE client.

use std::time::Duration;

use domo_zmtp::curve::CurveClient;
use domo_zmtp::{KeyPair, PublicKey, Security};

use crate::error::Error;

/// When a [`crate::Client`] moves to the next endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
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
///
/// Made with [`ClientOptions::new`], [`ClientOptions::pair`] or [`Default`], then adjusted
/// with the setters (one per field). Checked by [`crate::Client::new`]: see the module docs
/// for which zeros it refuses.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Broker endpoints. Requests go to the current one; after a timed-out attempt (as
    /// `failover` says) the client moves to the next (round robin) for all later requests.
    /// Default `["tcp://127.0.0.1:5555"]`.
    pub endpoints: Vec<String>,
    /// Which timed-out attempts move the client to the next endpoint. Default
    /// [`Failover::Unreachable`].
    pub failover: Failover,
    /// How long one attempt waits for its reply; not zero. Default 2500 ms (the zguide's).
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
    /// Requests in flight at once; more wait their turn. With `multiplex` and a broker that
    /// lists `mux` they share one connection per broker; otherwise (MDP/0.1 allows one
    /// outstanding request per connection) each has a connection of its own, so this is
    /// also the most connections the client opens. Not zero. Default 16.
    pub pool_size: usize,
    /// Multiplexing (domo's `mux` extension, docs/extensions.md): when the broker lists
    /// `mux` in its handshake, all requests to it share one connection, each tagged so its
    /// reply is matched to it, and a retry needs no fresh connection (a late reply to an
    /// abandoned attempt is recognised by its tag and dropped). A broker that does not
    /// list it (any RFC 7 broker) gets plain MDP/0.1, one request per connection, as with
    /// `false`. Default `true`.
    pub multiplex: bool,
    /// Largest request body accepted, in bytes; also the largest reply accepted. Not zero.
    /// Default 64 MiB.
    pub max_message_size: usize,
    /// After a request times out on every attempt, ask the broker's `mmi.service` whether
    /// the service has workers, to report [`crate::ErrorKind::ServiceUnavailable`]. The
    /// question is a request like any other (same timeout, retries and failover), so with a
    /// pair it may just time out too. Default on.
    pub check_service: bool,
    /// CURVE security: the broker's public key and the client's keypair (the broker may
    /// check the public half against its allow-list). Every connection then handshakes
    /// with CURVE; a broker that refuses it fails requests with
    /// [`crate::ErrorKind::Handshake`]. Overrides `transport.security`. Default `None`:
    /// NULL security, unless `transport.security` says otherwise. Keys can be read from
    /// certificate files with [`CurveClient::from_files`].
    pub curve: Option<CurveClient>,
    /// Options of the DEALER sockets. `max_message_size` overrides theirs, and `identity` is
    /// ignored: every fresh connection must get a new routing id, or a late reply to an
    /// abandoned attempt could reach it. `curve`, when set, overrides `security`.
    pub transport: domo_zmtp::Options,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self::new(["tcp://127.0.0.1:5555"])
    }
}

impl ClientOptions {
    /// Default options for the given broker endpoints.
    #[must_use]
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            failover: Failover::Unreachable,
            timeout: Duration::from_millis(2500),
            retries: 2,
            settle: Duration::from_millis(100),
            pool_size: 16,
            multiplex: true,
            max_message_size: 64 * 1024 * 1024,
            check_service: true,
            curve: None,
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
    #[must_use]
    pub fn pair(primary: impl Into<String>, backup: impl Into<String>) -> Self {
        Self::new([primary.into(), backup.into()])
            .failover(Failover::AnyTimeout)
            .settle(Duration::from_secs(2))
    }

    /// Sets the broker endpoints (see [`ClientOptions::endpoints`]).
    #[must_use]
    pub fn endpoints<S: Into<String>>(mut self, endpoints: impl IntoIterator<Item = S>) -> Self {
        self.endpoints = endpoints.into_iter().map(Into::into).collect();
        self
    }

    /// Sets when the client moves to the next endpoint.
    #[must_use]
    pub fn failover(mut self, failover: Failover) -> Self {
        self.failover = failover;
        self
    }

    /// Sets the per-attempt timeout (not zero).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the number of retries after the first attempt (0: one attempt only).
    #[must_use]
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Sets the settle delay between endpoints (may be zero).
    #[must_use]
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// Sets the pool size, the most requests in flight at once (not zero).
    #[must_use]
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// Turns multiplexing on or off (see [`ClientOptions::multiplex`]; on by default). Off,
    /// the client speaks plain MDP/0.1 to every broker.
    #[must_use]
    pub fn multiplex(mut self, on: bool) -> Self {
        self.multiplex = on;
        self
    }

    /// Sets the largest request (and reply) body accepted, in bytes (not zero).
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sets whether a request that timed out asks `mmi.service` to tell
    /// [`crate::ErrorKind::ServiceUnavailable`] from [`crate::ErrorKind::TimedOut`].
    #[must_use]
    pub fn check_service(mut self, check: bool) -> Self {
        self.check_service = check;
        self
    }

    /// Talks CURVE to the broker whose public key is `server_key`, as `keypair` (see
    /// [`ClientOptions::curve`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::path::Path;
    /// use domo_client::ClientOptions;
    /// use domo_zmtp::curve::CurveClient;
    /// let keys = CurveClient::from_files(
    ///     Path::new("/etc/domo/broker.key"),
    ///     Path::new("client.key_secret"),
    /// )?;
    /// let options = ClientOptions::new(["tcp://10.0.0.1:5555"]).curve(keys.server_key, keys.keypair);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn curve(mut self, server_key: PublicKey, keypair: KeyPair) -> Self {
        self.curve = Some(CurveClient {
            server_key,
            keypair,
        });
        self
    }

    /// Sets the options of the DEALER sockets (see [`ClientOptions::transport`]).
    #[must_use]
    pub fn transport(mut self, transport: domo_zmtp::Options) -> Self {
        self.transport = transport;
        self
    }

    /// Refuses what [`crate::Client::new`] refuses (see the module docs).
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.endpoints.is_empty() {
            return Err(Error::no_endpoints());
        }
        for ep in &self.endpoints {
            ep.parse::<domo_zmtp::Endpoint>()
                .map_err(|e| Error::invalid_endpoint(ep, e))?;
        }
        if self.timeout.is_zero() {
            return Err(Error::invalid_option("timeout must not be zero"));
        }
        if self.pool_size == 0 {
            return Err(Error::invalid_option("pool_size must not be zero"));
        }
        if self.max_message_size == 0 {
            return Err(Error::invalid_option("max_message_size must not be zero"));
        }
        if matches!(self.transport.security, Security::CurveServer(_)) {
            return Err(Error::invalid_option(
                "transport.security must not be the CURVE server role (use `curve`)",
            ));
        }
        Ok(())
    }

    pub(crate) fn dealer_options(&self) -> domo_zmtp::Options {
        let mut t = self.transport.clone();
        t.max_message_size = self.max_message_size as u64 + 64 * 1024;
        t.identity = None;
        if let Some(keys) = &self.curve {
            t.security = Security::CurveClient(keys.clone());
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn every_field_has_a_setter() {
        let transport = domo_zmtp::Options::default();
        let server = KeyPair::generate();
        let ours = KeyPair::generate();
        let options = ClientOptions::default()
            .endpoints(["tcp://10.0.0.1:1", "tcp://10.0.0.2:1"])
            .failover(Failover::AnyTimeout)
            .timeout(Duration::from_secs(1))
            .retries(0)
            .settle(Duration::ZERO)
            .pool_size(3)
            .multiplex(false)
            .max_message_size(1024)
            .check_service(false)
            .curve(server.public, ours.clone())
            .transport(transport);
        assert_eq!(options.endpoints, ["tcp://10.0.0.1:1", "tcp://10.0.0.2:1"]);
        assert_eq!(options.failover, Failover::AnyTimeout);
        assert_eq!(options.timeout, Duration::from_secs(1));
        assert_eq!(options.retries, 0);
        assert_eq!(options.settle, Duration::ZERO);
        assert_eq!(options.pool_size, 3);
        assert!(!options.multiplex);
        assert_eq!(options.max_message_size, 1024);
        assert!(!options.check_service);
        let curve = options.curve.as_ref().expect("curve keys");
        assert_eq!(curve.server_key, server.public);
        assert_eq!(curve.keypair.public, ours.public);
        // Every connection is a CURVE client of that server.
        match options.dealer_options().security {
            Security::CurveClient(c) => assert_eq!(c.server_key, server.public),
            other => panic!("not a CURVE client: {other:?}"),
        }
        // Zero retries (one attempt) and a zero settle make sense.
        assert!(options.check().is_ok());
    }

    #[test]
    fn zeros_that_make_no_sense_are_refused() {
        let base = ClientOptions::default();
        for (options, field) in [
            (base.clone().timeout(Duration::ZERO), "timeout"),
            (base.clone().pool_size(0), "pool_size"),
            (base.clone().max_message_size(0), "max_message_size"),
        ] {
            let err = options.check().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidOptions);
            assert!(err.to_string().contains(field), "{err}");
        }
        let err = base.endpoints(Vec::<String>::new()).check().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoEndpoints);
    }

    #[test]
    fn a_client_cannot_be_a_curve_server() {
        let transport = domo_zmtp::Options {
            security: Security::curve_server(KeyPair::generate().secret),
            ..domo_zmtp::Options::default()
        };
        let err = ClientOptions::default()
            .transport(transport)
            .check()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidOptions);
        assert!(err.to_string().contains("CURVE server"), "{err}");
        // NULL stays NULL without keys.
        let options = ClientOptions::default();
        assert!(matches!(options.dealer_options().security, Security::Null));
    }
}
