//! Topics: publish/subscribe with a last-value cache and bounded subscriber queues, as a
//! synchronous state machine (no I/O, no clock: time is a `now` argument).
//!
//! The shell owns two sockets, XSUB for publishers and XPUB for subscribers, and drives this
//! core: [`Topics::connect`] / [`Topics::disconnect`] for subscribers,
//! [`Topics::subscribe`] / [`Topics::cancel`] for their prefixes, [`Topics::publish`] for
//! every message a publisher sends; then it drains [`Topics::poll_delivery`] onto the
//! subscribers' connections, hands a message back with [`Topics::blocked`] when a
//! connection's send queue is full (and calls [`Topics::writable`] when it drains), and
//! disconnects what [`Topics::handle_timeout`] returns.
//!
//! # Semantics (libzmq's, where libzmq has them)
//!
//! * A message's topic is its first frame; the message is kept whole (every frame).
//!   Matching is by byte prefix; the empty prefix matches everything. A subscriber gets a
//!   message once however many of its prefixes match. Subscribing twice to one prefix needs
//!   two cancels, as with libzmq's XPUB.
//! * **Last values.** Every topic published keeps its last message in memory (bounded by
//!   [`TopicsConfig::last_values_bytes`], the topics published least recently evicted
//!   first). A new subscription gets, first and only for itself, the last value of every
//!   topic its prefix matches that none of its other prefixes already matched, then the live
//!   stream. Other subscribers see no replay (the zguide's `lvcache` replays to all).
//! * **Offsets.** Each message of a topic gets the next offset of that topic, from 0, as
//!   long as the topic is in the cache; a topic evicted and published again starts over.
//! * **Slow subscribers.** Each subscriber's queue is bounded
//!   ([`TopicsConfig::queue_messages`], [`TopicsConfig::queue_bytes`]); a message that does
//!   not fit pushes out the oldest ones, counted ([`TopicStats::dropped_slow`]), and marks
//!   the subscriber lagging until its queue is back to half. A subscriber lagging for longer
//!   than [`TopicsConfig::slow_timeout`] is handed to the shell to disconnect. So a
//!   subscriber that never reads costs at most its bound and never slows the publisher or
//!   the others.

mod index;
mod last;
mod queue;
mod retained;
mod service;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_mdp::topic::{Persist, ReadMessage, ReadReply, Retention, Stamp, Status};
use foldhash::{HashMap, HashMapExt};

use self::index::PrefixIndex;
use self::last::LastValues;
use self::queue::{Pushed, SubQueue};
use self::retained::Created;
pub use self::service::{Plan, TopicService};

/// A subscriber's handle, given by [`Topics::connect`]; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubId(u64);

/// A published message with its place in its topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic's stream (its incarnation) the offset counts in.
    pub stream: u64,
    /// The topic's offset of this message.
    pub offset: u64,
    /// The frames, the topic first.
    pub frames: Vec<Bytes>,
}

/// Limits of the topic core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicsConfig {
    /// Most messages waiting for one subscriber.
    pub queue_messages: usize,
    /// Most bytes (frame bodies) waiting for one subscriber.
    pub queue_bytes: usize,
    /// How long a subscriber may lag (drop messages, and not catch up to half its queue)
    /// before it is disconnected.
    pub slow_timeout: Duration,
    /// Memory for the last values of topics, in bytes (their frames and a fixed overhead
    /// per topic).
    pub last_values_bytes: usize,
    /// Most distinct prefixes one subscriber may hold; more are refused and counted.
    pub max_prefixes: usize,
    /// The sum of the `max_bytes` of all created topics may not exceed this: a
    /// `topic.create` that would is refused (`507`).
    pub retained_max_bytes: u64,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            queue_messages: 100_000,
            queue_bytes: 32 << 20,
            slow_timeout: Duration::from_secs(30),
            last_values_bytes: 64 << 20,
            max_prefixes: 10_000,
            retained_max_bytes: 1 << 30,
        }
    }
}

