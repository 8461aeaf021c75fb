//! Per-service facts for metrics, pulled with [`Broker::poll_event`] after
//! [`Broker::record_events`] turned them on (they are off by default, so a core nobody drains
//! never grows).
//!
//! [`Stats`](super::Stats) has the totals; events carry what totals cannot: the service of
//! each request and how long it took, so a shell can keep per-service counters and
//! histograms without the core knowing about any metrics library.

use std::time::Duration;

use domo_mdp::ServiceName;

use super::Broker;

/// Something that happened to a request or a worker of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A worker registered for the service.
    WorkerRegistered {
        /// The service.
        service: ServiceName,
    },
    /// A request was sent to a worker for the first time, after waiting this long for one.
    Dispatched {
        /// The service.
        service: ServiceName,
        /// Time from the broker receiving the request to sending it to a worker.
        queue_wait: Duration,
    },
    /// A worker's reply was routed to the client.
    Replied {
        /// The service.
        service: ServiceName,
        /// Time from the broker receiving the request to routing its reply.
        duration: Duration,
    },
    /// A request was dropped.
    Dropped {
        /// The service.
        service: ServiceName,
        /// Why.
        reason: DropReason,
    },
}

/// Why a request was dropped (see [`super::RequestDrops`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The request waited `request_timeout` while its service had workers.
    Expired,
    /// The request waited `request_timeout` and its service had no worker.
    UnknownService,
    /// The request lost one worker too many.
    RedispatchLimit,
    /// The request lost its worker while re-dispatch is off.
    WorkerLost,
    /// The client had been sent or sent DISCONNECT.
    ClientSilenced,
    /// The broker was draining.
    Shutdown,
    /// The broker is the one of a Binary Star pair that is not serving (passive, waiting for
    /// its peer, or resynchronising); the client is to try the other broker.
    NotActive,
    /// The client had disconnected.
    ClientGone,
}

impl DropReason {
    /// The reason as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::UnknownService => "unknown_service",
            Self::RedispatchLimit => "redispatch_limit",
            Self::WorkerLost => "worker_lost",
            Self::ClientSilenced => "client_silenced",
            Self::Shutdown => "dropped_on_shutdown",
            Self::NotActive => "not_active",
            Self::ClientGone => "client_gone",
        }
    }
}

impl Broker {
    /// Turns [`Event`] recording on or off (off by default). When on, the caller must drain
    /// [`Broker::poll_event`] regularly, as it does [`Broker::poll_outbound`].
    pub fn record_events(&mut self, on: bool) {
        self.recording = on;
        if !on {
            self.events.clear();
        }
    }

    /// Takes the next recorded event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub(super) fn event(&mut self, make: impl FnOnce() -> Event) {
        if self.recording {
            self.events.push_back(make());
        }
    }

    /// Counts a dropped request in the stats and, if recording, as an event.
    pub(super) fn dropped(&mut self, service: &ServiceName, reason: DropReason) {
        let drops = &mut self.stats.requests.dropped;
        let counter = match reason {
            DropReason::Expired | DropReason::UnknownService => &mut drops.expired,
            DropReason::RedispatchLimit => &mut drops.redispatch_limit,
            DropReason::WorkerLost => &mut drops.worker_lost,
            DropReason::ClientSilenced => &mut drops.client_silenced,
            DropReason::Shutdown => &mut drops.shutdown,
            DropReason::NotActive => &mut drops.not_active,
            DropReason::ClientGone => &mut drops.client_gone,
        };
        *counter += 1;
        self.event(|| Event::Dropped {
            service: service.clone(),
            reason,
        });
    }
}
