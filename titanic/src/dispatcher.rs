//! The dispatcher: sends stored requests to their services and stores the replies.
//!
//! Design: one scanner task pages through [`Store::pending`] (FIFO, with the last id seen as
//! cursor) and hands each request to the *lane* of its service. Each lane is its own task with
//! its own FIFO, its own client connection pool and at most
//! [`DispatcherOptions::concurrency`] requests in flight, so an absent or slow service delays
//! only its own requests (no head-of-line blocking across services). The scanner runs when
//! `titanic.request` stores a request (a [`Notify`]), every
//! [`DispatcherOptions::poll_interval`], and after a lane drained below half of a queue that
//! had overflowed. It also expires old requests every [`DispatcherOptions::expire_interval`].
//!
//! With a feed from the store ([`Dispatcher::with_feed`], the store's writer sending each
//! commit's requests), newly stored requests go to their lanes straight from the feed and a
//! store does not wake a scan: nothing just written is read back. The feed is exact because
//! ids grow in commit order: an entry at or below the cursor was covered by a scan already
//! and is skipped, and while a scan is due (the gate was closed, a lane overflowed) the
//! feed is ignored and the scan reads those requests from the store instead.
//!
//! A lane asks the broker's `mmi.service` before it sends (first, and after every failure),
//! then sends each request once with [`DispatcherOptions::request_timeout`]. A timeout, an
//! unavailable service or an unreachable broker puts the request back at the head of the
//! lane and the lane waits (backoff from [`DispatcherOptions::retry_min`] doubling to
//! [`DispatcherOptions::retry_max`]) and asks `mmi.service` again. A broker without MMI (any
//! other answer, or none although the broker is reachable) is taken as "available", so the
//! lane then just sends with backoff. A request closed or expired while it waited in its
//! lane is not sent. A reply is stored with [`Store::complete`]
//! (retried with the same backoff while the store fails).
//!
//! # Pausing while the broker is not active (Binary Star)
//!
//! [`DispatcherOptions::active`] is an optional gate (`None`: always open). While it says
//! `false` the scanner hands out nothing and every lane waits before each send and before
//! each `mmi.service` check, so no client request at all leaves the dispatcher; a request
//! already in flight finishes or times out as usual, and one that times out meanwhile waits
//! in its lane. When the gate opens, the scanner runs at once and every lane starts over
//! like a new one: backoff back to [`DispatcherOptions::retry_min`] and `mmi.service` asked
//! at once, so pending requests go out right after a takeover. Expiry goes on while paused
//! (it only touches the store). With a gate set, the client SDK's own `mmi.service` check
//! after a timed-out request is off (it could leave while paused); the lane's check, behind
//! the gate, replaces it. The Titanic services themselves (`titanic.request`,
//! `titanic.reply`, `titanic.close`) are workers and are not gated.
//!
//! This is for a broker of a Binary Star pair that embeds Titanic: a passive broker drops
//! client requests, and a client request reaching a passive broker whose peer has gone
//! silent counts as a vote to take over. Its own dispatcher must neither send (its requests
//! would be dropped and its lanes would back off for up to [`DispatcherOptions::retry_max`])
//! nor vote (retrying old pending requests would make it active although no client chose
//! it: split brain when the link between the pair is cut).
//!
//! # Delivery is at-least-once
//!
//! A request is stored as done only after its service answered, so it can run more than
//! once: when Titanic stops or crashes between the answer and the commit, when an attempt
//! times out although the service was working on it, or when the broker still holds a copy
//! that timed out here (the broker queues requests for a service without workers). After a
//! restart the scanner starts over from the oldest pending request. Services behind Titanic
//! must be idempotent (RFC 9 and the Guide say the same). The first stored reply wins.
//!
//! What it does not do: a request that can never be sent (a service name the client SDK
//! refuses, or a body over its size limit) stays pending until it expires, with a warning.
//! Lanes are never removed, so memory grows with the number of distinct service names seen
//! since the start.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use domo_client::{Client, ClientOptions, Error as ClientError};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use self::lane::{stopped, Lane};
use crate::id::Id;
use crate::record::Request;
use crate::store::Store;