/// Counters (totals since start) and gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicStats {
    /// Messages published.
    pub published: u64,
    /// Live messages queued for subscribers (one per subscriber).
    pub delivered: u64,
    /// Last values queued for new subscriptions.
    pub replayed: u64,
    /// Messages pushed out of a full subscriber queue.
    pub dropped_slow: u64,
    /// Messages still queued for a subscriber when it went (disconnected or closed).
    pub dropped_gone: u64,
    /// Input that was not a message or a subscription (dropped).
    pub malformed: u64,
    /// Subscriptions refused: over [`TopicsConfig::max_prefixes`].
    pub refused_subscriptions: u64,
    /// Last values evicted to stay within [`TopicsConfig::last_values_bytes`], or too large
    /// to keep.
    pub evicted_last_values: u64,
    /// Subscribers disconnected for lagging too long.
    pub slow_disconnects: u64,
    /// Subscribers connected now.
    pub subscribers: u64,
    /// Subscribers lagging now.
    pub lagging: u64,
    /// Topics with a last value now.
    pub topics: u64,
    /// Bytes of last values now.
    pub last_values_bytes: u64,
    /// Created topics now.
    pub created_topics: u64,
    /// Bytes kept by created topics now (frames after the topic).
    pub retained_bytes: u64,
    /// Messages waiting in subscriber queues now.
    pub queued_messages: u64,
    /// Bytes waiting in subscriber queues now.
    pub queued_bytes: u64,
}

/// What a subscriber sent on the XPUB side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriberInput {
    /// `0x01` + prefix.
    Subscribe(Bytes),
    /// `0x00` + prefix.
    Cancel(Bytes),
}

