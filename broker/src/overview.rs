//! The broker at a glance: `GET /api/overview` (JSON, versioned) on the metrics listener, what
//! the dashboard page (`GET /`) and `domo top` show.
//!
//! Not a second path through the core: a reading is taken from the metrics registry right
//! after the loop copied its figures in (the scrape of `/metrics`). Rates and quantiles are over
//! the interval since the previous reading; readings are taken on demand, at most about once a
//! second however many watchers poll, and the last [`HISTORY`] rates are kept for sparklines.
//! Nothing here reads or shows a message body.
//!
//! # Fields (version 1)
//!
//! Field names are stable within a version; a new version is a new `version` number. Rates are
//! per second over `interval_seconds`; `null` where unknown (the first reading, a part that is
//! off).
//!
//! - `version` (1), `broker` (`version`, `draining`), `interval_seconds`
//! - `services[]`, busiest first: `name`, `workers_idle`, `workers_busy`, `queued`,
//!   `queued_bytes`, `credit_used` and `credit_total` (requests the workers hold, and may hold
//!   at once),
//!   `requests_per_second` (requests taken by the broker: dispatched, expired, dropped),
//!   `replies_per_second`, `queue_wait_p50_ms`, `queue_wait_p99_ms` (over the interval),
//!   `expired_total`, `history` (the last requests-per-second rates, oldest first). Services
//!   beyond `[metrics] max_services` are summed as `other`.
//! - `requests`: `per_second`, `replies_per_second`, `queued`, `queued_bytes`, `dropped`
//!   (totals by reason), `dropped_per_second`, `history`
//! - `connections`: `peers` (connected ZMTP peers), `workers` (registered), `clients_paused`,
//!   `pauses` (totals by cause)
//! - `pair`: `null`, or `role`, `state`, `term`, `peer_up`, `failovers`
//! - `titanic`: `null`, or `pending`, `done`, `store_bytes`, `commits_per_second`, `error`
//!   (why the store is not ready, else `null`)
//! - `topics`: `null`, or `publishers`, `subscribers`, `lagging_subscribers`,
//!   `messages_in_per_second`, `messages_out_per_second`, `dropped_total`, `history_in`,
//!   `history_out`
//! - `gateway`: `null` (no request yet), or `requests_per_second`, `by_status` (rates by HTTP
//!   status), `history`

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use prometheus::proto::MetricFamily;
use serde::Serialize;

/// The schema's version.
pub const VERSION: u32 = 1;

/// Rates kept per series for sparklines.
pub const HISTORY: usize = 60;

/// A reading younger than this is served again rather than taken anew.
pub const MIN_INTERVAL: Duration = Duration::from_millis(900);

/// What the registry does not know, given with each reading.
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Titanic runs in this broker.
    pub titanic: bool,
    /// Why the Titanic store is not ready, if it is not.
    pub titanic_error: Option<String>,
    /// Topics run in this broker.
    pub topics: bool,
}

/// One service's figures at one moment.
#[derive(Debug, Clone, Default)]
struct ServiceReading {
    idle: f64,
    busy: f64,
    queued: f64,
    queued_bytes: f64,
    credit_used: f64,
    credit_free: f64,
    /// Requests by outcome (dispatched, expired...), summed.
    requests: f64,
    expired: f64,
    replies: f64,
    /// Queue wait histogram: cumulative counts by upper bound.
    wait: Vec<(f64, f64)>,
}

/// The registry's figures at one moment.
#[derive(Debug, Clone)]
struct Reading {
    at: Instant,
    services: BTreeMap<String, ServiceReading>,
    dropped: BTreeMap<String, f64>,
    pauses: BTreeMap<String, f64>,
    clients_paused: f64,
    peers: f64,
    queued_bytes: f64,
    draining: bool,
    ha: Option<PairView>,
    titanic_pending: f64,
    titanic_done: f64,
    titanic_bytes: f64,
    titanic_commits: f64,
    topic_publishers: f64,
    topic_subscribers: f64,
    topic_lagging: f64,
    topic_in: f64,
    topic_out: f64,
    topic_dropped: f64,
    gateway: BTreeMap<String, f64>,
}

