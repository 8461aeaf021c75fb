//! Topics: the `topic.*` services as [`Client`] methods, and a [`Subscriber`] that resumes
//! where it left off.
//!
//! A domo broker routes topics for libzmq PUB and SUB sockets (its `[topics]` endpoints) and
//! serves `topic.create`, `topic.write`, `topic.read`, `topic.delete` and `topic.list` on its
//! MDP endpoint (layouts in [`domo_mdp::topic`]). [`Client::topic_write`] is an acknowledged
//! publish: it returns once the broker has stored the message, with its offset.
//!
//! # Subscriber and recovery
//!
//! A [`Subscriber`] connects to the broker's subscribe endpoint as a SUB socket that asks for
//! stamps (`X-Domo-Offsets`, docs/extensions.md), so every message comes with its topic's
//! stream and offset. It remembers, per topic, the last offset it delivered, and:
//!
//! * drops a message it has delivered already (the last value replayed on a reconnect, a
//!   message read while it was also live): no duplicates reach the application;
//! * when a message's offset skips some (its connection was cut, the broker dropped the
//!   oldest of its queue because it read too slowly), reads the missing ones with
//!   `topic.read` from the broker that sent it and delivers them first, in order; what the
//!   topic no longer retains is reported as a [`SubscriberEvent::Gap`];
//! * after a reconnect (automatic, with backoff) its subscriptions are sent again, the broker
//!   replays each matching topic's last value, and that value's offset tells the subscriber
//!   what it missed meanwhile: the same path as above fills it;
//! * a topic whose stream changed (deleted and created again, or a topic nobody created
//!   after a broker restart) is reported as [`SubscriberEvent::StreamChanged`] before its
//!   message: offsets of two streams are not comparable.
//!
//! With several brokers ([`Subscriber::with_brokers`]) it subscribes on all of them (topics
//! are spread over brokers by name, see [`TopicPlacement`]) and reads a gap from the broker
//! the message came from.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use domo_mdp::extensions::{lists, EXTENSIONS_PROPERTY};
use domo_mdp::topic::{
    self as wire, ReadReply, Retention, Stamp, Status, OFFSETS, OFFSETS_PROPERTY,
};
use domo_zmtp::{Dealer, Options, SocketType};

mod resume;

use self::resume::{Resume, Verdict};
use crate::{Client, Error};

impl Client {
    /// `topic.create`: creates `name` with `retention`. `Ok(true)` if it was created,
    /// `Ok(false)` if it existed with the same retention.
    ///
    /// # Errors
    /// The errors of [`Client::request`]; [`ErrorKind::Topic`](crate::ErrorKind::Topic)
    /// with [`Error::topic_status`] `409` (exists with another retention), `507` (no room),
    /// `501` (`persist=disk` where not available), `400`/`413` (bad name or options).
    pub async fn topic_create(
        &self,
        name: impl Into<Bytes>,
        retention: Retention,
    ) -> Result<bool, Error> {
        let mut body = vec![name.into()];
        body.extend(retention.to_frames());
        let reply = self.topic_call(wire::TOPIC_CREATE, body).await?;
        Ok(reply.get(1).is_some_and(|f| f.as_ref() == b"created"))
    }

    /// `topic.write`: publishes `[name][frames...]` and returns its offset once the broker
    /// has stored it (acknowledged publish).
    ///
    /// # Errors
    /// As [`Client::topic_create`].
    pub async fn topic_write(
        &self,
        name: impl Into<Bytes>,
        frames: Vec<Bytes>,
    ) -> Result<u64, Error> {
        let mut body = vec![name.into()];
        body.extend(frames);
        let reply = self.topic_call(wire::TOPIC_WRITE, body).await?;
        reply
            .get(1)
            .and_then(|f| wire::parse_number(f))
            .ok_or_else(|| Error::topic_reply(&reply))
    }

    /// `topic.read`: up to `max` retained messages of `name` from offset `from`.
    ///
    /// # Errors
    /// As [`Client::topic_create`]; `404` for a topic with nothing kept.
    pub async fn topic_read(
        &self,
        name: impl Into<Bytes>,
        from: u64,
        max: usize,
    ) -> Result<ReadReply, Error> {
        let body = vec![name.into(), wire::number(from), wire::number(max as u64)];
        let reply = self.topic_call(wire::TOPIC_READ, body).await?;
        ReadReply::decode(&reply).map_err(|_| Error::topic_reply(&reply))
    }

