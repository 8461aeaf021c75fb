//! `POST /v1/broadcast/{service}`: the request to every worker of the service registered
//! now (the broker's `mmi.broadcast`), each reply streamed as it arrives, then a summary.
//!
//! The body and `?frames=json` / `?timeout=` are as for `POST /v1/services/{service}`; the
//! timeout bounds the wait for the workers (the broker's request timeout at most). The answer
//! is `200` with one JSON object per worker event, then the summary:
//!
//! ```text
//! {"event":"reply","worker":"0080000029","frames":["pong"]}
//! {"event":"failed","worker":"008000002b"}
//! {"event":"done","asked":3,"answered":1,"failed":1,"timed_out":1,
//!  "workers":{"0080000029":"answered","008000002a":"timed_out","008000002b":"failed"}}
//! ```
//!
//! as NDJSON (`application/x-ndjson`, one object per line), or as Server-Sent Events with
//! `Accept: text/event-stream` (`event: reply|failed|done`, the object as data). Frames are
//! strings or `{"base64": ...}`. Before anything is streamed: `503` with `Retry-After` when
//! the service has no worker, `403` without the right to call it, and the other statuses of
//! a request.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use domo_client::BroadcastEvent;
use serde_json::{json, Value};

use crate::{error, failed, frames, within, Answer, Auth, CallQuery, Gateway, Right};

/// One event as a JSON object.
pub(crate) fn event_json(event: &BroadcastEvent) -> Value {
    match event {
        BroadcastEvent::Reply { worker, frames } => {
            json!({ "event": "reply", "worker": worker, "frames": frames::to_json(frames) })
        }
        BroadcastEvent::Failed { worker } => json!({ "event": "failed", "worker": worker }),
        BroadcastEvent::Done(s) => {
            let workers: serde_json::Map<String, Value> = s
                .workers
                .iter()
                .map(|(w, o)| (w.clone(), json!(o.as_str())))
                .collect();
            json!({
                "event": "done",
                "asked": s.asked,
                "answered": s.answered,
                "failed": s.failed,
                "timed_out": s.timed_out,
                "workers": workers,
            })
        }
    }
}

/// The bytes of one event: a line of NDJSON, or an SSE event.
fn chunk(event: &BroadcastEvent, sse: bool) -> Bytes {
    let v = event_json(event);
    if sse {
        let kind = v["event"].as_str().unwrap_or("message");
        Bytes::from(format!("event: {kind}\ndata: {v}\n\n"))
    } else {
        Bytes::from(format!("{v}\n"))
    }
}

pub(crate) async fn broadcast(
    State(g): State<Arc<Gateway>>,
    Auth(grant): Auth,
    Path(service): Path<String>,
    Query(q): Query<CallQuery>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Answer {
    grant.require(Right::Call, service.as_bytes())?;
    let deadline = q.deadline(&g.config)?;
    let request = q.frames(body)?;
    if !g.has_workers(&service, deadline).await? {
        return Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("no worker serves {service:?}"),
        ));
    }
    let sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let mut replies = within(deadline, g.client.broadcast(service, request, deadline)).await?;
    // The first event decides the status: a refusal is an HTTP error, not a stream.
    let first = replies
        .next()
        .await
        .map_err(|e| failed(&e))?
        .ok_or_else(|| {
            error(
                StatusCode::BAD_GATEWAY,
                "the broadcast ended without a summary",
            )
        })?;
    let head = futures_util::stream::once(async move { Ok::<_, Infallible>(chunk(&first, sse)) });
    let rest = futures_util::stream::unfold(Some(replies), move |replies| async move {
        let mut replies = replies?;
        match replies.next().await {
            Ok(Some(event)) => Some((Ok(chunk(&event, sse)), Some(replies))),
            Ok(None) => None,
            Err(e) => {
                // Headers are gone: say it in the stream, then end.
                let v = json!({ "event": "error", "error": e.to_string() });
                let text = if sse {
                    format!("event: error\ndata: {v}\n\n")
                } else {
                    format!("{v}\n")
                };
                Some((Ok(Bytes::from(text)), None))
            }
        }
    });
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/x-ndjson"
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(futures_util::StreamExt::chain(head, rest)),
    )
        .into_response())
}