/// The overview, as served.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// [`VERSION`].
    pub version: u32,
    /// This broker.
    pub broker: BrokerView,
    /// Seconds between the two readings the rates are over; `null` on the first.
    pub interval_seconds: Option<f64>,
    /// Services, busiest first.
    pub services: Vec<ServiceView>,
    /// All requests.
    pub requests: RequestsView,
    /// Peers.
    pub connections: ConnectionsView,
    /// The Binary Star pair, if this broker is one of one.
    pub pair: Option<PairView>,
    /// Titanic, if it runs here.
    pub titanic: Option<TitanicView>,
    /// Topics, if they run here.
    pub topics: Option<TopicsView>,
    /// The HTTP gateway, once it served a request.
    pub gateway: Option<GatewayView>,
}

/// `broker`.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerView {
    /// The broker's version.
    pub version: &'static str,
    /// Whether it is draining before exit.
    pub draining: bool,
}

/// One entry of `services`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceView {
    /// Its name (`other` for services past the label cap).
    pub name: String,
    /// Workers holding no request.
    pub workers_idle: u64,
    /// Workers holding at least one.
    pub workers_busy: u64,
    /// Requests waiting for a worker.
    pub queued: u64,
    /// Their body bytes.
    pub queued_bytes: u64,
    /// Requests the workers hold now.
    pub credit_used: u64,
    /// Requests they may hold at once, all together (1 per RFC 7 worker).
    pub credit_total: u64,
    /// Requests taken per second.
    pub requests_per_second: Option<f64>,
    /// Replies routed per second.
    pub replies_per_second: Option<f64>,
    /// Median queue wait over the interval, in milliseconds.
    pub queue_wait_p50_ms: Option<f64>,
    /// 99th percentile queue wait over the interval, in milliseconds.
    pub queue_wait_p99_ms: Option<f64>,
    /// Requests that expired waiting, since start.
    pub expired_total: u64,
    /// The last requests-per-second rates, oldest first.
    pub history: Vec<f64>,
}

/// `requests`.
#[derive(Debug, Clone, Serialize)]
pub struct RequestsView {
    /// Requests taken per second, all services.
    pub per_second: Option<f64>,
    /// Replies routed per second.
    pub replies_per_second: Option<f64>,
    /// Requests queued, all services.
    pub queued: u64,
    /// Their bytes.
    pub queued_bytes: u64,
    /// Requests dropped since start, by reason.
    pub dropped: BTreeMap<String, u64>,
    /// Drops per second, all reasons.
    pub dropped_per_second: Option<f64>,
    /// The last requests-per-second rates.
    pub history: Vec<f64>,
}

/// `connections`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionsView {
    /// Connected ZMTP peers (clients and workers).
    pub peers: u64,
    /// Registered workers, all services (those the broker serves in process included).
    pub workers: u64,
    /// Clients not read from now.
    pub clients_paused: u64,
    /// Pauses since start, by cause.
    pub pauses: BTreeMap<String, u64>,
}

/// `pair`.
#[derive(Debug, Clone, Serialize)]
pub struct PairView {
    /// `primary` or `backup`.
    pub role: String,
    /// `primary`, `backup`, `active` or `passive`.
    pub state: String,
    /// The term (grows with each takeover).
    pub term: u64,
    /// Whether the peer's state messages arrive.
    pub peer_up: bool,
    /// Takeovers by this broker since start.
    pub failovers: u64,
}

/// `titanic`.
#[derive(Debug, Clone, Serialize)]
pub struct TitanicView {
    /// Requests without a reply yet.
    pub pending: u64,
    /// Replies not yet closed.
    pub done: u64,
    /// The store file's size.
    pub store_bytes: u64,
    /// Group commits per second.
    pub commits_per_second: Option<f64>,
    /// Why the store is not ready, if it is not.
    pub error: Option<String>,
}

