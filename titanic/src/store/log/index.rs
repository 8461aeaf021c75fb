//! What the log store keeps in memory: where each live request and reply is, the keys, and
//! how many live records each segment holds. Rebuilt from the segments when the store opens
//! (by the same methods that apply a commit), so there is one set of rules for both.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;

/// Where a record's encoded bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Loc {
    pub(super) seg: u64,
    pub(super) off: u64,
    pub(super) len: u32,
}

/// One live request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) request: Loc,
    pub(super) reply: Option<Loc>,
    pub(super) key: Option<Bytes>,
}

impl Entry {
    /// The live bytes it is charged (what [`crate::Limits::max_bytes`] limits).
    pub(super) fn bytes(&self) -> u64 {
        u64::from(self.request.len) + self.reply.map_or(0, |r| u64::from(r.len))
    }
}

/// One segment file.
#[derive(Debug)]
pub(super) struct Seg {
    pub(super) file: Arc<File>,
    /// Its length: what has been written to it (durably, once a commit is through).
    pub(super) size: u64,
    /// Live requests and replies whose bytes are in it.
    pub(super) live: u64,
    /// Their bytes.
    pub(super) live_bytes: u64,
}

/// The in-memory state of the log.
#[derive(Debug, Default)]
pub(super) struct Index {
    pub(super) entries: BTreeMap<u128, Entry>,
    pub(super) keys: HashMap<Bytes, u128>,
    pub(super) segs: BTreeMap<u64, Seg>,
    /// Entries with a reply.
    pub(super) done: u64,
    /// The sum of [`Entry::bytes`].
    pub(super) live_bytes: u64,
}

/// A change a commit makes, applied once it is durable (and when the log is read back).
#[derive(Debug, Clone)]
pub(super) enum Change {
    /// A request stored, or moved (compaction): a new location for an entry that exists.
    Request {
        id: u128,
        at: Loc,
        key: Option<Bytes>,
    },
    /// A reply stored (or moved) for a live request; ignored if the request is gone.
    Reply { id: u128, at: Loc },
    /// The request and its reply are gone.
    Close { id: u128 },
    /// Every request below the id is gone.
    Expire { below: u128 },
}

impl Index {
    pub(super) fn apply(&mut self, change: Change) {
        match change {
            Change::Request { id, at, key } => self.put(id, at, key),
            Change::Reply { id, at } => self.reply(id, at),
            Change::Close { id } => self.remove(id),
            Change::Expire { below } => {
                let gone: Vec<u128> = self.entries.range(..below).map(|(id, _)| *id).collect();
                gone.into_iter().for_each(|id| self.remove(id));
            }
        }
    }

    fn put(&mut self, id: u128, at: Loc, key: Option<Bytes>) {
        self.charge(at, 1);
        let reply = match self.entries.remove(&id) {
            // Moved: the new place replaces the old; its reply and key stay.
            Some(old) => {
                self.charge(old.request, -1);
                self.live_bytes -= u64::from(old.request.len);
                if let (Some(old_key), None) = (&old.key, &key) {
                    self.keys.remove(old_key);
                }
                old.reply
            }
            None => None,
        };
        if let Some(key) = &key {
            self.keys.insert(key.clone(), id);
        }
        self.live_bytes += u64::from(at.len);
        self.entries.insert(
            id,
            Entry {
                request: at,
                reply,
                key,
            },
        );
    }

