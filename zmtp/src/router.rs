//! The ROUTER socket: many peers, each with a routing id, fair receive, non-blocking send.
//!
//! Layout: [`Router`] is the owner's handle. Each accepted connection runs its handshake and
//! then a [`Connection`] future in its own task; all of them share one [`Inner`] behind a
//! mutex, which holds every peer's send and receive queue. Critical sections are a few queue
//! operations long, and a connection task takes the lock once per batch, not per message.
//!
//! Receive fairness: peers with deliverable messages sit in a `ready` ring; each receive takes
//! one message from the peer at the front and, if it has more, moves it to the back. So a
//! flooding peer gets one turn in N like everybody else, and when its own queue is full its
//! connection stops being read, which pushes back on it alone.

use std::collections::VecDeque;

use foldhash::HashMap;
use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::driver::{CloseKind, Connection, Ended, Exchanged, Port, OUT_BATCH_BYTES};
use crate::endpoint::Endpoint;
use crate::error::{Error, HandshakeError, ProtocolError, TrySendError};
use crate::inproc;
use crate::limiter::{Admit, Limiter};
use crate::options::{message_bytes, DuplicateIdentity, Hwm, Options};
use crate::proto::{Encoder, Handshake, Metadata, PeerInfo};
use crate::socket_type::SocketType;
use crate::stats::{Counters, Stats};
use crate::transport::{self, Listener, PeerAddr, Stream};
use crate::util::{lock, Backoff};
use crate::{PeerId, PublicKey};

/// Something that happened on a [`Router`], in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouterEvent {
    /// A peer finished its handshake. Comes before any message from it.
    Connected {
        /// Its routing id.
        peer: PeerId,
        /// Where it connected from.
        addr: PeerAddr,
        /// Its socket type.
        socket_type: SocketType,
        /// With CURVE in the server role: the client's long-term public key, which the
        /// handshake proved it holds. `None` with NULL.
        key: Option<PublicKey>,
        /// Every property the peer announced in its handshake (`Socket-Type`, `Identity`
        /// and any others, such as a negotiated extension).
        metadata: Metadata,
    },
    /// A message from a peer.
    Message {
        /// The sender's routing id.
        peer: PeerId,
        /// The frames, without the routing id.
        msg: Vec<Bytes>,
    },
    /// A peer's connection is gone. Comes after every message received from it.
    Disconnected {
        /// Its routing id.
        peer: PeerId,
    },
    /// A peer whose send queue was full (a `try_send` returned `Full`) has drained to half of
    /// its high-water mark.
    Writable {
        /// Its routing id.
        peer: PeerId,
    },
}

/// One peer's queues and flags.
#[derive(Debug)]
struct Slot {
    id: PeerId,
    out: VecDeque<Vec<Bytes>>,
    out_bytes: usize,
    /// A `try_send` found the queue full: announce `Writable` when it drains.
    out_blocked: bool,
    inq: VecDeque<Vec<Bytes>>,
    in_bytes: usize,
    /// In the `ready` ring.
    in_ready: bool,
    /// `None`: unlimited; `Some(n)`: `n` more messages may be received.
    credit: Option<u64>,
    /// Counted against, and held back by, the receive budget.
    budgeted: bool,
    /// Budget reserved for the large frame the connection is reading (0: none).
    reserved: usize,
    /// The task waits for budget, and is in `Inner::budget_waiters`.
    wants_budget: bool,
    /// The connection task, to wake when there is output, room, or a close request.
    task: Option<Waker>,
    /// The task is waiting for output.
    wants_out: bool,
    /// The task holds messages it could not deliver.
    wants_room: bool,
    close: Option<CloseKind>,
    /// The connection task has ended.
    gone: bool,
    /// Its id went to a newcomer (handover); its `Disconnected` was already announced.
    handed_over: bool,
    send_waiters: Vec<Waker>,
}

impl Slot {
    fn new(id: PeerId) -> Self {
        Self {
            id,
            out: VecDeque::new(),
            out_bytes: 0,
            out_blocked: false,
            inq: VecDeque::new(),
            in_bytes: 0,
            in_ready: false,
            credit: None,
            budgeted: true,
            reserved: 0,
            wants_budget: false,
            task: None,
            wants_out: false,
            wants_room: false,
            close: None,
            gone: false,
            handed_over: false,
            send_waiters: Vec::new(),
        }
    }

    fn deliverable(&self) -> bool {
        !self.inq.is_empty() && self.credit != Some(0)
    }
}

#[derive(Debug, Default)]
struct Inner {
    closed: bool,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    by_id: HashMap<PeerId, usize>,
    ready: VecDeque<usize>,
    events: VecDeque<RouterEvent>,
    recv_waiters: Vec<Waker>,
    next_id: u32,
    /// Bytes counted against the receive budget: the receive queues of budgeted peers and
    /// their reservations for large frames.
    budget_used: usize,
    /// Slots whose tasks wait for budget, first come first served.
    budget_waiters: VecDeque<usize>,
}