/// `topics`.
#[derive(Debug, Clone, Serialize)]
pub struct TopicsView {
    /// PUB connections.
    pub publishers: u64,
    /// SUB connections.
    pub subscribers: u64,
    /// Subscribers dropping messages now.
    pub lagging_subscribers: u64,
    /// Messages published per second.
    pub messages_in_per_second: Option<f64>,
    /// Messages delivered per second (all subscribers).
    pub messages_out_per_second: Option<f64>,
    /// Messages dropped since start.
    pub dropped_total: u64,
    /// The last in rates.
    pub history_in: Vec<f64>,
    /// The last out rates.
    pub history_out: Vec<f64>,
}

/// `gateway`.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayView {
    /// HTTP requests answered per second.
    pub requests_per_second: Option<f64>,
    /// The same by status code.
    pub by_status: BTreeMap<String, f64>,
    /// The last rates.
    pub history: Vec<f64>,
}

/// Takes readings and keeps what the overview needs from the previous ones.
#[derive(Debug, Default)]
pub struct Sampler {
    last: Option<Reading>,
    overview: Option<Overview>,
    history: HashMap<String, VecDeque<f64>>,
}

impl Sampler {
    /// Whether the overview served last is too old to serve again.
    pub fn stale(&self, now: Instant) -> bool {
        self.last
            .as_ref()
            .is_none_or(|r| now.saturating_duration_since(r.at) >= MIN_INTERVAL)
    }

    /// The overview served last, if any.
    pub fn current(&self) -> Option<&Overview> {
        self.overview.as_ref()
    }

    /// Takes a reading from `families` (the registry just refreshed) at `now`; the overview
    /// of it against the previous one.
    pub fn take(&mut self, families: &[MetricFamily], extras: &Extras, now: Instant) -> &Overview {
        let reading = read(families, now);
        let prev = self.last.take();
        let overview = self.compare(prev.as_ref(), &reading, extras);
        self.last = Some(reading);
        self.overview.insert(overview)
    }

    /// Appends `value` to the history of `key` and returns it.
    fn push(&mut self, key: &str, value: Option<f64>) -> Vec<f64> {
        let h = self.history.entry(key.to_string()).or_default();
        if let Some(v) = value {
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(v);
        }
        h.iter().copied().collect()
    }

