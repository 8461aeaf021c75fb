//! Prometheus metrics (`domo_*`), fed by the shell from the core's [`Event`]s and [`Stats`]
//! and the router's counters.
//!
//! Design: per-request facts (which service, how long) arrive as core events and go straight
//! into counters and histograms; totals the core already keeps (departures, protocol errors,
//! drops) and current gauges (queues, workers, connections) are copied in when the shell
//! refreshes before a scrape, so the hot path never touches a gauge. The `service` label is
//! given only to services that have had a worker, first come, up to `max_services`; any
//! other name a client sends is counted under `_other`, so clients cannot grow the label set.

use std::collections::HashSet;
use std::time::Duration;

use domo_mdp::ServiceName;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::core::ha::{Conflict, HaStats, HaStatus, State};
use crate::core::{Event, Stats};

/// Label value of services without their own label.
pub const OTHER: &str = "_other";

/// Histogram buckets in seconds: 0.5 ms to 30 s.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The broker's metric registry and handles.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    labelled: HashSet<ServiceName>,
    /// The per-request series of each labelled service, looked up once: two events per
    /// request would otherwise format the label and search the vectors four times.
    handles: foldhash::HashMap<ServiceName, ServiceSeries>,
    /// The same for the services counted under `other`.
    other: Option<ServiceSeries>,
    max_services: usize,
    client_requests: IntCounterVec,
    replies: IntCounterVec,
    request_duration: HistogramVec,
    queue_wait: HistogramVec,
    queued: IntGaugeVec,
    workers: IntGaugeVec,
    queued_service_bytes: IntGaugeVec,
    credit: IntGaugeVec,
    worker_disconnects: IntCounterVec,
    protocol_errors: IntCounterVec,
    dropped: IntCounterVec,
    dropped_replies: IntCounterVec,
    connections: IntGaugeVec,
    transport: IntCounterVec,
    draining: IntGauge,
    titanic_requests: IntGaugeVec,
    titanic_store_bytes: IntGauge,
    titanic_commit_duration: Histogram,
    titanic_commit_requests: Histogram,
    titanic_store_reopens: IntCounter,
    ha: HaMetrics,
    flow: FlowMetrics,
    security: SecurityMetrics,
    topics: TopicMetrics,
    gateway: Option<domo_gateway::GatewayMetrics>,
}

/// Topics (`domo_topic_*`): copied from the topic core's figures by the topics task every
/// second and when it stops. No label takes a topic name, so publishers cannot grow the
/// label set.
#[derive(Debug, Clone)]
pub struct TopicMetrics {
    messages: IntCounterVec,
    dropped: IntCounterVec,
    refused_subscriptions: IntCounterVec,
    slow_disconnects: IntCounterVec,
    evicted: IntCounterVec,
    connections: IntGaugeVec,
    lagging: IntGaugeVec,
    topics: IntGaugeVec,
    retained_bytes: IntGaugeVec,
    queued: IntGaugeVec,
}

impl TopicMetrics {
    fn new(r: &Registry) -> Self {
        let m = Self {
            messages: counter(
                r,
                "domo_topic_messages_total",
                "Topic messages: published (received from publishers), delivered (queued for a subscriber, once per subscriber) and replayed (last values queued for a new subscription)",
                &["event"],
            ),
            dropped: counter(
                r,
                "domo_topic_dropped_total",
                "Topic messages dropped, by reason: slow_subscriber (pushed out of a full subscriber queue), subscriber_gone (still queued when the subscriber went), malformed (input that was neither a message nor a subscription)",
                &["reason"],
            ),
            refused_subscriptions: counter(
                r,
                "domo_topic_refused_subscriptions_total",
                "Subscriptions refused: the subscriber holds the most prefixes allowed",
                &[],
            ),
            slow_disconnects: counter(
                r,
                "domo_topic_slow_disconnects_total",
                "Subscribers disconnected for lagging longer than topics.slow_subscriber_timeout",
                &[],
            ),
            evicted: counter(
                r,
                "domo_topic_last_values_evicted_total",
                "Last values evicted to stay within topics.last_values_max_bytes",
                &[],
            ),
            connections: gauge(
                r,
                "domo_topic_connections",
                "Connections on the topic endpoints, by role (publisher, subscriber)",
                &["role"],
            ),
            lagging: gauge(
                r,
                "domo_topic_lagging_subscribers",
                "Subscribers that dropped messages and have not caught up to half their queue",
                &[],
            ),
            topics: gauge(
                r,
                "domo_topic_topics",
                "Topics by kind: created (topic.create, with a retention) or last_value (published without being created: the last message only)",
                &["kind"],
            ),
            retained_bytes: gauge(
                r,
                "domo_topic_retained_bytes",
                "Bytes of topic messages kept, by kind of topic (created: frames after the topic; last_value: whole messages)",
                &["kind"],
            ),
            queued: gauge(
                r,
                "domo_topic_queued",
                "Messages and bytes waiting in subscriber queues (unit: messages, bytes)",
                &["unit"],
            ),
        };
        m.update(&crate::core::topics::TopicStats::default(), 0);
        m
    }