impl SubscriberInput {
    /// Reads a subscriber's message in the XPUB form (one frame, `0x01`/`0x00` + prefix);
    /// `None` for anything else.
    pub fn parse(msg: &[Bytes]) -> Option<Self> {
        let [frame] = msg else { return None };
        match frame.first() {
            Some(1) => Some(Self::Subscribe(frame.slice(1..))),
            Some(0) => Some(Self::Cancel(frame.slice(1..))),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Subscriber {
    /// Prefix -> how many times subscribed.
    prefixes: HashMap<Bytes, u32>,
    queue: SubQueue,
    /// In `ready`.
    in_ready: bool,
    /// Its connection took everything handed to it so far (not blocked).
    writable: bool,
    /// The publication it last got (so it gets each once).
    stamp: u64,
}

impl Subscriber {
    /// Whether one of its prefixes other than `except` matches `topic`.
    fn matched_by_other(&self, topic: &[u8], except: &Bytes) -> bool {
        self.prefixes
            .keys()
            .any(|p| p != except && topic.starts_with(p))
    }
}

/// The topic core. See the module docs.
#[derive(Debug)]
pub struct Topics {
    config: TopicsConfig,
    subs: HashMap<SubId, Subscriber>,
    index: PrefixIndex,
    last: LastValues,
    /// Subscribers with something queued and a writable connection, in turn.
    ready: VecDeque<SubId>,
    /// Lagging subscribers and since when.
    lagging: HashMap<SubId, Instant>,
    next_sub: u64,
    /// Publications so far (stamps subscribers).
    seq: u64,
    stats: TopicStats,
    /// Scratch for matching.
    matched: Vec<SubId>,
    /// Topics created with a retention.
    created: BTreeMap<Bytes, Created>,
    /// Sum of the created topics' `max_bytes`.
    reserved: u64,
    /// State of the stream id generator.
    rng: u64,
}

impl Topics {
    /// An empty core; `seed` makes its stream ids (pass something random: a topic deleted and
    /// created again, or a broker restarted, must not reuse a stream id).
    pub fn new(config: TopicsConfig, seed: u64) -> Self {
        Self {
            created: BTreeMap::new(),
            reserved: 0,
            rng: seed,
            last: LastValues::new(config.last_values_bytes),
            config,
            subs: HashMap::new(),
            index: PrefixIndex::default(),
            ready: VecDeque::new(),
            lagging: HashMap::new(),
            next_sub: 0,
            seq: 0,
            stats: TopicStats::default(),
            matched: Vec::new(),
        }
    }

    /// The limits.
    pub fn config(&self) -> &TopicsConfig {
        &self.config
    }

    /// A new subscriber, with no subscription yet.
    pub fn connect(&mut self) -> SubId {
        let id = SubId(self.next_sub);
        self.next_sub += 1;
        self.subs.insert(
            id,
            Subscriber {
                prefixes: HashMap::new(),
                queue: SubQueue::default(),
                in_ready: false,
                writable: true,
                stamp: 0,
            },
        );
        id
    }

    /// A subscriber is gone: its subscriptions end and what was queued for it is dropped
    /// (counted).
    pub fn disconnect(&mut self, sub: SubId) {
        let Some(s) = self.subs.remove(&sub) else {
            return;
        };
        for prefix in s.prefixes.keys() {
            self.index.remove(prefix, sub);
        }
        self.stats.dropped_gone += s.queue.len() as u64;
        self.lagging.remove(&sub);
        // `ready` may still name it: skipped when polled.
    }

    /// A subscriber's message on the XPUB side. Anything but a subscription or a cancel is
    /// counted as malformed and dropped.
    pub fn handle_subscriber(&mut self, now: Instant, sub: SubId, msg: &[Bytes]) {
        match SubscriberInput::parse(msg) {
            Some(SubscriberInput::Subscribe(prefix)) => self.subscribe(now, sub, prefix),
            Some(SubscriberInput::Cancel(prefix)) => self.cancel(sub, &prefix),
            None => self.stats.malformed += 1,
        }
    }

    /// Subscribes `sub` to `prefix`. A new prefix first queues, for `sub` alone, the last
    /// value of each topic it matches that the subscriber's other prefixes did not.
    pub fn subscribe(&mut self, now: Instant, sub: SubId, prefix: Bytes) {
        let max = self.config.max_prefixes;
        let Some(s) = self.subs.get_mut(&sub) else {
            return;
        };
        if let Some(n) = s.prefixes.get_mut(&prefix) {
            *n += 1;
            return;
        }
        if s.prefixes.len() >= max {
            self.stats.refused_subscriptions += 1;
            return;
        }
        s.prefixes.insert(prefix.clone(), 1);
        self.index.add(prefix.clone(), sub);
        let mut replay = Vec::new();
        for (topic, value) in self.last.matching(&prefix) {
            if !s.matched_by_other(topic, &prefix) {
                replay.push((topic.clone(), value.clone()));
            }
        }
        for (topic, c) in self
            .created
            .range::<Bytes, _>(&prefix..)
            .take_while(|(topic, _)| topic.starts_with(&prefix))
        {
            if let Some(last) = c.last() {
                if !s.matched_by_other(topic, &prefix) {
                    let d = Delivery {
                        stream: c.stream,
                        offset: last.offset,
                        frames: last.frames.clone(),
                    };
                    replay.push((topic.clone(), d));
                }
            }
        }
        replay.sort_by(|a, b| a.0.cmp(&b.0));
        let replay: Vec<Delivery> = replay.into_iter().map(|(_, d)| d).collect();
        self.stats.replayed += replay.len() as u64;
        for d in replay {
            self.queue_for(now, sub, d);
        }
    }

    /// Cancels one subscription of `sub` to `prefix` (a prefix it does not hold is ignored,
    /// as libzmq does).
    pub fn cancel(&mut self, sub: SubId, prefix: &Bytes) {
        let Some(s) = self.subs.get_mut(&sub) else {
            return;
        };
        let Some(n) = s.prefixes.get_mut(prefix) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            s.prefixes.remove(prefix);
            self.index.remove(prefix, sub);
        }
    }

    /// Publishes a message (topic = first frame): a created topic keeps it within its
    /// retention, any other keeps it as its last value; then it is queued for every
    /// subscriber with a matching prefix. Returns its stamp, or `None` for a message with no
    /// frame (counted as malformed).
    pub fn publish(&mut self, now: Instant, frames: Vec<Bytes>) -> Option<Stamp> {
        let Some(topic) = frames.first().cloned() else {
            self.stats.malformed += 1;
            return None;
        };
        self.stats.published += 1;
        self.seq += 1;
        let (stream, offset) = match self.created.get_mut(&topic) {
            Some(c) if c.retention.persist == Persist::Disk => {
                // Only through `reserve_disk` and `append_reserved`, once stored.
                self.stats.malformed += 1;
                return None;
            }
            Some(c) => (c.stream, c.append(now, frames.clone())),
            None => {
                let rng = &mut self.rng;
                let (stream, offset, evicted) =
                    self.last.put(topic.clone(), &frames, || next_stream(rng));
                self.stats.evicted_last_values += evicted;
                (stream, offset)
            }
        };
        let stamp = Stamp { stream, offset };
        self.fan_out(now, &topic, stamp, frames);
        Some(stamp)
    }

    /// Queues a message stamped `stamp` for every subscriber with a matching prefix.
    fn fan_out(&mut self, now: Instant, topic: &Bytes, stamp: Stamp, frames: Vec<Bytes>) {
        let Stamp { stream, offset } = stamp;
        let mut matched = std::mem::take(&mut self.matched);
        matched.clear();
        let seq = self.seq;
        let subs = &mut self.subs;
        self.index.for_each_match(topic, |id| {
            if let Some(s) = subs.get_mut(&id) {
                if s.stamp != seq {
                    s.stamp = seq;
                    matched.push(id);
                }
            }
        });
        self.stats.delivered += matched.len() as u64;
        if let Some((&last, rest)) = matched.split_last() {
            for &id in rest {
                let d = Delivery {
                    stream,
                    offset,
                    frames: frames.clone(),
                };
                self.queue_for(now, id, d);
            }
            self.queue_for(
                now,
                last,
                Delivery {
                    stream,
                    offset,
                    frames,
                },
            );
        }
        self.matched = matched;
    }

    /// For a topic kept on disk (`persist=disk`): takes the offset its next message gets,
    /// to be stored first and then handed to [`Topics::append_reserved`]. `None` for any
    /// other topic (publish it with [`Topics::publish`]).
    pub fn reserve_disk(&mut self, topic: &[u8]) -> Option<Stamp> {
        let c = self.created.get_mut(topic)?;
        if c.retention.persist != Persist::Disk {
            return None;
        }
        Some(Stamp {
            stream: c.stream,
            offset: c.reserve(),
        })
    }

    /// A message of a disk topic, stored under `stamp` (from [`Topics::reserve_disk`]):
    /// kept and queued for the subscribers. `false` if the topic was deleted meanwhile (or
    /// created again: another stream), and the message is dropped.
    pub fn append_reserved(&mut self, now: Instant, stamp: Stamp, frames: Vec<Bytes>) -> bool {
        let Some(topic) = frames.first().cloned() else {
            return false;
        };
        match self.created.get_mut(&topic) {
            Some(c) if c.stream == stamp.stream => c.append_at(now, stamp.offset, frames.clone()),
            _ => return false,
        }
        self.stats.published += 1;
        self.seq += 1;
        self.fan_out(now, &topic, stamp, frames);
        true
    }

    /// The oldest offset `name` keeps (the next one when it keeps nothing), if it is a
    /// created topic: a disk store drops what is below it.
    pub fn first_offset(&self, name: &[u8]) -> Option<u64> {
        self.created.get(name).map(Created::first)
    }

    /// A fresh stream id (for a disk topic about to be created).
    pub fn new_stream(&mut self) -> u64 {
        next_stream(&mut self.rng)
    }

    /// A disk topic as its store kept it, at start: its retention, stream, the offset its
    /// next message gets, and the messages kept (offset, when published, frames with the
    /// topic first), oldest first. Counts against [`TopicsConfig::retained_max_bytes`]
    /// (a store that holds more than the bound allows is loaded anyway: it was accepted).
    pub fn restore(
        &mut self,
        now: Instant,
        name: Bytes,
        retention: Retention,
        stream: u64,
        next: u64,
        messages: Vec<(u64, Instant, Vec<Bytes>)>,
    ) {
        let mut c = Created::new(retention, stream);
        for (offset, at, frames) in messages {
            c.append_at(at, offset, frames);
        }
        c.next = c.next.max(next);
        c.prune(now);
        self.reserved = self.reserved.saturating_add(retention.max_bytes);
        self.created.insert(name, c);
    }

    /// Checks a `topic.create` of a disk topic before it is stored: reserves its bytes.
    ///
    /// # Errors
    /// As [`Topics::create`]; `Ok(false)` if it exists with the same retention (nothing to
    /// store).
    pub fn prepare_disk_create(
        &mut self,
        name: &[u8],
        retention: Retention,
    ) -> Result<bool, (Status, String)> {
        if let Some(existing) = self.existing(name, retention) {
            return existing.map(|()| false);
        }
        self.reserve_bytes(retention.max_bytes)?;
        Ok(true)
    }

    /// For a `topic.create` of `name`: `None` if no such topic exists, `Some(Ok(()))` if it
    /// exists with `retention`, `Some(Err(409))` if with another.
    fn existing(&self, name: &[u8], retention: Retention) -> Option<Result<(), (Status, String)>> {
        let c = self.created.get(name)?;
        Some(if c.retention == retention {
            Ok(())
        } else {
            Err((
                Status::Conflict,
                format!(
                    "exists with other options: {}",
                    describe_retention(&c.retention)
                ),
            ))
        })
    }

    /// A disk topic prepared with [`Topics::prepare_disk_create`] is stored: it exists from
    /// now on, with `first` (the last value it had when its creation was stored, see
    /// [`Topics::last_value`]) as its offset 0.
    pub fn finish_disk_create(
        &mut self,
        now: Instant,
        name: Bytes,
        retention: Retention,
        stream: u64,
        first: Option<Vec<Bytes>>,
    ) {
        let mut created = Created::new(retention, stream);
        self.last.remove(&name);
        if let Some(frames) = first {
            created.append(now, frames);
        }
        self.created.insert(name, created);
    }

    /// The last value of `name`, a topic nobody created: a disk topic created under that
    /// name keeps it as its first message (stored with it).
    pub fn last_value(&self, name: &[u8]) -> Option<&Delivery> {
        self.last.get(name)
    }

    /// A disk topic prepared with [`Topics::prepare_disk_create`] could not be stored: its
    /// reservation goes back.
    pub fn abandon_disk_create(&mut self, retention: Retention) {
        self.reserved = self.reserved.saturating_sub(retention.max_bytes);
    }

    /// Whether `name` is a created topic kept on disk, and its stream.
    pub fn disk_stream(&self, name: &[u8]) -> Option<u64> {
        self.created
            .get(name)
            .filter(|c| c.retention.persist == Persist::Disk)
            .map(|c| c.stream)
    }

    fn reserve_bytes(&mut self, max_bytes: u64) -> Result<(), (Status, String)> {
        let reserved = self.reserved.saturating_add(max_bytes);
        if reserved > self.config.retained_max_bytes {
            return Err((
                Status::InsufficientStorage,
                format!(
                    "max_bytes={} does not fit: {} of {} bytes are reserved by other topics",
                    max_bytes, self.reserved, self.config.retained_max_bytes
                ),
            ));
        }
        self.reserved = reserved;
        Ok(())
    }

    /// Creates `name` with `retention` (`topic.create`). The topic's last value, if it had
    /// one, becomes the first message of its new stream, so a late subscriber still starts
    /// from the current state. Returns whether it was created (`false`: it exists with the
    /// same retention).
    ///
    /// # Errors
    /// `409` if it exists with another retention, `507` if its `max_bytes` does not fit in
    /// [`TopicsConfig::retained_max_bytes`] beside the others'.
    pub fn create(
        &mut self,
        now: Instant,
        name: Bytes,
        retention: Retention,
    ) -> Result<bool, (Status, String)> {
        if let Some(existing) = self.existing(&name, retention) {
            return existing.map(|()| false);
        }
        self.reserve_bytes(retention.max_bytes)?;
        let mut created = Created::new(retention, next_stream(&mut self.rng));
        if let Some(last) = self.last.get(&name) {
            let frames = last.frames.clone();
            self.last.remove(&name);
            created.append(now, frames);
        }
        self.created.insert(name, created);
        Ok(true)
    }

    /// Deletes `name` (`topic.delete`): its retained messages or its last value. Whether it
    /// existed. Subscriptions are untouched.
    pub fn delete(&mut self, name: &[u8]) -> bool {
        if let Some(c) = self.created.remove(name) {
            self.reserved -= c.retention.max_bytes;
            return true;
        }
        self.last.remove(name)
    }

    /// Up to `max` messages of `name` from offset `from` (`topic.read`); `None` if the topic
    /// is neither created nor has a last value. A topic nobody created has its last value
    /// only.
    pub fn read(&mut self, now: Instant, name: &[u8], from: u64, max: usize) -> Option<ReadReply> {
        let body = |frames: &[Bytes]| frames.get(1..).unwrap_or_default().to_vec();
        if let Some(c) = self.created.get_mut(name) {
            c.prune(now);
            let messages = c
                .from(from, max)
                .map(|s| ReadMessage {
                    offset: s.offset,
                    frames: body(&s.frames),
                })
                .collect();
            return Some(ReadReply {
                stream: c.stream,
                first: c.first(),
                next: c.next,
                messages,
            });
        }
        let last = self.last.get(name)?;
        let messages = if last.offset >= from && max > 0 {
            vec![ReadMessage {
                offset: last.offset,
                frames: body(&last.frames),
            }]
        } else {
            Vec::new()
        };
        Some(ReadReply {
            stream: last.stream,
            first: last.offset,
            next: last.offset + 1,
            messages,
        })
    }

    /// The topics whose names start with `prefix` (`topic.list`), created ones and those
    /// with a last value, in name order, at most `max`: each with its info words.
    pub fn list(&self, prefix: &[u8], max: usize) -> Vec<(Bytes, String)> {
        let mut out: Vec<(Bytes, String)> = Vec::new();
        for (name, c) in self
            .created
            .range::<[u8], _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(name, _)| name.starts_with(prefix))
            .take(max)
        {
            out.push((
                name.clone(),
                format!(
                    "kind=created persist={} stream={} first={} next={} messages={} bytes={} {}",
                    c.retention.persist.as_str(),
                    c.stream,
                    c.first(),
                    c.next,
                    c.log.len(),
                    c.bytes,
                    describe_retention(&c.retention),
                ),
            ));
        }
        let prefix_bytes = Bytes::copy_from_slice(prefix);
        for (name, d) in self.last.matching(&prefix_bytes).take(max) {
            out.push((
                name.clone(),
                format!(
                    "kind=last_value persist=memory stream={} first={} next={} messages=1 bytes={}",
                    d.stream,
                    d.offset,
                    d.offset + 1,
                    frames_bytes(&d.frames) - name.len(),
                ),
            ));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.truncate(max);
        out
    }

    fn queue_for(&mut self, now: Instant, id: SubId, d: Delivery) {
        let (max_msgs, max_bytes) = (self.config.queue_messages, self.config.queue_bytes);
        let Some(s) = self.subs.get_mut(&id) else {
            return;
        };
        let Pushed { dropped } = s.queue.push(d, max_msgs, max_bytes);
        if dropped > 0 {
            self.stats.dropped_slow += dropped;
            self.lagging.entry(id).or_insert(now);
        }
        if s.writable && !s.in_ready && !s.queue.is_empty() {
            s.in_ready = true;
            self.ready.push_back(id);
        }
    }

    /// The next message to hand a subscriber's connection, taking subscribers in turn.
    pub fn poll_delivery(&mut self) -> Option<(SubId, Delivery)> {
        while let Some(id) = self.ready.pop_front() {
            let Some(s) = self.subs.get_mut(&id) else {
                continue;
            };
            s.in_ready = false;
            if !s.writable {
                continue;
            }
            let Some(d) = s.queue.pop() else { continue };
            if !s.queue.is_empty() {
                s.in_ready = true;
                self.ready.push_back(id);
            }
            if self.lagging.contains_key(&id)
                && s.queue
                    .at_most_half(self.config.queue_messages, self.config.queue_bytes)
            {
                self.lagging.remove(&id);
            }
            return Some((id, d));
        }
        None
    }

    /// The subscriber's connection could not take `d` (its send queue is full): `d` goes
    /// back to the front of its queue and nothing more is handed out for it until
    /// [`Topics::writable`].
    pub fn blocked(&mut self, sub: SubId, d: Delivery) {
        let Some(s) = self.subs.get_mut(&sub) else {
            self.stats.dropped_gone += 1;
            return;
        };
        s.writable = false;
        s.queue.push_front(d);
    }

    /// The subscriber's connection has room again.
    pub fn writable(&mut self, sub: SubId) {
        let Some(s) = self.subs.get_mut(&sub) else {
            return;
        };
        s.writable = true;
        if !s.in_ready && !s.queue.is_empty() {
            s.in_ready = true;
            self.ready.push_back(sub);
        }
    }

    /// When [`Topics::handle_timeout`] has something to do next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.lagging
            .values()
            .min()
            .map(|since| *since + self.config.slow_timeout)
    }

    /// The subscribers lagging for longer than [`TopicsConfig::slow_timeout`], removed
    /// (their queues dropped and counted): the shell closes their connections.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<SubId> {
        let timeout = self.config.slow_timeout;
        let mut slow: Vec<SubId> = self
            .lagging
            .iter()
            .filter(|(_, since)| now.saturating_duration_since(**since) >= timeout)
            .map(|(id, _)| *id)
            .collect();
        slow.sort();
        for id in &slow {
            self.stats.slow_disconnects += 1;
            self.disconnect(*id);
        }
        slow
    }

