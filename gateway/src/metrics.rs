//! `domo_gateway_*` metrics: requests by route and status, their duration by route, and the
//! requests in progress. Labels are bounded: a route is its template (`/v1/services/{service}`,
//! never the service's name), a status one of the few the gateway answers.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// The gateway's series, registered in a registry of the caller's (the broker's, or the
/// standalone gateway's own, served at `GET /metrics`).
#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    pub(crate) requests: IntCounterVec,
    pub(crate) duration: HistogramVec,
    pub(crate) in_flight: IntGauge,
}

impl GatewayMetrics {
    /// Registers the series in `registry`.
    ///
    /// # Errors
    /// A registry that already has them.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "domo_gateway_requests_total",
                "HTTP requests answered by the gateway, by route template and status code",
            ),
            &["route", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "domo_gateway_request_duration_seconds",
                "HTTP requests through the gateway, receipt to response, by route template",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["route"],
        )?;
        let in_flight = IntGauge::new(
            "domo_gateway_requests_in_flight",
            "HTTP requests the gateway is working on",
        )?;
        // Every route's series exist from the start (at zero), so dashboards and alerts see
        // them before the first request.
        for route in crate::ROUTES {
            requests.with_label_values(&[route, "200"]);
            duration.with_label_values(&[route]);
        }
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        Ok(Self {
            requests,
            duration,
            in_flight,
        })
    }
}