    /// Copies the topic core's figures in; `publishers` is the count of connected ones.
    pub fn update(&self, s: &crate::core::topics::TopicStats, publishers: u64) {
        set_total(&self.messages, &["published"], s.published);
        set_total(&self.messages, &["delivered"], s.delivered);
        set_total(&self.messages, &["replayed"], s.replayed);
        set_total(&self.dropped, &["slow_subscriber"], s.dropped_slow);
        set_total(&self.dropped, &["subscriber_gone"], s.dropped_gone);
        set_total(&self.dropped, &["malformed"], s.malformed);
        set_total(&self.refused_subscriptions, &[], s.refused_subscriptions);
        set_total(&self.slow_disconnects, &[], s.slow_disconnects);
        set_total(&self.evicted, &[], s.evicted_last_values);
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.connections
            .with_label_values(&["publisher"])
            .set(g(publishers));
        self.connections
            .with_label_values(&["subscriber"])
            .set(g(s.subscribers));
        self.lagging
            .with_label_values::<&str>(&[])
            .set(g(s.lagging));
        self.topics
            .with_label_values(&["created"])
            .set(g(s.created_topics));
        self.topics
            .with_label_values(&["last_value"])
            .set(g(s.topics));
        self.retained_bytes
            .with_label_values(&["created"])
            .set(g(s.retained_bytes));
        self.retained_bytes
            .with_label_values(&["last_value"])
            .set(g(s.last_values_bytes));
        self.queued
            .with_label_values(&["messages"])
            .set(g(s.queued_messages));
        self.queued
            .with_label_values(&["bytes"])
            .set(g(s.queued_bytes));
    }
}

/// One service's per-request series, resolved from their vectors once.
#[derive(Debug)]
struct ServiceSeries {
    dispatched: IntCounter,
    queue_wait: Histogram,
    replies: IntCounter,
    duration: Histogram,
}

/// Security: handshakes by result (the router's counters) and requests and registrations
/// refused for lack of a right (the core's).
#[derive(Debug)]
struct SecurityMetrics {
    handshakes: IntCounterVec,
    refusals: IntCounterVec,
}

/// The results of `domo_handshakes_total`, all shown from the start.
const HANDSHAKE_RESULTS: [&str; 7] = [
    "ok",
    "wrong_key",
    "not_authorized",
    "malformed",
    "timeout",
    "rate_limited",
    "closed",
];

impl SecurityMetrics {
    fn new(r: &Registry) -> Self {
        let refusals = counter(
            r,
            "domo_security_refusals_total",
            "Client requests dropped (right=\"call\") and workers disconnected \
             (right=\"serve\") because their CURVE key's rights do not cover the service",
            &["right"],
        );
        for right in ["call", "serve"] {
            refusals.with_label_values(&[right]);
        }
        let handshakes = counter(
            r,
            "domo_handshakes_total",
            "ZMTP handshakes of the broker's endpoints by result: ok; with CURVE wrong_key (a \
             box did not open: the peer has another server key) and not_authorized (its key \
             is not in authorized_keys); malformed, timeout, rate_limited (too many recent \
             failures from its address), closed (by the peer)",
            &["result"],
        );
        for result in HANDSHAKE_RESULTS {
            handshakes.with_label_values(&[result]);
        }
        Self {
            handshakes,
            refusals,
        }
    }

    fn refresh(&self, s: &Stats, router: &domo_zmtp::Stats) {
        set_total(&self.refusals, &["call"], s.refusals.call);
        set_total(&self.refusals, &["serve"], s.refusals.serve);
        let h = &router.handshakes;
        let totals = [
            h.ok,
            h.wrong_key,
            h.not_authorized,
            h.malformed,
            h.timeout,
            h.rate_limited,
            h.closed,
        ];
        for (result, total) in HANDSHAKE_RESULTS.iter().zip(totals) {
            set_total(&self.handshakes, &[result], total);
        }
    }
}

/// Admission and flow control: paused clients, deferred requests, and the counters the core
/// keeps about requests that no per-service event carries.
#[derive(Debug)]
struct FlowMetrics {
    clients_paused: IntGauge,
    pauses: IntCounterVec,
    deferred: IntCounterVec,
    redispatched: IntCounterVec,
    no_worker: IntCounterVec,
    queued_bytes: IntGauge,
    requests_at_workers: IntGauge,
    services: IntGauge,
    receive_held: IntGauge,
    mmi_requests: IntCounterVec,
    disconnects_sent: IntCounterVec,
    ignored_after_disconnect: IntCounterVec,
}

impl FlowMetrics {
    #[allow(clippy::expect_used)]
    fn new(r: &Registry) -> Self {
        let plain_gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let pauses = counter(
            r,
            "domo_client_pauses_total",
            "Times a client was paused (not read from), by cause",
            &["cause"],
        );
        for cause in crate::core::PauseCause::ALL {
            pauses.with_label_values(&[cause.as_str()]);
        }
        Self {
            clients_paused: plain_gauge(
                "domo_clients_paused",
                "Clients the broker does not read from now (no room for their requests, at \
                 their own bound, or not reading their replies)",
            ),
            pauses,
            deferred: counter(
                r,
                "domo_requests_deferred_total",
                "Requests handed back to the transport for lack of room (taken again later)",
                &[],
            ),
            redispatched: counter(
                r,
                "domo_requests_redispatched_total",
                "Requests put back in their queue after losing their worker",
                &[],
            ),
            no_worker: counter(
                r,
                "domo_requests_no_worker_total",
                "Requests that arrived while their service had no worker (queued anyway)",
                &[],
            ),
            queued_bytes: plain_gauge(
                "domo_queued_bytes",
                "Body bytes of the requests waiting in all service queues",
            ),
            requests_at_workers: plain_gauge(
                "domo_requests_at_workers",
                "Requests held by workers now, all workers together (up to each worker's credit)",
            ),
            services: plain_gauge(
                "domo_services",
                "Services the broker knows now (with workers, queued requests, or both)",
            ),
            receive_held: plain_gauge(
                "domo_receive_held_bytes",
                "Bytes received from clients and not yet taken, held against the receive budget",
            ),
            mmi_requests: counter(
                r,
                "domo_mmi_requests_total",
                "mmi.* requests answered by the broker",
                &[],
            ),
            disconnects_sent: counter(
                r,
                "domo_disconnects_sent_total",
                "DISCONNECT commands sent to peers, by the rule that called for them",
                &["reason"],
            ),
            ignored_after_disconnect: counter(
                r,
                "domo_ignored_after_disconnect_total",
                "Messages ignored from peers the broker is silent towards (after a DISCONNECT)",
                &[],
            ),
        }
    }