    /// `topic.delete`: forgets `name` and what it kept.
    ///
    /// # Errors
    /// As [`Client::topic_create`]; `404` if there was no such topic.
    pub async fn topic_delete(&self, name: impl Into<Bytes>) -> Result<(), Error> {
        self.topic_call(wire::TOPIC_DELETE, vec![name.into()])
            .await
            .map(drop)
    }

    /// `topic.list`: the topics whose names start with `prefix`, each with its info words
    /// (`kind=created persist=memory stream=... first=... next=... messages=... bytes=...`).
    ///
    /// # Errors
    /// As [`Client::topic_create`].
    pub async fn topic_list(
        &self,
        prefix: impl Into<Bytes>,
    ) -> Result<Vec<(Bytes, String)>, Error> {
        let prefix: Bytes = prefix.into();
        let body = if prefix.is_empty() {
            Vec::new()
        } else {
            vec![prefix]
        };
        let reply = self.topic_call(wire::TOPIC_LIST, body).await?;
        Ok(reply[1..]
            .chunks_exact(2)
            .map(|pair| {
                (
                    pair[0].clone(),
                    String::from_utf8_lossy(&pair[1]).into_owned(),
                )
            })
            .collect())
    }

    /// A `topic.*` request whose reply must start with `200`.
    async fn topic_call(
        &self,
        service: &'static str,
        body: Vec<Bytes>,
    ) -> Result<Vec<Bytes>, Error> {
        let reply = self
            .request(Bytes::from_static(service.as_bytes()), body)
            .await?;
        match reply.first().and_then(|f| Status::from_frame(f)) {
            Some(Status::Ok) => Ok(reply),
            Some(status) => {
                let reason = reply
                    .get(1)
                    .map(|r| String::from_utf8_lossy(r).into_owned())
                    .unwrap_or_default();
                Err(Error::topic(status, reason))
            }
            None => Err(Error::topic_reply(&reply)),
        }
    }
}

/// Which broker of several holds a topic: rendezvous (highest random weight) hashing of the
/// topic name with each broker's name, so adding or removing a broker moves only the topics
/// that go to or came from it. Publishers and [`Client::topic_create`] callers use it to pick
/// the broker; subscribers subscribe on all of them.
#[derive(Debug, Clone)]
#[allow(clippy::module_name_repetitions)]
pub struct TopicPlacement {
    brokers: Vec<Bytes>,
}

