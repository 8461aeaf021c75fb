//! `GET /v1/ws`: one WebSocket for requests, publishes and subscriptions, as JSON text
//! messages.
//!
//! # Authentication
//!
//! - A bearer token in the upgrade request (`Authorization: Bearer`, or `?access_token=` from a
//!   browser) gives the socket that token's rights when the gateway has a tokens file; an
//!   invalid one is refused with `401` before the upgrade.
//! - Without a token, a gateway with a pre-shared key (`[gateway] psk_file`) asks the
//!   challenge; whoever answers it has every right. Both ends prove they know the key:
//!   1. the gateway sends `{"op": "challenge", "nonce": N1}`, `N1` 32 random bytes in hex;
//!   2. the client answers `{"op": "answer", "answer": hex(SHA256(N1 + psk)), "nonce": N2}`,
//!      `N2` its own random nonce in hex (16 to 64 bytes), `N1` hashed as the hex text it
//!      came as;
//!   3. the gateway checks the answer (in constant time) and sends
//!      `{"op": "ready", "answer": hex(SHA256(N2 + psk))}`, which the client checks in turn.
//!
//!   A wrong answer, any other message, or none within 10 seconds closes the socket with
//!   code **4401** before any data flows.
//! - A gateway without a tokens file or a key is open: it sends `{"op": "ready"}` at once.
//!   With a tokens file and no key, an upgrade without a valid token is `401`.
//!
//! # Operations
//!
//! Every message from the client is a JSON object with an `op` and an `id` of its choosing
//! (any JSON value), echoed in the answer. Frames are as in HTTP bodies (strings, or
//! `{"base64": ...}` for any bytes).
//!
//! | client sends | gateway answers |
//! |---|---|
//! | `{"op": "request", "id", "service", "frames", "timeout"?}` | `{"op": "reply", "id", "frames"}` |
//! | `{"op": "publish", "id", "topic", "frames"}` (acknowledged, stored) | `{"op": "published", "id", "offset"}` |
//! | `{"op": "subscribe", "id", "prefix"}` | `{"op": "subscribed", "id"}`, then `{"op": "message", "topic", "stream", "offset", "frames"}` for every message, and `{"op": "gap", ...}` / `{"op": "stream", ...}` as in event streams |
//! | `{"op": "unsubscribe", "id", "prefix"}` | `{"op": "unsubscribed", "id"}` |
//!
//! A request that fails gets `{"op": "error", "id", "status", "error"}` with the status the
//! HTTP route would answer (`503` no worker, `504` deadline, `403` without the right, `400`
//! malformed or unknown op...); the socket goes on. Requests are answered as they complete,
//! not in order: match them by `id`. A binary message, or a text message over the body
//! limit, is refused the same way (the latter closes the socket with `1009`). When the
//! gateway stops, sockets are closed with `1001`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use domo_client::{SubscriberEvent, Subscriptions};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::{hex, Grant, Right};
use crate::{frames, Gateway, Refusal};

/// Close code: the challenge was failed (wrong answer, another message, or none in time).
pub const CLOSE_AUTH_FAILED: u16 = 4401;

/// How long a client has to answer the challenge.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Requests of one socket worked on at once; more are answered `503`.
const IN_FLIGHT: usize = 256;

/// Messages waiting to be written to one socket.
const OUTGOING: usize = 256;

/// The answer to a challenge: `hex(SHA256(nonce_hex + psk))`.
pub fn answer(nonce_hex: &str, psk: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(nonce_hex.as_bytes());
    h.update(psk);
    hex(&h.finalize())
}

/// The upgrade: a bearer token's rights, or the challenge to come.
pub(crate) async fn upgrade(
    State(g): State<Arc<Gateway>>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
    ws: WebSocketUpgrade,
) -> Result<Response, Refusal> {
    let presented = headers.contains_key(axum::http::header::AUTHORIZATION)
        || uri.query().is_some_and(|q| q.contains("access_token="));
    let how = if presented && g.access.needs_token() {
        // Its rights, or 401 here if it is not valid.
        Start::Ready(g.access.authorize(&headers, uri.query())?)
    } else if g.access.psk().is_some() {
        Start::Challenge
    } else {
        // No key: open, or 401 without a token.
        Start::Ready(g.access.authorize(&headers, uri.query())?)
    };
    let permit = g.stream_permit()?;
    let limit = g.config.body_limit;
    Ok(ws
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            run(g, socket, how).await;
            drop(permit);
        }))
}

/// How a socket starts.
enum Start {
    Ready(Arc<Grant>),
    Challenge,
}

async fn run(g: Arc<Gateway>, mut socket: WebSocket, how: Start) {
    let grant = match how {
        Start::Ready(grant) => {
            if send(&mut socket, &json!({ "op": "ready" })).await.is_err() {
                return;
            }
            grant
        }
        Start::Challenge => match challenge(&g, &mut socket).await {
            Some(grant) => grant,
            None => return,
        },
    };
    Session::new(g, grant).serve(socket).await;
}