    fn compare(&mut self, prev: Option<&Reading>, now: &Reading, extras: &Extras) -> Overview {
        let secs = prev.map(|p| now.at.saturating_duration_since(p.at).as_secs_f64());
        let secs = secs.filter(|s| *s > 0.0);
        let rate = |before: Option<f64>, after: f64| -> Option<f64> {
            let (b, s) = (before?, secs?);
            Some(((after - b).max(0.0) / s * 10.0).round() / 10.0)
        };
        let mut services = Vec::with_capacity(now.services.len());
        for (name, s) in &now.services {
            let before = prev.and_then(|p| p.services.get(name));
            let requests_per_second =
                rate(before.map(|b| b.requests).or(secs.map(|_| 0.0)), s.requests);
            let replies_per_second =
                rate(before.map(|b| b.replies).or(secs.map(|_| 0.0)), s.replies);
            let empty = Vec::new();
            let wait_before = before.map_or(&empty, |b| &b.wait);
            services.push(ServiceView {
                name: name.clone(),
                workers_idle: count(s.idle),
                workers_busy: count(s.busy),
                queued: count(s.queued),
                queued_bytes: count(s.queued_bytes),
                credit_used: count(s.credit_used),
                credit_total: count(s.credit_used + s.credit_free),
                requests_per_second,
                replies_per_second,
                queue_wait_p50_ms: quantile(wait_before, &s.wait, 0.5).map(ms),
                queue_wait_p99_ms: quantile(wait_before, &s.wait, 0.99).map(ms),
                expired_total: count(s.expired),
                history: self.push(&format!("service:{name}"), requests_per_second),
            });
        }
        // Forget the history of services gone.
        self.history.retain(|k, _| {
            k.strip_prefix("service:")
                .is_none_or(|name| now.services.contains_key(name))
        });
        services.sort_by(|a, b| {
            let busy = |s: &ServiceView| s.requests_per_second.unwrap_or(0.0);
            busy(b)
                .total_cmp(&busy(a))
                .then((b.workers_busy + b.queued).cmp(&(a.workers_busy + a.queued)))
                .then(a.name.cmp(&b.name))
        });
        let total =
            |r: &Reading, f: fn(&ServiceReading) -> f64| r.services.values().map(f).sum::<f64>();
        let per_second = rate(
            prev.map(|p| total(p, |s| s.requests)),
            total(now, |s| s.requests),
        );
        let dropped_sum = |r: &Reading| r.dropped.values().sum::<f64>();
        let requests = RequestsView {
            per_second,
            replies_per_second: rate(
                prev.map(|p| total(p, |s| s.replies)),
                total(now, |s| s.replies),
            ),
            queued: count(total(now, |s| s.queued)),
            queued_bytes: count(now.queued_bytes),
            dropped: now
                .dropped
                .iter()
                .map(|(k, v)| (k.clone(), count(*v)))
                .collect(),
            dropped_per_second: rate(prev.map(dropped_sum), dropped_sum(now)),
            history: self.push("requests", per_second),
        };
        let titanic = extras.titanic.then(|| TitanicView {
            pending: count(now.titanic_pending),
            done: count(now.titanic_done),
            store_bytes: count(now.titanic_bytes),
            commits_per_second: rate(prev.map(|p| p.titanic_commits), now.titanic_commits),
            error: extras.titanic_error.clone(),
        });
        let topics = if extras.topics {
            let messages_in = rate(prev.map(|p| p.topic_in), now.topic_in);
            let messages_out = rate(prev.map(|p| p.topic_out), now.topic_out);
            Some(TopicsView {
                publishers: count(now.topic_publishers),
                subscribers: count(now.topic_subscribers),
                lagging_subscribers: count(now.topic_lagging),
                messages_in_per_second: messages_in,
                messages_out_per_second: messages_out,
                dropped_total: count(now.topic_dropped),
                history_in: self.push("topics:in", messages_in),
                history_out: self.push("topics:out", messages_out),
            })
        } else {
            None
        };
        let gateway_total = |r: &Reading| r.gateway.values().sum::<f64>();
        let gateway = (gateway_total(now) > 0.0).then(|| {
            let by_status = now
                .gateway
                .iter()
                .filter_map(|(status, v)| {
                    let before = prev.map(|p| p.gateway.get(status).copied().unwrap_or(0.0));
                    rate(before, *v).map(|r| (status.clone(), r))
                })
                .collect();
            let per_second = rate(prev.map(gateway_total), gateway_total(now));
            GatewayView {
                requests_per_second: per_second,
                by_status,
                history: self.push("gateway", per_second),
            }
        });
        Overview {
            version: VERSION,
            broker: BrokerView {
                version: env!("CARGO_PKG_VERSION"),
                draining: now.draining,
            },
            interval_seconds: secs.map(|s| (s * 1000.0).round() / 1000.0),
            services,
            requests,
            connections: ConnectionsView {
                peers: count(now.peers),
                workers: count(total(now, |s| s.idle + s.busy)),
                clients_paused: count(now.clients_paused),
                pauses: now
                    .pauses
                    .iter()
                    .map(|(k, v)| (k.clone(), count(*v)))
                    .collect(),
            },
            pair: now.ha.clone(),
            titanic,
            topics,
            gateway,
        }
    }
}

fn count(v: f64) -> u64 {
    if v.is_finite() && v > 0.0 {
        v.round() as u64
    } else {
        0
    }
}

fn ms(seconds: f64) -> f64 {
    (seconds * 1000.0 * 1000.0).round() / 1000.0
}

/// The `q` quantile of the observations between two readings of a histogram (cumulative
/// counts by upper bound), interpolated within its bucket as Prometheus's
/// `histogram_quantile` does; `None` without observations.
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(bound, n)| {
            let b = before
                .iter()
                .find(|(x, _)| x == bound)
                .map_or(0.0, |(_, n)| *n);
            (*bound, (n - b).max(0.0))
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for (bound, cum) in &delta {
        if *cum >= rank {
            if bound.is_infinite() {
                // Past the last finite bound: say that bound.
                return Some(lower.0);
            }
            let within = (cum - lower.1).max(f64::MIN_POSITIVE);
            return Some(lower.0 + (bound - lower.0) * (rank - lower.1) / within);
        }
        lower = (*bound, *cum);
    }
    Some(lower.0)
}

