//! Helpers for the broker's management interface (RFC 8 `mmi.service`, and domo's
//! `mmi.services` and `mmi.workers`).

use bytes::Bytes;
use domo_mdp::mmi::Status;
use domo_mdp::ServiceName;

use crate::{Client, Error};

const MMI_SERVICE: ServiceName = ServiceName::from_static("mmi.service");

impl Client {
    /// Whether `service` has at least one worker (`mmi.service`: 200 or 404).
    ///
    /// # Errors
    ///
    /// The errors of [`Client::request`];
    /// [`ErrorKind::Forbidden`](crate::ErrorKind::Forbidden) when the broker answers 403
    /// (this client's CURVE key may not call `service`);
    /// [`ErrorKind::UnexpectedReply`](crate::ErrorKind::UnexpectedReply) for another answer.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: domo_client::Client) -> Result<(), domo_client::Error> {
    /// if !client.service_available("echo").await? {
    ///     eprintln!("nobody serves echo");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn service_available(&self, service: impl Into<Bytes>) -> Result<bool, Error> {
        let service = ServiceName::new(service.into())?;
        self.ask_service(&service).await
    }

    pub(crate) async fn ask_service(&self, service: &ServiceName) -> Result<bool, Error> {
        let reply = self
            .exchange(&MMI_SERVICE, vec![service.clone().into_bytes()])
            .await?;
        match single(&reply).and_then(Status::from_frame) {
            Some(Status::Ok) => Ok(true),
            Some(Status::NotFound) => Ok(false),
            Some(Status::Forbidden) => Err(Error::forbidden(service)),
            _ => Err(unexpected(&reply)),
        }
    }

    /// The services that have workers (`mmi.services`, a domo extension).
    ///
    /// # Errors
    ///
    /// The errors of [`Client::request`];
    /// [`ErrorKind::UnexpectedReply`](crate::ErrorKind::UnexpectedReply) for a 501 from a broker
    /// without this extension.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: domo_client::Client) -> Result<(), domo_client::Error> {
    /// for name in client.services().await? {
    ///     println!("{name}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn services(&self) -> Result<Vec<String>, Error> {
        let reply = self.request("mmi.services", vec![Bytes::new()]).await?;
        if single(&reply).and_then(Status::from_frame) == Some(Status::NotImplemented) {
            return Err(unexpected(&reply));
        }
        Ok(reply
            .iter()
            .filter(|f| !f.is_empty())
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect())
    }

    /// How many workers serve `service` (`mmi.workers`, a domo extension).
    ///
    /// # Errors
    ///
    /// The errors of [`Client::request`];
    /// [`ErrorKind::UnexpectedReply`](crate::ErrorKind::UnexpectedReply) if the answer is not a
    /// number.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: domo_client::Client) -> Result<(), domo_client::Error> {
    /// let n = client.workers("echo").await?;
    /// # Ok(()) }
    /// ```
    pub async fn workers(&self, service: impl Into<Bytes>) -> Result<usize, Error> {
        let service = ServiceName::new(service.into())?;
        let reply = self
            .request("mmi.workers", vec![service.into_bytes()])
            .await?;
        single(&reply)
            .and_then(|f| std::str::from_utf8(f).ok())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| unexpected(&reply))
    }
}

impl Client {
    /// Asks the broker (`mmi.queued`, a domo extension) how many requests for `service` wait
    /// for a worker.
    ///
    /// # Errors
    ///
    /// As [`Client::workers`]; a broker without the extension answers `501`, reported as
    /// [`ErrorKind::UnexpectedReply`](crate::ErrorKind::UnexpectedReply).
    pub async fn queued(&self, service: impl Into<Bytes>) -> Result<usize, Error> {
        let service = ServiceName::new(service.into())?;
        let reply = self
            .request("mmi.queued", vec![service.into_bytes()])
            .await?;
        single(&reply)
            .and_then(|f| std::str::from_utf8(f).ok())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| unexpected(&reply))
    }
}

fn single(reply: &[Bytes]) -> Option<&[u8]> {
    match reply {
        [one] => Some(one),
        _ => None,
    }
}

fn unexpected(reply: &[Bytes]) -> Error {
    let shown: Vec<String> = reply
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    Error::unexpected_reply(shown.join(" | "))
}