impl TopicPlacement {
    /// Placement over brokers known by these names (their MDP endpoints, say: any name that
    /// is the same for every program).
    pub fn new<I, S>(brokers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Bytes>,
    {
        Self {
            brokers: brokers.into_iter().map(Into::into).collect(),
        }
    }

    /// The index of the broker that holds `topic` (0 when there is none or one).
    pub fn place(&self, topic: &[u8]) -> usize {
        let mut best = (0usize, 0u64);
        for (i, broker) in self.brokers.iter().enumerate() {
            let w = weight(broker, topic);
            if i == 0 || w > best.1 {
                best = (i, w);
            }
        }
        best.0
    }
}

/// A stable 64-bit hash (FNV-1a then a final mix) of a broker name and a topic, the same in
/// every process and release.
fn weight(broker: &[u8], topic: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in broker
        .iter()
        .chain(std::iter::once(&0xFFu8))
        .chain(topic.iter())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// One broker of a topic deployment: a client of its MDP endpoint and its two topic
/// endpoints (`[topics] subscribe` and `publish`).
#[derive(Debug, Clone)]
pub struct TopicBroker {
    /// A client of the broker's MDP endpoint (for `topic.*`); its first endpoint names the
    /// broker for [`TopicPlacement`].
    pub client: Client,
    /// Where SUB sockets connect (`tcp://127.0.0.1:5557` by default).
    pub subscribe: String,
    /// Where PUB sockets connect (`tcp://127.0.0.1:5558` by default).
    pub publish: String,
}

impl TopicBroker {
    /// The name [`TopicPlacement`] knows it by: its client's first endpoint.
    fn name(&self) -> Bytes {
        Bytes::from(
            self.client
                .options()
                .endpoints
                .first()
                .cloned()
                .unwrap_or_default(),
        )
    }
}

/// Publishes to topics spread over one or more brokers: each topic lives on the broker
/// [`TopicPlacement`] gives (the same for every program that lists the same brokers).
#[derive(Debug)]
pub struct Publisher {
    brokers: Vec<TopicBroker>,
    placement: TopicPlacement,
    /// PUB sockets for [`Publisher::send`], opened on first use.
    sockets: std::sync::Mutex<Vec<Option<std::sync::Arc<Dealer>>>>,
}

impl Publisher {
    /// A publisher over `brokers` (at least one).
    ///
    /// # Errors
    /// [`ErrorKind::NoEndpoints`](crate::ErrorKind::NoEndpoints) for an empty list.
    pub fn new(brokers: impl IntoIterator<Item = TopicBroker>) -> Result<Self, Error> {
        let brokers: Vec<TopicBroker> = brokers.into_iter().collect();
        if brokers.is_empty() {
            return Err(Error::no_endpoints());
        }
        let placement = TopicPlacement::new(brokers.iter().map(TopicBroker::name));
        let sockets = std::sync::Mutex::new(vec![None; brokers.len()]);
        Ok(Self {
            brokers,
            placement,
            sockets,
        })
    }

    /// The broker that holds `topic`.
    pub fn broker_for(&self, topic: &[u8]) -> &TopicBroker {
        &self.brokers[self.placement.place(topic)]
    }

    /// `topic.create` on the broker that holds `topic` (see [`Client::topic_create`]).
    ///
    /// # Errors
    /// As [`Client::topic_create`].
    pub async fn create(
        &self,
        topic: impl Into<Bytes>,
        retention: Retention,
    ) -> Result<bool, Error> {
        let topic = topic.into();
        self.broker_for(&topic)
            .client
            .topic_create(topic, retention)
            .await
    }

    /// Acknowledged publish: `topic.write` on the broker that holds `topic`; returns the
    /// message's offset once that broker has stored it.
    ///
    /// # Errors
    /// As [`Client::topic_write`].
    pub async fn publish(&self, topic: impl Into<Bytes>, frames: Vec<Bytes>) -> Result<u64, Error> {
        let topic = topic.into();
        self.broker_for(&topic)
            .client
            .topic_write(topic, frames)
            .await
    }

    /// Fire-and-forget publish, as a libzmq PUB socket: `[topic][frames...]` is queued on
    /// a PUB connection to the broker that holds `topic` and sent when it can be. Nothing
    /// says whether it arrived (a message queued while the broker is down goes out when it
    /// is back, up to the socket's queue bound).
    ///
    /// # Errors
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) if the queue is full or closed,
    /// [`ErrorKind::InvalidEndpoint`](crate::ErrorKind::InvalidEndpoint) for a bad publish
    /// endpoint.
    pub fn send(&self, topic: impl Into<Bytes>, frames: Vec<Bytes>) -> Result<(), Error> {
        let topic = topic.into();
        let i = self.placement.place(&topic);
        let socket = {
            let mut sockets = domo_mdp::LockExt::lock_unpoisoned(&self.sockets);
            match &sockets[i] {
                Some(s) => s.clone(),
                None => {
                    let b = &self.brokers[i];
                    let options = b.client.options().dealer_options();
                    let dealer =
                        Dealer::connect_with_socket_type(SocketType::Pub, &b.publish, options)
                            .map_err(|e| Error::invalid_endpoint(&b.publish, e))?;
                    let dealer = std::sync::Arc::new(dealer);
                    sockets[i] = Some(dealer.clone());
                    dealer
                }
            }
        };
        let mut msg = Vec::with_capacity(1 + frames.len());
        msg.push(topic);
        msg.extend(frames);
        socket.try_send(msg).map_err(|_| Error::closed())
    }

    /// Closes the PUB connections after sending what they have queued.
    pub async fn close(&self) {
        let sockets: Vec<std::sync::Arc<Dealer>> =
            domo_mdp::LockExt::lock_unpoisoned(&self.sockets)
                .iter()
                .flatten()
                .cloned()
                .collect();
        for s in sockets {
            s.shutdown().await;
        }
    }
}

/// A message as the subscriber delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMessage {
    /// Its topic (the first frame).
    pub topic: Bytes,
    /// Its stream and offset; `None` from a broker without the offsets extension.
    pub stamp: Option<Stamp>,
    /// Its frames after the topic.
    pub frames: Vec<Bytes>,
}