    /// Whether `sub` is lagging.
    pub fn is_lagging(&self, sub: SubId) -> bool {
        self.lagging.contains_key(&sub)
    }

    /// Counters and gauges now.
    pub fn stats(&self) -> TopicStats {
        let mut s = self.stats.clone();
        s.subscribers = self.subs.len() as u64;
        s.lagging = self.lagging.len() as u64;
        s.topics = self.last.len() as u64;
        s.last_values_bytes = self.last.bytes() as u64;
        s.created_topics = self.created.len() as u64;
        s.retained_bytes = self.created.values().map(|c| c.bytes).sum();
        let (mut msgs, mut bytes) = (0, 0);
        for sub in self.subs.values() {
            msgs += sub.queue.len() as u64;
            bytes += sub.queue.bytes() as u64;
        }
        s.queued_messages = msgs;
        s.queued_bytes = bytes;
        s
    }
}

/// The next stream id: splitmix64, never 0.
fn next_stream(state: &mut u64) -> u64 {
    loop {
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        if z != 0 {
            return z;
        }
    }
}

/// A retention as its option words.
fn describe_retention(r: &Retention) -> String {
    format!(
        "max_messages={} max_bytes={} max_age_ms={}",
        r.max_messages, r.max_bytes, r.max_age_ms
    )
}

/// Bytes of a message's frames.
fn frames_bytes(frames: &[Bytes]) -> usize {
    frames.iter().map(Bytes::len).sum()
}

#[cfg(test)]
mod tests;