impl Inner {
    fn slot(&mut self, idx: usize) -> Option<&mut Slot> {
        self.slots.get_mut(idx).and_then(Option::as_mut)
    }

    fn insert(&mut self, slot: Slot) -> usize {
        match self.free.pop() {
            Some(idx) => {
                self.slots[idx] = Some(slot);
                idx
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        }
    }

    /// Frees a slot whose task has ended once nothing remains to deliver from it.
    fn reap(&mut self, idx: usize) {
        let done = matches!(self.slot(idx), Some(s) if s.gone && s.inq.is_empty());
        if !done {
            return;
        }
        if let Some(slot) = self.slots[idx].take() {
            if self.by_id.get(&slot.id) == Some(&idx) {
                self.by_id.remove(&slot.id);
            }
            self.events
                .push_back(RouterEvent::Disconnected { peer: slot.id });
            self.free.push(idx);
        }
    }

    /// Gives back `bytes` of the receive budget; if that leaves room, the longest waiting
    /// connection is woken (it wakes the next one if room is left after it: see
    /// [`RouterPort::exchange`]).
    fn release_budget(&mut self, bytes: usize, budget: usize, wake: &mut Vec<Waker>) {
        self.budget_used -= bytes;
        if self.budget_used < budget {
            wake.extend(self.pop_budget_waiter());
        }
    }

    /// The task of the longest waiting connection that still waits for budget.
    fn pop_budget_waiter(&mut self) -> Option<Waker> {
        while let Some(idx) = self.budget_waiters.pop_front() {
            if let Some(slot) = self.slot(idx) {
                if slot.wants_budget {
                    slot.wants_budget = false;
                    if let Some(task) = slot.task.clone() {
                        return Some(task);
                    }
                }
            }
        }
        None
    }

    /// Empties a slot's receive queue (its messages are dropped) and returns what it held
    /// of the budget.
    fn clear_inq(&mut self, idx: usize, budget: usize, wake: &mut Vec<Waker>) {
        let Some(slot) = self.slot(idx) else { return };
        slot.inq.clear();
        let bytes = std::mem::take(&mut slot.in_bytes);
        if slot.budgeted {
            self.release_budget(bytes, budget, wake);
        }
    }

    fn mark_ready(&mut self, idx: usize) -> bool {
        match self.slot(idx) {
            Some(slot) if !slot.in_ready && slot.deliverable() => {
                slot.in_ready = true;
                self.ready.push_back(idx);
                true
            }
            _ => false,
        }
    }

    fn generate_id(&mut self) -> PeerId {
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            let mut id = [0u8; 5];
            id[1..].copy_from_slice(&self.next_id.to_be_bytes());
            let id = PeerId::from(Bytes::copy_from_slice(&id));
            if !self.by_id.contains_key(&id) {
                return id;
            }
        }
    }
}

/// State shared by the handle, the accept loops and the connection tasks.
#[derive(Debug)]
struct Shared {
    opts: Options,
    send_hwm: Hwm,
    recv_hwm: Hwm,
    /// [`Options::recv_budget_bytes`].
    budget: usize,
    inner: Mutex<Inner>,
    counters: Counters,
    /// Failed handshakes per source address (CURVE only).
    limiter: Mutex<Limiter>,
    /// What this socket announces and accepts: `ROUTER`, `XPUB` or `XSUB`.
    socket_type: SocketType,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock would be a bug in this module; the queues are
        // still consistent enough to keep serving, so poisoning is ignored.
        lock(&self.inner)
    }
}

fn wake_all(wakers: Vec<Waker>) {
    for w in wakers {
        w.wake();
    }
}

/// A ROUTER socket.
///
/// ```no_run
/// # async fn demo() -> Result<(), domo_zmtp::Error> {
/// use domo_zmtp::{Options, Router};
/// let router = Router::new(Options::default());
/// let ep = router.bind("tcp://127.0.0.1:0").await?;
/// println!("listening on {ep}");
/// loop {
///     let (peer, msg) = router.recv().await?;
///     let _ = router.try_send(&peer, msg); // echo
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct Router {
    shared: Arc<Shared>,
    listeners: Mutex<Vec<JoinHandle<()>>>,
    /// The `inproc://` names bound, unbound as soon as the router closes (an aborted accept
    /// loop is dropped later, by the runtime).
    inproc: Mutex<Vec<inproc::Registration>>,
    tracker: TaskTracker,
}

impl Router {
    /// A router with no endpoints yet. Must be called inside a tokio runtime.
    pub fn new(opts: Options) -> Self {
        Self::with_socket_type(SocketType::Router, opts)
    }

