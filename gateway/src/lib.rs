//! `domo-gateway`: MDP services, Titanic and topics over HTTP/1.1 and WebSocket, in front of any
//! MDP broker (embedded in `domo-broker` with `[gateway] listen`, or standalone as
//! `domo-gateway`). Who may do what: [`auth`] (bearer tokens, the pre-shared key).
//!
//! # Routes
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/services/{service}` | a request; the reply is the response body |
//! | `POST /v1/broadcast/{service}` | the request to every worker of the service; each reply streamed as it comes, then a summary (NDJSON, or SSE with `Accept: text/event-stream`) |
//! | `GET /v1/services` | the services that have workers, with their worker count and queued requests (`mmi.services`, `mmi.workers`, `mmi.queued`) |
//! | `POST /v1/titanic/{service}` | a durable request (Titanic): `202`, `Location: /v1/titanic/{id}` |
//! | `GET /v1/titanic/{id}` | its reply: `200`, `202` while pending (`Retry-After`), `404` unknown |
//! | `DELETE /v1/titanic/{id}` | forget it: `204` |
//! | `POST /v1/topics/{topic}` | an acknowledged publish: `{"offset": N}` once stored |
//! | `GET /v1/topics/{topic}?from=N&max=M` | retained messages from an offset |
//! | `GET /v1/topics/{prefix}/events` | Server-Sent Events, resumable with `Last-Event-ID` (`sse.rs`) |
//! | `GET /v1/ws` | a WebSocket for requests, publishes and subscriptions ([`ws`]) |
//!
//! Bodies: one frame as the raw body, or with `?frames=json` a JSON array of frames (strings,
//! or `{"base64": "..."}` for bytes that are not UTF-8), the reply the same way (see
//! [`frames`]). `?timeout=5s` bounds one request (default [`GatewayConfig::default_timeout`], at
//! most [`GatewayConfig::max_timeout`]).
//!
//! # Statuses
//!
//! `503` with `Retry-After` when no worker serves the service (asked with `mmi.service`
//! before the request is sent, so the answer is immediate; a "yes" is taken as true for a
//! second), `504` when the deadline passes,
//! `413` for a body over [`GatewayConfig::body_limit`], `502` for a reply that cannot be shown
//! (several frames without `?frames=json`) or a broker that cannot be reached, `400` for a
//! malformed body or query. Errors are JSON: `{"error": "..."}`.

pub mod auth;
mod broadcast;
pub mod frames;
mod metrics;
mod sse;
pub mod ws;

pub use auth::{Access, Grant, Right};
pub use metrics::GatewayMetrics;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes as Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use domo_client::{Client, ErrorKind, TitanicId, TitanicReply};
use serde::Deserialize;
use serde_json::json;

/// Limits of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Largest request body, in bytes; more is `413`.
    pub body_limit: usize,
    /// The deadline of a request that gives no `?timeout=`.
    pub default_timeout: Duration,
    /// The longest `?timeout=` taken (longer ones are cut to it).
    pub max_timeout: Duration,
    /// Requests worked on at once; more are answered `503` at once. Event streams and
    /// WebSockets open at once have a limit of the same size of their own.
    pub max_in_flight: usize,
    /// How long a client may take to send a request's headers; then its connection is
    /// closed (a client that trickles its headers holds no connection for long).
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body once its headers are in; then
    /// the answer is `408` and the connection is closed.
    pub body_timeout: Duration,
}

impl Default for GatewayConfig {
    /// 4 MiB bodies, 30 s by default, at most 5 minutes.
    fn default() -> Self {
        Self {
            body_limit: 4 << 20,
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(300),
            max_in_flight: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
        }
    }
}

/// The route templates (the `route` label of the metrics).
const ROUTES: [&str; 8] = [
    "/v1/services",
    "/v1/services/{service}",
    "/v1/broadcast/{service}",
    "/v1/titanic/{name}",
    "/v1/topics/{topic}",
    "/v1/topics/{prefix}/events",
    "/v1/ws",
    "/metrics",
];

/// What the gateway is made of.
#[derive(Debug)]
pub struct Setup {
    /// A client of the broker. The gateway bounds each request's time itself, so give it no
    /// retries and a timeout of at least [`GatewayConfig::max_timeout`].
    pub client: Client,
    /// Its limits.
    pub config: GatewayConfig,
    /// Who may use it ([`Access::open`]: everyone).
    pub access: Access,
    /// The broker's topics subscribe endpoint (`[topics] subscribe`), for event streams and
    /// WebSocket subscriptions; `None`: those answer `501`.
    pub topics: Option<String>,
    /// Where its metrics go, if anywhere.
    pub metrics: Option<GatewayMetrics>,
    /// Ends event streams and WebSockets when the gateway stops (see [`serve`]).
    pub closing: Closing,
}

impl Setup {
    /// An open gateway with default limits, no topics endpoint and no metrics.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            config: GatewayConfig::default(),
            access: Access::open(),
            topics: None,
            metrics: None,
            closing: Closing::default(),
        }
    }
}

/// Tells long-lived answers (event streams, WebSockets) that the gateway is stopping; [`serve`]
/// raises it when its shutdown future completes.
#[derive(Debug, Clone)]
pub struct Closing(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Closing {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::channel(false).0))
    }
}

impl Closing {
    /// Raises it.
    pub fn close(&self) {
        self.0.send_replace(true);
    }

    /// Completes once raised.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.0.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }
}

struct Gateway {
    client: Client,
    config: GatewayConfig,
    access: Access,
    topics: Option<String>,
    closing: Closing,
    /// Event streams and WebSockets open: each holds a permit for its life.
    streams: Arc<tokio::sync::Semaphore>,
    /// Services `mmi.service` said have workers, and when: asked again after
    /// [`SERVED_FOR`].
    served: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

/// How long a "this service has workers" answer is taken as still true. A service whose
/// last worker left within it gets its requests queued (answered by a later worker, or 504),
/// not an immediate 503.
const SERVED_FOR: Duration = Duration::from_secs(1);

impl Gateway {
    /// A request to `service`: `503` at once if it has no worker (an MDP broker would queue
    /// the request until it expires), `504` after `deadline`.
    async fn call(
        &self,
        service: String,
        frames: Vec<Bytes>,
        deadline: Duration,
    ) -> Result<Vec<Bytes>, Refusal> {
        if !self.has_workers(&service, deadline).await? {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("no worker serves {service:?}"),
            ));
        }
        within(deadline, self.client.request(service, frames)).await
    }

    /// A permit for one more event stream or WebSocket; `503` past the limit.
    fn stream_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
        self.streams
            .clone()
            .try_acquire_owned()
            .map_err(|_| unavailable("the gateway is at its limit of open streams"))
    }

    /// A subscriber of the broker's topics endpoint; `501` without one.
    fn subscriber(&self) -> Result<domo_client::Subscriber, Refusal> {
        let endpoint = self.topics.as_deref().ok_or_else(|| {
            error(
                StatusCode::NOT_IMPLEMENTED,
                "this gateway has no topics endpoint to subscribe to",
            )
        })?;
        domo_client::Subscriber::new(endpoint, self.client.clone())
            .map_err(|e| error(StatusCode::BAD_GATEWAY, &e.to_string()))
    }

    /// Whether `service` has workers, from a recent answer or from `mmi.service`.
    async fn has_workers(&self, service: &str, deadline: Duration) -> Result<bool, Refusal> {
        let now = std::time::Instant::now();
        let fresh = |t: &std::time::Instant| now.saturating_duration_since(*t) < SERVED_FOR;
        if self
            .served
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(service)
            .is_some_and(fresh)
        {
            return Ok(true);
        }
        let has = within(deadline, self.client.service_available(service.to_string())).await?;
        let mut served = self
            .served
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if has {
            // Bounded: forget stale answers once there are many.
            if served.len() >= 4096 {
                served.retain(|_, t| fresh(t));
            }
            served.insert(service.to_string(), now);
        } else {
            served.remove(service);
        }
        Ok(has)
    }
}

/// What every request goes through: the concurrency limit, the request id, the metrics.
struct Front {
    permits: tokio::sync::Semaphore,
    body_limit: usize,
    body_timeout: Duration,
    metrics: Option<GatewayMetrics>,
    next_id: std::sync::atomic::AtomicU64,
}

/// The rights of the request, from its bearer token (see [`auth`]); `401` without a valid one
/// when the gateway has a tokens file.
struct Auth(Arc<Grant>);

impl axum::extract::FromRequestParts<Arc<Gateway>> for Auth {
    type Rejection = Refusal;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        g: &Arc<Gateway>,
    ) -> Result<Self, Refusal> {
        g.access
            .authorize(&parts.headers, parts.uri.query())
            .map(Auth)
            .map_err(Refusal::from)
    }
}

/// The gateway's routes, counted in `setup.metrics` if given.
///
/// Every response carries an `x-request-id` (the one the request gave, else a number of the
/// gateway's), and the log lines of the request name it.
pub fn router(setup: Setup) -> Router {
    let Setup {
        client,
        config,
        access,
        topics,
        metrics,
        closing,
    } = setup;
    let state = Arc::new(Gateway {
        client,
        config,
        access,
        topics,
        closing,
        streams: Arc::new(tokio::sync::Semaphore::new(config.max_in_flight.max(1))),
        served: std::sync::Mutex::default(),
    });
    let front = Arc::new(Front {
        permits: tokio::sync::Semaphore::new(config.max_in_flight.max(1)),
        body_limit: config.body_limit,
        body_timeout: config.body_timeout,
        metrics,
        next_id: std::sync::atomic::AtomicU64::new(1),
    });
    Router::new()
        .route("/v1/services", get(list_services))
        .route("/v1/services/{service}", post(call_service))
        .route("/v1/broadcast/{service}", post(broadcast::broadcast))
        .route(
            "/v1/titanic/{name}",
            post(titanic_submit)
                .get(titanic_fetch)
                .delete(titanic_close),
        )
        .route("/v1/topics/{topic}", post(topic_publish).get(topic_read))
        .route("/v1/topics/{prefix}/events", get(sse::topic_events))
        .route("/v1/ws", get(ws::upgrade))
        .layer(DefaultBodyLimit::max(config.body_limit))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(front, front_door))
}

impl Front {
    /// Reads the request's body within [`GatewayConfig::body_timeout`] (`408` after it, and
    /// the connection closed) and [`GatewayConfig::body_limit`] (`413` past it).
    async fn read_body(
        &self,
        request: axum::extract::Request,
    ) -> Result<axum::extract::Request, Refusal> {
        let (parts, body) = request.into_parts();
        let read = axum::body::to_bytes(body, self.body_limit);
        let bytes = match tokio::time::timeout(self.body_timeout, read).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                return Err(if too_large {
                    error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("the body is over {} bytes", self.body_limit),
                    )
                } else {
                    error(StatusCode::BAD_REQUEST, &format!("the body: {e}"))
                });
            }
            Err(_) => {
                return Err(error(
                    StatusCode::REQUEST_TIMEOUT,
                    "the body came too slowly",
                ))
            }
        };
        Ok(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::from(bytes),
        ))
    }
}

/// The concurrency limit (`503` past it), the request id, the log line and the metrics of
/// every request.
async fn front_door(
    State(front): State<Arc<Front>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(
            || {
                front
                    .next_id
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                    .to_string()
            },
            str::to_string,
        );
    let method = request.method().clone();
    let mut response = match front.permits.try_acquire() {
        Ok(_permit) => {
            if let Some(m) = &front.metrics {
                m.in_flight.inc();
            }
            let response = match front.read_body(request).await {
                Ok(request) => next.run(request).await,
                Err(refusal) => refusal.into_response(),
            };
            if let Some(m) = &front.metrics {
                m.in_flight.dec();
            }
            response
        }
        Err(_) => {
            unavailable("the gateway is at its limit of requests in progress").into_response()
        }
    };
    let status = response.status();
    tracing::debug!(request_id = %id, %method, route = %route, status = status.as_u16(), "HTTP request");
    if let Some(m) = &front.metrics {
        m.requests
            .with_label_values(&[route.as_str(), status.as_str()])
            .inc();
        m.duration
            .with_label_values(&[route.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

/// How long requests in progress may take to finish once `shutdown` completes.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` completes. Then `closing` is raised (event
/// streams end, WebSockets are closed with `1001`), requests in progress finish (up to
/// [`DRAIN_TIMEOUT`]) and no new one is taken. A connection whose request headers do not
/// arrive within `header_timeout` ([`GatewayConfig::header_timeout`]) is closed.
///
/// # Errors
/// An I/O error of the listener.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    header_timeout: Duration,
    closing: Closing,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let connections = tokio_util::task::TaskTracker::new();
    let service = hyper_util::service::TowerToHyperService::new(router);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: wait rather than spin.
                    tracing::warn!(error = %e, "Gateway accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), service.clone())
            .with_upgrades();
        let closed = closing.closed();
        connections.spawn(async move {
            tokio::pin!(conn);
            let ended = tokio::select! {
                r = conn.as_mut() => r,
                () = closed => {
                    // Finish the request in progress, take no other.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, peer = %peer, "Gateway connection ended");
            }
        });
    }
    closing.close();
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!("Gateway: requests still in progress after {DRAIN_TIMEOUT:?}; closing");
    }
    Ok(())
}

