//! The DEALER socket: one connection to one endpoint, reconnected automatically.
//!
//! Queue policy: outbound messages wait in a queue bounded by the send high-water marks
//! (messages and bytes) whether or not a connection is up; `try_send` says `Full` at the mark
//! and `send` waits. Messages still queued when a connection drops stay queued and go out on
//! the next connection; bytes already handed to a dead TCP connection are lost, as with any
//! ZeroMQ socket. [`Dealer::reconnect`] is a fresh start: it drops the connection and both
//! queues, so nothing from an abandoned exchange leaks into the new one (the Lazy Pirate
//! pattern relies on this).
//!
//! Reconnects back off exponentially from `reconnect_interval` to `reconnect_interval_max`,
//! each delay jittered into [d/2, d), and reset after a successful handshake.

use std::collections::{HashMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::driver::{CloseKind, Connection, Ended, Exchanged, Port, OUT_BATCH_BYTES};
use crate::endpoint::Endpoint;
use crate::error::{Error, HandshakeError, TrySendError};
use crate::options::{message_bytes, Hwm, Options};
use crate::proto::{Encoder, Handshake, Metadata};
use crate::socket_type::SocketType;
use crate::stats::{Counters, Stats};
use crate::transport::{self, Stream};
use crate::util::{jitter, lock, Backoff};

#[derive(Debug, Default)]
struct Inner {
    out: VecDeque<Vec<Bytes>>,
    out_bytes: usize,
    inq: VecDeque<Vec<Bytes>>,
    in_bytes: usize,
    connected: bool,
    closed: bool,
    /// Set by `close()`: until then a closed dealer with queued messages still tries to
    /// connect and deliver them.
    linger_until: Option<tokio::time::Instant>,
    /// `reconnect()` asked for a new connection.
    reconnect: bool,
    task: Option<Waker>,
    wants_out: bool,
    wants_room: bool,
    recv_waiters: Vec<Waker>,
    send_waiters: Vec<Waker>,
    conn_waiters: Vec<Waker>,
    /// Why the last connection attempt failed its handshake; cleared by a successful one.
    handshake_error: Option<HandshakeError>,
    /// Tasks waiting in [`Dealer::refused`], by the id of their future, which removes its
    /// entry when dropped: many short-lived waiters on a long-lived connection leave
    /// nothing behind.
    refusal_waiters: HashMap<u64, Waker>,
    /// The id of the next [`Dealer::refused`] future.
    next_refusal_id: u64,
    /// The properties the peer of the current connection announced.
    peer_metadata: Option<Metadata>,
    /// SUB/XSUB: each prefix subscribed and how many times; replayed to every new
    /// connection (`None` for other types).
    subscriptions: Option<std::collections::BTreeMap<Bytes, u32>>,
    /// SUB/XSUB: subscription changes for the current connection, `(subscribe, prefix)`.
    sub_out: VecDeque<(bool, Bytes)>,
    /// SUB/XSUB: the current connection's peer speaks ZMTP 3.1 (commands) or 3.0 (frames).
    sub_commands: bool,
}

#[derive(Debug)]
struct Shared {
    socket_type: SocketType,
    opts: Options,
    endpoint: Endpoint,
    send_hwm: Hwm,
    recv_hwm: Hwm,
    inner: Mutex<Inner>,
    /// Wakes the connect loop out of a backoff sleep (close or reconnect).
    control: Notify,
    counters: Counters,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
}

fn wake_all(wakers: impl IntoIterator<Item = Waker>) {
    for w in wakers {
        w.wake();
    }
}

/// The future of [`Dealer::refused`]; its waker is registered under `id` and removed on drop.
struct Refused<'a> {
    shared: &'a Shared,
    id: Option<u64>,
}

impl Future for Refused<'_> {
    type Output = HandshakeError;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<HandshakeError> {
        let mut inner = self.shared.lock();
        if !inner.connected {
            if let Some(e) = inner.handshake_error.as_ref().filter(|e| e.is_refusal()) {
                let e = e.clone();
                if let Some(id) = self.id.take() {
                    inner.refusal_waiters.remove(&id);
                }
                return Poll::Ready(e);
            }
        }
        let id = match self.id {
            Some(id) => id,
            None => {
                let id = inner.next_refusal_id;
                inner.next_refusal_id += 1;
                id
            }
        };
        match inner.refusal_waiters.get_mut(&id) {
            Some(w) if w.will_wake(cx.waker()) => {}
            Some(w) => w.clone_from(cx.waker()),
            None => {
                inner.refusal_waiters.insert(id, cx.waker().clone());
            }
        }
        drop(inner);
        self.id = Some(id);
        Poll::Pending
    }
}