    /// A socket of many peers like [`Router::new`], announcing and accepting the peers of
    /// `socket_type` instead of `ROUTER`'s, for the owner that needs each peer's queue and
    /// events in the PUB/SUB family:
    ///
    /// - [`SocketType::XPub`] (peers: `SUB`, `XSUB`): a peer's subscriptions arrive as
    ///   one-frame messages, `0x01` + prefix to subscribe and `0x00` + prefix to cancel,
    ///   whichever form it used on the wire: the ZMTP 3.1 `SUBSCRIBE` / `CANCEL` commands or
    ///   ZMTP 3.0's data frames (which already look like that). Messages sent to a peer go
    ///   out as they are; the owner does the filtering.
    /// - [`SocketType::XSub`] (peers: `PUB`, `XPUB`): a one-frame message starting with
    ///   `0x01` or `0x00` sent to a peer is a subscription or a cancel, and goes out in the
    ///   form the peer's version expects: a `SUBSCRIBE` / `CANCEL` command to a ZMTP 3.1
    ///   peer, the data frame itself to a ZMTP 3.0 one. A libzmq `PUB` filters on its side,
    ///   so it sends nothing until it is sent a subscription (the empty prefix for all).
    ///
    /// Any other type behaves as `ROUTER` does except for the name and the peers it
    /// accepts ([`SocketType::accepts`]).
    pub fn with_socket_type(socket_type: SocketType, opts: Options) -> Self {
        let seed = crate::util::random_u64() as u32;
        let inner = Inner {
            next_id: seed,
            ..Inner::default()
        };
        let shared = Arc::new(Shared {
            send_hwm: Hwm {
                msgs: opts.send_hwm.max(1),
                bytes: opts.send_hwm_bytes.max(1),
            },
            recv_hwm: Hwm {
                msgs: opts.recv_hwm.max(1),
                bytes: opts.recv_hwm_bytes.max(1),
            },
            budget: opts.recv_budget_bytes.max(1),
            opts,
            inner: Mutex::new(inner),
            counters: Counters::default(),
            limiter: Mutex::new(Limiter::default()),
            socket_type,
        });
        Self {
            shared,
            listeners: Mutex::new(Vec::new()),
            inproc: Mutex::new(Vec::new()),
            tracker: TaskTracker::new(),
        }
    }

    /// Binds an endpoint (`tcp://host:port`, `tcp://*:port`, `ipc://path`, `inproc://name`)
    /// and starts accepting on it. Returns the endpoint as bound, with port 0 resolved.
    ///
    /// An `inproc://` name is bound for the whole process until this router shuts down or is
    /// dropped; [`Dealer`](crate::Dealer)s of the same process connect to it without any
    /// socket.
    ///
    /// # Errors
    /// [`Error::InvalidEndpoint`] for a malformed endpoint, [`Error::Io`] if the bind fails
    /// (for `inproc://`, with [`std::io::ErrorKind::AddrInUse`] if another router of this
    /// process has bound the name).
    pub async fn bind(&self, endpoint: &str) -> Result<Endpoint, Error> {
        let ep: Endpoint = endpoint.parse()?;
        let (mut listener, bound) = Listener::bind(&ep).await?;
        if let Some(registration) = listener.take_registration() {
            lock(&self.inproc).push(registration);
        }
        let shared = self.shared.clone();
        let tracker = self.tracker.clone();
        let task = tokio::spawn(accept_loop(listener, shared, tracker));
        lock(&self.listeners).push(task);
        debug!(endpoint = %bound, "Router bound");
        Ok(bound)
    }

    /// Receives the next message from any peer, skipping peer events.
    ///
    /// # Errors
    /// [`Error::Closed`] after [`Router::shutdown`].
    pub async fn recv(&self) -> Result<(PeerId, Vec<Bytes>), Error> {
        loop {
            // With `events == false` only messages come back; the loop keeps the types honest.
            if let RouterEvent::Message { peer, msg } =
                poll_fn(|cx| self.poll_next(cx, false)).await?
            {
                return Ok((peer, msg));
            }
        }
    }

    /// Receives the next message or peer event.
    ///
    /// # Errors
    /// [`Error::Closed`] after [`Router::shutdown`].
    pub async fn recv_event(&self) -> Result<RouterEvent, Error> {
        poll_fn(|cx| self.poll_next(cx, true)).await
    }

    /// Takes the next message or peer event if one is waiting, without waiting. Lets an owner
    /// that was woken by [`Router::recv_event`] handle a whole batch in one go.
    ///
    /// # Errors
    /// [`Error::Closed`] after [`Router::shutdown`].
    pub fn try_recv_event(&self) -> Result<Option<RouterEvent>, Error> {
        let mut inner = self.shared.lock();
        let mut wake = Vec::new();
        let result = self.next_locked(&mut inner, true, &mut wake);
        let closed = inner.closed;
        drop(inner);
        wake_all(wake);
        match result {
            None if closed => Err(Error::Closed),
            other => Ok(other),
        }
    }

    /// Polls for the next message or (if `events`) peer event.
    pub fn poll_next(
        &self,
        cx: &mut Context<'_>,
        events: bool,
    ) -> Poll<Result<RouterEvent, Error>> {
        // Take part in tokio's cooperative budget, as its channels do: a loop that always
        // finds a message waiting still yields now and then, so connection tasks sharing the
        // thread keep running.
        let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
        let mut inner = self.shared.lock();
        let mut wake = Vec::new();
        let result = self.next_locked(&mut inner, events, &mut wake);
        if result.is_none() {
            if inner.closed {
                return Poll::Ready(Err(Error::Closed));
            }
            if !inner.recv_waiters.iter().any(|w| w.will_wake(cx.waker())) {
                inner.recv_waiters.push(cx.waker().clone());
            }
        }
        drop(inner);
        wake_all(wake);
        match result {
            Some(ev) => {
                coop.made_progress();
                Poll::Ready(Ok(ev))
            }
            None => Poll::Pending,
        }
    }