/// `?frames=json` and `?timeout=`.
#[derive(Debug, Default, Deserialize)]
struct CallQuery {
    frames: Option<String>,
    timeout: Option<String>,
}

impl CallQuery {
    fn json(&self) -> bool {
        self.frames.as_deref() == Some("json")
    }

    fn deadline(&self, config: &GatewayConfig) -> Result<Duration, Refusal> {
        match &self.timeout {
            None => Ok(config.default_timeout),
            Some(text) => humantime::parse_duration(text)
                .map(|d| d.min(config.max_timeout))
                .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("timeout: {e}"))),
        }
    }

    fn frames(&self, body: Body) -> Result<Vec<Bytes>, Refusal> {
        if self.json() {
            frames::from_json(&body).map_err(|e| error(StatusCode::BAD_REQUEST, &e.0))
        } else {
            Ok(vec![body])
        }
    }

    /// The reply as the request asked: a JSON array, or the one frame raw.
    fn reply(&self, status: StatusCode, frames: &[Bytes]) -> Answer {
        if self.json() {
            return Ok((status, Json(frames::to_json(frames))).into_response());
        }
        match frames {
            [one] => Ok((
                status,
                [(header::CONTENT_TYPE, "application/octet-stream")],
                one.clone(),
            )
                .into_response()),
            _ => Err(error(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "the reply has {} frames: ask with ?frames=json",
                    frames.len()
                ),
            )),
        }
    }
}

