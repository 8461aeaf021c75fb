//! domo-client: an async (tokio) MDP/0.1 client with Lazy Pirate retries and failover.
//!
//! ```no_run
//! # async fn demo() -> Result<(), domo_client::Error> {
//! use bytes::Bytes;
//! use domo_client::{Client, ClientOptions};
//!
//! // Checks the options; the connection opens with the first request.
//! let client = Client::new(ClientOptions::new(["tcp://127.0.0.1:5555"]))?;
//! let reply = client.request("echo", vec![Bytes::from_static(b"hello")]).await?;
//! assert_eq!(reply, vec![Bytes::from_static(b"hello")]);
//! # Ok(()) }
//! ```
//!
//! # Reliability (Lazy Pirate)
//!
//! * Each attempt waits up to `timeout` (default 2500 ms) for its reply. A timed-out attempt
//!   is retried, up to `retries` times (default 2). With a domo broker (multiplexing, see
//!   "Concurrency") the retry goes out on the same connection under a new tag, and a late
//!   reply to the abandoned attempt is recognised by its tag and dropped. With an RFC 7
//!   broker each retry goes out **on a fresh connection**: MDP/0.1 replies carry no request
//!   id, so the late reply to an abandoned attempt must not arrive where the next answer is
//!   awaited.
//! * Failover: when an attempt times out while its connection is not even up, the client
//!   moves to the next endpoint of the list (for every later request too) and waits
//!   `settle` (default 100 ms) before the next attempt ([`Failover::Unreachable`], the
//!   default).
//! * Binary Star pair: use [`ClientOptions::pair`] ([`Failover::AnyTimeout`]). A passive
//!   broker keeps its connection up but drops every request, so there **any** timed-out
//!   attempt switches the client (every request, pool-wide) to the other broker, as the
//!   zguide's `bstarcli` does. The retry there goes out `settle` (2 s by default, the
//!   broker's default failover time) after the failed attempt was *sent*, not after its
//!   timeout; requests started meanwhile wait for the same moment. So with a 1 s timeout a
//!   request caught by the loss of the active broker gets its answer from the backup about
//!   2 s after it was sent. If both brokers stay silent, the attempts alternate between
//!   them until the retries run out.
//! * Retries re-send the request: services that are not idempotent need their own
//!   deduplication (the zguide's advice).
//!
//! # Connections
//!
//! [`Client::new`] checks the options and opens nothing: each request opens (or reuses)
//! a connection and waits for its reply within `timeout`, so a broker that is down, or
//! not up yet, costs the request its attempts and nothing else. A client made while the
//! broker is down works as soon as the broker is up. A request that reached no broker on
//! any attempt fails with [`ErrorKind::Disconnected`]. (`Client::connect`, the old name,
//! is a deprecated alias of [`Client::new`].)
//!
//! # Options
//!
//! [`ClientOptions`] has a setter for every field. A zero where zero makes no sense
//! (`timeout`, `pool_size`, `max_message_size`) is refused by [`Client::new`] with
//! [`ErrorKind::InvalidOptions`]; setters never clamp or panic.
//!
//! # Concurrency
//!
//! A [`Client`] is cheap to clone; all clones share its connections and at most `pool_size`
//! requests (default 16) are in flight at once; further requests wait their turn.
//!
//! * **Multiplexed** (the default, [`ClientOptions::multiplex`]): the client announces
//!   `X-Domo-Mux: 1` in its ZMTP handshake, and when the broker lists `mux` in its own
//!   (domo-broker does) every request to that broker shares **one connection**: each
//!   REQUEST carries a tag frame after the service, and the reply carries it back, so
//!   replies are matched to requests in whatever order they come (docs/extensions.md).
//! * **Plain MDP/0.1** with a broker that does not list `mux` (the zguide's brokers, any
//!   RFC 7 broker; found out at the first connection, before anything is sent), or with
//!   `multiplex(false)`: one outstanding request per connection, so up to `pool_size`
//!   connections. Nothing on the wire is new then.
//!
//! Dropping a request future is safe: a multiplexed request forgets its tag (a late reply
//! is dropped); a plain connection is reset before it is reused.
//!
//! # Errors
//!
//! [`Error::kind`] says what the caller can do: [`ErrorKind::TimedOut`],
//! [`ErrorKind::ServiceUnavailable`] (the broker's `mmi.service` says 404 after the
//! timeouts), [`ErrorKind::Disconnected`], [`ErrorKind::Handshake`] (see "Security"),
//! [`ErrorKind::Closed`],
//! [`ErrorKind::MessageTooLarge`], and the ones [`Client::new`] returns for bad options.
//! [`std::error::Error::source`] gives the underlying error (the transport's, or the
//! service name check's) where there is one.
//!
//! The `mmi.service` question (`check_service`, on by default) is itself one more request
//! with the same timeout, retries and failover, so it takes at most as long as the request
//! did. A passive broker drops it like any request: then it times out and the caller gets
//! [`ErrorKind::TimedOut`], unless a retry reaches the active broker, whose answer counts.
//!
//! # Security
//!
//! With [`ClientOptions::curve`] (the broker's public key and the client's keypair, for
//! example from certificate files with [`domo_zmtp::curve::CurveClient::from_files`]) every
//! connection is encrypted and authenticated with CURVE (RFC 25/26). A broker that refuses
//! the client's key, a wrong broker key, or a broker without CURVE is not reported as a bare
//! timeout: an attempt that timed out while its handshake kept failing ends the request
//! with [`ErrorKind::Handshake`] (`handshake failed: not authorized`, `handshake failed:
//! server key mismatch`, ...), after that one attempt when there is a single endpoint
//! (retries on fresh connections would meet the same refusal), or after the last attempt
//! when the others went to other endpoints.
//!
//! # Layout
//!
//! * `pool`: the bounded connection pool and the reset-before-reuse rule.
//! * `mux`: the multiplexed connection and its reader, which matches replies by tag.
//! * `mmi`: helpers for the broker's management interface.
//! * [`blocking`]: a wrapper for programs without a tokio runtime.