    fn refresh(&self, s: &Stats, router: &domo_zmtp::Stats) {
        self.clients_paused.set(gauge_value(s.clients_paused));
        for cause in crate::core::PauseCause::ALL {
            set_total(&self.pauses, &[cause.as_str()], s.pauses.get(cause));
        }
        set_total(&self.deferred, &[], s.deferred);
        set_total(&self.redispatched, &[], s.requests.redispatched);
        set_total(&self.no_worker, &[], s.requests.no_worker);
        self.queued_bytes.set(gauge_value(s.queued_bytes));
        self.requests_at_workers
            .set(gauge_value(s.requests_at_workers));
        self.services.set(gauge_value(s.services));
        self.receive_held.set(gauge_value(router.recv_budget_used));
        set_total(&self.mmi_requests, &[], s.mmi_requests);
        let d = &s.disconnects_sent;
        for (reason, total) in [
            ("second_ready", d.second_ready),
            ("mmi_ready", d.mmi_ready),
            ("unknown_worker", d.unknown_worker),
            ("unexpected_reply", d.unexpected_reply),
            ("invalid_message", d.invalid_message),
            ("client_request", d.client_request),
            ("shutdown", d.shutdown),
            ("not_authorized", d.not_authorized),
        ] {
            set_total(&self.disconnects_sent, &[reason], total);
        }
        set_total(
            &self.ignored_after_disconnect,
            &[],
            s.ignored_after_disconnect,
        );
    }
}

/// The `domo_ha_*` series; all labelled, so a broker that is not one of a pair shows none.
#[derive(Debug)]
struct HaMetrics {
    state: IntGaugeVec,
    term: IntGaugeVec,
    peer_up: IntGaugeVec,
    transitions: IntCounterVec,
    conflicts: IntCounterVec,
    failovers: IntCounterVec,
    peer_messages: IntCounterVec,
    stalls: IntCounterVec,
}

impl HaMetrics {
    fn new(r: &Registry) -> Self {
        Self {
            state: gauge(
                r,
                "domo_ha_state",
                "Binary Star state: 1 primary (waiting), 2 backup (waiting), 3 active, 4 passive",
                &["role"],
            ),
            term: gauge(
                r,
                "domo_ha_term",
                "Binary Star term: raised by every takeover; the higher term wins a conflict",
                &["role"],
            ),
            peer_up: gauge(
                r,
                "domo_ha_peer_up",
                "1 while the peer's state arrives within the peer expiry (two heartbeats)",
                &["role"],
            ),
            transitions: counter(
                r,
                "domo_ha_transitions_total",
                "Binary Star state changes",
                &["from", "to"],
            ),
            conflicts: counter(
                r,
                "domo_ha_conflicts_total",
                "Binary Star conflicts detected (dual_active, dual_passive, same_role, loopback)",
                &["kind"],
            ),
            failovers: counter(
                r,
                "domo_ha_failovers_total",
                "Takeovers by client vote while the peer was silent",
                &["role"],
            ),
            peer_messages: counter(
                r,
                "domo_ha_peer_messages_total",
                "State messages from the peer, by outcome",
                &["outcome"],
            ),
            stalls: counter(
                r,
                "domo_ha_stalls_total",
                "Times this broker found it had sent no state for a peer expiry (frozen, stalled)",
                &["role"],
            ),
        }
    }

