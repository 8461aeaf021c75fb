//! Topics on sockets: an XSUB endpoint where publishers (libzmq `PUB` sockets) connect, an
//! XPUB endpoint where subscribers (`SUB` sockets) connect, and one task that drives the
//! pure [`Topics`] core between them.
//!
//! Design: like the broker's own loop, the task takes a batch of socket events (one await,
//! then whatever else is waiting on either socket, in turns, up to [`BATCH`]), feeds them to
//! the core with the current time, then hands the core's deliveries to the XPUB router in
//! one batch (sooner when [`FLUSH_BYTES`] were published). A delivery that
//! does not fit in a subscriber's send queue goes back to the core ([`Topics::blocked`]),
//! which keeps it in that subscriber's bounded queue until the router reports the
//! connection `Writable`; so the core's queue is where a slow subscriber's backlog waits,
//! is bounded and drops its oldest. A publisher is sent the empty subscription as soon as
//! it connects (a libzmq `PUB` sends nothing a subscriber did not ask for). The task is
//! one of its own beside the MDP loop, on the broker's one thread: neither waits for the
//! other, but they share that thread's CPU.

use std::future::Future;

use std::sync::Arc;

use bytes::Bytes;
use domo_mdp::extensions::EXTENSIONS_PROPERTY;
use domo_mdp::topic::{error_reply, Stamp, Status, OFFSETS, OFFSETS_PROPERTY};
use domo_zmtp::{Endpoint, Options, PeerId, Router, RouterEvent, SocketType};
use foldhash::{HashMap, HashMapExt, HashSet};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::clock::now;
use super::control::{ShellError, TICK};
use super::local::{LocalHandler, LocalReply};
use crate::core::topics::{Delivery, Plan, SubId, TopicService, TopicStats, Topics, TopicsConfig};
use crate::metrics::TopicMetrics;
use crate::topic_store::{now_ms, Committed, Meta, Op, StoreAt, StoreStatus, TopicStore};

/// Most socket events handled per wake-up before deliveries are flushed.
const BATCH: usize = 256;
/// Bytes published after which deliveries are flushed within a batch.
const FLUSH_BYTES: usize = 256 * 1024;

/// What the topics need to run.
#[derive(Debug, Clone)]
pub struct TopicsLink {
    /// The XPUB endpoint, for subscribers.
    pub subscribe: String,
    /// The XSUB endpoint, for publishers.
    pub publish: String,
    /// The core's limits.
    pub core: TopicsConfig,
    /// Transport options of both endpoints (security included).
    pub transport: Options,
    /// Where `persist=disk` topics are kept (`topics.redb` in a directory, or PostgreSQL);
    /// `None`: no disk topics (`topic.create ... persist=disk` answers `501`).
    pub store: Option<StoreAt>,
}

/// Transport options for the topic endpoints: a subscriber's router queue is kept short
/// (1,000 messages, 1 MiB), since its backlog waits in the core's queue, which is bounded
/// and drops the oldest; `base` gives the rest (security, limits). Both endpoints announce
/// the offsets extension (`X-Domo-Extensions: offsets`).
pub fn topic_transport_options(base: &Options) -> Options {
    let mut options = Options {
        send_hwm: 1_000,
        send_hwm_bytes: 1 << 20,
        ..base.clone()
    };
    options.metadata.insert(EXTENSIONS_PROPERTY, OFFSETS);
    options
}

/// Requests waiting for the topics task, all services together.
const REQUEST_QUEUE: usize = 4096;

/// A `topic.*` request on its way to the topics task.
type ServiceRequest = (TopicService, Vec<Bytes>, oneshot::Sender<Vec<Bytes>>);

/// The `topic.*` services as in-process handlers: each request goes to the topics task,
/// which answers it between socket events.
#[derive(Debug, Clone)]
pub struct TopicServices {
    tx: mpsc::Sender<ServiceRequest>,
}

