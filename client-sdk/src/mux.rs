//! Multiplexed connections (domo's `mux` extension, docs/extensions.md): many requests in
//! flight on one connection, each REQUEST tagged and its REPLY matched by the tag.
//!
//! A [`MuxLink`] is one DEALER that announces `X-Domo-Mux: 1` in its handshake, plus a
//! reader task that hands each reply to the request waiting for its tag. The connection is
//! used tagged only while its broker lists `mux` in `X-Domo-Extensions`; a broker that does
//! not (the zguide's brokers, any RFC 7 broker) makes [`MuxLink::call`] answer
//! [`Call::Plain`] before anything is sent, and the client falls back to one request per
//! connection.
//!
//! A request abandoned by its caller (a timeout, a dropped future) removes its tag, so its
//! late reply finds no one and is dropped: a retry needs no fresh connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use domo_mdp::client::{decode_reply, encode_tagged_request, split_tag};
use domo_mdp::extensions::{lists, EXTENSIONS_PROPERTY, MUX, MUX_PROPERTY};
use domo_mdp::{LockExt, ServiceName};
use domo_zmtp::Dealer;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, trace};

use crate::error::Error;

/// Requests waiting on one connection, by tag.
type Waiters = HashMap<u64, (ServiceName, Waiter)>;

/// Who waits for the replies of one tag.
#[derive(Debug)]
enum Waiter {
    /// One reply ends the request.
    Once(oneshot::Sender<Vec<Bytes>>),
    /// Every reply until the caller drops its [`MuxStream`] (`mmi.broadcast`).
    Stream(mpsc::UnboundedSender<Vec<Bytes>>),
}

/// The replies of one request that gets several ([`MuxLink::stream`]); its tag is forgotten
/// when it is dropped. `recv` gives `None` once the connection closes.
#[derive(Debug)]
pub(crate) struct MuxStream {
    rx: mpsc::UnboundedReceiver<Vec<Bytes>>,
    shared: Arc<Shared>,
    tag: u64,
}

impl MuxStream {
    /// Polls for the next reply body.
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Vec<Bytes>>> {
        self.rx.poll_recv(cx)
    }
}

impl Drop for MuxStream {
    fn drop(&mut self) {
        self.shared.waiters().remove(&self.tag);
    }
}

/// What the reader task and the callers share.
#[derive(Debug)]
struct Shared {
    dealer: Dealer,
    waiters: Mutex<Waiters>,
}

impl Shared {
    fn waiters(&self) -> MutexGuard<'_, Waiters> {
        self.waiters.lock_unpoisoned()
    }
}

/// One multiplexed connection to one endpoint.
#[derive(Debug)]
pub(crate) struct MuxLink {
    shared: Arc<Shared>,
    next_tag: AtomicU64,
    reader: JoinHandle<()>,
}

/// How a [`MuxLink::call`] ended (a timeout is the caller's: it drops the future).
#[derive(Debug)]
pub(crate) enum Call {
    /// The reply body.
    Reply(Vec<Bytes>),
    /// The broker does not list `mux`: nothing was sent, use one connection per request.
    Plain,
}

impl MuxLink {
    /// Starts connecting to `endpoint`, announcing `X-Domo-Mux: 1`.
    pub(crate) fn open(
        endpoint: &str,
        mut options: domo_zmtp::Options,
    ) -> Result<Self, domo_zmtp::Error> {
        options.metadata.insert(MUX_PROPERTY, "1");
        // Many requests in flight on one connection: let them share writes.
        options.coalesce_writes = true;
        let dealer = Dealer::connect(endpoint, options)?;
        let shared = Arc::new(Shared {
            dealer,
            waiters: Mutex::new(HashMap::new()),
        });
        let reader = tokio::spawn(read_replies(shared.clone()));
        debug!(%endpoint, "Multiplexed connection opened");
        Ok(Self {
            shared,
            next_tag: AtomicU64::new(1),
            reader,
        })
    }

    /// The connection.
    pub(crate) fn dealer(&self) -> &Dealer {
        &self.shared.dealer
    }