    fn refresh(&self, status: &HaStatus, stats: &HaStats) {
        let role = [status.role.as_str()];
        self.state
            .with_label_values(&role)
            .set(i64::from(status.state as u8));
        self.term
            .with_label_values(&role)
            .set(i64::try_from(status.term).unwrap_or(i64::MAX));
        self.peer_up
            .with_label_values(&role)
            .set(i64::from(status.peer_up));
        // The edges of the table always show (at 0 until taken), any other only if taken.
        const EDGES: [(State, State); 5] = [
            (State::Primary, State::Active),
            (State::Primary, State::Passive),
            (State::Backup, State::Passive),
            (State::Active, State::Passive),
            (State::Passive, State::Active),
        ];
        for from in State::ALL {
            for to in State::ALL {
                let n = stats.transitions[from.index()][to.index()];
                if n > 0 || EDGES.contains(&(from, to)) {
                    set_total(&self.transitions, &[from.as_str(), to.as_str()], n);
                }
            }
        }
        for (kind, n) in Conflict::ALL.iter().zip(stats.conflicts) {
            set_total(&self.conflicts, &[kind.as_str()], n);
        }
        set_total(&self.failovers, &role, stats.votes_won);
        set_total(&self.stalls, &role, stats.stalls);
        for (outcome, n) in [
            ("accepted", stats.peer_messages),
            ("malformed", stats.malformed),
            ("stale", stats.stale),
        ] {
            set_total(&self.peer_messages, &[outcome], n);
        }
    }
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(r: &Registry, name: &str, help: &str) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(BUCKETS.to_vec());
    let h = HistogramVec::new(opts, &["service"]).expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

/// Raises a counter to `total` (totals kept elsewhere only grow).
fn set_total(vec: &IntCounterVec, labels: &[&str], total: u64) {
    let c = vec.with_label_values(labels);
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

impl Metrics {
    /// Registers every metric; `max_services` caps the `service` label.
    ///
    /// # Panics
    /// Never in practice: metric names and labels are constants checked by the tests.
    #[allow(clippy::expect_used)]
    pub fn new(max_services: usize) -> Self {
        let r = Registry::new();
        let info = gauge(
            &r,
            "domo_build_info",
            "Build metadata (always 1)",
            &["version", "git_sha"],
        );
        info.with_label_values(&[env!("CARGO_PKG_VERSION"), crate::GIT_SHA])
            .set(1);
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("unique metric");
        let draining = IntGauge::new("domo_draining", "1 while the broker drains before exit")
            .expect("valid metric");
        r.register(Box::new(draining.clone()))
            .expect("unique metric");
        let titanic_store_bytes = IntGauge::new(
            "domo_titanic_store_bytes",
            "Size of the Titanic store file (its high-water mark)",
        )
        .expect("valid metric");
        r.register(Box::new(titanic_store_bytes.clone()))
            .expect("unique metric");
        let titanic_commit_duration = Histogram::with_opts(
            HistogramOpts::new(
                "domo_titanic_commit_duration_seconds",
                "Titanic group commits, write transaction to durable (fsync)",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0,
            ]),
        )
        .expect("valid metric");
        r.register(Box::new(titanic_commit_duration.clone()))
            .expect("unique metric");
        let titanic_commit_requests = Histogram::with_opts(
            HistogramOpts::new(
                "domo_titanic_commit_requests",
                "Writes per Titanic group commit (requests stored, replies, closes, expiries)",
            )
            .buckets(vec![
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ]),
        )
        .expect("valid metric");
        r.register(Box::new(titanic_commit_requests.clone()))
            .expect("unique metric");
        let titanic_store_reopens = IntCounter::new(
            "domo_titanic_store_reopens_total",
            "Times the Titanic store reopened itself after a failed write (disk full or failing)",
        )
        .expect("valid metric");
        r.register(Box::new(titanic_store_reopens.clone()))
            .expect("unique metric");
        let titanic_requests = gauge(
            &r,
            "domo_titanic_requests",
            "Requests stored by Titanic, by state (pending: no reply yet; done: not closed)",
            &["state"],
        );
        for state in ["pending", "done"] {
            titanic_requests.with_label_values(&[state]).set(0);
        }
        let topics = TopicMetrics::new(&r);
        // Registered always (zero until a gateway runs), so the series exist for dashboards.
        let gateway = domo_gateway::GatewayMetrics::register(&r).ok();
        Self {
            topics,
            gateway,
            titanic_commit_duration,
            titanic_commit_requests,
            titanic_store_reopens,
            titanic_requests,
            titanic_store_bytes,
            client_requests: counter(
                &r,
                "domo_client_requests_total",
                "Client requests by what first happened to them",
                &["service", "outcome"],
            ),
            replies: counter(
                &r,
                "domo_replies_total",
                "Worker replies routed to clients",
                &["service"],
            ),
            request_duration: histogram(
                &r,
                "domo_request_duration_seconds",
                "Broker receipt of a request to its reply being routed",
            ),
            queue_wait: histogram(
                &r,
                "domo_queue_wait_seconds",
                "Time a request waited for a free worker",
            ),
            queued: gauge(
                &r,
                "domo_queued_requests",
                "Requests waiting for a worker",
                &["service"],
            ),
            workers: gauge(
                &r,
                "domo_workers",
                "Registered workers",
                &["service", "state"],
            ),
            queued_service_bytes: gauge(
                &r,
                "domo_queued_service_bytes",
                "Body bytes of the requests waiting for a worker, by service",
                &["service"],
            ),
            credit: gauge(
                &r,
                "domo_worker_credit",
                "Requests the workers of a service may hold at once: held now (used) and not (free)",
                &["service", "state"],
            ),
            worker_disconnects: counter(
                &r,
                "domo_worker_disconnects_total",
                "Workers removed, by reason",
                &["reason"],
            ),
            protocol_errors: counter(
                &r,
                "domo_protocol_errors_total",
                "Malformed MDP messages dropped, by sender",
                &["peer"],
            ),
            dropped: counter(
                &r,
                "domo_dropped_requests_total",
                "Requests and replies dropped, by reason",
                &["reason"],
            ),
            dropped_replies: counter(
                &r,
                "domo_dropped_replies_total",
                "Worker replies dropped because their token names no request the worker holds",
                &["reason"],
            ),
            connections: gauge(&r, "domo_connections", "Connected peers", &["socket"]),
            transport: counter(
                &r,
                "domo_transport_events_total",
                "Connection-level events of the ZMTP socket",
                &["event"],
            ),
            draining,
            ha: HaMetrics::new(&r),
            flow: FlowMetrics::new(&r),
            security: SecurityMetrics::new(&r),
            registry: r,
            labelled: HashSet::new(),
            handles: foldhash::HashMap::default(),
            other: None,
            max_services,
        }
    }

    /// The per-request series of `service` (its own label or `other`).
    fn series(&mut self, service: &ServiceName) -> &ServiceSeries {
        let make = |label: &str, m: &Self| ServiceSeries {
            dispatched: m.client_requests.with_label_values(&[label, "dispatched"]),
            queue_wait: m.queue_wait.with_label_values(&[label]),
            replies: m.replies.with_label_values(&[label]),
            duration: m.request_duration.with_label_values(&[label]),
        };
        if self.labelled.contains(service) {
            if !self.handles.contains_key(service) {
                let series = make(&service.to_string(), self);
                self.handles.insert(service.clone(), series);
            }
            &self.handles[service]
        } else {
            let other = match self.other.take() {
                Some(series) => series,
                None => make(OTHER, self),
            };
            self.other.insert(other)
        }
    }

    fn label(&self, service: &ServiceName) -> String {
        if self.labelled.contains(service) {
            service.to_string()
        } else {
            OTHER.to_string()
        }
    }

    /// Records one core event.
    pub fn on_event(&mut self, event: Event) {
        match event {
            Event::WorkerRegistered { service } => {
                if self.labelled.len() < self.max_services {
                    self.labelled.insert(service);
                }
            }
            Event::Dispatched {
                service,
                queue_wait,
            } => {
                let series = self.series(&service);
                series.dispatched.inc();
                series.queue_wait.observe(secs(queue_wait));
            }
            Event::Replied { service, duration } => {
                let series = self.series(&service);
                series.replies.inc();
                series.duration.observe(secs(duration));
            }
            Event::Dropped { service, reason } => {
                use crate::core::DropReason::{
                    ClientGone, Expired, NotActive, Shutdown, UnknownService,
                };
                if matches!(
                    reason,
                    Expired | UnknownService | Shutdown | NotActive | ClientGone
                ) {
                    let label = self.label(&service);
                    self.client_requests
                        .with_label_values(&[&label, reason.as_str()])
                        .inc();
                }
            }
        }
    }

    /// Copies totals and current gauges in, before a scrape.
    pub fn refresh(&self, snapshot: &Snapshot) {
        let s = &snapshot.core;
        let d = &s.worker_departures;
        for (reason, total) in [
            ("expired", d.expired),
            ("disconnect", d.disconnect),
            ("connection_closed", d.connection_closed),
            ("protocol_error", d.protocol_error),
            ("shutdown", d.shutdown),
        ] {
            set_total(&self.worker_disconnects, &[reason], total);
        }
        set_total(&self.protocol_errors, &["client"], s.protocol_errors.client);
        set_total(&self.protocol_errors, &["worker"], s.protocol_errors.worker);
        let r = &s.requests.dropped;
        for (reason, total) in [
            ("expired", r.expired),
            ("redispatch_limit", r.redispatch_limit),
            ("worker_lost", r.worker_lost),
            ("client_silenced", r.client_silenced),
            ("shutdown", r.shutdown),
            ("not_active", r.not_active),
            (
                "client_gone",
                r.client_gone + s.replies_to_gone_clients + snapshot.shell.replies_to_gone_clients,
            ),
            ("worker_gone", snapshot.shell.worker_commands_dropped),
        ] {
            set_total(&self.dropped, &[reason], total);
        }
        let r = &s.dropped_replies;
        for (reason, total) in [
            ("stale_token", r.stale_token),
            ("unknown_token", r.unknown_token),
        ] {
            set_total(&self.dropped_replies, &[reason], total);
        }
        let t = &snapshot.router;
        for (event, total) in [
            ("accepted", t.accepted),
            ("handshake_failure", t.handshake_failures),
            ("protocol_error", t.protocol_errors),
            ("oversized", t.oversized),
            ("identity_rejected", t.identity_rejected),
            ("malformed_credit", snapshot.shell.malformed_credit),
        ] {
            set_total(&self.transport, &[event], total);
        }
        self.connections
            .with_label_values(&["router"])
            .set(gauge_value(t.peers));
        self.draining.set(i64::from(snapshot.draining));
        self.flow.refresh(s, t);
        self.security.refresh(s, t);
        if let Some((status, stats)) = &snapshot.ha {
            self.ha.refresh(status, stats);
        }
        self.queued.reset();
        self.queued_service_bytes.reset();
        self.workers.reset();
        self.credit.reset();
        for s in &snapshot.services {
            let label = self.label(&s.name);
            self.queued
                .with_label_values(&[&label])
                .add(gauge_value(s.queued));
            self.queued_service_bytes
                .with_label_values(&[&label])
                .add(gauge_value(s.queued_bytes));
            self.workers
                .with_label_values(&[&label, "idle"])
                .add(gauge_value(s.idle));
            self.workers
                .with_label_values(&[&label, "busy"])
                .add(gauge_value(s.busy));
            let used = i64::try_from(s.credit_used).unwrap_or(i64::MAX);
            let total = i64::try_from(s.credit).unwrap_or(i64::MAX);
            self.credit.with_label_values(&[&label, "used"]).add(used);
            self.credit
                .with_label_values(&[&label, "free"])
                .add(total.saturating_sub(used));
        }
    }

    /// Records the Titanic store's figures: requests by state and the file size.
    pub fn set_titanic(&self, pending: u64, done: u64, file_bytes: u64) {
        self.titanic_requests
            .with_label_values(&["pending"])
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.titanic_requests
            .with_label_values(&["done"])
            .set(i64::try_from(done).unwrap_or(i64::MAX));
        self.titanic_store_bytes
            .set(i64::try_from(file_bytes).unwrap_or(i64::MAX));
    }

    /// The Titanic commit latency histogram; a handle any thread can observe into.
    pub fn titanic_commit_duration(&self) -> Histogram {
        self.titanic_commit_duration.clone()
    }

    /// The histogram of writes per Titanic group commit, for the store's commit observer.
    pub fn titanic_commit_requests(&self) -> Histogram {
        self.titanic_commit_requests.clone()
    }

    /// The counter of Titanic store reopens; a handle any thread can increment.
    pub fn titanic_store_reopens(&self) -> IntCounter {
        self.titanic_store_reopens.clone()
    }

    /// The `domo_topic_*` series; a handle the topics task updates.
    pub fn topics(&self) -> TopicMetrics {
        self.topics.clone()
    }

    /// The embedded gateway's series (`domo_gateway_*`).
    pub fn gateway(&self) -> Option<domo_gateway::GatewayMetrics> {
        self.gateway.clone()
    }

    /// The registry (for the overview's readings).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Counters kept by the shell (the core keeps its own, see [`crate::core::Broker::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShellStats {
    /// Replies dropped because their client had disconnected.
    pub replies_to_gone_clients: u64,
    /// Worker commands dropped because the worker had disconnected or its queue was full.
    pub worker_commands_dropped: u64,
    /// Peers whose `X-Domo-Credit` handshake property was not a number in `1..=1024` (they
    /// get credit 1).
    pub malformed_credit: u64,
}

/// What the shell copies out for a scrape.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The core's counters and gauges.
    pub core: Stats,
    /// The shell's counters.
    pub shell: ShellStats,
    /// The socket's counters.
    pub router: domo_zmtp::Stats,
    /// Per-service gauges.
    pub services: Vec<crate::core::ServiceGauges>,
    /// Whether a drain is in progress.
    pub draining: bool,
    /// The pair's state and counters, when the broker is one of a pair.
    pub ha: Option<(HaStatus, HaStats)>,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::DropReason;