impl TopicServices {
    /// The handler of `service`, for [`super::BoundBroker::serve_in_process`]. A topics task
    /// that has stopped answers `500`.
    pub fn handler(&self, service: TopicService) -> LocalHandler {
        let tx = self.tx.clone();
        Arc::new(move |body| -> LocalReply {
            let tx = tx.clone();
            Box::pin(async move {
                let (reply_tx, reply_rx) = oneshot::channel();
                if tx.send((service, body, reply_tx)).await.is_err() {
                    return error_reply(Status::Error, "topics stopped");
                }
                reply_rx
                    .await
                    .unwrap_or_else(|_| error_reply(Status::Error, "topics stopped"))
            })
        })
    }
}

/// The topic endpoints, bound.
#[derive(Debug)]
pub struct BoundTopics {
    xpub: Router,
    xsub: Router,
    subscribe: Endpoint,
    publish: Endpoint,
    core: Topics,
    metrics: Option<TopicMetrics>,
    requests: mpsc::Receiver<ServiceRequest>,
    services: TopicServices,
    store: Option<TopicStore>,
    committed: mpsc::UnboundedReceiver<Committed>,
    status: Arc<StoreStatus>,
    store_at: Option<StoreAt>,
    done: mpsc::UnboundedSender<Committed>,
}

/// Puts the disk topics found in the store into the core.
fn restore(core: &mut Topics, loaded: Vec<crate::topic_store::Loaded>) {
    let (now, wall) = (now(), now_ms());
    for topic in loaded {
        let messages = topic
            .messages
            .into_iter()
            .map(|(offset, at_ms, frames)| {
                let age = std::time::Duration::from_millis(wall.saturating_sub(at_ms));
                (offset, now.checked_sub(age).unwrap_or(now), frames)
            })
            .collect();
        core.restore(
            now,
            topic.name,
            topic.meta.retention(),
            topic.meta.stream,
            topic.meta.next,
            messages,
        );
    }
}