    fn next_locked(
        &self,
        inner: &mut Inner,
        events: bool,
        wake: &mut Vec<Waker>,
    ) -> Option<RouterEvent> {
        loop {
            if let Some(ev) = inner.events.pop_front() {
                if events {
                    return Some(ev);
                }
                continue;
            }
            let idx = inner.ready.pop_front()?;
            let recv_hwm = self.shared.recv_hwm;
            let Some(slot) = inner.slot(idx) else {
                continue;
            };
            slot.in_ready = false;
            if !slot.deliverable() {
                continue;
            }
            let Some(msg) = slot.inq.pop_front() else {
                continue;
            };
            let bytes = message_bytes(&msg);
            slot.in_bytes -= bytes;
            if let Some(c) = &mut slot.credit {
                *c -= 1;
            }
            if slot.wants_room && !recv_hwm.full(slot.inq.len(), slot.in_bytes) {
                slot.wants_room = false;
                wake.extend(slot.task.clone());
            } else if slot.wants_budget && slot.inq.is_empty() && slot.reserved == 0 {
                // Its queue is empty: it may read a small frame whatever the budget. It
                // stays among the waiters, for a large frame.
                wake.extend(slot.task.clone());
            }
            let peer = slot.id.clone();
            if slot.budgeted {
                inner.release_budget(bytes, self.shared.budget, wake);
            }
            inner.mark_ready(idx);
            inner.reap(idx);
            return Some(RouterEvent::Message { peer, msg });
        }
    }

    /// Queues a message for a peer without waiting.
    ///
    /// # Errors
    /// Hands the message back in [`TrySendError::Full`] when the peer's queue is at its
    /// high-water mark (a [`RouterEvent::Writable`] follows when it drains),
    /// [`TrySendError::Unroutable`] when no connected peer has this id, and
    /// [`TrySendError::Closed`] after shutdown.
    pub fn try_send(&self, peer: &PeerId, msg: Vec<Bytes>) -> Result<(), TrySendError> {
        self.try_send_inner(peer, msg, None)
    }

    /// Queues many messages under one lock and wakes each receiving connection once, after
    /// all are queued: a peer that gets several messages in one batch writes them in one go
    /// (one vectored write) instead of waking for the first. Messages to one peer keep
    /// their order. Returns those that could not be queued, in order, each with why (as
    /// [`Router::try_send`] would have said); once a peer's queue is full, its later
    /// messages in the batch are handed back too.
    ///
    /// Each message comes with a value of the caller's (`T`, say what kind of peer it is
    /// for), handed back with a message that failed.
    pub fn try_send_batch<T>(
        &self,
        msgs: impl IntoIterator<Item = (PeerId, Vec<Bytes>, T)>,
    ) -> Vec<(PeerId, TrySendError, T)> {
        let mut failed = Vec::new();
        let mut wake = Vec::new();
        let mut inner = self.shared.lock();
        for (peer, msg, tag) in msgs {
            match self.queue_locked(&mut inner, &peer, msg, None) {
                Ok(Some(w)) => wake.push(w),
                Ok(None) => {}
                Err(e) => failed.push((peer, e, tag)),
            }
        }
        drop(inner);
        wake_all(wake);
        failed
    }

    fn try_send_inner(
        &self,
        peer: &PeerId,
        msg: Vec<Bytes>,
        cx: Option<&Context<'_>>,
    ) -> Result<(), TrySendError> {
        let mut inner = self.shared.lock();
        let wake = self.queue_locked(&mut inner, peer, msg, cx)?;
        drop(inner);
        if let Some(w) = wake {
            w.wake();
        }
        Ok(())
    }

    /// Queues `msg` for `peer`; the waker of its connection task if that must be woken.
    fn queue_locked(
        &self,
        inner: &mut Inner,
        peer: &PeerId,
        msg: Vec<Bytes>,
        cx: Option<&Context<'_>>,
    ) -> Result<Option<Waker>, TrySendError> {
        if inner.closed {
            return Err(TrySendError::Closed(msg));
        }
        let Some(&idx) = inner.by_id.get(peer) else {
            return Err(TrySendError::Unroutable(msg));
        };
        let hwm = self.shared.send_hwm;
        let Some(slot) = inner.slot(idx) else {
            return Err(TrySendError::Unroutable(msg));
        };
        if slot.gone || slot.close.is_some() {
            return Err(TrySendError::Unroutable(msg));
        }
        if hwm.full(slot.out.len(), slot.out_bytes) {
            slot.out_blocked = true;
            if let Some(cx) = cx {
                slot.send_waiters.push(cx.waker().clone());
            }
            return Err(TrySendError::Full(msg));
        }
        slot.out_bytes += message_bytes(&msg);
        slot.out.push_back(msg);
        Ok(if slot.wants_out {
            slot.wants_out = false;
            slot.task.clone()
        } else {
            None
        })
    }