    /// How each figure of the core's [`Stats`] reaches `/metrics`: the field (as its path in
    /// the `Debug` output), the sample it must show, and how to set it. Every field must be
    /// here or in [`INTERNAL`], so a counter added to the core cannot silently go unexported.
    type Setter = fn(&mut Stats, u64);
    #[allow(clippy::type_complexity)]
    const EXPORTED: &[(&str, &str, Setter)] = &[
        (
            "requests.no_worker",
            "domo_requests_no_worker_total",
            |s, v| s.requests.no_worker = v,
        ),
        (
            "requests.redispatched",
            "domo_requests_redispatched_total",
            |s, v| s.requests.redispatched = v,
        ),
        (
            "requests.dropped.expired",
            "domo_dropped_requests_total{reason=\"expired\"}",
            |s, v| s.requests.dropped.expired = v,
        ),
        (
            "requests.dropped.redispatch_limit",
            "domo_dropped_requests_total{reason=\"redispatch_limit\"}",
            |s, v| s.requests.dropped.redispatch_limit = v,
        ),
        (
            "requests.dropped.worker_lost",
            "domo_dropped_requests_total{reason=\"worker_lost\"}",
            |s, v| s.requests.dropped.worker_lost = v,
        ),
        (
            "requests.dropped.client_silenced",
            "domo_dropped_requests_total{reason=\"client_silenced\"}",
            |s, v| s.requests.dropped.client_silenced = v,
        ),
        (
            "requests.dropped.shutdown",
            "domo_dropped_requests_total{reason=\"shutdown\"}",
            |s, v| s.requests.dropped.shutdown = v,
        ),
        (
            "requests.dropped.not_active",
            "domo_dropped_requests_total{reason=\"not_active\"}",
            |s, v| s.requests.dropped.not_active = v,
        ),
        (
            "requests.dropped.client_gone",
            "domo_dropped_requests_total{reason=\"client_gone\"}",
            |s, v| s.requests.dropped.client_gone = v,
        ),
        ("mmi_requests", "domo_mmi_requests_total", |s, v| {
            s.mmi_requests = v
        }),
        (
            "protocol_errors.client",
            "domo_protocol_errors_total{peer=\"client\"}",
            |s, v| s.protocol_errors.client = v,
        ),
        (
            "protocol_errors.worker",
            "domo_protocol_errors_total{peer=\"worker\"}",
            |s, v| s.protocol_errors.worker = v,
        ),
        (
            "disconnects_sent.second_ready",
            "domo_disconnects_sent_total{reason=\"second_ready\"}",
            |s, v| s.disconnects_sent.second_ready = v,
        ),
        (
            "disconnects_sent.mmi_ready",
            "domo_disconnects_sent_total{reason=\"mmi_ready\"}",
            |s, v| s.disconnects_sent.mmi_ready = v,
        ),
        (
            "disconnects_sent.unknown_worker",
            "domo_disconnects_sent_total{reason=\"unknown_worker\"}",
            |s, v| s.disconnects_sent.unknown_worker = v,
        ),
        (
            "disconnects_sent.unexpected_reply",
            "domo_disconnects_sent_total{reason=\"unexpected_reply\"}",
            |s, v| s.disconnects_sent.unexpected_reply = v,
        ),
        (
            "disconnects_sent.invalid_message",
            "domo_disconnects_sent_total{reason=\"invalid_message\"}",
            |s, v| s.disconnects_sent.invalid_message = v,
        ),
        (
            "disconnects_sent.client_request",
            "domo_disconnects_sent_total{reason=\"client_request\"}",
            |s, v| s.disconnects_sent.client_request = v,
        ),
        (
            "disconnects_sent.shutdown",
            "domo_disconnects_sent_total{reason=\"shutdown\"}",
            |s, v| s.disconnects_sent.shutdown = v,
        ),
        (
            "worker_departures.disconnect",
            "domo_worker_disconnects_total{reason=\"disconnect\"}",
            |s, v| s.worker_departures.disconnect = v,
        ),
        (
            "worker_departures.connection_closed",
            "domo_worker_disconnects_total{reason=\"connection_closed\"}",
            |s, v| s.worker_departures.connection_closed = v,
        ),
        (
            "worker_departures.expired",
            "domo_worker_disconnects_total{reason=\"expired\"}",
            |s, v| s.worker_departures.expired = v,
        ),
        (
            "worker_departures.protocol_error",
            "domo_worker_disconnects_total{reason=\"protocol_error\"}",
            |s, v| s.worker_departures.protocol_error = v,
        ),
        (
            "worker_departures.shutdown",
            "domo_worker_disconnects_total{reason=\"shutdown\"}",
            |s, v| s.worker_departures.shutdown = v,
        ),
        (
            "ignored_after_disconnect",
            "domo_ignored_after_disconnect_total",
            |s, v| s.ignored_after_disconnect = v,
        ),
        ("queued_bytes", "domo_queued_bytes", |s, v| {
            s.queued_bytes = v as usize
        }),
        ("services", "domo_services", |s, v| s.services = v as usize),
        ("requests_at_workers", "domo_requests_at_workers", |s, v| {
            s.requests_at_workers = v as usize
        }),
        ("clients_paused", "domo_clients_paused", |s, v| {
            s.clients_paused = v as usize
        }),
        (
            "pauses.client_limit",
            "domo_client_pauses_total{cause=\"client_limit\"}",
            |s, v| s.pauses.client_limit = v,
        ),
        (
            "pauses.service_full",
            "domo_client_pauses_total{cause=\"service_full\"}",
            |s, v| s.pauses.service_full = v,
        ),
        (
            "pauses.total_full",
            "domo_client_pauses_total{cause=\"total_full\"}",
            |s, v| s.pauses.total_full = v,
        ),
        (
            "pauses.reply_backlog",
            "domo_client_pauses_total{cause=\"reply_backlog\"}",
            |s, v| s.pauses.reply_backlog = v,
        ),
        ("deferred", "domo_requests_deferred_total", |s, v| {
            s.deferred = v
        }),
        (
            "replies_to_gone_clients",
            "domo_dropped_requests_total{reason=\"client_gone\"}",
            |s, v| s.replies_to_gone_clients = v,
        ),
        (
            "dropped_replies.stale_token",
            "domo_dropped_replies_total{reason=\"stale_token\"}",
            |s, v| s.dropped_replies.stale_token = v,
        ),
        (
            "dropped_replies.unknown_token",
            "domo_dropped_replies_total{reason=\"unknown_token\"}",
            |s, v| s.dropped_replies.unknown_token = v,
        ),
        (
            "disconnects_sent.not_authorized",
            "domo_disconnects_sent_total{reason=\"not_authorized\"}",
            |s, v| s.disconnects_sent.not_authorized = v,
        ),
        (
            "refusals.call",
            "domo_security_refusals_total{right=\"call\"}",
            |s, v| s.refusals.call = v,
        ),
        (
            "refusals.serve",
            "domo_security_refusals_total{right=\"serve\"}",
            |s, v| s.refusals.serve = v,
        ),
    ];

