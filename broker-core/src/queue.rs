//! A service's FIFO of requests waiting for a worker.
//!
//! Two deques: `retried` holds requests put back after losing their worker and is served
//! first (they go back to the head of the queue, in the order their workers were lost);
//! `fresh` holds requests as clients sent them. Every request's deadline is the time it
//! entered its deque plus the same `request_timeout`, so each deque is sorted by deadline
//! and expiry only ever looks at the two fronts. (One deque with re-queued requests pushed
//! at its front would not be sorted, and a scan from the front would miss expired requests
//! behind a live one.)

use std::collections::VecDeque;
use std::time::Instant;

use super::worker::Request;

/// A request and the instant it expires if still waiting.
#[derive(Debug)]
struct Queued {
    request: Request,
    deadline: Instant,
}

/// Requests waiting for a worker of one service.
#[derive(Debug, Default)]
pub(super) struct RequestQueue {
    retried: VecDeque<Queued>,
    fresh: VecDeque<Queued>,
    /// Body bytes of all queued requests.
    bytes: usize,
}

impl RequestQueue {
    /// Number of queued requests.
    pub(super) fn len(&self) -> usize {
        self.retried.len() + self.fresh.len()
    }

    /// Body bytes of the queued requests.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The queued requests, in no particular order.
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = &Request> {
        self.retried.iter().chain(&self.fresh).map(|q| &q.request)
    }

    /// Whether no request is queued.
    pub(super) fn is_empty(&self) -> bool {
        self.retried.is_empty() && self.fresh.is_empty()
    }

    /// Appends a request from a client.
    pub(super) fn push_fresh(&mut self, request: Request, deadline: Instant) {
        self.bytes += request.size;
        self.fresh.push_back(Queued { request, deadline });
    }

    /// Puts a request that lost its worker ahead of every fresh request.
    pub(super) fn push_retried(&mut self, request: Request, deadline: Instant) {
        self.bytes += request.size;
        self.retried.push_back(Queued { request, deadline });
    }

    /// Takes the request at the head of the queue.
    pub(super) fn pop_front(&mut self) -> Option<Request> {
        let queued = match self.retried.pop_front() {
            Some(queued) => queued,
            None => self.fresh.pop_front()?,
        };
        Some(self.taken(queued))
    }

    /// The earliest deadline of any queued request.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let retried = self.retried.front().map(|queued| queued.deadline);
        let fresh = self.fresh.front().map(|queued| queued.deadline);
        match (retried, fresh) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes one request whose deadline is at or before `now`, if there is one.
    pub(super) fn pop_expired(&mut self, now: Instant) -> Option<Request> {
        let expired = |deque: &VecDeque<Queued>| deque.front().is_some_and(|q| q.deadline <= now);
        let queued = if expired(&self.retried) {
            self.retried.pop_front()?
        } else if expired(&self.fresh) {
            self.fresh.pop_front()?
        } else {
            return None;
        };
        Some(self.taken(queued))
    }

    fn taken(&mut self, queued: Queued) -> Request {
        self.bytes -= queued.request.size;
        queued.request
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use domo_mdp::PeerId;

    use super::*;

    fn request(client: &'static str, size: usize) -> Request {
        Request::new(
            PeerId::new(client).unwrap(),
            vec![Bytes::from(vec![0; size])],
            Instant::now(),
        )
    }

    fn clients(queue: &mut RequestQueue) -> Vec<PeerId> {
        std::iter::from_fn(|| queue.pop_front())
            .map(|request| request.client)
            .collect()
    }

    #[test]
    fn retried_requests_come_before_fresh_ones_in_loss_order() {
        let now = Instant::now();
        let mut queue = RequestQueue::default();
        queue.push_fresh(request("f1", 1), now);
        queue.push_retried(request("r1", 1), now);
        queue.push_fresh(request("f2", 1), now);
        queue.push_retried(request("r2", 1), now);
        let order: Vec<_> = ["r1", "r2", "f1", "f2"]
            .map(|c| PeerId::new(c).unwrap())
            .into();
        assert_eq!(clients(&mut queue), order);
        assert!(queue.is_empty());
    }

    #[test]
    fn bytes_follow_pushes_and_pops() {
        let now = Instant::now();
        let mut queue = RequestQueue::default();
        queue.push_fresh(request("a", 6), now);
        queue.push_retried(request("b", 4), now);
        assert_eq!((queue.len(), queue.bytes()), (2, 10));
        queue.pop_front();
        assert_eq!((queue.len(), queue.bytes()), (1, 6));
    }

    #[test]
    fn expiry_finds_expired_requests_in_both_deques() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut queue = RequestQueue::default();
        queue.push_fresh(request("f1", 1), start + second);
        queue.push_fresh(request("f2", 1), start + 3 * second);
        queue.push_retried(request("r1", 1), start + 2 * second);
        assert_eq!(queue.next_deadline(), Some(start + second));
        assert!(queue.pop_expired(start).is_none());
        let expired: Vec<_> = std::iter::from_fn(|| queue.pop_expired(start + 2 * second))
            .map(|request| request.client)
            .collect();
        assert_eq!(expired.len(), 2);
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.next_deadline(), Some(start + 3 * second));
        assert_eq!(queue.bytes, 1);
    }
}