impl Drop for Refused<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.shared.lock().refusal_waiters.remove(&id);
        }
    }
}

/// A DEALER socket connected to one endpoint.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// use domo_zmtp::{Dealer, Options};
/// let dealer = Dealer::connect("tcp://127.0.0.1:5555", Options::default())?;
/// dealer.send(vec![Bytes::new(), Bytes::from_static(b"hello")]).await?;
/// let reply = dealer.recv().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Dealer {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Dealer {
    /// Starts connecting to `endpoint` in the background and returns at once. Messages sent
    /// before the connection is up are queued. Must be called inside a tokio runtime.
    ///
    /// `endpoint` is `tcp://host:port`, `ipc://path` or `inproc://name`. An `inproc://` name
    /// must be bound by a [`Router`](crate::Router) of this process; until it is, each
    /// attempt is refused and retried after the usual backoff.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] for a malformed endpoint, [`Error::InvalidOption`] for an
    /// identity that is empty, longer than 255 bytes or starts with a zero byte.
    pub fn connect(endpoint: &str, opts: Options) -> Result<Self, Error> {
        Self::connect_with_socket_type(SocketType::Dealer, endpoint, opts)
    }

    /// Like [`Dealer::connect`], announcing `socket_type` instead of `DEALER`. With
    /// [`SocketType::Sub`] or [`SocketType::XSub`] it behaves as libzmq's SUB does towards a
    /// publisher: a one-frame message `0x01` + prefix subscribes and `0x00` + prefix cancels
    /// (or use [`Dealer::subscribe`] / [`Dealer::cancel`]); the socket keeps the count of each
    /// prefix, tells the peer only the first subscription and the last cancel (as a
    /// `SUBSCRIBE`/`CANCEL` command to a ZMTP 3.1 peer, as the data frame to a 3.0 one), and
    /// sends all its subscriptions again on every new connection, so a reconnect needs
    /// nothing from the owner. Subscriptions are not counted against the send queue.
    ///
    /// # Errors
    /// As [`Dealer::connect`].
    pub fn connect_with_socket_type(
        socket_type: SocketType,
        endpoint: &str,
        opts: Options,
    ) -> Result<Self, Error> {
        let endpoint: Endpoint = endpoint.parse()?;
        if let Some(id) = &opts.identity {
            if id.is_empty() || id.len() > 255 || id[0] == 0 {
                return Err(Error::InvalidOption(
                    "identity must be 1-255 bytes, not starting with 0",
                ));
            }
        }
        let shared = Arc::new(Shared {
            send_hwm: Hwm {
                msgs: opts.send_hwm.max(1),
                bytes: opts.send_hwm_bytes.max(1),
            },
            recv_hwm: Hwm {
                msgs: opts.recv_hwm.max(1),
                bytes: opts.recv_hwm_bytes.max(1),
            },
            socket_type,
            opts,
            endpoint,
            inner: Mutex::new(Inner {
                subscriptions: matches!(socket_type, SocketType::Sub | SocketType::XSub)
                    .then(std::collections::BTreeMap::new),
                ..Inner::default()
            }),
            control: Notify::new(),
            counters: Counters::default(),
        });
        let task = tokio::spawn(connect_loop(shared.clone()));
        Ok(Self {
            shared,
            task: Mutex::new(Some(task)),
        })
    }

    /// The endpoint this dealer connects to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    /// Whether a connection is up (handshake done).
    pub fn is_connected(&self) -> bool {
        self.shared.lock().connected
    }

    /// The properties the peer announced in the handshake of the current connection
    /// (`Socket-Type`, `Identity`, and any others, such as a negotiated extension); `None`
    /// while no connection is up.
    pub fn peer_metadata(&self) -> Option<Metadata> {
        let inner = self.shared.lock();
        inner.peer_metadata.clone().filter(|_| inner.connected)
    }

    /// The value of one property the peer announced in the handshake of the current
    /// connection (the name compared case-insensitively); `None` while no connection is up
    /// or if it did not announce it. Cheaper than [`Dealer::peer_metadata`] for one look.
    pub fn peer_property(&self, name: &str) -> Option<Bytes> {
        let inner = self.shared.lock();
        if !inner.connected {
            return None;
        }
        inner.peer_metadata.as_ref()?.get(name).cloned()
    }

    /// Why the most recent connection attempt failed its handshake, if it did and no attempt
    /// has succeeded since. Lets a caller that timed out say "handshake failed: not
    /// authorized" or "server key mismatch" instead of a bare timeout.
    pub fn handshake_error(&self) -> Option<HandshakeError> {
        self.shared.lock().handshake_error.clone()
    }

    /// Waits until the peer refuses a handshake ([`HandshakeError::is_refusal`]) while no
    /// connection is up, and returns why; at once if the last attempt was refused. Lets a
    /// caller waiting for a reply give up as soon as the server said no, rather than at its
    /// timeout. Never resolves while connected or while attempts merely fail to connect.
    pub fn refused(&self) -> impl Future<Output = HandshakeError> + Send + '_ {
        Refused {
            shared: &self.shared,
            id: None,
        }
    }

    /// Waits until a connection is up.
    ///
    /// # Errors
    /// [`Error::Closed`] after shutdown.
    pub async fn connected(&self) -> Result<(), Error> {
        poll_fn(|cx| {
            let mut inner = self.shared.lock();
            if inner.closed {
                return Poll::Ready(Err(Error::Closed));
            }
            if inner.connected {
                return Poll::Ready(Ok(()));
            }
            // Once per task: a caller that polls a fresh `connected()` in every round of a
            // `select!` loop must not grow the list while the peer is away.
            if !inner.conn_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                inner.conn_waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Queues a message without waiting.
    ///
    /// # Errors
    /// [`TrySendError::Full`] at the send high-water mark, [`TrySendError::Closed`] after
    /// shutdown; both hand the message back.
    pub fn try_send(&self, msg: Vec<Bytes>) -> Result<(), TrySendError> {
        self.try_send_inner(msg, None)
    }

    /// SUB/XSUB: subscribes to `prefix` (see [`Dealer::connect_with_socket_type`]).
    ///
    /// # Errors
    /// [`TrySendError::Closed`] after shutdown.
    pub fn subscribe(&self, prefix: &[u8]) -> Result<(), TrySendError> {
        let mut frame = Vec::with_capacity(1 + prefix.len());
        frame.push(1);
        frame.extend_from_slice(prefix);
        self.try_send(vec![Bytes::from(frame)])
    }

    /// SUB/XSUB: cancels one subscription to `prefix`.
    ///
    /// # Errors
    /// [`TrySendError::Closed`] after shutdown.
    pub fn cancel(&self, prefix: &[u8]) -> Result<(), TrySendError> {
        let mut frame = Vec::with_capacity(1 + prefix.len());
        frame.push(0);
        frame.extend_from_slice(prefix);
        self.try_send(vec![Bytes::from(frame)])
    }

    fn try_send_inner(
        &self,
        msg: Vec<Bytes>,
        cx: Option<&Context<'_>>,
    ) -> Result<(), TrySendError> {
        let mut inner = self.shared.lock();
        if inner.closed {
            return Err(TrySendError::Closed(msg));
        }
        if let (Some(subs), [frame]) = (inner.subscriptions.as_mut(), msg.as_slice()) {
            if let Some(&flag @ (0 | 1)) = frame.first() {
                let prefix = frame.slice(1..);
                let tell = if flag == 1 {
                    let n = subs.entry(prefix.clone()).or_insert(0);
                    *n += 1;
                    *n == 1
                } else {
                    match subs.get_mut(&prefix) {
                        Some(n) if *n > 1 => {
                            *n -= 1;
                            false
                        }
                        Some(_) => {
                            subs.remove(&prefix);
                            true
                        }
                        None => false,
                    }
                };
                let mut wake = None;
                if tell && inner.connected {
                    inner.sub_out.push_back((flag == 1, prefix));
                    if inner.wants_out {
                        inner.wants_out = false;
                        wake = inner.task.clone();
                    }
                }
                drop(inner);
                wake_all(wake);
                return Ok(());
            }
        }
        if self.shared.send_hwm.full(inner.out.len(), inner.out_bytes) {
            if let Some(cx) = cx {
                inner.send_waiters.push(cx.waker().clone());
            }
            return Err(TrySendError::Full(msg));
        }
        inner.out_bytes += message_bytes(&msg);
        inner.out.push_back(msg);
        let wake = if inner.wants_out {
            inner.wants_out = false;
            inner.task.clone()
        } else {
            None
        };
        drop(inner);
        wake_all(wake);
        Ok(())
    }

    /// Queues a message, waiting while the queue is full.
    ///
    /// # Errors
    /// [`Error::Closed`] after shutdown.
    pub async fn send(&self, msg: Vec<Bytes>) -> Result<(), Error> {
        let mut msg = Some(msg);
        poll_fn(|cx| {
            let Some(m) = msg.take() else {
                return Poll::Ready(Ok(()));
            };
            match self.try_send_inner(m, Some(cx)) {
                Ok(()) => Poll::Ready(Ok(())),
                Err(TrySendError::Full(m)) => {
                    msg = Some(m);
                    Poll::Pending
                }
                Err(_) => Poll::Ready(Err(Error::Closed)),
            }
        })
        .await
    }

    /// Receives the next message, waiting (across reconnects) until one arrives.
    ///
    /// # Errors
    /// [`Error::Closed`] after shutdown.
    pub async fn recv(&self) -> Result<Vec<Bytes>, Error> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Takes the next message if one has arrived, without waiting.
    ///
    /// # Errors
    /// [`Error::Closed`] after shutdown, once nothing is left to read.
    pub fn try_recv(&self) -> Result<Option<Vec<Bytes>>, Error> {
        let mut inner = self.shared.lock();
        if let Some((msg, wake)) = self.pop_message(&mut inner) {
            drop(inner);
            wake_all(wake);
            return Ok(Some(msg));
        }
        if inner.closed {
            return Err(Error::Closed);
        }
        Ok(None)
    }

    /// Pops the next received message, with the connection task's waker if it waits for
    /// room (to be woken once the lock is released).
    fn pop_message(&self, inner: &mut Inner) -> Option<(Vec<Bytes>, Option<Waker>)> {
        let msg = inner.inq.pop_front()?;
        inner.in_bytes -= message_bytes(&msg);
        let wake =
            if inner.wants_room && !self.shared.recv_hwm.full(inner.inq.len(), inner.in_bytes) {
                inner.wants_room = false;
                inner.task.clone()
            } else {
                None
            };
        Some((msg, wake))
    }

    /// Polls for the next message.
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Vec<Bytes>, Error>> {
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let mut inner = self.shared.lock();
        if let Some((msg, wake)) = self.pop_message(&mut inner) {
            coop.made_progress();
            drop(inner);
            wake_all(wake);
            return Poll::Ready(Ok(msg));
        }
        if inner.closed {
            return Poll::Ready(Err(Error::Closed));
        }
        if !inner.recv_waiters.iter().any(|w| w.will_wake(cx.waker())) {
            inner.recv_waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Drops the current connection and both queues, and connects again at once on a new
    /// connection (a new routing id at the peer unless an identity is set).
    pub fn reconnect(&self) {
        let mut inner = self.shared.lock();
        inner.out.clear();
        inner.out_bytes = 0;
        inner.inq.clear();
        inner.in_bytes = 0;
        inner.reconnect = true;
        let mut wakers: Vec<Waker> = inner.task.clone().into_iter().collect();
        wakers.append(&mut inner.send_waiters);
        drop(inner);
        self.shared.control.notify_one();
        wake_all(wakers);
    }

    /// Counters since the dealer was created.
    pub fn stats(&self) -> Stats {
        let peers = usize::from(self.is_connected());
        self.shared.counters.snapshot(peers)
    }

    /// Closes the socket: what is queued is written for up to the linger time, then the
    /// connection closes and the background task ends.
    pub async fn shutdown(&self) {
        self.close();
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let grace = self.shared.opts.linger + Duration::from_millis(500);
            if tokio::time::timeout(grace, task).await.is_err() {
                debug!("Dealer still lingering after the grace period");
            }
        }
    }

    fn close(&self) {
        let mut inner = self.shared.lock();
        if !inner.closed {
            inner.linger_until = Some(tokio::time::Instant::now() + self.shared.opts.linger);
        }
        inner.closed = true;
        let mut wakers: Vec<Waker> = inner.task.clone().into_iter().collect();
        wakers.append(&mut inner.recv_waiters);
        wakers.append(&mut inner.send_waiters);
        wakers.append(&mut inner.conn_waiters);
        drop(inner);
        self.shared.control.notify_one();
        wake_all(wakers);
    }
}

impl Drop for Dealer {
    fn drop(&mut self) {
        self.close();
    }
}

/// How much of each reconnect delay the jitter may take off: delays fall in `[d/2, d)`.
const RECONNECT_JITTER: f64 = 0.5;

async fn connect_loop(shared: Arc<Shared>) {
    let opts = &shared.opts;
    let mut backoff = Backoff::new(opts.reconnect_interval, opts.reconnect_interval_max);
    loop {
        {
            let mut inner = shared.lock();
            if inner.closed {
                let lingering = inner
                    .linger_until
                    .is_some_and(|t| tokio::time::Instant::now() < t);
                if inner.out.is_empty() || !lingering {
                    return;
                }
            }
            inner.reconnect = false;
        }
        match connect_once(&shared).await {
            Some(Ended::Closed) => {
                backoff.reset();
                continue; // closed for good (checked above) or reconnect() asked: go again now
            }
            Some(ended) => {
                debug!(endpoint = %shared.endpoint, reason = %ended, "Connection lost");
                backoff.reset();
            }
            None => {}
        }
        tokio::select! {
            () = tokio::time::sleep(jitter(backoff.next_delay(), RECONNECT_JITTER)) => {}
            () = shared.control.notified() => {}
        }
    }
}

/// One connection attempt. `None` if it never reached the data phase.
async fn connect_once(shared: &Arc<Shared>) -> Option<Ended> {
    let opts = &shared.opts;
    let attempt = tokio::time::timeout(opts.connect_timeout, Stream::connect(&shared.endpoint));
    let (mut stream, addr) = match attempt.await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            debug!(endpoint = %shared.endpoint, error = %e, "Connect failed");
            return None;
        }
        Err(_) => return None,
    };
    let mut hs =
        Handshake::with_security(shared.socket_type, opts.identity.clone(), &opts.security);
    hs.add_properties(&opts.metadata);
    let info = match transport::handshake(&mut stream, &mut hs, opts.handshake_timeout).await {
        Ok(info) => info,
        Err(e) => {
            shared
                .counters
                .handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            debug!(endpoint = %shared.endpoint, peer.addr = %addr, error = %e, "Handshake failed");
            let wakers = {
                let mut inner = shared.lock();
                inner.handshake_error = Some(e);
                std::mem::take(&mut inner.refusal_waiters)
            };
            wake_all(wakers.into_values());
            return None;
        }
    };
    shared.counters.connects.fetch_add(1, Ordering::Relaxed);
    let wakers = {
        let mut inner = shared.lock();
        inner.connected = true;
        inner.peer_metadata = Some(info.metadata);
        inner.handshake_error = None;
        // A new connection knows none of our subscriptions: all of them, first.
        let all: VecDeque<(bool, Bytes)> = inner
            .subscriptions
            .iter()
            .flat_map(|subs| subs.keys().map(|p| (true, p.clone())))
            .collect();
        inner.sub_out = all;
        inner.sub_commands = info.minor_version >= 1;
        std::mem::take(&mut inner.conn_waiters)
    };
    wake_all(wakers);
    let port = DealerPort {
        shared: shared.clone(),
    };
    let ended = Connection::new(stream, port, opts.limits(), hs.into_parts(), opts.linger)
        .coalescing(opts.coalesce_writes)
        .await;
    if let Ended::Protocol(_) = &ended {
        shared
            .counters
            .protocol_errors
            .fetch_add(1, Ordering::Relaxed);
    }
    let mut inner = shared.lock();
    inner.connected = false;
    inner.task = None;
    Some(ended)
}

struct DealerPort {
    shared: Arc<Shared>,
}

impl Port for DealerPort {
    fn exchange(
        &mut self,
        enc: &mut Encoder,
        inbound: &mut VecDeque<Vec<Bytes>>,
        _large: Option<usize>,
        cx: &Context<'_>,
    ) -> Exchanged {
        let (send_hwm, recv_hwm) = (self.shared.send_hwm, self.shared.recv_hwm);
        let mut inner = self.shared.lock();
        if inner.reconnect {
            return Exchanged {
                close: Some(CloseKind::Now),
                may_read: false,
            };
        }
        let mut wakers = Vec::new();
        let commands = inner.sub_commands;
        while let Some((subscribe, prefix)) = inner.sub_out.pop_front() {
            if commands {
                let name: &'static [u8] = if subscribe { b"SUBSCRIBE" } else { b"CANCEL" };
                enc.encode_command(&crate::proto::Command::Other {
                    name: Bytes::from_static(name),
                    data: prefix,
                });
            } else {
                let mut frame = Vec::with_capacity(1 + prefix.len());
                frame.push(u8::from(subscribe));
                frame.extend_from_slice(&prefix);
                enc.encode_message(vec![Bytes::from(frame)]);
            }
        }
        while enc.pending() < OUT_BATCH_BYTES {
            let Some(msg) = inner.out.pop_front() else {
                break;
            };
            inner.out_bytes -= message_bytes(&msg);
            enc.encode_message(msg);
        }
        inner.wants_out = inner.out.is_empty() && inner.sub_out.is_empty();
        if !inner.send_waiters.is_empty() && !send_hwm.full(inner.out.len(), inner.out_bytes) {
            wakers.append(&mut inner.send_waiters);
        }
        let mut delivered = false;
        while !inbound.is_empty() && !recv_hwm.full(inner.inq.len(), inner.in_bytes) {
            if let Some(msg) = inbound.pop_front() {
                inner.in_bytes += message_bytes(&msg);
                inner.inq.push_back(msg);
                delivered = true;
            }
        }
        inner.wants_room = !inbound.is_empty();
        if delivered {
            wakers.append(&mut inner.recv_waiters);
        }
        match &inner.task {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => inner.task = Some(cx.waker().clone()),
        }
        let close = inner.closed.then_some(CloseKind::Linger);
        drop(inner);
        wake_all(wakers);
        Exchanged {
            close,
            may_read: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Wake, Waker};

    use super::*;

    struct Nothing;

    impl Wake for Nothing {
        fn wake(self: Arc<Self>) {}
    }

    #[tokio::test]
    async fn polling_connected_again_and_again_keeps_one_waiter() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let dealer =
            Dealer::connect(&format!("tcp://127.0.0.1:{port}"), Options::default()).expect("ok");
        let waker = Waker::from(Arc::new(Nothing));
        let mut cx = Context::from_waker(&waker);
        for _ in 0..1000 {
            let fut = dealer.connected();
            let mut fut = std::pin::pin!(fut);
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(dealer.shared.lock().conn_waiters.len(), 1);
        assert_eq!(
            dealer.try_recv().ok(),
            Some(None),
            "nothing yet, no waiting"
        );
        dealer.shutdown().await;
    }

    #[tokio::test]
    async fn refused_futures_leave_no_waker_behind_when_dropped() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let dealer =
            Dealer::connect(&format!("tcp://127.0.0.1:{port}"), Options::default()).expect("ok");
        let waker = Waker::from(Arc::new(Nothing));
        let mut cx = Context::from_waker(&waker);
        // Many short-lived waiters (one per request on a long-lived connection).
        for _ in 0..1000 {
            let fut = dealer.refused();
            let mut fut = std::pin::pin!(fut);
            assert!(fut.as_mut().poll(&mut cx).is_pending());
            assert!(fut.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(dealer.shared.lock().refusal_waiters.len(), 0);
        // One that stays keeps one entry however often it is polled.
        let kept = dealer.refused();
        let mut kept = std::pin::pin!(kept);
        for _ in 0..10 {
            assert!(kept.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(dealer.shared.lock().refusal_waiters.len(), 1);
    }
}
