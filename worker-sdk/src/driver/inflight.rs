//! The requests one session holds: up to its credit of outcome futures, polled inside the
//! session task (no task per request).
//!
//! Each slot has a waker of its own, made once per slot and reused by every request that
//! later takes the slot. Waking it queues the slot's index and wakes the session task, so a
//! wake-up polls only the futures that asked for it, not the whole set: what
//! `futures::stream::FuturesUnordered` does, without unsafe code and without an allocation
//! per request (beyond the boxed future itself).

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use domo_mdp::{LockExt, PeerId};

use crate::handler::OutcomeFuture;
use crate::request::Outcome;

/// A set of in-flight requests, each the client-address frame it came with and the future
/// of its outcome.
pub(super) struct InFlight {
    /// The requests by slot; `None` for a free slot.
    slots: Vec<Option<(PeerId, OutcomeFuture)>>,
    /// Each slot's waker and its wake flag, made along with the slot.
    wakers: Vec<(Arc<SlotWake>, Waker)>,
    /// Free slots (indexes into `slots`).
    free: Vec<usize>,
    /// Slots to poll, taken from `shared.woken` (and new requests, which are polled once
    /// before anything can wake them).
    to_poll: Vec<usize>,
    /// Occupied slots.
    len: usize,
    shared: Arc<Shared>,
}

/// What the slot wakers share with the set.
#[derive(Default)]
struct Shared {
    /// Slots woken since the set last looked, and the session task's waker.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    woken: Vec<usize>,
    task: Option<Waker>,
}

struct SlotWake {
    index: usize,
    /// Set while the index is queued in `woken`, so a slot is queued once however often
    /// it is woken.
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for SlotWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut state = self.shared.state.lock_unpoisoned();
        if !self.queued.swap(true, Ordering::AcqRel) {
            state.woken.push(self.index);
        }
        if let Some(task) = &state.task {
            task.wake_by_ref();
        }
    }
}

impl InFlight {
    /// An empty set with room for `capacity` requests before it grows.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            slots: Vec::with_capacity(capacity),
            wakers: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            to_poll: Vec::with_capacity(capacity),
            len: 0,
            shared: Arc::default(),
        }
    }

    /// How many requests are in flight.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Adds a request; its future is first polled by the next [`InFlight::next`].
    pub(super) fn insert(&mut self, client: PeerId, outcome: OutcomeFuture) {
        let index = self.free.pop().unwrap_or_else(|| {
            let index = self.slots.len();
            let wake = Arc::new(SlotWake {
                index,
                queued: AtomicBool::new(false),
                shared: self.shared.clone(),
            });
            let waker = Waker::from(wake.clone());
            self.wakers.push((wake, waker));
            self.slots.push(None);
            index
        });
        self.slots[index] = Some((client, outcome));
        self.len += 1;
        self.to_poll.push(index);
    }

    /// Drops every request (their futures with them). Wake-ups still queued for the dropped
    /// ones find free slots and are skipped.
    pub(super) fn clear(&mut self) {
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if slot.take().is_some() {
                self.free.push(index);
            }
        }
        self.len = 0;
    }

    /// The next request to settle: its client-address frame and outcome. Never resolves
    /// while the set is empty (a request inserted meanwhile is seen on the next call).
    pub(super) async fn next(&mut self) -> (PeerId, Outcome) {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<(PeerId, Outcome)> {
        {
            let mut state = self.shared.state.lock_unpoisoned();
            match &state.task {
                Some(task) if task.will_wake(cx.waker()) => {}
                _ => state.task = Some(cx.waker().clone()),
            }
            self.to_poll.append(&mut state.woken);
        }
        while let Some(index) = self.to_poll.pop() {
            let (wake, waker) = &self.wakers[index];
            // Cleared before the poll, so a wake-up during it queues the slot again.
            wake.queued.store(false, Ordering::Release);
            let slot = &mut self.slots[index];
            let Some((_, future)) = slot else {
                continue;
            };
            let Poll::Ready(outcome) = future.as_mut().poll(&mut Context::from_waker(waker)) else {
                continue;
            };
            if let Some((client, _)) = slot.take() {
                self.free.push(index);
                self.len -= 1;
                return Poll::Ready((client, outcome));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::sync::oneshot;

    use super::*;

    fn peer(name: &'static str) -> PeerId {
        PeerId::new(Bytes::from_static(name.as_bytes())).unwrap()
    }

    /// A request settled through a oneshot, counting its polls.
    fn request(polls: &Arc<AtomicUsize>) -> (oneshot::Sender<Outcome>, OutcomeFuture) {
        let (tx, mut rx) = oneshot::channel();
        let polls = polls.clone();
        let future = poll_fn(move |cx| {
            polls.fetch_add(1, Ordering::SeqCst);
            std::pin::Pin::new(&mut rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Outcome::Failed))
        });
        (tx, Box::pin(future))
    }

    fn reply(tx: oneshot::Sender<Outcome>, body: &'static str) {
        tx.send(Outcome::Reply(vec![Bytes::from_static(body.as_bytes())]))
            .unwrap();
    }

    async fn next_within(set: &mut InFlight) -> Option<(PeerId, Outcome)> {
        tokio::time::timeout(Duration::from_millis(10), set.next())
            .await
            .ok()
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_come_in_completion_order_and_only_woken_futures_are_polled() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut set = InFlight::with_capacity(2);
        let mut senders = Vec::new();
        for name in ["a", "b", "c"] {
            let (tx, future) = request(&polls);
            set.insert(peer(name), future);
            senders.push(tx);
        }
        assert_eq!(set.len(), 3);
        assert!(next_within(&mut set).await.is_none());
        assert_eq!(polls.load(Ordering::SeqCst), 3, "each polled once");
        let c = senders.pop().unwrap();
        let b = senders.pop().unwrap();
        reply(c, "c");
        let (client, outcome) = next_within(&mut set).await.unwrap();
        assert_eq!(client, peer("c"));
        assert!(matches!(outcome, Outcome::Reply(body) if body[0] == "c"));
        assert_eq!(polls.load(Ordering::SeqCst), 4, "only c polled again");
        assert_eq!(set.len(), 2);
        // A freed slot is reused by the next request.
        let (d, future) = request(&polls);
        set.insert(peer("d"), future);
        drop(b);
        let (client, outcome) = next_within(&mut set).await.unwrap();
        // b, dropped unanswered, fails; d (new, not yet polled) stays pending.
        assert_eq!(client, peer("b"));
        assert!(matches!(outcome, Outcome::Failed));
        reply(d, "d");
        let (client, _) = next_within(&mut set).await.unwrap();
        assert_eq!(client, peer("d"));
        assert_eq!(set.len(), 1);
        assert_eq!(set.slots.len(), 3, "no slot beyond the most held at once");
    }

    #[tokio::test(start_paused = true)]
    async fn clear_drops_everything_and_stale_wake_ups_are_skipped() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut set = InFlight::with_capacity(2);
        let (a, future) = request(&polls);
        set.insert(peer("a"), future);
        assert!(next_within(&mut set).await.is_none());
        set.clear();
        assert_eq!(set.len(), 0);
        // a's receiver is gone with its future.
        assert!(a.is_closed());
        assert!(next_within(&mut set).await.is_none());
        let (b, future) = request(&polls);
        set.insert(peer("b"), future);
        reply(b, "b");
        let (client, _) = next_within(&mut set).await.unwrap();
        assert_eq!(client, peer("b"));
        assert!(next_within(&mut set).await.is_none());
    }
}