mod lane;

/// How the dispatcher sends and retries.
#[derive(Debug, Clone)]
pub struct DispatcherOptions {
    /// Requests read from the store per page. Default 256.
    pub page_size: usize,
    /// Requests a lane holds in memory; more are left in the store and read again once the
    /// lane has drained to half. Default 1024.
    pub lane_capacity: usize,
    /// Requests in flight per service (also the lane's connection pool size). Default 8.
    pub concurrency: usize,
    /// How long one attempt waits for the service's reply. Default 30 s.
    pub request_timeout: Duration,
    /// First retry delay after a failed attempt. Default 250 ms.
    pub retry_min: Duration,
    /// Longest retry delay. Default 30 s.
    pub retry_max: Duration,
    /// How often the store is scanned without being woken. Default 1 s.
    pub poll_interval: Duration,
    /// Requests older than this are deleted, answered or not. Default 7 days.
    pub expire_after: Duration,
    /// How often expiry runs. Default 60 s.
    pub expire_interval: Duration,
    /// Whether the dispatcher may send: while the receiver says `false` it sends no client
    /// request at all (no request to a service, no `mmi.service`) and resumes at once when
    /// it turns `true` (see the module docs). `None`, the default: always active.
    ///
    /// For Binary Star: the broker embedding Titanic passes whether it is the active broker
    /// of its pair, because the dispatcher of a passive broker must neither send (a passive
    /// broker drops client requests) nor vote (a client request reaching a passive broker
    /// whose peer is silent makes it take over). Only the dispatcher is gated; the Titanic
    /// services keep answering (the broker refuses client requests while passive anyway).
    /// Once the sender is dropped the gate keeps its last value.
    pub active: Option<watch::Receiver<bool>>,
    /// Options of the client's connections to the broker (CURVE security, for example).
    /// Default: libzmq's defaults, no security.
    pub transport: domo_zmtp::Options,
}

impl Default for DispatcherOptions {
    fn default() -> Self {
        Self {
            page_size: 256,
            lane_capacity: 1024,
            concurrency: 8,
            request_timeout: Duration::from_secs(30),
            retry_min: Duration::from_millis(250),
            retry_max: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            expire_after: Duration::from_secs(7 * 24 * 3600),
            expire_interval: Duration::from_secs(60),
            active: None,
            transport: domo_zmtp::Options::default(),
        }
    }
}

/// [`DispatcherOptions::active`] as the scanner and the lanes read it.
#[derive(Debug, Clone)]
struct Gate(Option<watch::Receiver<bool>>);

impl Gate {
    fn new(options: &DispatcherOptions) -> Self {
        Self(options.active.clone())
    }

    /// Whether sending is allowed now.
    fn is_open(&self) -> bool {
        self.0.as_ref().is_none_or(|rx| *rx.borrow())
    }

    /// Completes once the gate is `open` (at once if it is already); never, if it cannot
    /// become so (no gate and `open` false, or a gate whose sender is gone).
    async fn until(&mut self, open: bool) {
        let reached = match &mut self.0 {
            Some(rx) => rx.wait_for(|a| *a == open).await.is_ok(),
            None => open,
        };
        if !reached {
            std::future::pending::<()>().await;
        }
    }
}

/// A lane finished with a request (answered and stored).
#[derive(Debug)]
struct Finished {
    service: Bytes,
    id: Id,
}

/// The scanner's view of one lane.
#[derive(Debug)]
struct LaneHandle {
    tx: mpsc::UnboundedSender<(Id, Request)>,
    /// Requests handed to the lane and not finished yet.
    loaded: usize,
    /// The first request left in the store because the lane was full.
    skipped: Option<Id>,
}

