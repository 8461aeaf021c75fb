//! A registered worker, the requests it may hold, and the requests at workers by token.

use std::cmp::Reverse;
use std::time::Instant;

use bytes::Bytes;
use domo_mdp::{Credit, Liveness, PeerId, ServiceName};

use super::timer::TimerKey;
use super::token::Token;

/// A client request the broker is responsible for, queued or held by a worker.
#[derive(Debug)]
pub(super) struct Request {
    /// Routing id of the client that sent it; the reply goes there.
    pub(super) client: PeerId,
    /// The body frames. Kept while a worker holds the request when re-dispatch is on, so the
    /// request can be sent again if the worker is lost; empty once sent when it is off.
    pub(super) body: Vec<Bytes>,
    /// Body bytes, counted against the queue limits.
    pub(super) size: usize,
    /// How many times the request was put back after losing its worker.
    pub(super) redispatches: u32,
    /// When the broker received it, for the request duration and queue wait metrics.
    pub(super) received_at: Instant,
    /// A multiplexed client's tag for it (domo's `mux` extension), copied into the reply.
    pub(super) tag: Option<Bytes>,
    /// The broadcast it is one worker's part of ([`super::broadcast`]): its reply goes to
    /// the broadcast, and it is never sent to another worker.
    pub(super) broadcast: Option<u64>,
}

impl Request {
    /// A request fresh from a client.
    pub(super) fn new(client: PeerId, body: Vec<Bytes>, received_at: Instant) -> Self {
        let size = body.iter().map(Bytes::len).sum();
        Self {
            client,
            body,
            size,
            redispatches: 0,
            received_at,
            tag: None,
            broadcast: None,
        }
    }
}

/// A request at a worker: the value of the broker's map from token to request, kept from
/// dispatch until the reply, or until the worker is lost (the request then goes back to its
/// queue and gets a new token when dispatched again).
#[derive(Debug)]
pub(super) struct InFlight {
    /// The worker the request was sent to: only a REPLY from this worker carrying the token
    /// answers it.
    pub(super) worker: PeerId,
    /// The request itself.
    pub(super) request: Request,
}

/// A worker's place in its service's waiting set ([`super::service::Service::idle`]):
/// workers with more free credit come first, and among equals the one that waited longest
/// (the smaller `seq`), so credit-1 workers keep plain least-recently-used order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct WaitKey {
    /// Free credit, reversed so that more comes first.
    free: Reverse<u32>,
    /// When the worker entered the set; grows forever.
    seq: u64,
}

impl WaitKey {
    /// The key of a worker with `free` credit entering the set as number `seq`.
    pub(super) fn new(free: u32, seq: u64) -> Self {
        Self {
            free: Reverse(free),
            seq,
        }
    }

    /// When the worker entered the set (for the tests' invariant check).
    #[cfg(test)]
    pub(super) fn seq(self) -> u64 {
        self.seq
    }
}

/// A worker that sent READY and has not left.
///
/// A worker holds up to `credit` requests (1 for RFC 7 workers, more when it announced
/// [`domo_mdp::extensions::CREDIT_PROPERTY`]); while it holds fewer it waits in its
/// service's waiting set under `waiting`.
#[derive(Debug)]
pub(super) struct Worker {
    /// The one service it serves; requests and the idle list always use this name, never one
    /// taken from a later message (zeromq/majordomo #61).
    pub(super) service: ServiceName,
    /// When the worker expires and when it is owed a HEARTBEAT; the rule shared with the
    /// worker SDK.
    pub(super) liveness: Liveness,
    /// How many requests it may hold at once.
    pub(super) credit: Credit,
    /// The tokens of the requests it holds, oldest dispatch first; never more than `credit`.
    pub(super) held: Vec<Token>,
    /// Its key in the service's waiting set: `Some` exactly while it holds fewer requests
    /// than its credit.
    pub(super) waiting: Option<WaitKey>,
    /// The worker's pending timer: at or before both its expiry and its next heartbeat.
    pub(super) timer: TimerKey,
    /// Broadcast parts for this worker alone, sent before anything else as soon as it has
    /// free credit ([`super::broadcast`]); empty whenever it has free credit.
    pub(super) pinned: std::collections::VecDeque<Request>,
    /// Run by the shell in process ([`super::Broker::register_in_process`]): it has no
    /// connection to lose, so it never expires for silence.
    pub(super) in_process: bool,
}

impl Worker {
    /// When the worker next needs attention: it expires, or a heartbeat is due.
    pub(super) fn next_wake(&self) -> Instant {
        self.liveness
            .deadline()
            .min(self.liveness.next_heartbeat_due())
    }

    /// Whether the worker holds a request.
    pub(super) fn is_busy(&self) -> bool {
        !self.held.is_empty()
    }

    /// How many more requests it may take now.
    pub(super) fn free(&self) -> u32 {
        let held = u32::try_from(self.held.len()).unwrap_or(u32::MAX);
        self.credit.get().saturating_sub(held)
    }

    /// Whether the worker holds the request sent with `token`.
    pub(super) fn holds(&self, token: Token) -> bool {
        self.held.contains(&token)
    }
}

#[cfg(test)]
mod tests {
    use domo_mdp::Heartbeat;

    use super::*;
    use crate::timer::{Timer, Timers};

    #[test]
    fn request_size_is_the_sum_of_body_frames() {
        let body = vec![
            Bytes::from_static(b"abc"),
            Bytes::new(),
            Bytes::from_static(b"de"),
        ];
        let request = Request::new(PeerId::new("c").unwrap(), body, Instant::now());
        assert_eq!(request.size, 5);
        assert_eq!(request.redispatches, 0);
    }

    #[test]
    fn worker_wakes_for_its_first_heartbeat_before_expiry() {
        let now = Instant::now();
        let liveness = Liveness::new(now, Heartbeat::default());
        let first_heartbeat = liveness.next_heartbeat_due();
        let peer = PeerId::new("w").unwrap();
        let timer = Timers::default().schedule(now, Timer::Worker(peer.clone()));
        let worker = Worker {
            service: ServiceName::from_static("echo"),
            liveness,
            credit: Credit::ONE,
            held: Vec::new(),
            pinned: std::collections::VecDeque::new(),
            waiting: Some(WaitKey::new(1, 0)),
            timer,
            in_process: false,
        };
        assert_eq!(worker.next_wake(), first_heartbeat);
        assert!(!worker.is_busy());
        assert!(!worker.holds(Token::FIRST));
        assert_eq!(worker.free(), 1);
    }

    #[test]
    fn waiting_workers_order_by_free_credit_then_seq() {
        let mut keys = [WaitKey::new(1, 0), WaitKey::new(3, 5), WaitKey::new(3, 2)];
        keys.sort();
        assert_eq!(
            keys,
            [WaitKey::new(3, 2), WaitKey::new(3, 5), WaitKey::new(1, 0)]
        );
    }
}
