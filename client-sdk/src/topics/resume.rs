//! What a subscriber has seen of each topic, and what a newly arrived message means: the
//! pure part of recovery.

use std::collections::HashMap;

use bytes::Bytes;
use domo_mdp::topic::Stamp;

/// What to do with a stamped message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The next one (or the first seen of its topic, or of a new stream when `changed`):
    /// deliver it.
    Deliver {
        /// The topic's stream is not the one seen before.
        changed: Option<u64>,
    },
    /// Seen already (a replayed last value, a message read while it was also live): drop it.
    Duplicate,
    /// Offsets `from..to` of the same stream were missed: read them, then deliver this one.
    Missed {
        /// First missing offset.
        from: u64,
        /// The offset of this message (the end of the gap, exclusive).
        to: u64,
    },
}

/// Per topic, the stream and the highest offset delivered.
#[derive(Debug, Default)]
pub(crate) struct Resume {
    seen: HashMap<Bytes, Stamp>,
}

impl Resume {
    /// Starts `topic` as if `stamp` had been delivered.
    pub(crate) fn set(&mut self, topic: Bytes, stamp: Stamp) {
        self.seen.insert(topic, stamp);
    }

    /// The last stamp delivered for `topic`.
    pub(crate) fn get(&self, topic: &[u8]) -> Option<Stamp> {
        self.seen.get(topic).copied()
    }

    /// Judges a message of `topic` stamped `stamp` (does not record it: see
    /// [`Resume::delivered`]).
    pub(crate) fn judge(&self, topic: &[u8], stamp: Stamp) -> Verdict {
        match self.seen.get(topic) {
            None => Verdict::Deliver { changed: None },
            Some(seen) if seen.stream != stamp.stream => Verdict::Deliver {
                changed: Some(seen.stream),
            },
            Some(seen) if stamp.offset <= seen.offset => Verdict::Duplicate,
            Some(seen) if stamp.offset == seen.offset + 1 => Verdict::Deliver { changed: None },
            Some(seen) => Verdict::Missed {
                from: seen.offset + 1,
                to: stamp.offset,
            },
        }
    }

    /// Records that the message `stamp` of `topic` was delivered.
    pub(crate) fn delivered(&mut self, topic: &Bytes, stamp: Stamp) {
        match self.seen.get_mut(topic) {
            Some(seen) => *seen = stamp,
            None => {
                self.seen.insert(topic.clone(), stamp);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(stream: u64, offset: u64) -> Stamp {
        Stamp { stream, offset }
    }

    #[test]
    fn in_order_duplicates_gaps_and_new_streams() {
        let mut r = Resume::default();
        let t = Bytes::from_static(b"t");
        assert_eq!(r.judge(&t, st(1, 5)), Verdict::Deliver { changed: None });
        r.delivered(&t, st(1, 5));
        assert_eq!(r.judge(&t, st(1, 6)), Verdict::Deliver { changed: None });
        assert_eq!(r.judge(&t, st(1, 5)), Verdict::Duplicate);
        assert_eq!(r.judge(&t, st(1, 2)), Verdict::Duplicate);
        assert_eq!(r.judge(&t, st(1, 9)), Verdict::Missed { from: 6, to: 9 });
        assert_eq!(r.judge(&t, st(2, 0)), Verdict::Deliver { changed: Some(1) });
        r.delivered(&t, st(2, 0));
        assert_eq!(r.get(b"t"), Some(st(2, 0)));
        assert_eq!(
            r.judge(b"other", st(2, 0)),
            Verdict::Deliver { changed: None }
        );
    }
}
