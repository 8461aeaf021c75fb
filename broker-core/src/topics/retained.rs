//! A created topic: its retention and the messages it keeps, newest last.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_mdp::topic::Retention;

use super::frames_bytes;

#[derive(Debug)]
pub(super) struct Stored {
    pub(super) offset: u64,
    pub(super) at: Instant,
    /// The whole message, topic frame first.
    pub(super) frames: Vec<Bytes>,
}

#[derive(Debug)]
pub(super) struct Created {
    pub(super) retention: Retention,
    pub(super) stream: u64,
    /// The offset the next message gets.
    pub(super) next: u64,
    pub(super) log: VecDeque<Stored>,
    /// Bytes of the frames after the topic, of every message kept.
    pub(super) bytes: u64,
}

/// Bytes a message counts against its topic's retention: its frames after the topic.
fn body_bytes(frames: &[Bytes]) -> u64 {
    (frames_bytes(frames) - frames.first().map_or(0, Bytes::len)) as u64
}

impl Created {
    pub(super) fn new(retention: Retention, stream: u64) -> Self {
        Self {
            retention,
            stream,
            next: 0,
            log: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Keeps `frames` as the next message; returns its offset.
    pub(super) fn append(&mut self, now: Instant, frames: Vec<Bytes>) -> u64 {
        let offset = self.reserve();
        self.append_at(now, offset, frames);
        offset
    }

    /// Takes the next offset for a message kept later with [`Created::append_at`].
    pub(super) fn reserve(&mut self) -> u64 {
        let offset = self.next;
        self.next += 1;
        offset
    }

    /// Keeps `frames` at `offset`, reserved earlier (offsets reserved and never kept are
    /// holes; later ones keep their place). `at` is when it was published.
    pub(super) fn append_at(&mut self, at: Instant, offset: u64, frames: Vec<Bytes>) {
        self.next = self.next.max(offset + 1);
        self.bytes += body_bytes(&frames);
        self.log.push_back(Stored { offset, at, frames });
        self.prune(at);
    }

    /// Drops what is past the retention (the newest message is kept whatever its size).
    pub(super) fn prune(&mut self, now: Instant) {
        let r = &self.retention;
        let max_age = (r.max_age_ms > 0).then(|| Duration::from_millis(r.max_age_ms));
        while let Some(oldest) = self.log.front() {
            let over = self.log.len() as u64 > r.max_messages
                || (self.bytes > r.max_bytes && self.log.len() > 1)
                || max_age.is_some_and(|age| now.saturating_duration_since(oldest.at) > age);
            if !over {
                break;
            }
            if let Some(old) = self.log.pop_front() {
                self.bytes -= body_bytes(&old.frames);
            }
        }
    }

    /// The oldest offset kept (the next one when nothing is).
    pub(super) fn first(&self) -> u64 {
        self.log.front().map_or(self.next, |s| s.offset)
    }

    /// The newest message, if any is kept.
    pub(super) fn last(&self) -> Option<&Stored> {
        self.log.back()
    }

    /// Up to `max` messages from offset `from`.
    pub(super) fn from(&self, from: u64, max: usize) -> impl Iterator<Item = &Stored> {
        let skip = from.saturating_sub(self.first());
        let skip = usize::try_from(skip).unwrap_or(usize::MAX);
        self.log.iter().skip(skip).take(max)
    }
}
