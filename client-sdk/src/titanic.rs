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
use domo_mdp::mmi::Status;

use crate::{Client, Error};

/// What `titanic.reply` says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TitanicReply {
    /// Stored, not answered yet (`300`): ask again later.
    Pending,
    /// The service's reply (`200`).
    Done(Vec<Bytes>),
    /// No such request, or it was closed (`400`).
    Unknown,
}

impl Client {
    /// Stores a request for `service` durably with Titanic and returns its id (32 hex digits).
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
    ) -> Result<String, Error> {
        let mut frames = Vec::with_capacity(body.len() + 1);
        frames.push(service.into());
        frames.extend(body);
        let reply = self.request("titanic.request", frames).await?;
        match (status(&reply), reply.get(1)) {
            (Some(Status::Ok), Some(id)) if valid_id(id) => {
                Ok(String::from_utf8_lossy(id).into_owned())
            }
            _ => Err(titanic_error(&reply)),
        }
    }

    /// Asks Titanic for the reply to request `id`; does not remove it.
    ///
    /// # Errors
    ///
    /// The errors of [`Client::request`]; [`ErrorKind::Titanic`](crate::ErrorKind::Titanic) for a
    /// `500` (retry later).
    pub async fn titanic_reply(&self, id: &str) -> Result<TitanicReply, Error> {
        let mut reply = self
            .request("titanic.reply", vec![Bytes::copy_from_slice(id.as_bytes())])
            .await?;
        match status(&reply) {
            Some(Status::Ok) => Ok(TitanicReply::Done(reply.split_off(1))),
            Some(Status::Pending) => Ok(TitanicReply::Pending),
            Some(Status::BadRequest) => Ok(TitanicReply::Unknown),
            _ => Err(titanic_error(&reply)),
        }
    }

    /// Removes request `id` and its reply from Titanic (also fine for an unknown id).
    ///
    /// # Errors
    ///
    /// The errors of [`Client::request`]; [`ErrorKind::Titanic`](crate::ErrorKind::Titanic) for a
    /// `500`.
    pub async fn titanic_close(&self, id: &str) -> Result<(), Error> {
        let reply = self
            .request("titanic.close", vec![Bytes::copy_from_slice(id.as_bytes())])
            .await?;
        match status(&reply) {
            Some(Status::Ok) => Ok(()),
            _ => Err(titanic_error(&reply)),
        }
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
        let mut pause = Duration::from_millis(100);
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
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }
}

/// The three-digit status at the start of the first frame (RFC 9 allows text after it).
fn status(reply: &[Bytes]) -> Option<Status> {
    reply
        .first()
        .and_then(|f| f.get(..3))
        .and_then(Status::from_frame)
}

fn valid_id(id: &[u8]) -> bool {
    id.len() == 32 && id.iter().all(u8::is_ascii_hexdigit)
}

fn titanic_error(reply: &[Bytes]) -> Error {
    let shown: Vec<String> = reply
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    Error::titanic(shown.join(" | "))
}