/// Binds both endpoints and opens the disk store (a store that cannot be opened is logged
/// and reported by `/readyz`, [`BoundTopics::store_status`]; topics in memory work on).
///
/// # Errors
/// [`ShellError`] if an endpoint cannot be bound.
pub async fn bind_topics(link: TopicsLink) -> Result<BoundTopics, ShellError> {
    let xpub = Router::with_socket_type(SocketType::XPub, link.transport.clone());
    let xsub = Router::with_socket_type(SocketType::XSub, link.transport);
    let subscribe = xpub.bind(&link.subscribe).await?;
    let publish = xsub.bind(&link.publish).await?;
    let (tx, requests) = mpsc::channel(REQUEST_QUEUE);
    // Stream ids must differ from those of an earlier run: seeded from the clock and the
    // process id.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 32);
    let mut core = Topics::new(link.core, seed);
    let status = Arc::new(StoreStatus::default());
    let (done, committed) = mpsc::unbounded_channel();
    // The store is opened at start if it exists, else with the first disk topic: a broker
    // with topics in memory only leaves no file behind.
    let existing = link.store.clone().filter(StoreAt::exists);
    let store = match existing {
        None => None,
        // Off the runtime's thread: a database is a network round trip or more away.
        Some(at) => match tokio::task::spawn_blocking({
            let (done, status) = (done.clone(), status.clone());
            move || TopicStore::open(&at, done, status)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|opened| opened)
        {
            Ok((store, loaded)) => {
                restore(&mut core, loaded);
                Some(store)
            }
            Err(e) => {
                tracing::error!(error = %e, "Topic store not opened: topics on disk are unavailable");
                status.set(Some(format!("cannot open the store: {e}")));
                None
            }
        },
    };
    Ok(BoundTopics {
        xpub,
        xsub,
        subscribe,
        publish,
        core,
        metrics: None,
        requests,
        services: TopicServices { tx },
        store,
        committed,
        status,
        store_at: link.store,
        done,
    })
}

impl BoundTopics {
    /// The subscribers' endpoint as bound (port 0 resolved).
    pub fn subscribe_endpoint(&self) -> &Endpoint {
        &self.subscribe
    }

    /// The publishers' endpoint as bound (port 0 resolved).
    pub fn publish_endpoint(&self) -> &Endpoint {
        &self.publish
    }

    /// The disk store's state, for `/readyz`.
    pub fn store_status(&self) -> Arc<StoreStatus> {
        self.status.clone()
    }

    /// The `topic.*` services, for the broker to serve in process.
    pub fn services(&self) -> TopicServices {
        self.services.clone()
    }

    /// Keeps `domo_topic_*` metrics up to date (every second and at the end).
    pub fn with_metrics(mut self, metrics: TopicMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Serves until `stop` completes; returns the core's figures at the end.
    pub async fn run(self, stop: impl Future<Output = ()>) -> TopicStats {
        let Self {
            xpub,
            xsub,
            subscribe,
            publish,
            core,
            metrics,
            requests,
            services,
            store,
            committed,
            status,
            store_at,
            done,
        } = self;
        // The task stops when told, not when the last handler goes.
        drop(services);
        info!(subscribe = %subscribe, publish = %publish, "Topics listening");
        let mut task = TopicsTask {
            xpub,
            xsub,
            core,
            subs: HashMap::new(),
            peers: HashMap::new(),
            publishers: 0,
            metrics,
            unflushed: 0,
            requests,
            stamped: HashSet::default(),
            store,
            committed,
            store_at,
            done,
            status,
            pending: HashMap::new(),
            next_token: 0,
            pruned: HashMap::new(),
            opening: None,
            deferred: Vec::new(),
        };
        task.serve(stop).await;
        // What the store still has queued is written before the task ends.
        if let Some(mut store) = task.store.take() {
            store.close();
        }
        task.report();
        task.xpub.shutdown().await;
        task.xsub.shutdown().await;
        task.core.stats()
    }
}

struct TopicsTask {
    xpub: Router,
    xsub: Router,
    core: Topics,
    /// Subscriber connection -> its handle in the core.
    subs: HashMap<PeerId, SubId>,
    /// And back.
    peers: HashMap<SubId, PeerId>,
    publishers: u64,
    metrics: Option<TopicMetrics>,
    /// Bytes published since the last flush.
    unflushed: usize,
    requests: mpsc::Receiver<ServiceRequest>,
    /// Subscribers that asked for stamps (the offsets extension).
    stamped: HashSet<SubId>,
    /// The disk store, when it is open.
    store: Option<TopicStore>,
    /// Batches the store has finished.
    committed: mpsc::UnboundedReceiver<Committed>,
    /// Where the store is (opened with the first disk topic if it was not at start);
    /// `None`: no disk topics.
    store_at: Option<StoreAt>,
    /// For a store opened later.
    done: mpsc::UnboundedSender<Committed>,
    status: Arc<StoreStatus>,
    /// What waits for the store, by token.
    pending: HashMap<u64, Pending>,
    next_token: u64,
    /// Per disk stream, the offset below which the store has been told to forget.
    pruned: HashMap<u64, u64>,
    /// The store being opened, and the creations waiting for it.
    opening: Option<Opening>,
    deferred: Vec<DeferredCreate>,
}

/// A disk topic's creation waiting for the store to open.
struct DeferredCreate {
    name: Bytes,
    retention: domo_mdp::topic::Retention,
    stream: u64,
    reply: oneshot::Sender<Vec<Bytes>>,
}

/// The store being opened off the runtime's thread.
type Opening =
    tokio::task::JoinHandle<Result<(TopicStore, Vec<crate::topic_store::Loaded>), String>>;

/// An op the store has not finished yet, and who waits for it.
enum Pending {
    Create {
        name: Bytes,
        retention: domo_mdp::topic::Retention,
        stream: u64,
        first: Option<Vec<Bytes>>,
        reply: oneshot::Sender<Vec<Bytes>>,
    },
    Write {
        stamp: Stamp,
        frames: Vec<Bytes>,
        at: std::time::Instant,
        /// `None` for a message from a PUB socket.
        reply: Option<oneshot::Sender<Vec<Bytes>>>,
    },
    Delete {
        name: Bytes,
        reply: oneshot::Sender<Vec<Bytes>>,
    },
}

impl TopicsTask {
    async fn serve(&mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let mut next_report = tokio::time::Instant::now() + TICK;
        loop {
            let deadline = self
                .core
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .map_or(next_report, |d| d.min(next_report));
            tokio::select! {
                () = &mut stop => return,
                ev = self.xsub.recv_event() => match ev {
                    Ok(ev) => self.on_publisher(ev),
                    Err(_) => return,
                },
                ev = self.xpub.recv_event() => match ev {
                    Ok(ev) => self.on_subscriber(ev),
                    Err(_) => return,
                },
                Some((service, body, reply)) = self.requests.recv() => {
                    self.on_request(service, body, reply);
                }
                Some(batch) = self.committed.recv() => self.on_committed(batch),
                opened = async {
                    match &mut self.opening {
                        Some(handle) => handle.await,
                        None => std::future::pending().await,
                    }
                } => {
                    let opened = opened.unwrap_or_else(|e| Err(format!("the opening task failed: {e}")));
                    self.on_opened(opened);
                }
                () = tokio::time::sleep_until(deadline) => {}
            }
            // Then whatever else waits, both sides in turn, so that a flood of publications
            // never keeps the subscribers' events (their `Writable`s) waiting.
            for _ in 1..BATCH {
                let mut any = false;
                if let Ok(Some(ev)) = self.xpub.try_recv_event() {
                    self.on_subscriber(ev);
                    any = true;
                }
                if let Ok(Some(ev)) = self.xsub.try_recv_event() {
                    self.on_publisher(ev);
                    any = true;
                }
                if let Ok((service, body, reply)) = self.requests.try_recv() {
                    self.on_request(service, body, reply);
                    any = true;
                }
                if !any {
                    break;
                }
            }
            let t = now();
            for sub in self.core.handle_timeout(t) {
                if let Some(peer) = self.peers.remove(&sub) {
                    self.subs.remove(&peer);
                    self.stamped.remove(&sub);
                    warn!(peer = %peer, "Slow subscriber disconnected: it lagged for longer than topics.slow_subscriber_timeout");
                    self.xpub.disconnect(&peer);
                }
            }
            self.flush();
            if tokio::time::Instant::now() >= next_report {
                self.report();
                next_report = tokio::time::Instant::now() + TICK;
            }
        }
    }

    fn on_publisher(&mut self, ev: RouterEvent) {
        match ev {
            RouterEvent::Connected { peer, .. } => {
                self.publishers += 1;
                // Everything: the broker keeps last values and filters for its subscribers.
                if self
                    .xsub
                    .try_send(&peer, vec![Bytes::from_static(b"\x01")])
                    .is_err()
                {
                    debug!(peer = %peer, "Publisher gone before its subscription");
                }
            }
            RouterEvent::Message { msg, .. } => {
                self.unflushed += msg.iter().map(Bytes::len).sum::<usize>();
                if let Some(stamp) = msg.first().and_then(|t| self.core.reserve_disk(t)) {
                    // A disk topic: kept and fanned out once stored.
                    self.store_write(stamp, msg, None);
                    return;
                }
                self.core.publish(now(), msg);
                // Large messages go out as they come, so that a batch of them never sits
                // in the subscriber queues (whose bounds drop the oldest) all at once.
                if self.unflushed >= FLUSH_BYTES {
                    self.flush();
                }
            }
            RouterEvent::Disconnected { .. } => {
                self.publishers = self.publishers.saturating_sub(1);
            }
            RouterEvent::Writable { .. } => {}
        }
    }

    fn on_request(
        &mut self,
        service: TopicService,
        body: Vec<Bytes>,
        reply: oneshot::Sender<Vec<Bytes>>,
    ) {
        match self.core.plan_service(now(), service, body) {
            Plan::Reply(answer) => {
                let _ = reply.send(answer);
            }
            Plan::CreateDisk {
                name,
                retention,
                stream,
            } => {
                let create = DeferredCreate {
                    name,
                    retention,
                    stream,
                    reply,
                };
                if self.store.is_none() {
                    self.open_store(create);
                    return;
                }
                self.create_on_disk(create);
            }
            Plan::WriteDisk { stamp, frames } => self.store_write(stamp, frames, Some(reply)),
            Plan::DeleteDisk { name, stream } => {
                let token = self.token();
                let op = Op::Delete {
                    name: name.clone(),
                    stream,
                    token,
                };
                self.submit(token, op, Pending::Delete { name, reply });
            }
        }
    }

    /// Stores a disk topic's creation (the store is open).
    fn create_on_disk(&mut self, create: DeferredCreate) {
        let DeferredCreate {
            name,
            retention,
            stream,
            reply,
        } = create;
        {
            let first = self.core.last_value(&name).map(|d| d.frames.clone());
            let meta = Meta {
                stream,
                max_messages: retention.max_messages,
                max_bytes: retention.max_bytes,
                max_age_ms: retention.max_age_ms,
                next: 0,
            };
            let token = self.token();
            let op = Op::Create {
                name: name.clone(),
                meta,
                first: first.clone().map(|f| (now_ms(), f)),
                token,
            };
            let pending = Pending::Create {
                name,
                retention,
                stream,
                first,
                reply,
            };
            self.submit(token, op, pending);
        }
    }

    /// The first disk topic: opens the store off the runtime's thread; `create` (and any
    /// other creation meanwhile) waits for it ([`TopicsTask::on_opened`]).
    fn open_store(&mut self, create: DeferredCreate) {
        let Some(at) = self.store_at.clone() else {
            self.core.abandon_disk_create(create.retention);
            let _ = create.reply.send(error_reply(
                Status::NotImplemented,
                "this broker keeps no topics on disk",
            ));
            return;
        };
        self.deferred.push(create);
        if self.opening.is_none() {
            let (done, status) = (self.done.clone(), self.status.clone());
            self.opening = Some(tokio::task::spawn_blocking(move || {
                TopicStore::open(&at, done, status)
            }));
        }
    }

    /// The store opened (or not): the creations that waited go on (or fail).
    fn on_opened(&mut self, opened: Result<(TopicStore, Vec<crate::topic_store::Loaded>), String>) {
        self.opening = None;
        let deferred = std::mem::take(&mut self.deferred);
        match opened {
            Ok((store, loaded)) => {
                restore(&mut self.core, loaded);
                self.status.set(None);
                self.store = Some(store);
                for create in deferred {
                    self.create_on_disk(create);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "Topic store not opened");
                self.status.set(Some(format!("cannot open the store: {e}")));
                for create in deferred {
                    self.core.abandon_disk_create(create.retention);
                    let _ = create.reply.send(error_reply(
                        Status::Error,
                        &format!("the topic store cannot be opened: {e}"),
                    ));
                }
            }
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Sends a disk topic's message to the store; kept and fanned out once stored.
    fn store_write(
        &mut self,
        stamp: Stamp,
        frames: Vec<Bytes>,
        reply: Option<oneshot::Sender<Vec<Bytes>>>,
    ) {
        let token = self.token();
        let op = Op::Append {
            stream: stamp.stream,
            offset: stamp.offset,
            at_ms: now_ms(),
            frames: frames.clone(),
            token,
        };
        let pending = Pending::Write {
            stamp,
            frames,
            at: now(),
            reply,
        };
        self.submit(token, op, pending);
    }

    /// Queues `op` for the store; if it cannot be queued, `pending` fails at once.
    fn submit(&mut self, token: u64, op: Op, pending: Pending) {
        let queued = self.store.as_ref().is_some_and(|s| s.submit(op));
        if queued {
            self.pending.insert(token, pending);
        } else {
            self.fail(pending, "the topic store is not taking writes");
        }
    }

    fn fail(&mut self, pending: Pending, reason: &str) {
        let answer = error_reply(Status::Error, reason);
        match pending {
            Pending::Create {
                retention, reply, ..
            } => {
                self.core.abandon_disk_create(retention);
                let _ = reply.send(answer);
            }
            Pending::Write { reply, .. } => {
                if let Some(reply) = reply {
                    let _ = reply.send(answer);
                }
            }
            Pending::Delete { reply, .. } => {
                let _ = reply.send(answer);
            }
        }
    }

    /// A batch is durable (or failed): keep, fan out and answer, in order.
    fn on_committed(&mut self, batch: Committed) {
        let t = now();
        let mut touched: Vec<Bytes> = Vec::new();
        for token in batch.tokens {
            let Some(pending) = self.pending.remove(&token) else {
                continue;
            };
            if let Err(reason) = &batch.result {
                self.fail(pending, &format!("topic store write failed: {reason}"));
                continue;
            }
            match pending {
                Pending::Create {
                    name,
                    retention,
                    stream,
                    first,
                    reply,
                } => {
                    self.core
                        .finish_disk_create(t, name, retention, stream, first);
                    let _ = reply.send(vec![
                        Bytes::from_static(Status::Ok.as_bytes()),
                        Bytes::from_static(b"created"),
                    ]);
                }
                Pending::Write {
                    stamp,
                    frames,
                    at,
                    reply,
                } => {
                    let topic = frames.first().cloned().unwrap_or_default();
                    let kept = self.core.append_reserved(at, stamp, frames);
                    if kept && !touched.contains(&topic) {
                        touched.push(topic);
                    }
                    if let Some(reply) = reply {
                        let answer = if kept {
                            vec![
                                Bytes::from_static(Status::Ok.as_bytes()),
                                domo_mdp::topic::number(stamp.offset),
                            ]
                        } else {
                            error_reply(Status::NotFound, "the topic was deleted meanwhile")
                        };
                        let _ = reply.send(answer);
                    }
                }
                Pending::Delete { name, reply } => {
                    if let Some(stream) = self.core.disk_stream(&name) {
                        self.pruned.remove(&stream);
                    }
                    self.core.delete(&name);
                    let _ = reply.send(vec![Bytes::from_static(Status::Ok.as_bytes())]);
                }
            }
        }
        // Tell the store what the retention dropped.
        for topic in touched {
            let (Some(stream), Some(first)) = (
                self.core.disk_stream(&topic),
                self.core.first_offset(&topic),
            ) else {
                continue;
            };
            let pruned = self.pruned.entry(stream).or_insert(0);
            if first > *pruned {
                *pruned = first;
                if let Some(store) = &self.store {
                    store.submit(Op::Prune {
                        stream,
                        below: first,
                    });
                }
            }
        }
    }

    fn on_subscriber(&mut self, ev: RouterEvent) {
        match ev {
            RouterEvent::Connected { peer, metadata, .. } => {
                let sub = self.core.connect();
                if metadata
                    .get(OFFSETS_PROPERTY)
                    .is_some_and(|v| v.as_ref() == b"1")
                {
                    self.stamped.insert(sub);
                }
                self.subs.insert(peer.clone(), sub);
                self.peers.insert(sub, peer);
            }
            RouterEvent::Message { peer, msg } => {
                if let Some(&sub) = self.subs.get(&peer) {
                    self.core.handle_subscriber(now(), sub, &msg);
                }
            }
            RouterEvent::Disconnected { peer } => {
                if let Some(sub) = self.subs.remove(&peer) {
                    self.peers.remove(&sub);
                    self.stamped.remove(&sub);
                    self.core.disconnect(sub);
                }
            }
            RouterEvent::Writable { peer } => {
                if let Some(&sub) = self.subs.get(&peer) {
                    self.core.writable(sub);
                }
            }
        }
    }

    /// Hands everything deliverable to the XPUB router; what does not fit goes back.
    fn flush(&mut self) {
        self.unflushed = 0;
        loop {
            let mut batch = Vec::new();
            while let Some((sub, d)) = self.core.poll_delivery() {
                let Some(peer) = self.peers.get(&sub) else {
                    self.core.disconnect(sub);
                    continue;
                };
                let stamp = Stamp {
                    stream: d.stream,
                    offset: d.offset,
                };
                let mut frames = d.frames;
                let stamped = self.stamped.contains(&sub);
                if stamped {
                    frames.insert(1, stamp.encode());
                }
                batch.push((peer.clone(), frames, (sub, stamp, stamped)));
                if batch.len() >= 4 * BATCH {
                    break;
                }
            }
            if batch.is_empty() {
                return;
            }
            // Handed back in order, and each goes back to the front of its queue: last first.
            for (_, err, (sub, stamp, stamped)) in self.xpub.try_send_batch(batch).into_iter().rev()
            {
                let mut frames = err.into_inner();
                if stamped && frames.len() > 1 {
                    frames.remove(1);
                }
                let d = Delivery {
                    stream: stamp.stream,
                    offset: stamp.offset,
                    frames,
                };
                self.core.blocked(sub, d);
            }
        }
    }

    fn report(&mut self) {
        let Some(m) = &self.metrics else { return };
        m.update(&self.core.stats(), self.publishers);
    }
}