    /// Sends `body` to `service` and waits for its reply, once the connection is up and its
    /// broker turns out to list `mux`. Cancel-safe: dropping the future forgets the tag.
    pub(crate) async fn call(&self, service: &ServiceName, body: &[Bytes]) -> Result<Call, Error> {
        let dealer = &self.shared.dealer;
        dealer.connected().await.map_err(Error::connection_closed)?;
        if !broker_multiplexes(dealer) {
            return Ok(Call::Plain);
        }
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.shared
            .waiters()
            .insert(tag, (service.clone(), Waiter::Once(tx)));
        let _forget = Forget {
            shared: &self.shared,
            tag,
        };
        let msg = encode_tagged_request(
            service,
            Bytes::copy_from_slice(&tag.to_be_bytes()),
            body.iter().cloned(),
        );
        dealer.send(msg).await.map_err(Error::connection_closed)?;
        // The sender is dropped only with the reader, that is, with the connection.
        let body = rx
            .await
            .map_err(|_| Error::connection_closed(domo_zmtp::Error::Closed))?;
        Ok(Call::Reply(body))
    }

    /// Sends `body` to `service` and returns the stream of its replies, once the connection
    /// is up; `None` (nothing sent) if its broker does not list `mux`.
    pub(crate) async fn stream(
        &self,
        service: &ServiceName,
        body: Vec<Bytes>,
    ) -> Result<Option<MuxStream>, Error> {
        let dealer = &self.shared.dealer;
        dealer.connected().await.map_err(Error::connection_closed)?;
        if !broker_multiplexes(dealer) {
            return Ok(None);
        }
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        self.shared
            .waiters()
            .insert(tag, (service.clone(), Waiter::Stream(tx)));
        let stream = MuxStream {
            rx,
            shared: self.shared.clone(),
            tag,
        };
        let msg = encode_tagged_request(service, Bytes::copy_from_slice(&tag.to_be_bytes()), body);
        dealer.send(msg).await.map_err(Error::connection_closed)?;
        Ok(Some(stream))
    }

    /// Closes the connection; requests waiting on it fail.
    pub(crate) async fn shutdown(&self) {
        self.shared.dealer.shutdown().await;
        self.reader.abort();
    }
}

impl Drop for MuxLink {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Removes a request's tag when its call ends, however it ends.
struct Forget<'a> {
    shared: &'a Shared,
    tag: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.shared.waiters().remove(&self.tag);
    }
}

/// Whether the broker of `dealer`'s current connection lists `mux`.
pub(crate) fn broker_multiplexes(dealer: &Dealer) -> bool {
    dealer
        .peer_property(EXTENSIONS_PROPERTY)
        .is_some_and(|value| lists(&value, MUX))
}

/// Hands each reply to the request waiting for its tag; drops the rest (late replies to
/// abandoned requests, malformed messages, a reply naming another service).
async fn read_replies(shared: Arc<Shared>) {
    while let Ok(msg) = shared.dealer.recv().await {
        let reply = match decode_reply(msg) {
            Ok(reply) => reply,
            Err(error) => {
                debug!(%error, "Malformed reply dropped");
                continue;
            }
        };
        let (tag, body) = match split_tag(reply.body) {
            Ok(split) => split,
            Err(error) => {
                debug!(%error, "Reply without a valid tag dropped");
                continue;
            }
        };
        let Some(tag) = <[u8; 8]>::try_from(&tag[..]).ok().map(u64::from_be_bytes) else {
            debug!(
                len = tag.len(),
                "Reply with a tag this client never uses dropped"
            );
            continue;
        };
        let mut waiters = shared.waiters();
        match waiters.get(&tag) {
            Some((service, Waiter::Stream(tx))) if *service == reply.service => {
                // Unbounded, but a broadcast gets one reply per worker and a summary.
                let _ = tx.send(body);
            }
            Some((service, Waiter::Once(_))) if *service == reply.service => {
                if let Some((_, Waiter::Once(tx))) = waiters.remove(&tag) {
                    drop(waiters);
                    let _ = tx.send(body);
                }
            }
            Some((service, _)) => {
                debug!(expected = %service, got = %reply.service, "Reply from another service dropped");
            }
            None => trace!(tag, "Late reply to an abandoned request dropped"),
        }
    }
    // Closed: whoever still waits learns it now rather than at its timeout.
    shared.waiters().clear();
}