pub mod blocking;
mod broadcast;
mod error;
mod mmi;
mod mux;
mod options;
mod pool;
mod titanic;
mod topics;

use std::sync::Arc;

use bytes::Bytes;
use domo_mdp::client::{decode_reply, encode_request};
use domo_mdp::ServiceName;
use domo_zmtp::{Dealer, HandshakeError};
use tokio::time::Instant;
use tracing::{debug, instrument};

pub use crate::broadcast::{Broadcast, BroadcastEvent, Outcome, Summary};
pub use crate::error::{Error, ErrorKind};
pub use crate::options::{ClientOptions, Failover};
use crate::pool::Pool;
pub use crate::titanic::{TitanicId, TitanicReply};
pub use crate::topics::{
    Publisher, Subscriber, SubscriberEvent, SubscriberStream, Subscriptions, TopicBroker,
    TopicMessage, TopicPlacement,
};
pub use domo_mdp::titanic::ParseIdError;
pub use domo_mdp::topic::{Persist, ReadReply, Retention, Stamp};

/// A handle for sending requests to services through a broker. Clones share connections.
#[derive(Debug, Clone)]
pub struct Client {
    pool: Arc<Pool>,
}

impl Client {
    /// Checks `options` and creates a client. It opens no connection: each request opens
    /// (or reuses) one when it is sent (see the crate docs), so this succeeds whether or not
    /// a broker is up. Must be called inside a tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NoEndpoints`] or [`ErrorKind::InvalidEndpoint`] for bad endpoints,
    /// [`ErrorKind::InvalidOptions`] for a zero `timeout`, `pool_size` or
    /// `max_message_size`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn demo() -> Result<(), domo_client::Error> {
    /// use std::time::Duration;
    /// use domo_client::{Client, ClientOptions};
    /// let options = ClientOptions::new(["tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555"])
    ///     .timeout(Duration::from_secs(1))
    ///     .retries(3);
    /// let client = Client::new(options)?;
    /// # Ok(()) }
    /// ```
    pub fn new(options: ClientOptions) -> Result<Self, Error> {
        options.check()?;
        Ok(Self {
            pool: Arc::new(Pool::new(options)),
        })
    }

    /// The old name of [`Client::new`], which opens no connection either.
    ///
    /// # Errors
    ///
    /// As [`Client::new`].
    #[deprecated(note = "renamed to `Client::new`: no connection opens before a request")]
    pub fn connect(options: ClientOptions) -> Result<Self, Error> {
        Self::new(options)
    }

    /// The options this client uses.
    pub fn options(&self) -> &ClientOptions {
        &self.pool.options
    }

    /// Sends `body` to `service` and returns the reply body (Lazy Pirate: see the crate
    /// docs). An empty `body` is sent as one empty frame.
    ///
    /// # Errors
    ///
    /// See [`ErrorKind`]; [`ErrorKind::TimedOut`], [`ErrorKind::ServiceUnavailable`] and
    /// [`ErrorKind::Disconnected`] come after every attempt timed out.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: domo_client::Client) -> Result<(), domo_client::Error> {
    /// use bytes::Bytes;
    /// let reply = client.request("echo", vec![Bytes::from("ping")]).await?;
    /// # Ok(()) }
    /// ```
    #[instrument(skip(self, service, body), fields(service))]
    pub async fn request(
        &self,
        service: impl Into<Bytes>,
        body: Vec<Bytes>,
    ) -> Result<Vec<Bytes>, Error> {
        let service = ServiceName::new(service.into())?;
        tracing::Span::current().record("service", tracing::field::display(&service));
        match self.exchange(&service, body).await {
            Err(timed_out)
                if timed_out.kind() == ErrorKind::TimedOut
                    && self.pool.options.check_service
                    && !service.is_mmi() =>
            {
                match self.ask_service(&service).await {
                    Ok(false) => Err(Error::service_unavailable(&service)),
                    Err(forbidden) if forbidden.kind() == ErrorKind::Forbidden => Err(forbidden),
                    _ => Err(timed_out),
                }
            }
            other => other,
        }
    }

