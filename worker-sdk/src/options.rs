//! [`WorkerOptions`]: endpoints, sessions, heartbeat and backoff settings.
//!
//! Setters store what they are given; [`crate::Worker::new`] checks the whole set and
//! refuses a zero where zero makes no sense (`sessions`, `credit`, the heartbeat's
//! `interval` and `liveness`, the backoff's `initial` and `max`), and a `credit` above
//! [`MAX_CREDIT`], with [`crate::ErrorKind::InvalidOptions`]. The fields are public too, so
//! this one check covers values set either way. A `transport` whose `security` is the CURVE server role is refused
//! too: a worker is always the CURVE client.

use std::sync::Arc;

use domo_mdp::extensions::{CREDIT_PROPERTY, MAX_CREDIT};
use domo_mdp::{Backoff, BackoffOptions, Heartbeat};
use domo_zmtp::curve::CurveClient;
use domo_zmtp::proto::Metadata;
use domo_zmtp::{KeyPair, PublicKey, Security};

use crate::error::Error;

/// How a worker's sessions use [`WorkerOptions::endpoints`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
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
///
/// Made with [`WorkerOptions::new`], [`WorkerOptions::pair`] or [`Default`], then adjusted
/// with the setters (one per field). Checked by [`crate::Worker::new`]: see the module docs
/// for which zeros it refuses.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerOptions {
    /// Broker endpoints, used as `mode` says. Default `["tcp://127.0.0.1:5555"]`.
    pub endpoints: Vec<String>,
    /// Whether the endpoints are a failover list (one broker at a time per session) or
    /// brokers to register with all at once. Default [`EndpointMode::Failover`].
    pub mode: EndpointMode,
    /// Sessions (MDP worker connections) for the service, per endpoint in
    /// [`EndpointMode::EachBroker`]. Not zero. Default 1.
    pub sessions: usize,
    /// Requests each session may hold at once: its *credit*, `1..=1024`. Default 32 (measured:
    /// in `domo bench`'s SDK phase 32 gave 15-25% more requests per second than 8 at a
    /// quarter less broker CPU per request; BENCHMARKS.md).
    ///
    /// A session announces it to the broker (ZMTP metadata `X-Domo-Credit`, when above 1);
    /// a broker that knows of worker credit (domo's: `credit` in its `X-Domo-Extensions`)
    /// then keeps up to that many requests at the session, and the session answers each as
    /// soon as its handler is done, in any order. So the worker's concurrency is
    /// [`WorkerOptions::total_sessions`] x `credit`:
    ///
    /// * With [`crate::Worker::serve`], up to `credit` handler futures run at once in each
    ///   session (in the session's task, interleaved at their `.await`s). A handler that
    ///   must run one request at a time sets `credit(1)` (and one session).
    /// * With [`crate::Worker::recv`], requests beyond what the application has taken wait
    ///   in the worker, much like a prefetch: a request may wait there for the one before
    ///   it while another worker sits idle. A consumer that handles its requests one by
    ///   one, with many workers of the service, may want a lower credit.
    /// * Against an RFC 7 broker (no `credit` in its `X-Domo-Extensions`), which ignores
    ///   the property, each session gets one request at a time as RFC 7 says; nothing else
    ///   changes.
    ///
    /// A failed request (see the crate docs) restarts its session on a new connection, and
    /// the other requests that session holds are dropped with it: the broker dispatches
    /// them again, to this worker or another.
    pub credit: u32,
    /// Heartbeat interval and liveness; must match the broker's. Neither zero. Default
    /// 2500 ms, 3.
    pub heartbeat: Heartbeat,
    /// Reconnect backoff. Delays not zero. Default 1 s doubling to 32 s, jittered.
    pub backoff: BackoffOptions,
    /// CURVE security: the broker's public key and the worker's keypair (the broker may
    /// check the public half against its allow-list). Every session then handshakes with
    /// CURVE; a broker that refuses it is logged and reported by
    /// [`crate::WorkerStatus::handshake_error`]. Overrides `transport.security`. Default
    /// `None`: NULL security, unless `transport.security` says otherwise. Keys can be read
    /// from certificate files with [`CurveClient::from_files`].
    pub curve: Option<CurveClient>,
    /// Options of the DEALER sockets. `identity` is ignored: RFC 7 wants each new session
    /// on a new socket identity. `curve`, when set, overrides `security`. An
    /// `X-Domo-Credit` property in `metadata` is replaced by what `credit` says.
    pub transport: domo_zmtp::Options,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self::new(["tcp://127.0.0.1:5555"])
    }
}