    /// Figures of [`Stats`] that are not exported as such, and why.
    const INTERNAL: &[(&str, &str)] = &[
        (
            "requests.received",
            "the sum of the outcomes in domo_client_requests_total",
        ),
        (
            "requests.dispatched",
            "per service from events: domo_client_requests_total",
        ),
        (
            "requests.replied",
            "per service from events: domo_replies_total",
        ),
        ("workers_idle", "per service: domo_workers{state=\"idle\"}"),
        ("workers_busy", "per service: domo_workers{state=\"busy\"}"),
        ("queued_requests", "per service: domo_queued_requests"),
    ];

    /// The field paths of a `Debug` rendering such as `A { b: 1, c: C { d: 2 } }`.
    fn field_paths(debug: &str) -> Vec<String> {
        let mut paths = Vec::new();
        let mut stack: Vec<String> = Vec::new();
        let mut word = String::new();
        let mut pending: Option<String> = None;
        for ch in debug.chars() {
            match ch {
                '{' => {
                    if let Some(name) = pending.take() {
                        stack.push(name);
                    } else {
                        stack.push(String::new());
                    }
                    word.clear();
                }
                ':' => {
                    pending = Some(word.trim().to_string());
                    word.clear();
                }
                ',' | '}' => {
                    if let Some(name) = pending.take() {
                        let mut path: Vec<&str> = stack
                            .iter()
                            .filter(|s| !s.is_empty())
                            .map(String::as_str)
                            .collect();
                        path.push(&name);
                        paths.push(path.join("."));
                    }
                    if ch == '}' {
                        stack.pop();
                    }
                    word.clear();
                }
                _ => word.push(ch),
            }
        }
        paths
    }