/// What [`Subscriber::next`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriberEvent {
    /// A message, in offset order within its topic, each once.
    Message(TopicMessage),
    /// Messages `from..to` of `topic` (in `stream`) were missed and are no longer retained
    /// (or the topic keeps its last value only): they will never be delivered.
    Gap {
        /// The topic.
        topic: Bytes,
        /// Its stream.
        stream: u64,
        /// First offset missed.
        from: u64,
        /// First offset after the gap.
        to: u64,
    },
    /// `topic` now comes in another stream (it was deleted and created again, or the broker
    /// restarted and it keeps its last value only): what followed the last offset delivered
    /// in the old stream is unknown. Its next message follows.
    StreamChanged {
        /// The topic.
        topic: Bytes,
        /// The stream delivered until now.
        old: u64,
        /// The new one.
        new: u64,
    },
}

/// One broker a subscriber listens to.
#[derive(Debug)]
struct Source {
    dealer: Arc<Dealer>,
    /// For `topic.read` when a gap shows.
    client: Client,
}

/// Subscribes and cancels for a [`Subscriber`] from anywhere ([`Subscriber::subscriptions`]).
#[derive(Debug, Clone)]
pub struct Subscriptions(Vec<Arc<Dealer>>);

impl Subscriptions {
    /// As [`Subscriber::subscribe`].
    ///
    /// # Errors
    /// As [`Subscriber::subscribe`].
    pub fn subscribe(&self, prefix: impl AsRef<[u8]>) -> Result<(), Error> {
        for d in &self.0 {
            d.subscribe(prefix.as_ref()).map_err(|_| Error::closed())?;
        }
        Ok(())
    }

    /// As [`Subscriber::cancel`].
    ///
    /// # Errors
    /// As [`Subscriber::subscribe`].
    pub fn cancel(&self, prefix: impl AsRef<[u8]>) -> Result<(), Error> {
        for d in &self.0 {
            d.cancel(prefix.as_ref()).map_err(|_| Error::closed())?;
        }
        Ok(())
    }
}

/// A topic subscriber that resumes without loss or duplicates (see the module docs).
#[derive(Debug)]
pub struct Subscriber {
    sources: Vec<Source>,
    resume: Resume,
    ready: VecDeque<SubscriberEvent>,
    /// The source polled first next time (fairness).
    turn: usize,
}

/// Most messages asked of one `topic.read` while filling a gap.
const READ_BATCH: u64 = 1000;

impl Subscriber {
    /// A subscriber of one broker: `subscribe` is its topics subscribe endpoint
    /// (`[topics] subscribe`, `tcp://127.0.0.1:5557` by default), `client` a client of its
    /// MDP endpoint. It subscribes to nothing yet: see [`Subscriber::subscribe`].
    ///
    /// # Errors
    /// [`ErrorKind::InvalidEndpoint`](crate::ErrorKind::InvalidEndpoint) for a bad endpoint.
    pub fn new(subscribe: &str, client: Client) -> Result<Self, Error> {
        Self::with_brokers([(subscribe, client)])
    }

    /// A subscriber of every broker of a deployment (see [`Publisher`]): prefix subscriptions
    /// go to all of them.
    ///
    /// # Errors
    /// As [`Subscriber::new`].
    pub fn of(brokers: &[TopicBroker]) -> Result<Self, Error> {
        Self::with_brokers(
            brokers
                .iter()
                .map(|b| (b.subscribe.as_str(), b.client.clone())),
        )
    }

    /// A subscriber of several brokers, each given by its subscribe endpoint and a client of
    /// its MDP endpoint. Prefix subscriptions go to all of them.
    ///
    /// # Errors
    /// As [`Subscriber::new`].
    pub fn with_brokers<'a>(
        brokers: impl IntoIterator<Item = (&'a str, Client)>,
    ) -> Result<Self, Error> {
        let mut sources = Vec::new();
        for (endpoint, client) in brokers {
            // The client's transport settings (CURVE keys, limits), as a SUB asking for
            // stamps.
            let mut options: Options = client.options().dealer_options();
            options.metadata.insert(OFFSETS_PROPERTY, "1");
            let dealer = Dealer::connect_with_socket_type(SocketType::Sub, endpoint, options)
                .map_err(|e| Error::invalid_endpoint(endpoint, e))?;
            sources.push(Source {
                dealer: Arc::new(dealer),
                client,
            });
        }
        Ok(Self {
            sources,
            resume: Resume::default(),
            ready: VecDeque::new(),
            turn: 0,
        })
    }