async fn send(socket: &mut WebSocket, v: &Value) -> Result<(), axum::Error> {
    socket
        .send(Message::Text(Utf8Bytes::from(v.to_string())))
        .await
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(reason),
        })))
        .await;
}

/// The pre-shared-key challenge; the rights of a peer that passes it.
async fn challenge(g: &Gateway, socket: &mut WebSocket) -> Option<Arc<Grant>> {
    let psk = g.access.psk()?;
    let mut nonce = [0u8; 32];
    if getrandom::fill(&mut nonce).is_err() {
        close(socket, 1011, "no random nonce").await;
        return None;
    }
    let nonce = hex(&nonce);
    send(socket, &json!({ "op": "challenge", "nonce": nonce }))
        .await
        .ok()?;
    let reply = match tokio::time::timeout(ANSWER_WITHIN, socket.recv()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Value>(t.as_str()).ok(),
        Ok(_) => None,
        Err(_) => {
            close(
                socket,
                CLOSE_AUTH_FAILED,
                "no answer to the challenge in time",
            )
            .await;
            return None;
        }
    };
    let reply = reply.as_ref();
    let op = reply.and_then(|r| r.get("op")).and_then(Value::as_str);
    let given = reply.and_then(|r| r.get("answer")).and_then(Value::as_str);
    let theirs = reply.and_then(|r| r.get("nonce")).and_then(Value::as_str);
    let expected = answer(&nonce, psk);
    let right = given.is_some_and(|a| bool::from(a.as_bytes().ct_eq(expected.as_bytes())));
    let nonce_ok = theirs.is_some_and(|n| {
        (32..=128).contains(&n.len())
            && n.bytes().all(|b| b.is_ascii_hexdigit())
            && !n.eq_ignore_ascii_case(&nonce)
    });
    if op != Some("answer") || !right || !nonce_ok {
        tracing::info!("Gateway WebSocket refused: wrong answer to the challenge");
        close(socket, CLOSE_AUTH_FAILED, "wrong answer to the challenge").await;
        return None;
    }
    let ours = answer(theirs?, psk);
    send(socket, &json!({ "op": "ready", "answer": ours }))
        .await
        .ok()?;
    Some(Arc::new(Grant::everything("pre-shared key")))
}