/// Sends stored requests to their services; see the module docs.
pub struct Dispatcher {
    store: Arc<dyn Store>,
    options: DispatcherOptions,
    client_options: ClientOptions,
    wake: Arc<Notify>,
    lanes: HashMap<Bytes, LaneHandle>,
    /// Ids handed to a lane and not finished, so a rescan does not load them twice.
    loaded: HashSet<Id>,
    /// Scan pending requests after this id (`None`: from the oldest).
    cursor: Option<Id>,
    /// Each commit's stored requests, from the store's writer.
    feed: Option<mpsc::UnboundedReceiver<Vec<(Id, Request)>>>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("options", &self.options)
            .field("lanes", &self.lanes.len())
            .field("loaded", &self.loaded.len())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher for `store` sending through the broker at `endpoints`; `wake` is
    /// signalled when a request was stored.
    ///
    /// # Errors
    ///
    /// The client SDK's error for bad endpoints, or for a zero `request_timeout` or
    /// `concurrency` ([`domo_client::ErrorKind::InvalidOptions`]).
    pub fn new(
        store: Arc<dyn Store>,
        endpoints: &[String],
        options: DispatcherOptions,
        wake: Arc<Notify>,
    ) -> Result<Self, ClientError> {
        // Behind a gate, a timed-out request must not be followed by the SDK's own
        // `mmi.service` check: it could leave after the gate closed. The lane asks
        // `mmi.service` itself before it retries, behind the gate.
        let client_options = ClientOptions::new(endpoints.iter().cloned())
            .timeout(options.request_timeout)
            .retries(0)
            .pool_size(options.concurrency)
            .check_service(options.active.is_none())
            .transport(options.transport.clone());
        // Checks the endpoints now; lanes make their own clients (own pools) later.
        drop(Client::new(client_options.clone())?);
        Ok(Self {
            store,
            options,
            client_options,
            wake,
            lanes: HashMap::new(),
            loaded: HashSet::new(),
            cursor: None,
            feed: None,
        })
    }

    /// Takes newly stored requests from `feed` (the store's [`crate::RedbOptions::feed`])
    /// instead of reading them back after each store; see the module docs.
    #[must_use]
    pub fn with_feed(mut self, feed: mpsc::UnboundedReceiver<Vec<(Id, Request)>>) -> Self {
        self.feed = Some(feed);
        self
    }

