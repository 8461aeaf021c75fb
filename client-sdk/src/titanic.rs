//! Titanic (RFC 9) helpers: durable, disconnected requests through a broker's `titanic.*`
//! services (domo-broker runs them by default; `domo-titanic` runs them next to any broker).
//!
//! A request is handed to Titanic with [`Client::submit`], which returns only once Titanic has
//! stored it on disk; the reply is fetched later, by anyone who has the id, with
//! [`Client::titanic_reply`], and the stored request and reply are removed with
//! [`Client::titanic_close`]. [`Client::call_durable`] does all three. Titanic delivers to the
//! real service at least once, so that service should be idempotent.

use std::time::Duration;

use bytes::Bytes;
use domo_mdp::titanic::{self as wire, UnexpectedReply};
use domo_mdp::{Backoff, BackoffOptions};

use crate::{Client, Error};

/// A Titanic request id: 32 hex digits on the wire and as text (`Display`/`FromStr`, either
/// case accepted, lowercase written).
pub use domo_mdp::titanic::Id as TitanicId;
/// What `titanic.reply` says about a request: `Pending` (`300`, ask again later),
/// `Done(reply)` (`200`) or `Unknown` (`400`: no such request, or it was closed).
pub use domo_mdp::titanic::Reply as TitanicReply;

impl Client {
    /// Stores a request for `service` durably with Titanic and returns its id.
    ///
    /// # Errors
    ///
    /// The errors of [`Client::request`]; [`ErrorKind::Titanic`](crate::ErrorKind::Titanic) when
    /// Titanic answers with an error status (`500`: it could not store the request, retry later;
    /// `400`: malformed).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: domo_client::Client) -> Result<(), domo_client::Error> {
    /// use bytes::Bytes;
    /// let id = client.submit("echo", vec![Bytes::from("ping")]).await?;
    /// # Ok(()) }
    /// ```
    pub async fn submit(
        &self,
        service: impl Into<Bytes>,
        body: Vec<Bytes>,
    ) -> Result<TitanicId, Error> {
        let reply = self
            .request(
                Bytes::from_static(wire::TITANIC_REQUEST),
                wire::request_body(service.into(), body),
            )
            .await?;
        wire::decode_request_reply(reply).map_err(titanic_error)
    }

    /// [`Client::submit`] under an idempotency key (1 to 128 bytes; a UUID of the client's
    /// making, say): Titanic stores the request once per key, and a retry with the same key
    /// (after a timeout, a `500`, or a failover of the broker pair on a shared database) gets
    /// the id of the request stored first, as long as that request is not closed or expired.
    /// The key travels as a first frame `Idempotency-Key:KEY` that only domo's Titanic reads
    /// (docs/extensions.md section 6).
    ///
    /// # Errors
    ///
    /// Those of [`Client::submit`]; [`ErrorKind::InvalidOptions`](crate::ErrorKind::InvalidOptions)
    /// for an empty or too long key.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: domo_client::Client) -> Result<(), domo_client::Error> {
    /// use bytes::Bytes;
    /// let key = "order-7f3c-submit";
    /// let id = client.submit_keyed(key, "billing", vec![Bytes::from("charge 12")]).await?;
    /// // After a timeout, the same call again: the same id, one stored request.
    /// # Ok(()) }
    /// ```
    pub async fn submit_keyed(
        &self,
        key: impl AsRef<[u8]>,
        service: impl Into<Bytes>,
        body: Vec<Bytes>,
    ) -> Result<TitanicId, Error> {
        let key = key.as_ref();
        if key.is_empty() || key.len() > wire::MAX_IDEMPOTENCY_KEY {
            return Err(Error::invalid_option(
                "an idempotency key is 1 to 128 bytes",
            ));
        }
        let reply = self
            .request(
                Bytes::from_static(wire::TITANIC_REQUEST),
                wire::request_body_keyed(key, service.into(), body),
            )
            .await?;
        wire::decode_request_reply(reply).map_err(titanic_error)
    }

    /// Asks Titanic for the reply to request `id`; does not remove it.
    ///
    /// # Errors
    ///
    /// The errors of [`Client::request`]; [`ErrorKind::Titanic`](crate::ErrorKind::Titanic) for a
    /// `500` (retry later).
    pub async fn titanic_reply(&self, id: &TitanicId) -> Result<TitanicReply, Error> {
        let reply = self
            .request(Bytes::from_static(wire::TITANIC_REPLY), wire::id_body(id))
            .await?;
        wire::decode_reply_reply(reply).map_err(titanic_error)
    }

    /// Removes request `id` and its reply from Titanic (also fine for an unknown id).
    ///
    /// # Errors
    ///
    /// The errors of [`Client::request`]; [`ErrorKind::Titanic`](crate::ErrorKind::Titanic) for a
    /// `500`.
    pub async fn titanic_close(&self, id: &TitanicId) -> Result<(), Error> {
        let reply = self
            .request(Bytes::from_static(wire::TITANIC_CLOSE), wire::id_body(id))
            .await?;
        wire::decode_close_reply(reply).map_err(titanic_error)
    }

    /// Submits a request durably, polls for its reply (every 100 ms at first, backing off to 5 s)
    /// for up to `wait`, then closes it and returns the reply. If `wait` runs out, the request
    /// stays stored and an error of kind
    /// [`ErrorKind::TitanicPending`](crate::ErrorKind::TitanicPending) carries its id
    /// ([`Error::pending_id`]) to ask again later.
    ///
    /// # Errors
    ///
    /// Those of [`Client::submit`] and [`Client::titanic_reply`];
    /// [`ErrorKind::TitanicPending`](crate::ErrorKind::TitanicPending) after `wait`;
    /// [`ErrorKind::Titanic`](crate::ErrorKind::Titanic) if the request disappeared (closed by
    /// someone else or expired).
    pub async fn call_durable(
        &self,
        service: impl Into<Bytes>,
        body: Vec<Bytes>,
        wait: Duration,
    ) -> Result<Vec<Bytes>, Error> {
        let id = self.submit(service, body).await?;
        let deadline = tokio::time::Instant::now() + wait;
        // Polls at 100 ms doubling to 5 s, without jitter.
        let mut pause = Backoff::new(
            BackoffOptions::default()
                .initial(Duration::from_millis(100))
                .max(Duration::from_secs(5))
                .jitter(false),
        );
        loop {
            match self.titanic_reply(&id).await? {
                TitanicReply::Done(reply) => {
                    self.titanic_close(&id).await?;
                    return Ok(reply);
                }
                TitanicReply::Unknown => {
                    return Err(Error::titanic(format!("request {id} is gone")))
                }
                TitanicReply::Pending => {}
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::titanic_pending(id));
            }
            tokio::time::sleep(pause.next_delay().min(deadline - now)).await;
        }
    }
}

fn titanic_error(UnexpectedReply(reply): UnexpectedReply) -> Error {
    let shown: Vec<String> = reply
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    Error::titanic(shown.join(" | "))
}