    fn reply(&mut self, id: u128, at: Loc) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let old = entry.reply.replace(at);
        match old {
            Some(old) => {
                self.live_bytes -= u64::from(old.len);
                Self::charge_in(&mut self.segs, old, -1);
            }
            None => self.done += 1,
        }
        self.live_bytes += u64::from(at.len);
        Self::charge_in(&mut self.segs, at, 1);
    }

    fn remove(&mut self, id: u128) {
        let Some(entry) = self.entries.remove(&id) else {
            return;
        };
        self.live_bytes -= entry.bytes();
        self.charge(entry.request, -1);
        if let Some(reply) = entry.reply {
            self.done -= 1;
            self.charge(reply, -1);
        }
        if let Some(key) = &entry.key {
            if self.keys.get(key) == Some(&id) {
                self.keys.remove(key);
            }
        }
    }

    fn charge(&mut self, at: Loc, by: i64) {
        Self::charge_in(&mut self.segs, at, by);
    }

    fn charge_in(segs: &mut BTreeMap<u64, Seg>, at: Loc, by: i64) {
        if let Some(seg) = segs.get_mut(&at.seg) {
            seg.live = seg.live.saturating_add_signed(by);
            seg.live_bytes = seg.live_bytes.saturating_add_signed(by * i64::from(at.len));
        }
    }

    /// The id under `key`, if its request is live.
    pub(super) fn keyed(&self, key: &[u8]) -> Option<u128> {
        self.keys.get(key).copied()
    }

    /// The sum of the segments' lengths.
    pub(super) fn file_bytes(&self) -> u64 {
        self.segs.values().map(|s| s.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(segs: &[u64]) -> Index {
        let mut i = Index::default();
        for n in segs {
            let file = Arc::new(tempfile::tempfile().unwrap());
            i.segs.insert(
                *n,
                Seg {
                    file,
                    size: 0,
                    live: 0,
                    live_bytes: 0,
                },
            );
        }
        i
    }

    fn at(seg: u64, off: u64, len: u32) -> Loc {
        Loc { seg, off, len }
    }

    fn live(i: &Index) -> Vec<(u64, u64, u64)> {
        i.segs
            .iter()
            .map(|(n, s)| (*n, s.live, s.live_bytes))
            .collect()
    }

    #[test]
    fn segments_count_the_live_records_in_them() {
        let mut i = index(&[1, 2]);
        i.apply(Change::Request {
            id: 10,
            at: at(1, 16, 100),
            key: Some(Bytes::from_static(b"k")),
        });
        i.apply(Change::Request {
            id: 11,
            at: at(1, 200, 50),
            key: None,
        });
        i.apply(Change::Reply {
            id: 10,
            at: at(2, 16, 30),
        });
        assert_eq!(live(&i), vec![(1, 2, 150), (2, 1, 30)]);
        assert_eq!((i.done, i.live_bytes, i.keyed(b"k")), (1, 180, Some(10)));
        // A reply for a request that is gone changes nothing.
        i.apply(Change::Reply {
            id: 99,
            at: at(2, 100, 5),
        });
        assert_eq!(i.live_bytes, 180);
        i.apply(Change::Close { id: 10 });
        assert_eq!(live(&i), vec![(1, 1, 50), (2, 0, 0)]);
        assert_eq!((i.done, i.live_bytes, i.keyed(b"k")), (0, 50, None));
        i.apply(Change::Close { id: 10 });
        assert_eq!(i.live_bytes, 50);
    }

    #[test]
    fn a_moved_request_keeps_its_reply_and_key_and_leaves_its_old_segment() {
        let mut i = index(&[1, 2]);
        let key = Some(Bytes::from_static(b"k"));
        i.apply(Change::Request {
            id: 10,
            at: at(1, 16, 100),
            key: key.clone(),
        });
        i.apply(Change::Reply {
            id: 10,
            at: at(1, 200, 30),
        });
        i.apply(Change::Request {
            id: 10,
            at: at(2, 16, 100),
            key: key.clone(),
        });
        i.apply(Change::Reply {
            id: 10,
            at: at(2, 200, 30),
        });
        assert_eq!(live(&i), vec![(1, 0, 0), (2, 2, 130)]);
        assert_eq!((i.done, i.live_bytes, i.keyed(b"k")), (1, 130, Some(10)));
        assert_eq!(i.entries[&10].reply, Some(at(2, 200, 30)));
    }

    #[test]
    fn an_expiry_removes_every_request_below_its_id() {
        let mut i = index(&[1]);
        for id in [5, 6, 7, 8] {
            i.apply(Change::Request {
                id,
                at: at(1, id as u64 * 10, 10),
                key: None,
            });
        }
        i.apply(Change::Expire { below: 7 });
        assert_eq!(i.entries.keys().copied().collect::<Vec<_>>(), vec![7, 8]);
        assert_eq!((i.live_bytes, live(&i)), (20, vec![(1, 2, 20)]));
    }
}