    /// Runs until `stop` turns true, starting from the oldest pending request.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let mut lanes = JoinSet::new();
        let mut poll = tokio::time::interval(self.options.poll_interval);
        let mut expire = tokio::time::interval(self.options.expire_interval);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        expire.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut active = Gate::new(&self.options);
        let mut dirty = true;
        let mut feed = self.feed.take();
        loop {
            let open = active.is_open();
            // While paused, nothing is handed out; `dirty` waits for the gate to open.
            if dirty && open {
                self.scan(&mut lanes, &done_tx, &stop).await;
                dirty = false;
            }
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => break,
                _ = active.until(!open) => {
                    if open {
                        info!("Dispatcher paused: the broker is not active");
                    } else {
                        info!("Dispatcher resumed");
                        // From the oldest again: while paused, another broker sharing the
                        // store may have stored requests below the cursor (its clock behind
                        // ours); the loaded set keeps those in lanes from going out twice.
                        self.cursor = None;
                        dirty = true;
                    }
                }
                Some(done) = done_rx.recv() => dirty |= self.finished(done),
                stored = next_fed(&mut feed) => match stored {
                    // While a scan is due it reads these from the store.
                    Some(stored) if open && !dirty => {
                        self.fed(stored, &mut lanes, &done_tx, &stop);
                    }
                    Some(_) => {}
                    None => feed = None,
                },
                _ = self.wake.notified() => dirty |= feed.is_none(),
                _ = poll.tick() => dirty = true,
                _ = expire.tick() => self.expire().await,
            }
        }
        drop(self.lanes);
        // Lanes see `stop` too; in-flight requests stay pending in the store.
        while lanes.join_next().await.is_some() {}
        debug!("Dispatcher stopped");
    }

    /// Loads pending requests after the cursor into their lanes.
    async fn scan(
        &mut self,
        lanes: &mut JoinSet<()>,
        done: &mpsc::UnboundedSender<Finished>,
        stop: &watch::Receiver<bool>,
    ) {
        loop {
            let store = self.store.clone();
            let (after, n) = (self.cursor, self.options.page_size);
            let page = match tokio::task::spawn_blocking(move || store.pending(after, n)).await {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => return warn!(error = %e, "Reading pending requests failed"),
                Err(e) => return warn!(error = %e, "Reading pending requests failed"),
            };
            let full = page.len() == n;
            for (id, request) in page {
                self.cursor = Some(id);
                self.load(id, request, lanes, done, stop);
            }
            if !full {
                return;
            }
        }
    }

    /// Loads requests from the feed that no scan covered yet (ids above the cursor).
    fn fed(
        &mut self,
        stored: Vec<(Id, Request)>,
        lanes: &mut JoinSet<()>,
        done: &mpsc::UnboundedSender<Finished>,
        stop: &watch::Receiver<bool>,
    ) {
        for (id, request) in stored {
            if self.cursor.is_some_and(|c| id <= c) {
                continue;
            }
            self.cursor = Some(id);
            self.load(id, request, lanes, done, stop);
        }
    }

    /// Hands one request to its lane, unless it is loaded already or the lane is full.
    fn load(
        &mut self,
        id: Id,
        request: Request,
        lanes: &mut JoinSet<()>,
        done: &mpsc::UnboundedSender<Finished>,
        stop: &watch::Receiver<bool>,
    ) {
        if self.loaded.contains(&id) {
            return;
        }
        let service = request.service.clone();
        let lane = self.lanes.entry(service.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let lane = Lane {
                service: service.clone(),
                rx,
                done: done.clone(),
                stop: stop.clone(),
                store: self.store.clone(),
                client_options: self.client_options.clone(),
                options: self.options.clone(),
            };
            lanes.spawn(lane.run());
            LaneHandle {
                tx,
                loaded: 0,
                skipped: None,
            }
        });
        if lane.loaded >= self.options.lane_capacity {
            lane.skipped.get_or_insert(id);
            return;
        }
        if lane.tx.send((id, request)).is_ok() {
            lane.loaded += 1;
            self.loaded.insert(id);
        }
    }

    /// Records a finished request; true if the store must be scanned again (its lane had
    /// overflowed and has room again).
    fn finished(&mut self, done: Finished) -> bool {
        self.loaded.remove(&done.id);
        let Some(lane) = self.lanes.get_mut(&done.service) else {
            return false;
        };
        lane.loaded = lane.loaded.saturating_sub(1);
        if lane.loaded > self.options.lane_capacity / 2 {
            return false;
        }
        let Some(skipped) = lane.skipped.take() else {
            return false;
        };
        // Scan again from just before the first request left behind.
        let before = skipped.as_u128().checked_sub(1).map(Id::from_u128);
        self.cursor = self.cursor.min(before);
        true
    }

    /// Deletes requests older than `expire_after`.
    async fn expire(&self) {
        let store = self.store.clone();
        let age = u64::try_from(self.options.expire_after.as_millis()).unwrap_or(u64::MAX);
        match tokio::task::spawn_blocking(move || store.expire(age)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => info!(expired = n, "Expired old Titanic requests"),
            Ok(Err(e)) => warn!(error = %e, "Expiring Titanic requests failed"),
            Err(e) => warn!(error = %e, "Expiring Titanic requests failed"),
        }
    }
}

/// The next batch from the feed; never, without one.
async fn next_fed(
    feed: &mut Option<mpsc::UnboundedReceiver<Vec<(Id, Request)>>>,
) -> Option<Vec<(Id, Request)>> {
    match feed {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