    /// Subscribes to every topic starting with `prefix` (the empty prefix: all), on every
    /// broker. The broker first sends the last value of each matching topic, then the live
    /// stream.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) after [`Subscriber::close`].
    pub fn subscribe(&self, prefix: impl AsRef<[u8]>) -> Result<(), Error> {
        self.subscriptions().subscribe(prefix)
    }

    /// Cancels one subscription to `prefix`.
    ///
    /// # Errors
    /// As [`Subscriber::subscribe`].
    pub fn cancel(&self, prefix: impl AsRef<[u8]>) -> Result<(), Error> {
        self.subscriptions().cancel(prefix)
    }

    /// A handle that subscribes and cancels while another task waits in
    /// [`Subscriber::next`] (which needs `&mut self`).
    pub fn subscriptions(&self) -> Subscriptions {
        Subscriptions(self.sources.iter().map(|s| s.dealer.clone()).collect())
    }

    /// Starts `topic` as if the message `stamp` had been delivered: a program that kept its
    /// position (on disk, say) resumes from it, the messages after it read from the topic's
    /// retention when the first live or replayed one shows the gap.
    pub fn resume_from(&mut self, topic: impl Into<Bytes>, stamp: Stamp) {
        self.resume.set(topic.into(), stamp);
    }

    /// The stamp of the last message delivered of `topic`.
    pub fn position(&self, topic: &[u8]) -> Option<Stamp> {
        self.resume.get(topic)
    }

    /// The next event: a message, or news of a gap or a new stream. Waits for the broker,
    /// across reconnects, for as long as it takes.
    ///
    /// # Errors
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) once closed. A failed `topic.read`
    /// while filling a gap is not an error: the gap is reported as
    /// [`SubscriberEvent::Gap`] and the subscriber goes on.
    pub async fn next(&mut self) -> Result<SubscriberEvent, Error> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Ok(ev);
            }
            let (source, msg) = self.recv_any().await?;
            self.on_message(source, msg).await;
        }
    }

    /// The next message of any source, taking them in turn.
    async fn recv_any(&mut self) -> Result<(usize, Vec<Bytes>), Error> {
        let n = self.sources.len();
        if n == 0 {
            return Err(Error::closed());
        }
        let turn = self.turn;
        let sources = &self.sources;
        let got = poll_fn(|cx| {
            for k in 0..n {
                let i = (turn + k) % n;
                match sources[i].dealer.poll_recv(cx) {
                    Poll::Ready(Ok(msg)) => return Poll::Ready(Ok((i, msg))),
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(Error::closed())),
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await?;
        self.turn = (got.0 + 1) % n;
        Ok(got)
    }

    async fn on_message(&mut self, source: usize, mut msg: Vec<Bytes>) {
        if msg.is_empty() {
            return;
        }
        let topic = msg.remove(0);
        let stamped = self.sources[source]
            .dealer
            .peer_property(EXTENSIONS_PROPERTY)
            .is_some_and(|v| lists(&v, OFFSETS));
        let stamp = if stamped && !msg.is_empty() {
            Stamp::decode(&msg[0])
        } else {
            None
        };
        let Some(stamp) = stamp else {
            self.ready.push_back(SubscriberEvent::Message(TopicMessage {
                topic,
                stamp: None,
                frames: msg,
            }));
            return;
        };
        msg.remove(0);
        match self.resume.judge(&topic, stamp) {
            Verdict::Duplicate => return,
            Verdict::Deliver { changed: Some(old) } => {
                self.ready.push_back(SubscriberEvent::StreamChanged {
                    topic: topic.clone(),
                    old,
                    new: stamp.stream,
                });
            }
            Verdict::Deliver { changed: None } => {}
            Verdict::Missed { from, to } => self.fill(source, &topic, stamp.stream, from, to).await,
        }
        self.resume.delivered(&topic, stamp);
        self.ready.push_back(SubscriberEvent::Message(TopicMessage {
            topic,
            stamp: Some(stamp),
            frames: msg,
        }));
    }

    /// Reads offsets `from..to` of `topic` from `source` and queues them; what is not
    /// retained any more is queued as a gap.
    async fn fill(&mut self, source: usize, topic: &Bytes, stream: u64, mut from: u64, to: u64) {
        let client = self.sources[source].client.clone();
        while from < to {
            let want = (to - from).min(READ_BATCH) as usize;
            let reply = match client.topic_read(topic.clone(), from, want).await {
                Ok(r) if r.stream == stream => r,
                // Another stream (deleted and created again meanwhile), or the read failed:
                // what was missed cannot be had.
                _ => break,
            };
            if reply.first > from {
                let end = reply.first.min(to);
                self.ready.push_back(SubscriberEvent::Gap {
                    topic: topic.clone(),
                    stream,
                    from,
                    to: end,
                });
                from = end;
            }
            let mut progressed = false;
            for m in reply.messages {
                if m.offset < from || m.offset >= to {
                    continue;
                }
                from = m.offset + 1;
                progressed = true;
                let stamp = Stamp {
                    stream,
                    offset: m.offset,
                };
                self.resume.delivered(topic, stamp);
                self.ready.push_back(SubscriberEvent::Message(TopicMessage {
                    topic: topic.clone(),
                    stamp: Some(stamp),
                    frames: m.frames,
                }));
            }
            if !progressed {
                break;
            }
        }
        if from < to {
            self.ready.push_back(SubscriberEvent::Gap {
                topic: topic.clone(),
                stream,
                from,
                to,
            });
        }
    }

    /// Closes the connections.
    pub async fn close(&self) {
        for s in &self.sources {
            s.dealer.shutdown().await;
        }
    }

    /// The subscriber as a [`futures_core::Stream`] of events (ends after an error).
    pub fn into_stream(self) -> SubscriberStream {
        SubscriberStream {
            idle: Some(self),
            running: None,
        }
    }
}

type Step = Pin<Box<dyn Future<Output = (Subscriber, Result<SubscriberEvent, Error>)> + Send>>;

/// [`Subscriber::into_stream`]: a `Stream` of `Result<SubscriberEvent, Error>`.
pub struct SubscriberStream {
    idle: Option<Subscriber>,
    running: Option<Step>,
}

impl std::fmt::Debug for SubscriberStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberStream").finish_non_exhaustive()
    }
}

