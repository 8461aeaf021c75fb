//! One subscriber's bounded queue: past its bound the oldest messages make room.

use std::collections::VecDeque;

use super::{frames_bytes, Delivery};

#[derive(Debug, Default)]
pub(super) struct SubQueue {
    items: VecDeque<Delivery>,
    bytes: usize,
}

/// What a push did.
pub(super) struct Pushed {
    /// Messages pushed out to make room.
    pub(super) dropped: u64,
}

impl SubQueue {
    /// Appends `d`, dropping the oldest messages while the queue is over `max_msgs` or
    /// `max_bytes` (a single message larger than `max_bytes` is kept alone: it is already in
    /// memory, and dropping the live stream for it would help nobody).
    pub(super) fn push(&mut self, d: Delivery, max_msgs: usize, max_bytes: usize) -> Pushed {
        self.bytes += frames_bytes(&d.frames);
        self.items.push_back(d);
        let mut dropped = 0;
        while self.items.len() > 1 && (self.items.len() > max_msgs.max(1) || self.bytes > max_bytes)
        {
            if let Some(old) = self.items.pop_front() {
                self.bytes -= frames_bytes(&old.frames);
                dropped += 1;
            }
        }
        Pushed { dropped }
    }

    /// Puts back a message just taken.
    pub(super) fn push_front(&mut self, d: Delivery) {
        self.bytes += frames_bytes(&d.frames);
        self.items.push_front(d);
    }

    pub(super) fn pop(&mut self) -> Option<Delivery> {
        let d = self.items.pop_front()?;
        self.bytes -= frames_bytes(&d.frames);
        Some(d)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Back to half of its bounds (both).
    pub(super) fn at_most_half(&self, max_msgs: usize, max_bytes: usize) -> bool {
        self.items.len() <= max_msgs / 2 && self.bytes <= max_bytes / 2
    }
}
