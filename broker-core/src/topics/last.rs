//! The last value of every topic published, within a memory bound: the topics published
//! least recently go first.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

use super::{frames_bytes, Delivery};

/// Counted per topic on top of its bytes: the map entry, the frame handles, the order.
const ENTRY_OVERHEAD: usize = 128;

#[cfg(test)]
pub(super) const ENTRY_OVERHEAD_FOR_TESTS: usize = ENTRY_OVERHEAD;

#[derive(Debug)]
struct Entry {
    value: Delivery,
    /// The publication that set it (its place in `order`).
    seq: u64,
    cost: usize,
}

#[derive(Debug)]
pub(super) struct LastValues {
    max_bytes: usize,
    bytes: usize,
    by_topic: BTreeMap<Bytes, Entry>,
    /// (seq, topic) in publication order, with stale pairs (a later publication of the
    /// topic) skipped when met and compacted away when they outnumber the topics.
    order: VecDeque<(u64, Bytes)>,
    seq: u64,
}

impl LastValues {
    pub(super) fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            bytes: 0,
            by_topic: BTreeMap::new(),
            order: VecDeque::new(),
            seq: 0,
        }
    }

    /// Keeps `frames` as `topic`'s last value; a topic new to the cache gets the stream
    /// `new_stream` gives. Returns its stream and offset and how many last values were
    /// evicted (this one too, if it alone is over the bound).
    pub(super) fn put(
        &mut self,
        topic: Bytes,
        frames: &[Bytes],
        new_stream: impl FnOnce() -> u64,
    ) -> (u64, u64, u64) {
        self.seq += 1;
        let seq = self.seq;
        // The key shares its bytes with the first frame.
        let cost = ENTRY_OVERHEAD + frames_bytes(frames);
        let (stream, offset) = match self.by_topic.get_mut(&topic) {
            Some(e) => {
                let (stream, offset) = (e.value.stream, e.value.offset + 1);
                self.bytes = self.bytes - e.cost + cost;
                *e = Entry {
                    value: Delivery {
                        stream,
                        offset,
                        frames: frames.to_vec(),
                    },
                    seq,
                    cost,
                };
                (stream, offset)
            }
            None => {
                let stream = new_stream();
                self.bytes += cost;
                self.by_topic.insert(
                    topic.clone(),
                    Entry {
                        value: Delivery {
                            stream,
                            offset: 0,
                            frames: frames.to_vec(),
                        },
                        seq,
                        cost,
                    },
                );
                (stream, 0)
            }
        };
        self.order.push_back((seq, topic));
        let mut evicted = 0;
        while self.bytes > self.max_bytes {
            let Some((seq, topic)) = self.order.pop_front() else {
                break;
            };
            if self.by_topic.get(&topic).is_some_and(|e| e.seq == seq) {
                if let Some(e) = self.by_topic.remove(&topic) {
                    self.bytes -= e.cost;
                    evicted += 1;
                }
            }
        }
        if self.order.len() > 2 * self.by_topic.len() + 64 {
            let by_topic = &self.by_topic;
            self.order
                .retain(|(seq, topic)| by_topic.get(topic).is_some_and(|e| e.seq == *seq));
        }
        (stream, offset, evicted)
    }

    /// Forgets `topic`'s last value; whether it had one.
    pub(super) fn remove(&mut self, topic: &[u8]) -> bool {
        match self.by_topic.remove(topic) {
            Some(e) => {
                self.bytes -= e.cost;
                true
            }
            None => false,
        }
    }

    /// `topic`'s last value.
    pub(super) fn get(&self, topic: &[u8]) -> Option<&Delivery> {
        self.by_topic.get(topic).map(|e| &e.value)
    }

    /// The topics starting with `prefix` and their last values, in topic order.
    pub(super) fn matching<'a>(
        &'a self,
        prefix: &'a Bytes,
    ) -> impl Iterator<Item = (&'a Bytes, &'a Delivery)> + 'a {
        self.by_topic
            .range::<Bytes, _>(prefix..)
            .take_while(move |(topic, _)| topic.starts_with(prefix))
            .map(|(topic, e)| (topic, &e.value))
    }

    pub(super) fn len(&self) -> usize {
        self.by_topic.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}