    /// One request with its retries, without the `mmi.service` diagnosis.
    pub(crate) async fn exchange(
        &self,
        service: &ServiceName,
        body: Vec<Bytes>,
    ) -> Result<Vec<Bytes>, Error> {
        let options = &self.pool.options;
        let size: usize = body.iter().map(Bytes::len).sum();
        let limit = options.max_message_size;
        if size > limit {
            return Err(Error::too_large(size, limit));
        }
        if let Some(result) = self.mux_attempts(service, &body).await {
            return result;
        }
        let msg = encode_request(service, body);
        self.attempts(service, &msg).await
    }

    /// The attempts on multiplexed connections (see [`ClientOptions::multiplex`]): like
    /// [`Client::attempts`], but a retry goes out on the same connection under a new tag
    /// unless the client failed over. `None` when multiplexing is off or the broker turns out
    /// not to list `mux` (the plain attempts then run from the start; nothing was sent).
    async fn mux_attempts(
        &self,
        service: &ServiceName,
        body: &[Bytes],
    ) -> Option<Result<Vec<Bytes>, Error>> {
        let pool = &self.pool;
        let options = &pool.options;
        if !options.multiplex {
            return None;
        }
        let _permit = match pool.permit().await {
            Ok(permit) => permit,
            Err(closed) => return Some(Err(closed)),
        };
        let mut log = Timeouts::default();
        let mut started = Instant::now();
        let mut previous: Option<usize> = None;
        let mut endpoint = pool.current();
        for attempt in 0..=options.retries {
            endpoint = pool.current();
            if previous.is_some_and(|p| p != endpoint) {
                match options.failover {
                    Failover::Unreachable => tokio::time::sleep(options.settle).await,
                    Failover::AnyTimeout => {
                        tokio::time::sleep_until(started + options.settle).await
                    }
                }
            }
            previous = Some(endpoint);
            if let Some(at) = pool.not_before(endpoint) {
                tokio::time::sleep_until(at).await;
            }
            let link = match pool.mux_link(endpoint) {
                Ok(Some(link)) => link,
                Ok(None) => return None,
                Err(error) => return Some(Err(error)),
            };
            started = Instant::now();
            let dealer = link.dealer();
            let call = tokio::time::timeout(options.timeout, link.call(service, body));
            // A refused handshake ends the attempt at once. On a connection that is up (the
            // usual case of a multiplexed one) the race is skipped: it costs a lock and a
            // waker per request, and a refusal there needs the broker to restart with other
            // keys, which this attempt's timeout then reports as a handshake error.
            let outcome = if dealer.is_connected() {
                call.await.ok()
            } else {
                tokio::select! {
                    call = call => call.ok(),
                    _ = dealer.refused() => None,
                }
            };
            match outcome {
                Some(Ok(mux::Call::Reply(reply))) => return Some(Ok(reply)),
                Some(Ok(mux::Call::Plain)) => {
                    pool.set_plain(endpoint);
                    return None;
                }
                // Closed under this request because another one found the broker plain.
                Some(Err(_)) if pool.is_plain(endpoint) => return None,
                Some(Err(error)) => return Some(Err(error)),
                None => {
                    if log.timed_out(pool, dealer, endpoint, started, (service, attempt)) {
                        break;
                    }
                }
            }
        }
        Some(Err(log.error(options, endpoint)))
    }

