//! A registered worker, the request it may hold, and the requests at workers by token.

use std::time::Instant;

use bytes::Bytes;
use domo_mdp::{Liveness, PeerId, ServiceName};

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

/// A worker is either waiting in its service's idle list or holding exactly one request.
#[derive(Debug)]
pub(super) enum WorkerState {
    /// In its service's idle list under this key; smaller keys have waited longer.
    Idle {
        /// The worker's key in [`super::service::Service::idle`].
        seq: u64,
    },
    /// Holding the request sent with this token; its next REPLY must carry it.
    Busy(Token),
}

/// A worker that sent READY and has not left.
#[derive(Debug)]
pub(super) struct Worker {
    /// The one service it serves; requests and the idle list always use this name, never one
    /// taken from a later message (zeromq/majordomo #61).
    pub(super) service: ServiceName,
    /// When the worker expires and when it is owed a HEARTBEAT; the rule shared with the
    /// worker SDK.
    pub(super) liveness: Liveness,
    /// Idle or busy.
    pub(super) state: WorkerState,
    /// The worker's pending timer: at or before both its expiry and its next heartbeat.
    pub(super) timer: TimerKey,
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
        matches!(self.state, WorkerState::Busy(_))
    }

    /// Whether the worker holds the request sent with `token`.
    pub(super) fn holds(&self, token: Token) -> bool {
        matches!(self.state, WorkerState::Busy(held) if held == token)
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
            state: WorkerState::Idle { seq: 0 },
            timer,
        };
        assert_eq!(worker.next_wake(), first_heartbeat);
        assert!(!worker.is_busy());
        assert!(!worker.holds(Token::FIRST));
    }
}