    #[test]
    fn every_figure_the_core_keeps_is_exported_or_deliberately_internal() {
        let fields = field_paths(&format!("{:?}", Stats::default()));
        assert!(fields.len() > 30, "parsed {fields:?}");
        let known: Vec<&str> = EXPORTED
            .iter()
            .map(|(f, ..)| *f)
            .chain(INTERNAL.iter().map(|(f, _)| *f))
            .collect();
        for field in &fields {
            assert!(
                known.contains(&field.as_str()),
                "Stats.{field} is neither exported nor listed as internal"
            );
        }
        for field in &known {
            assert!(fields.iter().any(|f| f == field), "{field} is not in Stats");
        }
    }

    #[test]
    fn every_exported_figure_shows_its_own_value() {
        for (i, (field, series, set)) in EXPORTED.iter().enumerate() {
            let m = Metrics::new(10);
            let mut core = Stats::default();
            let value = 1000 + i as u64;
            set(&mut core, value);
            m.refresh(&Snapshot {
                core,
                ..Snapshot::default()
            });
            let text = m.render();
            let line = text
                .lines()
                .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
                .unwrap_or_else(|| panic!("{series} missing for {field}"));
            assert_eq!(line, format!("{series} {value}"), "{field}");
        }
    }

    fn svc(name: &str) -> ServiceName {
        ServiceName::try_from(name).unwrap()
    }