/// One authenticated socket.
struct Session {
    g: Arc<Gateway>,
    grant: Arc<Grant>,
    permits: Arc<tokio::sync::Semaphore>,
    tx: tokio::sync::mpsc::Sender<Value>,
    rx: tokio::sync::mpsc::Receiver<Value>,
    /// The socket's subscriber, once it subscribes.
    subscriptions: Option<Subscriptions>,
    /// Ends the subscriber's task.
    stop_subscriber: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Session {
    fn new(g: Arc<Gateway>, grant: Arc<Grant>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(OUTGOING);
        Self {
            g,
            grant,
            permits: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
            tx,
            rx,
            subscriptions: None,
            stop_subscriber: None,
        }
    }

    async fn serve(mut self, mut socket: WebSocket) {
        let closed = self.g.closing.closed();
        tokio::pin!(closed);
        loop {
            tokio::select! {
                () = &mut closed => {
                    close(&mut socket, 1001, "the gateway is stopping").await;
                    break;
                }
                out = self.rx.recv() => {
                    let Some(out) = out else { break };
                    if send(&mut socket, &out).await.is_err() {
                        break;
                    }
                }
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
                    Some(Ok(Message::Binary(_))) => {
                        self.answer(error_of(&Value::Null, StatusCode::BAD_REQUEST, "send JSON text messages")).await;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "Gateway WebSocket ended");
                        let text = e.to_string();
                        if text.contains("too long") || text.contains("too big") {
                            close(&mut socket, 1009, "message over the size limit").await;
                        }
                        break;
                    }
                },
            }
        }
        if let Some(stop) = self.stop_subscriber.take() {
            let _ = stop.send(());
        }
    }

    /// Queues an answer (the socket's own loop writes it).
    async fn answer(&self, v: Value) {
        let _ = self.tx.send(v).await;
    }

    async fn on_text(&mut self, text: &str) {
        let msg: Value = match serde_json::from_str(text) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return self
                    .answer(error_of(
                        &Value::Null,
                        StatusCode::BAD_REQUEST,
                        "expected a JSON object",
                    ))
                    .await;
            }
            Err(e) => {
                return self
                    .answer(error_of(
                        &Value::Null,
                        StatusCode::BAD_REQUEST,
                        &format!("not JSON: {e}"),
                    ))
                    .await;
            }
        };
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        let op = msg.get("op").and_then(Value::as_str).unwrap_or("");
        // Requests and publishes are answered by their task when done; subscriptions at once.
        let result = match op {
            "request" => self.request(&id, &msg).map(|()| None),
            "publish" => self.publish(&id, &msg).map(|()| None),
            "subscribe" => self.subscribe(&msg).map(|()| Some("subscribed")),
            "unsubscribe" => self.unsubscribe(&msg).map(|()| Some("unsubscribed")),
            "" => Err(bad("\"op\" is missing")),
            other => Err(bad(&format!("unknown op {other:?}"))),
        };
        match result {
            Ok(Some(done)) => self.answer(json!({ "op": done, "id": id })).await,
            Ok(None) => {}
            Err(refusal) => self.answer(refused(&id, &refusal)).await,
        }
    }

    /// Runs `work` on its own task (bounded per socket), its answer queued when done.
    fn spawn(
        &self,
        id: &Value,
        work: impl std::future::Future<Output = Result<Value, Refusal>> + Send + 'static,
    ) -> Result<(), Refusal> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| crate::unavailable("too many requests in progress on this socket"))?;
        let tx = self.tx.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let v = match work.await {
                Ok(mut v) => {
                    v["id"] = id;
                    v
                }
                Err(r) => refused(&id, &r),
            };
            drop(permit);
            let _ = tx.send(v).await;
        });
        Ok(())
    }

    fn request(&self, id: &Value, msg: &Value) -> Result<(), Refusal> {
        let service = text_field(msg, "service")?;
        self.grant.require(Right::Call, service.as_bytes())?;
        let frames = frames_field(msg)?;
        let deadline = match msg.get("timeout").and_then(Value::as_str) {
            Some(t) => humantime::parse_duration(t)
                .map(|d| d.min(self.g.config.max_timeout))
                .map_err(|e| bad(&format!("timeout: {e}")))?,
            None => self.g.config.default_timeout,
        };
        let g = self.g.clone();
        self.spawn(id, async move {
            let reply = g.call(service, frames, deadline).await?;
            Ok(json!({ "op": "reply", "frames": frames::to_json(&reply) }))
        })
    }

    fn publish(&self, id: &Value, msg: &Value) -> Result<(), Refusal> {
        let topic = text_field(msg, "topic")?;
        self.grant.require(Right::Publish, topic.as_bytes())?;
        let frames = frames_field(msg)?;
        let g = self.g.clone();
        self.spawn(id, async move {
            let write = g.client.topic_write(topic, frames);
            let offset = crate::within(g.config.default_timeout, write).await?;
            Ok(json!({ "op": "published", "offset": offset }))
        })
    }

    fn subscribe(&mut self, msg: &Value) -> Result<(), Refusal> {
        let prefix = text_field(msg, "prefix")?;
        self.grant.require(Right::Subscribe, prefix.as_bytes())?;
        if self.subscriptions.is_none() {
            let mut sub = self.g.subscriber()?;
            self.subscriptions = Some(sub.subscriptions());
            let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
            self.stop_subscriber = Some(stop);
            let tx = self.tx.clone();
            let grant = self.grant.clone();
            tokio::spawn(async move {
                loop {
                    let ev = tokio::select! {
                        _ = &mut stopped => break,
                        ev = sub.next() => match ev {
                            Ok(ev) => ev,
                            Err(_) => break,
                        },
                    };
                    if let Some(v) = event(ev, &grant) {
                        if tx.send(v).await.is_err() {
                            break;
                        }
                    }
                }
                sub.close().await;
            });
        }
        if let Some(s) = &self.subscriptions {
            s.subscribe(prefix.as_bytes())
                .map_err(|e| crate::error(StatusCode::BAD_GATEWAY, &e.to_string()))?;
        }
        Ok(())
    }

    fn unsubscribe(&self, msg: &Value) -> Result<(), Refusal> {
        let prefix = text_field(msg, "prefix")?;
        if let Some(s) = &self.subscriptions {
            s.cancel(prefix.as_bytes())
                .map_err(|e| crate::error(StatusCode::BAD_GATEWAY, &e.to_string()))?;
        }
        Ok(())
    }
}

/// A subscriber event as a message to the socket, if the grant lets it through.
fn event(ev: SubscriberEvent, grant: &Grant) -> Option<Value> {
    let (kind, mut v) = crate::sse::event_json(&ev, grant)?;
    v["op"] = json!(kind);
    Some(v)
}

fn bad(message: &str) -> Refusal {
    crate::error(StatusCode::BAD_REQUEST, message)
}

fn text_field(msg: &Value, key: &str) -> Result<String, Refusal> {
    match msg.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(bad(&format!("{key:?} must be a non-empty string"))),
        None => Err(bad(&format!("{key:?} is missing"))),
    }
}

fn frames_field(msg: &Value) -> Result<Vec<Bytes>, Refusal> {
    let v = msg
        .get("frames")
        .ok_or_else(|| bad("\"frames\" is missing"))?;
    frames::from_value(v.clone()).map_err(|e| bad(&e.0))
}

fn error_of(id: &Value, status: StatusCode, message: &str) -> Value {
    json!({ "op": "error", "id": id, "status": status.as_u16(), "error": message })
}

fn refused(id: &Value, r: &Refusal) -> Value {
    error_of(id, r.status(), &r.message())
}