    /// Runs the attempts until a reply comes, the retries run out, or the only broker
    /// refused the handshake (retrying on a fresh connection would not change its mind).
    /// After the last timeout the error says why: the broker's refusal of the last
    /// attempt's handshake ([`ErrorKind::Handshake`]), else whether any connection was ever
    /// up ([`ErrorKind::TimedOut`]) or not ([`ErrorKind::Disconnected`]).
    async fn attempts(&self, service: &ServiceName, msg: &[Bytes]) -> Result<Vec<Bytes>, Error> {
        let options = &self.pool.options;
        let mut lease = self.pool.lease().await?;
        let mut log = Timeouts::default();
        // When the previous attempt was sent.
        let mut started = Instant::now();
        for attempt in 0..=options.retries {
            if attempt > 0 {
                let before = lease.endpoint();
                lease.refresh()?;
                if lease.endpoint() != before {
                    match options.failover {
                        Failover::Unreachable => tokio::time::sleep(options.settle).await,
                        // Counted from the failed attempt's start: its timeout already
                        // gave the backup that much time to take over.
                        Failover::AnyTimeout => {
                            tokio::time::sleep_until(started + options.settle).await;
                        }
                    }
                }
            }
            // A switch made by this or another request: wait until the newly chosen broker
            // has had `settle` to take over.
            if let Some(at) = self.pool.not_before(lease.endpoint()) {
                tokio::time::sleep_until(at).await;
            }
            let dealer = lease.dealer();
            started = Instant::now();
            dealer
                .send(msg.to_vec())
                .await
                .map_err(Error::connection_closed)?;
            // A refused handshake ends the attempt at once: waiting out the timeout would
            // only delay the answer.
            let outcome = tokio::select! {
                reply = tokio::time::timeout(options.timeout, wait_reply(dealer, service)) => reply.ok(),
                _ = dealer.refused() => None,
            };
            match outcome {
                Some(reply) => {
                    let reply = reply?;
                    lease.set_clean();
                    return Ok(reply);
                }
                None => {
                    let endpoint = lease.endpoint();
                    if log.timed_out(&self.pool, dealer, endpoint, started, (service, attempt)) {
                        break;
                    }
                }
            }
        }
        Err(log.error(options, lease.endpoint()))
    }

    /// Closes the client (every clone): requests in flight finish, new ones fail with
    /// [`ErrorKind::Closed`], idle connections are shut down.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// What the timed-out attempts of one request said, for the error after the last one.
#[derive(Debug, Default)]
struct Timeouts {
    /// Whether any attempt's connection was up.
    ever_connected: bool,
    /// Why the last attempt's connection never came up, if its handshake was refused.
    refused: Option<HandshakeError>,
}

impl Timeouts {
    /// Records an attempt on `endpoint` (sent at `started`) that timed out, and fails the
    /// pool over as [`ClientOptions::failover`] says; true if retrying is pointless (the
    /// only broker refused the handshake: a fresh connection would not change its mind).
    fn timed_out(
        &mut self,
        pool: &Pool,
        dealer: &Dealer,
        endpoint: usize,
        started: Instant,
        (service, attempt): (&ServiceName, u32),
    ) -> bool {
        let options = &pool.options;
        let up = dealer.is_connected();
        self.ever_connected |= up;
        // Kept since the last successful handshake: so while down, why. A connection closed
        // mid-handshake is bad luck, not an answer.
        let refused = if up { None } else { dealer.handshake_error() };
        self.refused = refused.filter(HandshakeError::is_refusal);
        debug!(%service, attempt, connected = up, handshake = ?self.refused, "Attempt timed out");
        // A passive Binary Star broker is connected but never answers.
        if !up || options.failover == Failover::AnyTimeout {
            pool.fail_over(endpoint, started);
        }
        options.endpoints.len() == 1 && self.refused.is_some()
    }

    /// The error after the last attempt (on `endpoint`): the broker's refusal of its
    /// handshake, else whether any connection was ever up.
    fn error(self, options: &ClientOptions, endpoint: usize) -> Error {
        match self.refused {
            Some(error) => Error::handshake(&options.endpoints[endpoint], error),
            None if self.ever_connected => Error::timed_out(options.retries.saturating_add(1)),
            None => Error::disconnected(&options.endpoints),
        }
    }
}

/// Waits for a reply from `service` on `dealer`; anything else (a malformed message or a
/// reply naming another service) is dropped.
async fn wait_reply(dealer: &Dealer, service: &ServiceName) -> Result<Vec<Bytes>, Error> {
    loop {
        let msg = dealer.recv().await.map_err(Error::connection_closed)?;
        match decode_reply(msg) {
            Ok(reply) if reply.service == *service => return Ok(reply.body),
            Ok(reply) => {
                debug!(expected = %service, got = %reply.service, "Reply from another service dropped")
            }
            Err(error) => debug!(%error, "Malformed reply dropped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_opens_nothing_and_connect_is_its_old_name() {
        // Nothing listens on port 1: creating the client must still succeed.
        let options = ClientOptions::new(["tcp://127.0.0.1:1"]);
        let client = Client::new(options.clone()).unwrap();
        assert_eq!(client.options().endpoints, options.endpoints);
        #[allow(deprecated)]
        let old = Client::connect(ClientOptions::new(["bogus"])).unwrap_err();
        assert_eq!(old.kind(), ErrorKind::InvalidEndpoint);
        let zero = Client::new(options.timeout(std::time::Duration::ZERO)).unwrap_err();
        assert_eq!(zero.kind(), ErrorKind::InvalidOptions);
    }
}