/// An error answer: a status and `{"error": message}` (with `Retry-After: 1` for `503`).
#[derive(Debug)]
enum Refusal {
    Status { status: StatusCode, message: String },
    Denied(auth::Denied),
}

impl From<auth::Denied> for Refusal {
    fn from(d: auth::Denied) -> Self {
        Self::Denied(d)
    }
}

impl Refusal {
    /// Its status code.
    fn status(&self) -> StatusCode {
        match self {
            Self::Status { status, .. } => *status,
            Self::Denied(auth::Denied::Unauthenticated(_)) => StatusCode::UNAUTHORIZED,
            Self::Denied(auth::Denied::Forbidden(_)) => StatusCode::FORBIDDEN,
        }
    }

    /// What it says.
    fn message(&self) -> String {
        match self {
            Self::Status { message, .. } | Self::Denied(auth::Denied::Forbidden(message)) => {
                message.clone()
            }
            Self::Denied(auth::Denied::Unauthenticated(_)) => "a valid token is required".into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::Denied(d) => return d.into_response(),
            Self::Status { status, message } => (status, message),
        };
        let mut r = (status, Json(json!({ "error": message }))).into_response();
        if status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is not read: the connection cannot carry another request.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

/// `503` (with `Retry-After`).
fn unavailable(message: &str) -> Refusal {
    error(StatusCode::SERVICE_UNAVAILABLE, message)
}

fn error(status: StatusCode, message: &str) -> Refusal {
    Refusal::Status {
        status,
        message: message.to_string(),
    }
}

/// The HTTP answer to a failed request.
fn failed(e: &domo_client::Error) -> Refusal {
    let message = e.to_string();
    let status = match e.kind() {
        ErrorKind::TimedOut => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::ServiceUnavailable | ErrorKind::Closed => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::MessageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::InvalidService => StatusCode::BAD_REQUEST,
        // A topic service's own status (400, 404, 409, 413, 500, 501, 507) is the answer.
        ErrorKind::Topic => e
            .topic_status()
            .and_then(|status| std::str::from_utf8(status.as_bytes()).ok()?.parse().ok())
            .and_then(|code| StatusCode::from_u16(code).ok())
            .unwrap_or(StatusCode::BAD_GATEWAY),
        _ => StatusCode::BAD_GATEWAY,
    };
    error(status, &message)
}

/// Runs `fut` within `deadline`; `504` after it.
async fn within<T>(
    deadline: Duration,
    fut: impl std::future::Future<Output = Result<T, domo_client::Error>>,
) -> Result<T, Refusal> {
    match tokio::time::timeout(deadline, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(failed(&e)),
        Err(_) => Err(error(
            StatusCode::GATEWAY_TIMEOUT,
            &format!("no reply within {}", humantime::format_duration(deadline)),
        )),
    }
}

/// What a handler answers.
type Answer = Result<Response, Refusal>;

async fn call_service(
    State(g): State<Arc<Gateway>>,
    Auth(grant): Auth,
    Path(service): Path<String>,
    Query(q): Query<CallQuery>,
    body: Body,
) -> Answer {
    grant.require(Right::Call, service.as_bytes())?;
    let deadline = q.deadline(&g.config)?;
    let frames = q.frames(body)?;
    let reply = g.call(service, frames, deadline).await?;
    q.reply(StatusCode::OK, &reply)
}

async fn list_services(State(g): State<Arc<Gateway>>, Auth(grant): Auth) -> Answer {
    let deadline = g.config.default_timeout;
    let names = within(deadline, g.client.services()).await?;
    let mut services = Vec::with_capacity(names.len());
    // Only the services the token may call.
    for name in names
        .into_iter()
        .filter(|n| grant.allows(Right::Call, n.as_bytes()))
    {
        // `mmi.workers` and `mmi.queued` are domo's; another broker's answer is left out.
        let workers = within(deadline, g.client.workers(name.clone())).await.ok();
        let queued = within(deadline, g.client.queued(name.clone())).await.ok();
        services.push(json!({ "name": name, "workers": workers, "queued": queued }));
    }
    Ok(Json(json!({ "services": services })).into_response())
}

async fn titanic_submit(
    State(g): State<Arc<Gateway>>,
    Auth(grant): Auth,
    Path(service): Path<String>,
    Query(q): Query<CallQuery>,
    body: Body,
) -> Answer {
    grant.require(Right::Call, service.as_bytes())?;
    let deadline = q.deadline(&g.config)?;
    let frames = q.frames(body)?;
    let id = within(deadline, g.client.submit(service, frames)).await?;
    let location = format!("/v1/titanic/{id}");
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, v);
    }
    let body = Json(json!({ "id": id.to_string(), "location": location }));
    Ok((StatusCode::ACCEPTED, headers, body).into_response())
}

