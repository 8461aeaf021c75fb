//! The metrics and health listener: `GET /metrics`, `/healthz`, `/readyz`, the dashboard page
//! `GET /` and its data `GET /api/overview` ([`crate::overview`]) over HTTP/1.1.
//!
//! Design: fixed routes on plain hyper, no framework. `/healthz` and `/readyz` read the
//! loop's [`Health`] atomics and do no I/O, so they answer even when the loop is busy;
//! `/metrics` and `/api/overview` ask the loop to copy its figures in first
//! ([`Control::Scrape`]) and use whatever it has if the loop does not answer within
//! [`SCRAPE_WAIT`]. The page is one file compiled into the binary (no assets to install, no
//! CDN); it reads `/api/overview` every second.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use domo_mdp::LockExt;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use crate::metrics::Metrics;
use crate::shell::{Control, Health};

/// Longest wait for the loop before `/metrics` answers with what it has.
pub const SCRAPE_WAIT: Duration = Duration::from_secs(2);

/// `/healthz` fails when the loop has not woken for this long (it wakes at least every
/// [`crate::shell::TICK`]).
pub const STALL: Duration = Duration::from_secs(10);

/// What the listener serves from.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The loop's health state.
    pub health: Arc<Health>,
    /// The metrics registry.
    pub metrics: Arc<Mutex<Metrics>>,
    /// The loop's control channel, for scrapes.
    pub control: mpsc::Sender<Control>,
    /// The embedded Titanic's status, when it is enabled.
    pub titanic: Option<Arc<domo_titanic::server::Status>>,
    /// The disk topics' store, when topics are on.
    pub topics: Option<Arc<crate::topic_store::StoreStatus>>,
    /// The overview's readings, shared by every watcher.
    pub overview: Arc<tokio::sync::Mutex<crate::overview::Sampler>>,
}

/// The dashboard page.
const PAGE: &str = include_str!("dashboard.html");

/// Binds the listener; serving starts with [`serve`].
///
/// # Errors
/// The bind error.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener, endpoints: Endpoints) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                debug!(%error, "Metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let endpoints = endpoints.clone();
                async move { Ok::<_, Infallible>(route(&endpoints, &req).await) }
            });
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%error, peer.addr = %peer, "Metrics connection failed");
            }
        });
    }
}

async fn route(endpoints: &Endpoints, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match req.uri().path() {
        "/metrics" => metrics(endpoints).await,
        "/" => {
            let mut r = text(StatusCode::OK, PAGE);
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        "/api/overview" => overview(endpoints).await,
        "/healthz" => {
            let since = endpoints.health.since_tick();
            if since < STALL {
                text(StatusCode::OK, "ok\n")
            } else {
                let body = format!("main loop stalled for {}s\n", since.as_secs());
                text(StatusCode::SERVICE_UNAVAILABLE, &body)
            }
        }
        "/readyz" => {
            let titanic = endpoints
                .titanic
                .as_ref()
                .map_or(Ok(()), |t| t.readiness())
                .and(endpoints.topics.as_ref().map_or(Ok(()), |t| t.readiness()));
            // The pair's role and state follow on a second line, whatever the verdict.
            let mut ha = endpoints
                .health
                .ha_line()
                .map_or_else(String::new, |line| format!("{line}\n"));
            // The Titanic store's own line (PostgreSQL: its synchronous standbys).
            if let Some(line) = endpoints.titanic.as_ref().and_then(|t| t.describe()) {
                ha.push_str(&line);
                ha.push('\n');
            }
            match (endpoints.health.readiness(), titanic) {
                (Ok(()), Ok(())) => text(StatusCode::OK, &format!("ready\n{ha}")),
                (Err(reason), _) => {
                    text(StatusCode::SERVICE_UNAVAILABLE, &format!("{reason}\n{ha}"))
                }
                (Ok(()), Err(reason)) => {
                    text(StatusCode::SERVICE_UNAVAILABLE, &format!("{reason}\n{ha}"))
                }
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /, /api/overview, /metrics, /healthz, /readyz\n",
        ),
    }
}

async fn metrics(endpoints: &Endpoints) -> Response<Full<Bytes>> {
    refresh(endpoints).await;
    let body = endpoints.metrics.lock_unpoisoned().render();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /api/overview`: a new reading if the last is over a second old, else the last.
async fn overview(endpoints: &Endpoints) -> Response<Full<Bytes>> {
    let mut sampler = endpoints.overview.lock().await;
    let now = std::time::Instant::now();
    let body = if let Some(current) = sampler.current().filter(|_| !sampler.stale(now)) {
        serde_json::to_vec(current)
    } else {
        refresh(endpoints).await;
        let families = endpoints.metrics.lock_unpoisoned().registry().gather();
        let extras = crate::overview::Extras {
            titanic: endpoints.titanic.is_some(),
            titanic_error: endpoints.titanic.as_ref().and_then(|t| t.readiness().err()),
            topics: endpoints.topics.is_some(),
        };
        serde_json::to_vec(sampler.take(&families, &extras, std::time::Instant::now()))
    };
    drop(sampler);
    let mut response = Response::new(Full::new(Bytes::from(body.unwrap_or_default())));
    for (name, value) in [
        (hyper::header::CONTENT_TYPE, "application/json"),
        (hyper::header::CACHE_CONTROL, "no-store"),
    ] {
        response
            .headers_mut()
            .insert(name, hyper::header::HeaderValue::from_static(value));
    }
    response
}

/// Has the loop copy its figures into the registry (and reads the Titanic store's), waiting
/// at most [`SCRAPE_WAIT`].
async fn refresh(endpoints: &Endpoints) {
    let (done, answered) = oneshot::channel();
    if endpoints.control.try_send(Control::Scrape(done)).is_ok() {
        let _ = tokio::time::timeout(SCRAPE_WAIT, answered).await;
    }
    if let Some(status) = endpoints.titanic.clone() {
        // A read transaction on the store: off the runtime thread.
        let stats = tokio::task::spawn_blocking(move || status.stats()).await;
        if let Ok(Some(stats)) = stats {
            endpoints.metrics.lock_unpoisoned().set_titanic(
                stats.pending,
                stats.done,
                stats.file_bytes,
            );
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *response.status_mut() = status;
    response
}