    /// Queues a message for a peer, waiting while its queue is full.
    ///
    /// # Errors
    /// [`TrySendError::Unroutable`] or [`TrySendError::Closed`] with the message.
    pub async fn send(&self, peer: &PeerId, msg: Vec<Bytes>) -> Result<(), TrySendError> {
        let mut msg = Some(msg);
        poll_fn(|cx| {
            let Some(m) = msg.take() else {
                return Poll::Ready(Ok(()));
            };
            match self.try_send_inner(peer, m, Some(cx)) {
                Err(TrySendError::Full(m)) => {
                    msg = Some(m);
                    Poll::Pending
                }
                other => Poll::Ready(other),
            }
        })
        .await
    }

    /// Stops receiving from `peer`: its messages stay queued (up to the receive high-water
    /// mark, after which its connection is no longer read) until [`Router::resume`] or
    /// [`Router::grant`]. Other peers are not affected. Returns false for an unknown peer.
    pub fn pause(&self, peer: &PeerId) -> bool {
        self.set_credit(peer, |_| Some(0))
    }

    /// Receives from `peer` without limit again. Returns false for an unknown peer.
    pub fn resume(&self, peer: &PeerId) -> bool {
        self.set_credit(peer, |_| None)
    }

    /// Allows `n` more messages from `peer` to be received, then pauses it again. A peer that
    /// was unlimited switches to credit mode with `n`. Returns false for an unknown peer.
    pub fn grant(&self, peer: &PeerId, n: u64) -> bool {
        self.set_credit(peer, |c| Some(c.unwrap_or(0).saturating_add(n)))
    }

    fn set_credit(&self, peer: &PeerId, f: impl FnOnce(Option<u64>) -> Option<u64>) -> bool {
        let mut inner = self.shared.lock();
        let Some(&idx) = inner.by_id.get(peer) else {
            return false;
        };
        let Some(slot) = inner.slot(idx) else {
            return false;
        };
        slot.credit = f(slot.credit);
        let waiters = if inner.mark_ready(idx) {
            std::mem::take(&mut inner.recv_waiters)
        } else {
            Vec::new()
        };
        drop(inner);
        wake_all(waiters);
        true
    }

    /// Returns a message taken from `peer` to the front of its receive queue and pauses the
    /// peer, as if the message had not been received yet: it comes back, before anything
    /// the peer sent after it, once the peer is resumed ([`Router::resume`] or
    /// [`Router::grant`]). Lets an owner that cannot accept a message now push back on its
    /// sender without dropping it or holding it itself; the message counts against the
    /// receive budget again. Returns the message if the peer is gone.
    ///
    /// # Errors
    /// The message, when no peer with this id is connected or has messages waiting.
    pub fn defer(&self, peer: &PeerId, msg: Vec<Bytes>) -> Result<(), Vec<Bytes>> {
        let mut inner = self.shared.lock();
        let Some(&idx) = inner.by_id.get(peer) else {
            return Err(msg);
        };
        let Some(slot) = inner.slot(idx) else {
            return Err(msg);
        };
        let bytes = message_bytes(&msg);
        slot.inq.push_front(msg);
        slot.in_bytes += bytes;
        slot.credit = Some(0);
        if slot.budgeted {
            inner.budget_used += bytes;
        }
        Ok(())
    }

    /// Takes `peer` off the receive budget (`false`) or puts it back on (`true`): an owner
    /// exempts the peers whose messages it must always read, so that peers it holds back
    /// cannot use up the budget they need (a broker exempts its workers, whose replies are
    /// what lets it take more requests). Returns false for an unknown peer.
    pub fn set_budgeted(&self, peer: &PeerId, budgeted: bool) -> bool {
        let budget = self.shared.budget;
        let mut inner = self.shared.lock();
        let Some(&idx) = inner.by_id.get(peer) else {
            return false;
        };
        let Some(slot) = inner.slot(idx) else {
            return false;
        };
        if slot.budgeted == budgeted {
            return true;
        }
        slot.budgeted = budgeted;
        let mut wake = Vec::new();
        if budgeted {
            let bytes = slot.in_bytes;
            inner.budget_used += bytes;
        } else {
            let bytes = slot.in_bytes + std::mem::take(&mut slot.reserved);
            if std::mem::take(&mut slot.wants_budget) {
                wake.extend(slot.task.clone());
            }
            inner.release_budget(bytes, budget, &mut wake);
        }
        drop(inner);
        wake_all(wake);
        true
    }

