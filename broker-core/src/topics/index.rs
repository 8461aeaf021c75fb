//! Which subscribers hold which prefixes, looked up by the prefixes of a topic: one hash
//! lookup per distinct prefix length in use, whatever the number of subscribers.

use std::collections::BTreeMap;

use bytes::Bytes;
use foldhash::HashMap;

use super::SubId;

#[derive(Debug, Default)]
pub(super) struct PrefixIndex {
    by_prefix: HashMap<Bytes, Vec<SubId>>,
    /// Prefix length -> how many distinct prefixes of that length are held.
    lengths: BTreeMap<usize, usize>,
}

impl PrefixIndex {
    /// `sub` holds `prefix` (once: the caller counts repeats).
    pub(super) fn add(&mut self, prefix: Bytes, sub: SubId) {
        let len = prefix.len();
        let subs = self.by_prefix.entry(prefix).or_default();
        if subs.is_empty() {
            *self.lengths.entry(len).or_default() += 1;
        }
        subs.push(sub);
    }

    /// `sub` no longer holds `prefix`.
    pub(super) fn remove(&mut self, prefix: &Bytes, sub: SubId) {
        let Some(subs) = self.by_prefix.get_mut(prefix) else {
            return;
        };
        subs.retain(|s| *s != sub);
        if subs.is_empty() {
            self.by_prefix.remove(prefix);
            if let Some(n) = self.lengths.get_mut(&prefix.len()) {
                *n -= 1;
                if *n == 0 {
                    self.lengths.remove(&prefix.len());
                }
            }
        }
    }

    /// Calls `f` for each subscriber of each held prefix of `topic` (a subscriber holding
    /// several is called for each).
    pub(super) fn for_each_match(&self, topic: &[u8], mut f: impl FnMut(SubId)) {
        for &len in self.lengths.range(..=topic.len()).map(|(len, _)| len) {
            if let Some(subs) = self.by_prefix.get(&topic[..len]) {
                for &s in subs {
                    f(s);
                }
            }
        }
    }
}
