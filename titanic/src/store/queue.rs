//! The queue between the store's callers and its writer thread, and the group-commit wait.
//!
//! Design: a mutex-protected `VecDeque` with two condition variables, one for the writer
//! ("there is work") and one for callers blocked on a full queue ("there is room"). A caller
//! wakes the writer only when the writer sleeps waiting for work, so a busy writer costs its
//! callers no wake-ups and a batch of N requests costs one writer wake-up, not N.
//!
//! # Filling a group commit
//!
//! The writer takes everything queued the moment it is free (up to the batch bound), so a
//! commit carries every submission waiting at that moment: the store has no fixed number of
//! callers (async callers hold no thread while they wait), so with 64 submitters waiting a
//! commit holds 64. What it cannot see are the submissions still on their way (in the
//! broker, in the network, in their clients), so a commit is only as large as the arrival
//! rate times the commit time.
//!
//! Optionally ([`Linger`], off by default) the writer, once it has its first op, waits for
//! more: it sleeps a short step, and keeps sleeping while each step brought more ops, up to a
//! bound; a step that brought nothing ends the wait. It lingers only when the previous
//! commit carried more than one op (there are concurrent submitters to wait for), so a lone
//! submitter never waits. It sleeps by the clock meanwhile: callers do not wake it, so the
//! wait costs a few wake-ups per commit. Measured through the broker with 64 closed-loop
//! submitters (BENCHMARKS.md), lingering makes commits carry nearly all 64 and cuts the
//! writer's CPU per request by 40%, but lowers throughput by 15-20%: the submitters then move
//! in one cohort, and the broker idles during each fsync instead of carrying the next
//! cohort. It pays where the CPU, not the latency of the round trip, is the limit.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long the writer may wait for a commit to fill once it has its first op: see
/// [`crate::RedbOptions::linger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linger {
    /// The longest a commit waits for more ops after its first one. Zero (the default) turns
    /// lingering off.
    pub max: Duration,
    /// One step of the wait: lingering ends after a step that brought no new op.
    pub step: Duration,
}

impl Default for Linger {
    /// Off (steps of 100 us once `max` is set).
    fn default() -> Self {
        Self {
            max: Duration::ZERO,
            step: Duration::from_micros(100),
        }
    }
}

/// Why an op could not be queued.
pub(crate) enum Refused<T> {
    /// The queue is at capacity (only from [`Queue::try_push`]).
    Full(T),
    /// The store is closing.
    Closed(T),
}

/// A bounded multi-producer queue for one consumer, the writer.
pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    /// The writer waits here for work.
    work: Condvar,
    /// Callers wait here for room.
    room: Condvar,
    capacity: usize,
}

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// True while the writer sleeps on `work`.
    writer_waiting: bool,
    /// Callers blocked on a full queue.
    blocked: usize,
}

/// What the writer got from [`Queue::wait`].
pub(crate) enum Waited {
    /// At least one op is queued.
    Ready,
    /// The timeout passed with nothing queued.
    TimedOut,
    /// The queue is closed and empty: the writer can stop.
    Closed,
}

