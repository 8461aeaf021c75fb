//! An in-memory [`Store`] for unit tests of code built on the store (nothing is durable).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use domo_mdp::LockExt;

use super::{request_size, Limits, Lookup, Stats, Store};
use crate::clock::TimeSource;
use crate::error::{Error, Result};
use crate::id::{Id, IdGenerator};
use crate::record::{encode_reply, Reply, Request};

#[derive(Debug, Default)]
struct State {
    ids: IdGenerator,
    requests: BTreeMap<Id, (Request, u64)>,
    replies: BTreeMap<Id, (Reply, u64)>,
    /// Idempotency keys and the ids they name, both ways.
    keys: HashMap<Bytes, Id>,
    key_of: HashMap<Id, Bytes>,
    live_bytes: u64,
    fail_writes: bool,
    commits: u64,
}

/// A [`Store`] kept in a `BTreeMap`, with the same semantics and limits as the durable one.
pub struct MemoryStore {
    state: Mutex<State>,
    clock: Arc<dyn TimeSource>,
    limits: Limits,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("limits", &self.limits)
            .finish()
    }
}

impl MemoryStore {
    /// An empty store reading time from `clock`.
    pub fn new(clock: Arc<dyn TimeSource>, limits: Limits) -> Self {
        Self {
            state: Mutex::new(State::default()),
            clock,
            limits,
        }
    }

    /// Makes every later write fail with [`Error::WriteFailed`] (or succeed again), to test
    /// error handling in code built on the store.
    pub fn fail_writes(&self, fail: bool) {
        self.lock().fail_writes = fail;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters for tests, so a poisoned lock is used as is.
        self.state.lock_unpoisoned()
    }

    fn put(&self, s: &mut State, service: Bytes, body: Vec<Bytes>) -> Result<Id> {
        let now = self.clock.now_millis();
        let request = Request {
            service,
            body,
            created_millis: now,
            attempts: 0,
        };
        let size = request_size(&request);
        if s.live_bytes + size > self.limits.max_bytes {
            return Err(Error::StoreFull {
                used: s.live_bytes,
                limit: self.limits.max_bytes,
                needed: size,
            });
        }
        let id = s.ids.next(now);
        s.requests.insert(id, (request, size));
        s.live_bytes += size;
        Ok(id)
    }

    fn writable(&self) -> Result<MutexGuard<'_, State>> {
        let mut state = self.lock();
        if state.fail_writes {
            return Err(Error::WriteFailed("injected failure".into()));
        }
        state.commits += 1;
        Ok(state)
    }
}

impl Store for MemoryStore {
    fn put_request(&self, service: Bytes, body: Vec<Bytes>) -> Result<Id> {
        let mut s = self.writable()?;
        self.put(&mut s, service, body)
    }

    fn put_keyed(&self, key: Bytes, service: Bytes, body: Vec<Bytes>) -> Result<Id> {
        let mut s = self.writable()?;
        if let Some(id) = s.keys.get(&key) {
            return Ok(*id);
        }
        let id = self.put(&mut s, service, body)?;
        s.keys.insert(key.clone(), id);
        s.key_of.insert(id, key);
        Ok(id)
    }

    fn complete(&self, id: Id, frames: Vec<Bytes>) -> Result<()> {
        let now = self.clock.now_millis();
        let mut s = self.writable()?;
        if !s.requests.contains_key(&id) || s.replies.contains_key(&id) {
            return Ok(());
        }
        let reply = Reply {
            frames,
            completed_millis: now,
        };
        let size = encode_reply(&reply).len() as u64;
        s.replies.insert(id, (reply, size));
        s.live_bytes += size;
        Ok(())
    }

    fn get(&self, id: Id) -> Result<Lookup> {
        let s = self.lock();
        Ok(match (s.requests.contains_key(&id), s.replies.get(&id)) {
            (_, Some((reply, _))) => Lookup::Done(reply.clone()),
            (true, None) => Lookup::Pending,
            (false, None) => Lookup::Unknown,
        })
    }

    fn close(&self, id: Id) -> Result<()> {
        let mut s = self.writable()?;
        remove(&mut s, id);
        Ok(())
    }

    fn pending(&self, after: Option<Id>, limit: usize) -> Result<Vec<(Id, Request)>> {
        let s = self.lock();
        let from = after.map_or(0, |a| a.as_u128().saturating_add(1));
        Ok(s.requests
            .range(Id::from_u128(from)..)
            .filter(|(id, _)| !s.replies.contains_key(id))
            .take(limit)
            .map(|(id, (r, _))| (*id, r.clone()))
            .collect())
    }

    fn expire(&self, older_than_millis: u64) -> Result<usize> {
        let cutoff = self.clock.now_millis().saturating_sub(older_than_millis);
        let mut s = self.writable()?;
        // Same rule as the durable store: an id's embedded time is its creation time.
        let old: Vec<Id> = s
            .requests
            .range(..Id::lowest_at(cutoff))
            .map(|(id, _)| *id)
            .collect();
        for id in &old {
            remove(&mut s, *id);
        }
        Ok(old.len())
    }

    fn stats(&self) -> Result<Stats> {
        let s = self.lock();
        Ok(Stats {
            pending: (s.requests.len() - s.replies.len()) as u64,
            done: s.replies.len() as u64,
            live_bytes: s.live_bytes,
            file_bytes: 0,
            commits: s.commits,
        })
    }

    fn check_writes(&self) -> Result<()> {
        if self.lock().fail_writes {
            return Err(Error::WriteFailed("injected failure".into()));
        }
        Ok(())
    }
}

fn remove(s: &mut State, id: Id) {
    if let Some(key) = s.key_of.remove(&id) {
        s.keys.remove(&key);
    }
    let freed =
        s.requests.remove(&id).map_or(0, |(_, n)| n) + s.replies.remove(&id).map_or(0, |(_, n)| n);
    s.live_bytes -= freed;
}