impl futures_core::Stream for SubscriberStream {
    type Item = Result<SubscriberEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.running.is_none() {
            let Some(mut sub) = self.idle.take() else {
                return Poll::Ready(None);
            };
            self.running = Some(Box::pin(async move {
                let r = sub.next().await;
                (sub, r)
            }));
        }
        let Some(step) = self.running.as_mut() else {
            return Poll::Ready(None);
        };
        let (sub, result) = std::task::ready!(step.as_mut().poll(cx));
        self.running = None;
        if result.is_ok() {
            self.idle = Some(sub);
        }
        Poll::Ready(Some(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_spreads_topics_and_a_new_broker_takes_only_its_share() {
        let three = TopicPlacement::new(["tcp://a:1", "tcp://b:1", "tcp://c:1"]);
        let four = TopicPlacement::new(["tcp://a:1", "tcp://b:1", "tcp://c:1", "tcp://d:1"]);
        let topics: Vec<String> = (0..3000).map(|i| format!("topic.{i}")).collect();
        let mut per = [0usize; 3];
        let mut moved = 0;
        for t in &topics {
            let before = three.place(t.as_bytes());
            let after = four.place(t.as_bytes());
            per[before] += 1;
            if before != after {
                // Only to the new broker, never between the old ones.
                assert_eq!(after, 3, "{t}");
                moved += 1;
            }
        }
        assert!(per.iter().all(|&n| (800..1200).contains(&n)), "{per:?}");
        assert!((600..900).contains(&moved), "{moved} of 3000 moved");
        // The same in every process: a fixed answer.
        assert_eq!(
            three.place(b"topic.0"),
            TopicPlacement::new(["tcp://a:1", "tcp://b:1", "tcp://c:1"]).place(b"topic.0")
        );
        assert_eq!(TopicPlacement::new(Vec::<Bytes>::new()).place(b"x"), 0);
    }
}