fn labels(m: &prometheus::proto::Metric) -> HashMap<&str, &str> {
    m.get_label()
        .iter()
        .map(|l| (l.name(), l.value()))
        .collect()
}

/// The value of a counter or gauge sample of family `f`.
fn value(f: &MetricFamily, m: &prometheus::proto::Metric) -> f64 {
    if f.get_field_type() == prometheus::proto::MetricType::COUNTER {
        m.get_counter().get_value()
    } else {
        m.get_gauge().get_value()
    }
}

fn read(families: &[MetricFamily], at: Instant) -> Reading {
    let mut r = Reading {
        at,
        services: BTreeMap::new(),
        dropped: BTreeMap::new(),
        pauses: BTreeMap::new(),
        clients_paused: 0.0,
        peers: 0.0,
        queued_bytes: 0.0,
        draining: false,
        ha: None,
        titanic_pending: 0.0,
        titanic_done: 0.0,
        titanic_bytes: 0.0,
        titanic_commits: 0.0,
        topic_publishers: 0.0,
        topic_subscribers: 0.0,
        topic_lagging: 0.0,
        topic_in: 0.0,
        topic_out: 0.0,
        topic_dropped: 0.0,
        gateway: BTreeMap::new(),
    };
    let mut pair = PairView {
        role: String::new(),
        state: String::new(),
        term: 0,
        peer_up: false,
        failovers: 0,
    };
    let mut paired = false;
    for f in families {
        for m in f.get_metric() {
            let l = labels(m);
            let label = |k: &str| l.get(k).copied().unwrap_or("").to_string();
            let v = value(f, m);
            match f.name() {
                "domo_workers" => {
                    let s = r.services.entry(label("service")).or_default();
                    match l.get("state").copied() {
                        Some("idle") => s.idle += v,
                        _ => s.busy += v,
                    }
                }
                "domo_queued_requests" => {
                    r.services.entry(label("service")).or_default().queued += v
                }
                "domo_queued_service_bytes" => {
                    r.services.entry(label("service")).or_default().queued_bytes += v;
                }
                "domo_worker_credit" => {
                    let s = r.services.entry(label("service")).or_default();
                    match l.get("state").copied() {
                        Some("used") => s.credit_used += v,
                        _ => s.credit_free += v,
                    }
                }
                "domo_client_requests_total" => {
                    let s = r.services.entry(label("service")).or_default();
                    s.requests += v;
                    if l.get("outcome").copied() == Some("expired") {
                        s.expired += v;
                    }
                }
                "domo_replies_total" => {
                    r.services.entry(label("service")).or_default().replies += v
                }
                "domo_queue_wait_seconds" => {
                    let h = m.get_histogram();
                    let mut wait: Vec<(f64, f64)> = h
                        .get_bucket()
                        .iter()
                        .map(|b| (b.upper_bound(), b.cumulative_count() as f64))
                        .collect();
                    wait.push((f64::INFINITY, h.get_sample_count() as f64));
                    r.services.entry(label("service")).or_default().wait = wait;
                }
                "domo_dropped_requests_total" => {
                    *r.dropped.entry(label("reason")).or_default() += v;
                }
                "domo_client_pauses_total" => {
                    *r.pauses.entry(label("cause")).or_default() += v;
                }
                "domo_clients_paused" => r.clients_paused = v,
                "domo_connections" => r.peers += v,
                "domo_queued_bytes" => r.queued_bytes = v,
                "domo_draining" => r.draining = v > 0.0,
                "domo_ha_state" => {
                    let state = match v as i64 {
                        1 => "primary",
                        2 => "backup",
                        3 => "active",
                        4 => "passive",
                        _ => "unknown",
                    };
                    // Only a broker of a pair has the series: it is one then.
                    paired = true;
                    pair.role = label("role");
                    pair.state = state.to_string();
                }
                "domo_ha_term" => pair.term = count(v),
                "domo_ha_peer_up" => pair.peer_up = v > 0.0,
                "domo_ha_failovers_total" => pair.failovers = count(v),
                "domo_titanic_requests" => match l.get("state").copied() {
                    Some("pending") => r.titanic_pending = v,
                    _ => r.titanic_done = v,
                },
                "domo_titanic_store_bytes" => r.titanic_bytes = v,
                "domo_titanic_commit_duration_seconds" => {
                    r.titanic_commits = m.get_histogram().get_sample_count() as f64;
                }
                "domo_topic_connections" => match l.get("role").copied() {
                    Some("publisher") => r.topic_publishers = v,
                    _ => r.topic_subscribers = v,
                },
                "domo_topic_lagging_subscribers" => r.topic_lagging = v,
                "domo_topic_messages_total" => match l.get("event").copied() {
                    Some("published") => r.topic_in = v,
                    Some("delivered") => r.topic_out = v,
                    _ => {}
                },
                "domo_topic_dropped_total" => r.topic_dropped += v,
                "domo_gateway_requests_total" => {
                    *r.gateway.entry(label("status")).or_default() += v;
                }
                _ => {}
            }
        }
    }
    r.ha = paired.then_some(pair);
    // Workers, queue and requests of a service that has none of them any more are gone.
    r.services
        .retain(|_, s| s.idle + s.busy + s.queued > 0.0 || s.requests > 0.0);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_the_bucket_of_the_interval() {
        let before = [
            (0.001, 10.0),
            (0.01, 10.0),
            (0.1, 10.0),
            (f64::INFINITY, 10.0),
        ];
        // 100 new observations: 50 up to 1 ms, 40 more up to 10 ms, 10 more up to 100 ms.
        let after = [
            (0.001, 60.0),
            (0.01, 100.0),
            (0.1, 110.0),
            (f64::INFINITY, 110.0),
        ];
        assert_eq!(quantile(&before, &after, 0.5), Some(0.001));
        let p99 = quantile(&before, &after, 0.99).unwrap();
        assert!((p99 - 0.091).abs() < 1e-9, "{p99}");
        assert_eq!(quantile(&after, &after, 0.5), None);
        // Everything past the last bound: that bound.
        let past = [(0.001, 0.0), (0.01, 0.0), (0.1, 0.0), (f64::INFINITY, 5.0)];
        assert_eq!(quantile(&[], &past, 0.5), Some(0.1));
    }

    #[test]
    fn rates_come_from_two_readings_and_the_busiest_service_is_first() {
        let metrics = crate::metrics::Metrics::new(16);
        let mut sampler = Sampler::default();
        let t0 = Instant::now();
        let first = sampler
            .take(&metrics.registry().gather(), &Extras::default(), t0)
            .clone();
        assert_eq!(first.version, VERSION);
        assert_eq!(first.interval_seconds, None);
        assert_eq!(first.requests.per_second, None);
        let mut metrics = metrics;
        for (service, n) in [("quiet", 1), ("busy", 30)] {
            metrics.on_event(crate::core::Event::WorkerRegistered {
                service: domo_mdp::ServiceName::try_from(service).unwrap(),
            });
            for _ in 0..n {
                metrics.on_event(crate::core::Event::Dispatched {
                    service: domo_mdp::ServiceName::try_from(service).unwrap(),
                    queue_wait: Duration::from_millis(2),
                });
            }
        }
        let later = sampler
            .take(
                &metrics.registry().gather(),
                &Extras::default(),
                t0 + Duration::from_secs(2),
            )
            .clone();
        assert_eq!(later.interval_seconds, Some(2.0));
        let names: Vec<&str> = later.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["busy", "quiet"]);
        assert_eq!(later.services[0].requests_per_second, Some(15.0));
        assert_eq!(later.services[1].requests_per_second, Some(0.5));
        assert_eq!(later.requests.per_second, Some(15.5));
        let p50 = later.services[0].queue_wait_p50_ms.unwrap();
        assert!(p50 > 1.0 && p50 <= 2.5, "{p50}");
        assert_eq!(later.services[0].history, [15.0]);
        assert!(later.titanic.is_none() && later.topics.is_none() && later.gateway.is_none());
        assert!(later.pair.is_none());
    }
}