impl WorkerOptions {
    /// Default options for the given broker endpoints.
    #[must_use]
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        Self {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            mode: EndpointMode::Failover,
            sessions: 1,
            credit: 32,
            heartbeat: Heartbeat::default(),
            backoff: BackoffOptions::default(),
            curve: None,
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
    #[must_use]
    pub fn pair(primary: impl Into<String>, backup: impl Into<String>) -> Self {
        Self::new([primary.into(), backup.into()]).mode(EndpointMode::EachBroker)
    }

    /// Sets the broker endpoints (see [`WorkerOptions::endpoints`]).
    #[must_use]
    pub fn endpoints<S: Into<String>>(mut self, endpoints: impl IntoIterator<Item = S>) -> Self {
        self.endpoints = endpoints.into_iter().map(Into::into).collect();
        self
    }

    /// Sets how the endpoints are used.
    #[must_use]
    pub fn mode(mut self, mode: EndpointMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the number of sessions (not zero), per endpoint in
    /// [`EndpointMode::EachBroker`].
    #[must_use]
    pub fn sessions(mut self, sessions: usize) -> Self {
        self.sessions = sessions;
        self
    }

    /// Sets how many requests each session may hold at once, `1..=1024` (see
    /// [`WorkerOptions::credit`]); 1 for one at a time.
    ///
    /// # Examples
    ///
    /// ```
    /// use domo_worker::WorkerOptions;
    /// // Four sessions of 16: up to 64 requests at once against a domo broker.
    /// let options = WorkerOptions::new(["tcp://10.0.0.1:5555"]).sessions(4).credit(16);
    /// assert_eq!(options.credit, 16);
    /// ```
    #[must_use]
    pub fn credit(mut self, credit: u32) -> Self {
        self.credit = credit;
        self
    }

    /// Sets the heartbeat settings (neither zero).
    #[must_use]
    pub fn heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Sets the backoff settings (delays not zero).
    #[must_use]
    pub fn backoff(mut self, backoff: BackoffOptions) -> Self {
        self.backoff = backoff;
        self
    }

    /// Talks CURVE to the broker whose public key is `server_key`, as `keypair` (see
    /// [`WorkerOptions::curve`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::path::Path;
    /// use domo_worker::WorkerOptions;
    /// use domo_zmtp::curve::CurveClient;
    /// let keys = CurveClient::from_files(
    ///     Path::new("/etc/domo/broker.key"),
    ///     Path::new("worker.key_secret"),
    /// )?;
    /// let options = WorkerOptions::new(["tcp://10.0.0.1:5555"]).curve(keys.server_key, keys.keypair);
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

    /// Sets the options of the DEALER sockets (see [`WorkerOptions::transport`]).
    #[must_use]
    pub fn transport(mut self, transport: domo_zmtp::Options) -> Self {
        self.transport = transport;
        self
    }

    /// How many sessions the worker runs in all: `sessions`, or `sessions` per endpoint in
    /// [`EndpointMode::EachBroker`]. Each holds up to [`WorkerOptions::credit`] requests at
    /// once (one against an RFC 7 broker).
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

    /// Refuses what [`crate::Worker::new`] refuses (see the module docs).
    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.endpoints.is_empty() {
            return Err(Error::no_endpoints());
        }
        for ep in &self.endpoints {
            ep.parse::<domo_zmtp::Endpoint>()
                .map_err(|e| Error::invalid_endpoint(ep, e))?;
        }
        let bad = if self.sessions == 0 {
            Some("sessions must not be zero")
        } else if self.credit == 0 {
            Some("credit must not be zero")
        } else if self.credit > MAX_CREDIT {
            Some("credit must be at most 1024")
        } else if self.heartbeat.interval.is_zero() {
            Some("heartbeat interval must not be zero")
        } else if self.heartbeat.liveness == 0 {
            Some("heartbeat liveness must not be zero")
        } else if self.backoff.initial.is_zero() {
            Some("backoff initial delay must not be zero")
        } else if self.backoff.max.is_zero() {
            Some("backoff max delay must not be zero")
        } else if matches!(self.transport.security, Security::CurveServer(_)) {
            Some("transport.security must not be the CURVE server role (use `curve`)")
        } else {
            None
        };
        bad.map_or(Ok(()), |what| Err(Error::invalid_option(what)))
    }

    pub(crate) fn new_backoff(&self) -> Backoff {
        Backoff::new(self.backoff)
    }

    /// The options of every session's DEALER: no identity, the CURVE keys if set, and
    /// `X-Domo-Credit` announcing the credit when above 1 (first, in place of any in
    /// `transport.metadata`; a broker reads the first).
    pub(crate) fn dealer_options(&self) -> domo_zmtp::Options {
        let mut t = self.transport.clone();
        t.identity = None;
        if let Some(keys) = &self.curve {
            t.security = Security::CurveClient(keys.clone());
        }
        let mut metadata = Metadata::new();
        if self.credit > 1 {
            metadata.insert(CREDIT_PROPERTY, self.credit.to_string());
        }
        for (name, value) in t.metadata.iter() {
            if !name.eq_ignore_ascii_case(CREDIT_PROPERTY.as_bytes()) {
                metadata.insert(name.clone(), value.clone());
            }
        }
        t.metadata = metadata;
        // Several requests at once: their replies may share writes.
        t.coalesce_writes |= self.credit > 1;
        t
    }

    /// The capacity of [`crate::Worker::recv`]'s queue: every request all sessions may
    /// hold at once, so a session never finds it full.
    pub(crate) fn max_requests(&self) -> usize {
        let credit = usize::try_from(self.credit.max(1)).unwrap_or(usize::MAX);
        self.total_sessions().saturating_mul(credit)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ErrorKind;

    #[test]
    fn every_field_has_a_setter() {
        let heartbeat = Heartbeat {
            interval: Duration::from_millis(100),
            liveness: 5,
        };
        let backoff = BackoffOptions::default().jitter(false);
        let server = KeyPair::generate();
        let ours = KeyPair::generate();
        let options = WorkerOptions::default()
            .endpoints(["tcp://10.0.0.1:1", "tcp://10.0.0.2:1"])
            .mode(EndpointMode::EachBroker)
            .sessions(2)
            .credit(3)
            .heartbeat(heartbeat)
            .backoff(backoff)
            .curve(server.public, ours.clone())
            .transport(domo_zmtp::Options::default());
        assert_eq!(options.endpoints, ["tcp://10.0.0.1:1", "tcp://10.0.0.2:1"]);
        assert_eq!(options.mode, EndpointMode::EachBroker);
        assert_eq!(options.sessions, 2);
        assert_eq!(options.credit, 3);
        assert_eq!(options.heartbeat, heartbeat);
        assert_eq!(options.backoff, backoff);
        assert_eq!(options.total_sessions(), 4);
        let curve = options.curve.as_ref().expect("curve keys");
        assert_eq!(curve.server_key, server.public);
        assert_eq!(curve.keypair.public, ours.public);
        match options.dealer_options().security {
            Security::CurveClient(c) => assert_eq!(c.server_key, server.public),
            other => panic!("not a CURVE client: {other:?}"),
        }
        assert!(options.check().is_ok());
    }

    #[test]
    fn zeros_that_make_no_sense_are_refused() {
        let base = WorkerOptions::default();
        let beat = Heartbeat::default();
        let backoff = BackoffOptions::default();
        for (options, field) in [
            (base.clone().sessions(0), "sessions"),
            (base.clone().credit(0), "credit must not be zero"),
            (base.clone().credit(1025), "credit must be at most 1024"),
            (
                base.clone().heartbeat(Heartbeat {
                    interval: Duration::ZERO,
                    ..beat
                }),
                "heartbeat interval",
            ),
            (
                base.clone().heartbeat(Heartbeat {
                    liveness: 0,
                    ..beat
                }),
                "heartbeat liveness",
            ),
            (
                base.clone().backoff(backoff.initial(Duration::ZERO)),
                "backoff initial",
            ),
            (
                base.clone().backoff(backoff.max(Duration::ZERO)),
                "backoff max",
            ),
            (
                base.clone().transport(domo_zmtp::Options {
                    security: Security::curve_server(KeyPair::generate().secret),
                    ..domo_zmtp::Options::default()
                }),
                "CURVE server",
            ),
        ] {
            let err = options.check().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidOptions);
            assert!(err.to_string().contains(field), "{err}");
        }
    }
}

#[cfg(test)]
mod credit_tests {
    use domo_mdp::extensions::{Credit, CREDIT_PROPERTY};