fn titanic_id(id: &str) -> Result<TitanicId, Refusal> {
    id.parse()
        .map_err(|_| error(StatusCode::NOT_FOUND, "no such request"))
}

async fn titanic_fetch(
    State(g): State<Arc<Gateway>>,
    _: Auth,
    Path(id): Path<String>,
    Query(q): Query<CallQuery>,
) -> Answer {
    let id = titanic_id(&id)?;
    match within(g.config.default_timeout, g.client.titanic_reply(&id)).await? {
        TitanicReply::Done(frames) => q.reply(StatusCode::OK, &frames),
        TitanicReply::Pending => {
            let mut r =
                (StatusCode::ACCEPTED, Json(json!({ "status": "pending" }))).into_response();
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Ok(r)
        }
        TitanicReply::Unknown => Err(error(StatusCode::NOT_FOUND, "no such request")),
    }
}

async fn titanic_close(State(g): State<Arc<Gateway>>, _: Auth, Path(id): Path<String>) -> Answer {
    let id = titanic_id(&id)?;
    within(g.config.default_timeout, g.client.titanic_close(&id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn topic_publish(
    State(g): State<Arc<Gateway>>,
    Auth(grant): Auth,
    Path(topic): Path<String>,
    Query(q): Query<CallQuery>,
    body: Body,
) -> Answer {
    grant.require(Right::Publish, topic.as_bytes())?;
    let deadline = q.deadline(&g.config)?;
    let frames = q.frames(body)?;
    let offset = within(deadline, g.client.topic_write(topic, frames)).await?;
    Ok(Json(json!({ "offset": offset })).into_response())
}

/// `?from=` and `?max=` of a topic read.
#[derive(Debug, Deserialize)]
struct ReadQuery {
    #[serde(default)]
    from: u64,
    #[serde(default = "default_max")]
    max: usize,
}

fn default_max() -> usize {
    domo_mdp::topic::DEFAULT_READ_MAX
}

async fn topic_read(
    State(g): State<Arc<Gateway>>,
    Auth(grant): Auth,
    Path(topic): Path<String>,
    Query(q): Query<ReadQuery>,
) -> Answer {
    grant.require(Right::Subscribe, topic.as_bytes())?;
    let read = g.client.topic_read(topic, q.from, q.max);
    let r = within(g.config.default_timeout, read).await?;
    let messages: Vec<_> = r
        .messages
        .iter()
        .map(|m| json!({ "offset": m.offset, "frames": frames::to_json(&m.frames) }))
        .collect();
    let doc = json!({
        "stream": r.stream.to_string(),
        "first": r.first,
        "next": r.next,
        "messages": messages,
    });
    Ok(Json(doc).into_response())
}