    /// Closes the connection to `peer` after writing what is queued for it (up to the
    /// linger time); messages received from it and not yet read are dropped. Returns false
    /// for an unknown peer.
    pub fn disconnect(&self, peer: &PeerId) -> bool {
        let mut inner = self.shared.lock();
        let Some(idx) = inner.by_id.remove(peer) else {
            return false;
        };
        let mut wake: Vec<Waker> = inner
            .slot(idx)
            .and_then(|slot| {
                slot.close = Some(CloseKind::Linger);
                slot.task.clone()
            })
            .into_iter()
            .collect();
        inner.clear_inq(idx, self.shared.budget, &mut wake);
        drop(inner);
        wake_all(wake);
        true
    }

    /// Ids of the peers connected now.
    pub fn peers(&self) -> Vec<PeerId> {
        self.shared.lock().by_id.keys().cloned().collect()
    }

    /// Number of messages queued for `peer` and not yet written, if it is connected.
    pub fn queued(&self, peer: &PeerId) -> Option<usize> {
        let mut inner = self.shared.lock();
        let idx = *inner.by_id.get(peer)?;
        inner.slot(idx).map(|s| s.out.len())
    }

    /// Number of messages received from `peer` and not yet returned by a receive, if it is
    /// connected (these are what [`Router::pause`] holds back).
    pub fn queued_in(&self, peer: &PeerId) -> Option<usize> {
        let mut inner = self.shared.lock();
        let idx = *inner.by_id.get(peer)?;
        inner.slot(idx).map(|s| s.inq.len())
    }

    /// Counters since the router was created.
    pub fn stats(&self) -> Stats {
        let inner = self.shared.lock();
        let (peers, used) = (inner.by_id.len(), inner.budget_used);
        drop(inner);
        let mut stats = self.shared.counters.snapshot(peers);
        stats.recv_budget_used = used;
        stats
    }

    /// Stops accepting, closes every connection after writing what is queued (up to the
    /// linger time) and waits for the connection tasks to end. Receives then return
    /// [`Error::Closed`].
    pub async fn shutdown(&self) {
        // Stop the accept loops and wait until their listeners are closed, so the endpoints
        // can be bound again (by a restarted broker, say) as soon as this returns.
        let listeners: Vec<JoinHandle<()>> = lock(&self.listeners).drain(..).collect();
        for task in &listeners {
            task.abort();
        }
        for task in listeners {
            let _ = task.await;
        }
        self.close();
        self.tracker.close();
        let grace = self.shared.opts.linger + std::time::Duration::from_millis(500);
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!("Router connections still open after the linger time");
        }
    }

    fn close(&self) {
        for task in lock(&self.listeners).drain(..) {
            task.abort();
        }
        lock(&self.inproc).clear();
        let mut inner = self.shared.lock();
        inner.closed = true;
        let mut wakers = std::mem::take(&mut inner.recv_waiters);
        for slot in inner.slots.iter_mut().flatten() {
            slot.close.get_or_insert(CloseKind::Linger);
            wakers.extend(slot.task.take());
            wakers.append(&mut slot.send_waiters);
        }
        drop(inner);
        wake_all(wakers);
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.close();
    }
}

async fn accept_loop(mut listener: Listener, shared: Arc<Shared>, tracker: TaskTracker) {
    let ms = std::time::Duration::from_millis;
    let mut backoff = Backoff::new(ms(10), ms(1000));
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                backoff.reset();
                shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
                tracker.spawn(run_peer(stream, addr, shared.clone()));
            }
            Err(e) => {
                // Typically EMFILE: wait for descriptors to free up rather than spin.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

async fn run_peer(mut stream: Stream, addr: PeerAddr, shared: Arc<Shared>) {
    // CURVE handshakes cost a DH each: an address whose handshakes keep failing waits its
    // turn (see `limiter`). NULL handshakes cost nothing and are not limited.
    let limited_ip = match addr {
        PeerAddr::Tcp(sa) if shared.opts.security.is_curve() => Some(sa.ip()),
        _ => None,
    };
    if let Some(ip) = limited_ip {
        let admit = lock(&shared.limiter).admit(ip, std::time::Instant::now());
        match admit {
            Admit::Now => {}
            Admit::After(wait) => tokio::time::sleep(wait).await,
            Admit::Refuse => {
                count_handshake_failure(&shared.counters, &HandshakeError::RateLimited);
                debug!(peer.addr = %addr, "Handshake refused: too many failures from this address");
                refuse(&mut stream, shared.socket_type, &shared.opts).await;
                return;
            }
        }
    }
    let mut hs = Handshake::with_security(shared.socket_type, None, &shared.opts.security);
    hs.add_properties(&shared.opts.metadata);
    let info = match transport::handshake(&mut stream, &mut hs, shared.opts.handshake_timeout).await
    {
        Ok(info) => info,
        Err(e) => {
            count_handshake_failure(&shared.counters, &e);
            if let Some(ip) = limited_ip.filter(|_| e != HandshakeError::Closed) {
                lock(&shared.limiter).failed(ip, std::time::Instant::now());
            }
            debug!(peer.addr = %addr, error = %e, "Handshake failed");
            return;
        }
    };
    shared
        .counters
        .handshakes_ok
        .fetch_add(1, Ordering::Relaxed);
    let Some(idx) = register(&shared, &info, addr) else {
        shared
            .counters
            .identity_rejected
            .fetch_add(1, Ordering::Relaxed);
        debug!(peer.addr = %addr, "Duplicate identity refused");
        return;
    };
    let port = RouterPort {
        shared: shared.clone(),
        idx,
        // An XSUB sends its subscriptions to a ZMTP 3.1 peer as commands.
        sub_commands: shared.socket_type == SocketType::XSub && info.minor_version >= 1,
    };
    let ended = Connection::new(
        stream,
        port,
        shared.opts.limits(),
        hs.into_parts(),
        shared.opts.linger,
    )
    .coalescing(shared.opts.coalesce_writes)
    .subscriptions_in(shared.socket_type == SocketType::XPub)
    .await;
    if let Ended::Protocol(e) = &ended {
        count_protocol_error(&shared.counters, e);
    }
    debug!(peer.addr = %addr, reason = %ended, "Connection ended");
    finish(&shared, idx);
}

/// Our greeting and an `ERROR` saying why, for a connection refused before its handshake,
/// so the peer hears a refusal rather than a silent close (a libzmq peer stops redialling).
async fn refuse(stream: &mut Stream, socket_type: SocketType, opts: &Options) {
    use tokio::io::AsyncWriteExt as _;
    let mut hs = Handshake::with_security(socket_type, None, &opts.security);
    let mut out = hs.output().take_all().to_vec();
    let mut enc = Encoder::new();
    enc.encode_command(&crate::proto::Command::Error(bytes::Bytes::from_static(
        b"too many failed handshakes",
    )));
    out.extend_from_slice(&enc.take_all());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), stream.write_all(&out)).await;
}

