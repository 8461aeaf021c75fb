//! A blocking wrapper for programs without a tokio runtime.
//!
//! ```no_run
//! # fn demo() -> Result<(), domo_client::Error> {
//! use bytes::Bytes;
//! use domo_client::{blocking, ClientOptions};
//! let client = blocking::Client::new(ClientOptions::default())?;
//! let reply = client.request("echo", vec![Bytes::from("hi")])?;
//! # Ok(()) }
//! ```

use bytes::Bytes;
use tokio::runtime::Runtime;

use crate::{ClientOptions, Error};

/// A [`crate::Client`] with its own small runtime (one background thread). Do not use it
/// from inside an async runtime: blocking calls there panic.
#[derive(Debug)]
pub struct Client {
    runtime: Runtime,
    inner: crate::Client,
}

impl Client {
    /// Starts the runtime and creates the client; like [`crate::Client::new`], it opens no
    /// connection before the first request.
    ///
    /// # Errors
    ///
    /// Those of [`crate::Client::new`]; [`ErrorKind::Closed`](crate::ErrorKind::Closed) (with the
    /// I/O error as its source) if the runtime cannot start.
    pub fn new(options: ClientOptions) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(Error::runtime)?;
        let inner = runtime.block_on(async { crate::Client::new(options) })?;
        Ok(Self { runtime, inner })
    }

    /// The old name of [`Client::new`].
    ///
    /// # Errors
    ///
    /// As [`Client::new`].
    #[deprecated(note = "renamed to `blocking::Client::new`: no connection opens before a request")]
    pub fn connect(options: ClientOptions) -> Result<Self, Error> {
        Self::new(options)
    }

    /// Blocking [`crate::Client::request`].
    ///
    /// # Errors
    ///
    /// As [`crate::Client::request`].
    pub fn request(
        &self,
        service: impl Into<Bytes>,
        body: Vec<Bytes>,
    ) -> Result<Vec<Bytes>, Error> {
        self.runtime.block_on(self.inner.request(service, body))
    }

    /// Blocking [`crate::Client::service_available`].
    ///
    /// # Errors
    ///
    /// As [`crate::Client::service_available`].
    pub fn service_available(&self, service: impl Into<Bytes>) -> Result<bool, Error> {
        self.runtime.block_on(self.inner.service_available(service))
    }

    /// Blocking [`crate::Client::services`].
    ///
    /// # Errors
    ///
    /// As [`crate::Client::services`].
    pub fn services(&self) -> Result<Vec<String>, Error> {
        self.runtime.block_on(self.inner.services())
    }

    /// Blocking [`crate::Client::workers`].
    ///
    /// # Errors
    ///
    /// As [`crate::Client::workers`].
    pub fn workers(&self, service: impl Into<Bytes>) -> Result<usize, Error> {
        self.runtime.block_on(self.inner.workers(service))
    }
}