    use super::*;

    fn announced(options: &WorkerOptions) -> Vec<(String, String)> {
        options
            .dealer_options()
            .metadata
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case(CREDIT_PROPERTY.as_bytes()))
            .map(|(n, v)| {
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                (text(n), text(v))
            })
            .collect()
    }

    #[test]
    fn credit_defaults_to_32_and_is_checked_in_range() {
        let options = WorkerOptions::default();
        assert_eq!(options.credit, 32);
        assert_eq!(options.max_requests(), 32);
        for ok in [1, 2, 1024] {
            assert!(options.clone().credit(ok).check().is_ok(), "{ok}");
        }
        for bad in [0, 1025, u32::MAX] {
            let err = options.clone().credit(bad).check().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidOptions, "{bad}");
            assert!(err.to_string().contains("credit"), "{err}");
        }
        let pair = WorkerOptions::pair("tcp://a:1", "tcp://b:1")
            .sessions(3)
            .credit(4);
        assert_eq!(pair.max_requests(), 24);
    }

    #[test]
    fn the_credit_is_announced_only_above_1_and_replaces_one_in_the_transport() {
        let property = |n: &str| vec![(CREDIT_PROPERTY.to_string(), n.to_string())];
        assert_eq!(announced(&WorkerOptions::default()), property("32"));
        assert_eq!(
            announced(&WorkerOptions::default().credit(1024)),
            property("1024")
        );
        assert_eq!(announced(&WorkerOptions::default().credit(1)), vec![]);
        // What the broker reads back parses as the credit.
        let t = WorkerOptions::default().credit(5).dealer_options();
        let value = t.metadata.get(CREDIT_PROPERTY).unwrap();
        assert_eq!(Credit::parse(value), Credit::new(5));

        // A property already in the transport's metadata gives way; others stay.
        let mut transport = domo_zmtp::Options::default();
        transport.metadata.insert("X-Domo-Credit", "99");
        transport.metadata.insert("X-Team", "blue");
        let options = WorkerOptions::default().transport(transport);
        assert_eq!(announced(&options.clone().credit(2)), property("2"));
        assert_eq!(announced(&options.clone().credit(1)), vec![]);
        let t = options.dealer_options();
        assert_eq!(t.metadata.get("X-Team").map(|v| &v[..]), Some(&b"blue"[..]));
    }

    #[test]
    fn sessions_that_hold_several_requests_coalesce_their_writes() {
        assert!(WorkerOptions::default().dealer_options().coalesce_writes);
        let one = WorkerOptions::default().credit(1);
        assert!(!one.dealer_options().coalesce_writes);
        // Asked for in the transport, it stays on.
        let transport = domo_zmtp::Options {
            coalesce_writes: true,
            ..domo_zmtp::Options::default()
        };
        assert!(one.transport(transport).dealer_options().coalesce_writes);
    }
}