fn count_handshake_failure(c: &Counters, e: &HandshakeError) {
    c.handshake_failures.fetch_add(1, Ordering::Relaxed);
    let by_result = match e {
        HandshakeError::WrongKey(_) | HandshakeError::ServerKeyMismatch => &c.handshakes_wrong_key,
        HandshakeError::NotAuthorized => &c.handshakes_not_authorized,
        HandshakeError::Timeout => &c.handshakes_timeout,
        HandshakeError::RateLimited => &c.handshakes_rate_limited,
        HandshakeError::Closed => &c.handshakes_closed,
        _ => &c.handshakes_malformed,
    };
    by_result.fetch_add(1, Ordering::Relaxed);
    if let HandshakeError::Protocol(p) = e {
        count_protocol_error(c, p);
    }
}

fn count_protocol_error(c: &Counters, e: &ProtocolError) {
    c.protocol_errors.fetch_add(1, Ordering::Relaxed);
    if matches!(
        e,
        ProtocolError::MessageTooLarge { .. } | ProtocolError::TooManyFrames { .. }
    ) {
        c.oversized.fetch_add(1, Ordering::Relaxed);
    }
}

/// Gives a peer its routing id and a slot; `None` if a duplicate identity is refused.
fn register(shared: &Shared, info: &PeerInfo, addr: PeerAddr) -> Option<usize> {
    let mut inner = shared.lock();
    if inner.closed {
        return None;
    }
    // An Identity starting with a zero byte is reserved for generated ids (RFC 23); such a
    // peer is treated as having none.
    let wanted = info.identity.as_ref().filter(|id| id.first() != Some(&0));
    let id = match wanted {
        Some(id) => PeerId::from(id.clone()),
        None => inner.generate_id(),
    };
    let mut wakers = Vec::new();
    if let Some(&old) = inner.by_id.get(&id) {
        if shared.opts.duplicate_identity == DuplicateIdentity::Reject {
            return None;
        }
        inner.by_id.remove(&id);
        if let Some(slot) = inner.slot(old) {
            slot.close = Some(CloseKind::Now);
            slot.handed_over = true;
            wakers.extend(slot.task.clone());
        }
        inner.clear_inq(old, shared.budget, &mut wakers);
        // The old peer's Disconnected must precede the newcomer's Connected.
        inner
            .events
            .push_back(RouterEvent::Disconnected { peer: id.clone() });
    }
    let idx = inner.insert(Slot::new(id.clone()));
    inner.by_id.insert(id.clone(), idx);
    inner.events.push_back(RouterEvent::Connected {
        peer: id,
        addr,
        socket_type: info.socket_type,
        key: info.key,
        metadata: info.metadata.clone(),
    });
    wakers.append(&mut inner.recv_waiters);
    drop(inner);
    wake_all(wakers);
    Some(idx)
}

/// The connection task has ended: drop its output, keep its input for delivery.
fn finish(shared: &Shared, idx: usize) {
    let mut inner = shared.lock();
    let Some(slot) = inner.slot(idx) else { return };
    slot.gone = true;
    slot.task = None;
    slot.wants_budget = false;
    let dropped = slot.out.len() as u64;
    slot.out.clear();
    let mut wakers = std::mem::take(&mut slot.send_waiters);
    // A large frame cut off by the end of the connection holds no budget any more.
    let reserved = std::mem::take(&mut slot.reserved);
    let handed_over = slot.handed_over;
    inner.release_budget(reserved, shared.budget, &mut wakers);
    if handed_over {
        // Its Disconnected event was already emitted at handover.
        inner.slots[idx] = None;
        inner.free.push(idx);
    } else {
        inner.reap(idx);
    }
    wakers.append(&mut inner.recv_waiters);
    drop(inner);
    shared
        .counters
        .dropped_outbound
        .fetch_add(dropped, Ordering::Relaxed);
    wake_all(wakers);
}

