//! What a session needs from its connection, so the driver can run on a ZMTP DEALER in
//! production and on in-memory channels in paused-time tests.

use std::future::Future;

use bytes::Bytes;
use domo_zmtp::{Dealer, HandshakeError};

/// One connection to a broker (a new routing id each time one is made).
pub(crate) trait Link: Send + Sync + 'static {
    /// Queues a message, waiting while the send queue is full; false if closed.
    fn send(&self, msg: Vec<Bytes>) -> impl Future<Output = bool> + Send;
    /// Queues a message unless the send queue is full (heartbeats may be dropped).
    fn try_send(&self, msg: Vec<Bytes>);
    /// The next message; `None` once closed.
    fn recv(&self) -> impl Future<Output = Option<Vec<Bytes>>> + Send;
    /// Drops the connection and everything queued on it (the broker is presumed dead).
    fn abandon(&self);
    /// Flushes what is queued (up to the linger time) and closes.
    fn close(self) -> impl Future<Output = ()> + Send;
    /// Why the last handshake failed, if none succeeded since.
    fn handshake_error(&self) -> Option<HandshakeError>;
}

/// Makes new connections.
pub(crate) trait Connector: Send + Sync + 'static {
    /// The connection type.
    type Link: Link;
    /// Starts connecting to `endpoint` and returns at once.
    fn connect(&self, endpoint: &str) -> Result<Self::Link, domo_zmtp::Error>;
}

/// The production connector: ZMTP DEALER sockets.
#[derive(Debug, Clone)]
pub(crate) struct Zmtp(pub(crate) domo_zmtp::Options);

impl Connector for Zmtp {
    type Link = Dealer;

    fn connect(&self, endpoint: &str) -> Result<Dealer, domo_zmtp::Error> {
        Dealer::connect(endpoint, self.0.clone())
    }
}

impl Link for Dealer {
    async fn send(&self, msg: Vec<Bytes>) -> bool {
        Self::send(self, msg).await.is_ok()
    }

    fn try_send(&self, msg: Vec<Bytes>) {
        let _ = Self::try_send(self, msg);
    }

    async fn recv(&self) -> Option<Vec<Bytes>> {
        Self::recv(self).await.ok()
    }

    fn abandon(&self) {
        self.reconnect();
    }

    async fn close(self) {
        self.shutdown().await;
    }

    fn handshake_error(&self) -> Option<HandshakeError> {
        Self::handshake_error(self)
    }
}