    #[test]
    fn service_label_only_for_services_with_workers_and_capped() {
        let mut m = Metrics::new(1);
        m.on_event(Event::WorkerRegistered {
            service: svc("echo"),
        });
        m.on_event(Event::WorkerRegistered {
            service: svc("late"),
        });
        for name in ["echo", "late", "typo"] {
            m.on_event(Event::Replied {
                service: svc(name),
                duration: Duration::from_millis(3),
            });
        }
        m.on_event(Event::Dropped {
            service: svc("typo"),
            reason: DropReason::UnknownService,
        });
        let text = m.render();
        assert!(
            text.contains("domo_replies_total{service=\"echo\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("domo_replies_total{service=\"_other\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "domo_client_requests_total{outcome=\"unknown_service\",service=\"_other\"} 1"
        ));
        assert!(!text.contains("typo"));
        assert!(
            text.contains("domo_request_duration_seconds_bucket{service=\"echo\",le=\"0.005\"} 1")
        );
        assert!(text.contains("domo_build_info{git_sha="));
    }

    #[test]
    fn dashboard_and_deploy_readme_name_only_metrics_that_exist() {
        let mut m = Metrics::new(10);
        let echo = svc("echo");
        m.on_event(Event::WorkerRegistered {
            service: echo.clone(),
        });
        m.on_event(Event::Dispatched {
            service: echo.clone(),
            queue_wait: Duration::ZERO,
        });
        m.on_event(Event::Replied {
            service: echo.clone(),
            duration: Duration::ZERO,
        });
        let ha = crate::core::ha::Ha::new(
            crate::core::ha::HaConfig::new(crate::core::ha::Role::Backup),
            1,
            std::time::Instant::now(),
        );
        m.refresh(&Snapshot {
            services: vec![crate::core::ServiceGauges {
                name: echo,
                queued: 0,
                queued_bytes: 0,
                idle: 1,
                busy: 0,
                credit: 1,
                credit_used: 0,
            }],
            ha: Some((ha.status(), ha.stats().clone())),
            ..Snapshot::default()
        });
        let text = m.render();
        for line in [
            "domo_ha_state{role=\"backup\"} 2",
            "domo_ha_peer_up{role=\"backup\"} 0",
            "domo_ha_conflicts_total{kind=\"dual_active\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        for (file, doc) in [
            (
                "grafana-dashboard.json",
                include_str!("../../deploy/grafana-dashboard.json"),
            ),
            ("README.md", include_str!("../../deploy/README.md")),
        ] {
            let mut names = 0;
            for (i, _) in doc.match_indices("domo_") {
                let name: String = doc[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .fold(name.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
                if base == "domo_" || base == "domo_broker" {
                    continue; // `domo_*` in prose; the job and dashboard names
                }
                names += 1;
                assert!(text.contains(&format!("# TYPE {base} ")), "{file}: {name}");
            }
            assert!(names > 10, "{file}");
        }
    }

    #[test]
    fn refresh_sets_gauges_and_totals() {
        let mut m = Metrics::new(10);
        m.on_event(Event::WorkerRegistered {
            service: svc("echo"),
        });
        let mut snapshot = Snapshot {
            services: vec![crate::core::ServiceGauges {
                name: svc("echo"),
                queued: 4,
                queued_bytes: 40,
                idle: 1,
                busy: 2,
                credit: 34,
                credit_used: 3,
            }],
            draining: true,
            ..Snapshot::default()
        };
        snapshot.core.worker_departures.expired = 3;
        snapshot.router.peers = 7;
        snapshot.router.handshakes.not_authorized = 2;
        snapshot.router.handshakes.ok = 9;
        m.refresh(&snapshot);
        m.refresh(&snapshot);
        let text = m.render();
        for line in [
            "domo_queued_requests{service=\"echo\"} 4",
            "domo_workers{service=\"echo\",state=\"busy\"} 2",
            "domo_queued_service_bytes{service=\"echo\"} 40",
            "domo_worker_credit{service=\"echo\",state=\"used\"} 3",
            "domo_worker_credit{service=\"echo\",state=\"free\"} 31",
            "domo_worker_disconnects_total{reason=\"expired\"} 3",
            "domo_connections{socket=\"router\"} 7",
            "domo_draining 1",
            "domo_handshakes_total{result=\"ok\"} 9",
            "domo_handshakes_total{result=\"not_authorized\"} 2",
            "domo_handshakes_total{result=\"rate_limited\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
    }
}