/// The `SUBSCRIBE` or `CANCEL` command an outbound message stands for, when `commands` is on
/// and it is one frame starting with `0x01` or `0x00`.
fn subscription_command(commands: bool, msg: &[Bytes]) -> Option<crate::proto::Command> {
    let [frame] = msg else { return None };
    if !commands {
        return None;
    }
    let name: &'static [u8] = match frame.first() {
        Some(1) => b"SUBSCRIBE",
        Some(0) => b"CANCEL",
        _ => return None,
    };
    Some(crate::proto::Command::Other {
        name: Bytes::from_static(name),
        data: frame.slice(1..),
    })
}

/// A router connection's view of its slot.
struct RouterPort {
    shared: Arc<Shared>,
    idx: usize,
    /// Encode outbound subscriptions (`0x01`/`0x00` + prefix) as `SUBSCRIBE`/`CANCEL`.
    sub_commands: bool,
}

impl Port for RouterPort {
    fn exchange(
        &mut self,
        enc: &mut Encoder,
        inbound: &mut VecDeque<Vec<Bytes>>,
        large: Option<usize>,
        cx: &Context<'_>,
    ) -> Exchanged {
        const CLOSE_NOW: Exchanged = Exchanged {
            close: Some(CloseKind::Now),
            may_read: false,
        };
        let (send_hwm, recv_hwm) = (self.shared.send_hwm, self.shared.recv_hwm);
        let budget = self.shared.budget;
        let mut inner = self.shared.lock();
        let mut wakers = Vec::new();
        let Inner {
            slots,
            ready,
            events,
            recv_waiters,
            budget_used,
            budget_waiters,
            ..
        } = &mut *inner;
        let Some(slot) = slots.get_mut(self.idx).and_then(Option::as_mut) else {
            return CLOSE_NOW;
        };
        if slot.close == Some(CloseKind::Now) {
            return CLOSE_NOW;
        }
        while enc.pending() < OUT_BATCH_BYTES {
            let Some(msg) = slot.out.pop_front() else {
                break;
            };
            slot.out_bytes -= message_bytes(&msg);
            match subscription_command(self.sub_commands, &msg) {
                Some(cmd) => enc.encode_command(&cmd),
                None => enc.encode_message(msg),
            }
        }
        slot.wants_out = slot.out.is_empty();
        if !slot.send_waiters.is_empty() && !send_hwm.full(slot.out.len(), slot.out_bytes) {
            wakers.append(&mut slot.send_waiters);
        }
        if slot.out_blocked && send_hwm.low(slot.out.len(), slot.out_bytes) {
            slot.out_blocked = false;
            events.push_back(RouterEvent::Writable {
                peer: slot.id.clone(),
            });
            wakers.append(recv_waiters);
        }
        let mut delivered = false;
        while !inbound.is_empty() && !recv_hwm.full(slot.inq.len(), slot.in_bytes) {
            if let Some(msg) = inbound.pop_front() {
                let bytes = message_bytes(&msg);
                slot.in_bytes += bytes;
                if slot.budgeted {
                    *budget_used += bytes;
                }
                slot.inq.push_back(msg);
                delivered = true;
            }
        }
        slot.wants_room = !inbound.is_empty();
        let may_read = !slot.budgeted || {
            // The reservation follows the large frame being read: given back when it is
            // complete (its message is in the queue by now), taken for the next one only
            // while the total is under the budget. A frame that has its reservation always
            // completes, so waiting connections never hold the budget from each other.
            let want = large.unwrap_or(0);
            if slot.reserved != want {
                *budget_used -= std::mem::take(&mut slot.reserved);
                if want > 0 && *budget_used < budget {
                    slot.reserved = want;
                    *budget_used += want;
                }
            }
            if want > 0 {
                slot.reserved == want
            } else {
                slot.inq.is_empty() || *budget_used < budget
            }
        };
        if !may_read && !slot.wants_budget {
            slot.wants_budget = true;
            budget_waiters.push_back(self.idx);
        }
        if delivered && !slot.in_ready && slot.deliverable() {
            slot.in_ready = true;
            ready.push_back(self.idx);
            wakers.append(recv_waiters);
        }
        match &slot.task {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.task = Some(cx.waker().clone()),
        }
        let close = slot.close;
        if *budget_used < budget && !budget_waiters.is_empty() {
            // Room is left (this connection may have just given some back): pass it on.
            wakers.extend(inner.pop_budget_waiter());
        }
        drop(inner);
        wake_all(wakers);
        Exchanged { close, may_read }
    }
}