impl<T> Queue<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::with_capacity(capacity.min(4096)),
                closed: false,
                writer_waiting: false,
                blocked: 0,
            }),
            work: Condvar::new(),
            room: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `item` unless the queue is full or closed.
    pub(crate) fn try_push(&self, item: T) -> Result<(), Refused<T>> {
        let state = self.lock();
        if state.closed {
            return Err(Refused::Closed(item));
        }
        if state.items.len() >= self.capacity {
            return Err(Refused::Full(item));
        }
        self.push_locked(state, item);
        Ok(())
    }

    /// Queues `item`, waiting for room while the queue is full (backpressure).
    pub(crate) fn push(&self, item: T) -> Result<(), T> {
        let mut state = self.lock();
        loop {
            if state.closed {
                return Err(item);
            }
            if state.items.len() < self.capacity {
                self.push_locked(state, item);
                return Ok(());
            }
            state.blocked += 1;
            state = self
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.blocked -= 1;
        }
    }

    fn push_locked(&self, mut state: MutexGuard<'_, State<T>>, item: T) {
        state.items.push_back(item);
        let wake = state.writer_waiting;
        state.writer_waiting = false;
        drop(state);
        if wake {
            self.work.notify_one();
        }
    }

    /// Refuses every later push; the writer still gets what is queued.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let wake = state.writer_waiting;
        drop(state);
        if wake {
            self.work.notify_one();
        }
        self.room.notify_all();
    }

    /// The writer: waits until something is queued, the queue is closed and empty, or
    /// `timeout` (if any) passed.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Waited {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = self.lock();
        loop {
            if !state.items.is_empty() {
                return Waited::Ready;
            }
            if state.closed {
                return Waited::Closed;
            }
            state.writer_waiting = true;
            state = match deadline {
                None => self
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(at) => {
                    let now = Instant::now();
                    if now >= at {
                        state.writer_waiting = false;
                        return Waited::TimedOut;
                    }
                    self.work
                        .wait_timeout(state, at - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            state.writer_waiting = false;
        }
    }

    /// How many items are queued now.
    pub(crate) fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// The writer: lingers as the module docs say, then moves up to `max` queued items into
    /// `batch`. `lingering` says whether to linger at all (the previous commit carried more
    /// than one op).
    pub(crate) fn take(&self, batch: &mut Vec<T>, max: usize, linger: Linger, lingering: bool) {
        if lingering && !linger.max.is_zero() && !linger.step.is_zero() {
            let until = Instant::now() + linger.max;
            let mut seen = self.len();
            while seen < max {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                std::thread::sleep(linger.step.min(until - now));
                let queued = self.len();
                if queued == seen {
                    break;
                }
                seen = queued;
            }
        }
        let mut state = self.lock();
        let n = state.items.len().min(max.saturating_sub(batch.len()));
        batch.extend(state.items.drain(..n));
        let wake = state.blocked > 0;
        drop(state);
        if wake {
            self.room.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_full_queue_refuses_try_push_and_blocks_push_until_the_writer_takes() {
        let q = Arc::new(Queue::new(2));
        assert!(q.try_push(1).is_ok());
        assert!(q.try_push(2).is_ok());
        assert!(matches!(q.try_push(3), Err(Refused::Full(3))));
        let pusher = {
            let q = q.clone();
            std::thread::spawn(move || q.push(3))
        };
        // The blocked pusher is counted before the writer takes; wait for it to block.
        while q.lock().blocked == 0 {
            std::thread::yield_now();
        }
        let mut batch = Vec::new();
        q.take(&mut batch, 10, Linger::default(), false);
        assert_eq!(batch, vec![1, 2]);
        assert!(pusher.join().unwrap().is_ok());
        batch.clear();
        q.take(&mut batch, 10, Linger::default(), false);
        assert_eq!(batch, vec![3]);
    }

    #[test]
    fn take_respects_the_batch_bound_and_keeps_the_order() {
        let q = Queue::new(100);
        for i in 0..10 {
            assert!(q.try_push(i).is_ok());
        }
        let mut batch = Vec::new();
        q.take(&mut batch, 4, Linger::default(), true);
        assert_eq!(batch, vec![0, 1, 2, 3]);
        batch.clear();
        q.take(&mut batch, 100, Linger::default(), false);
        assert_eq!(batch, (4..10).collect::<Vec<_>>());
    }

    #[test]
    fn the_writer_sees_close_after_the_queued_items() {
        let q = Queue::new(4);
        assert!(q.try_push(7).is_ok());
        q.close();
        assert!(matches!(q.try_push(8), Err(Refused::Closed(8))));
        assert!(q.push(9).is_err());
        assert!(matches!(q.wait(None), Waited::Ready));
        let mut batch = Vec::new();
        q.take(&mut batch, 10, Linger::default(), false);
        assert_eq!(batch, vec![7]);
        assert!(matches!(q.wait(None), Waited::Closed));
    }

    #[test]
    fn wait_times_out_on_an_empty_queue_and_wakes_on_a_push() {
        let q = Arc::new(Queue::new(4));
        assert!(matches!(
            q.wait(Some(Duration::from_millis(5))),
            Waited::TimedOut
        ));
        let pusher = {
            let q = q.clone();
            std::thread::spawn(move || {
                while !q.lock().writer_waiting {
                    std::thread::yield_now();
                }
                q.try_push(1).is_ok()
            })
        };
        assert!(matches!(q.wait(None), Waited::Ready));
        assert!(pusher.join().unwrap());
    }

    #[test]
    fn lingering_gathers_items_that_keep_arriving_and_stops_when_they_stop() {
        let q = Arc::new(Queue::new(1000));
        assert!(q.try_push(0).is_ok());
        // One item per millisecond for 10 ms: each 50 ms step sees growth until the producer
        // is done (unless it stalls for a whole step), so the writer waits for all of them.
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || {
                for i in 1..=10 {
                    std::thread::sleep(Duration::from_millis(1));
                    assert!(q.try_push(i).is_ok());
                }
            })
        };
        let linger = Linger {
            max: Duration::from_secs(5),
            step: Duration::from_millis(50),
        };
        let mut batch = Vec::new();
        q.take(&mut batch, 1000, linger, true);
        producer.join().unwrap();
        assert_eq!(batch, (0..=10).collect::<Vec<_>>());
        // Nothing arrives now: the first empty step ends the wait, long before the maximum.
        assert!(q.try_push(11).is_ok());
        let started = Instant::now();
        batch.clear();
        q.take(&mut batch, 1000, linger, true);
        assert_eq!(batch, vec![11]);
        assert!(started.elapsed() < Duration::from_secs(4));
        // Without the flag (the previous commit carried one op) it takes at once, without
        // waiting even one (here very long) step.
        let linger = Linger {
            max: Duration::from_secs(60),
            step: Duration::from_secs(30),
        };
        assert!(q.try_push(12).is_ok());
        batch.clear();
        let started = Instant::now();
        q.take(&mut batch, 1000, linger, false);
        assert_eq!(batch, vec![12]);
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
