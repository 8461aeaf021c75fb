//! `GET /v1/topics/{prefix}/events`: the messages of every topic starting with `prefix`, as
//! Server-Sent Events, resumable with `Last-Event-ID`.
//!
//! Each message is one event:
//!
//! ```text
//! id: prices.eur:3f9a0c51d2e4b801:41
//! data: {"topic":"prices.eur","stream":"3f9a0c51d2e4b801","offset":41,"frames":["1.0842"]}
//! ```
//!
//! `frames` are as in request bodies (strings, or `{"base64": ...}`). The event's **id** is the
//! position reached in every topic the stream has delivered: `topic:stream:offset` (the topic
//! percent-encoded, the stream in hex, the offset of the topic's last message delivered),
//! separated by commas, the 256 most recently delivered topics at most. A browser's
//! `EventSource` sends the last id back as `Last-Event-ID` when it reconnects (a program can
//! give it as that header or as `?last_event_id=`), and the stream then starts after those
//! offsets: what was published meanwhile comes first, each message once, as far as the topics
//! retain it (`topic.create` retention; a topic without it keeps its last value only).
//!
//! Two other events say what cannot be delivered: `event: gap` (`{"topic", "stream",
//! "from", "to"}`: messages no longer retained) and `event: stream` (`{"topic", "old",
//! "new"}`: the topic was created again, offsets start over). A comment line every 15
//! seconds keeps proxies from closing an idle stream.
//!
//! Each stream is one subscriber connection to the broker's topics endpoint, read no faster
//! than the HTTP client reads: a slow client is a slow subscriber to the broker (its oldest
//! messages are dropped, then read back from retention, or reported as a gap).

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use domo_client::{Stamp, SubscriberEvent};
use serde_json::{json, Value};

use crate::{error, frames, Answer, Auth, Gateway, Grant, Right};

/// How often an idle stream gets a comment line.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Most topics an event id names.
const MAX_POSITIONS: usize = 256;

/// Events rendered ahead of the HTTP client.
const AHEAD: usize = 64;

/// The position reached in each topic delivered, and how recently.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    topics: HashMap<Bytes, (Stamp, u64)>,
    clock: u64,
}

impl Positions {
    /// Parses an event id (see the module docs).
    pub(crate) fn parse(id: &str) -> Result<Vec<(Bytes, Stamp)>, String> {
        let id = id.trim();
        if id.is_empty() {
            return Ok(Vec::new());
        }
        id.split(',')
            .map(|entry| {
                let bad = || format!("bad event id entry {entry:?}: expected topic:stream:offset");
                let mut parts = entry.rsplitn(3, ':');
                let offset = parts.next().and_then(|o| o.parse().ok()).ok_or_else(bad)?;
                let stream = parts
                    .next()
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                    .ok_or_else(bad)?;
                let topic = parts.next().and_then(percent_decode).ok_or_else(bad)?;
                Ok((topic, Stamp { stream, offset }))
            })
            .collect()
    }

    pub(crate) fn set(&mut self, topic: Bytes, stamp: Stamp) {
        self.clock += 1;
        self.topics.insert(topic, (stamp, self.clock));
        if self.topics.len() > MAX_POSITIONS * 2 {
            self.trim();
        }
    }

    /// Keeps the most recent [`MAX_POSITIONS`].
    fn trim(&mut self) {
        let mut ages: Vec<u64> = self.topics.values().map(|(_, t)| *t).collect();
        ages.sort_unstable_by_key(|t| std::cmp::Reverse(*t));
        if let Some(&oldest_kept) = ages.get(MAX_POSITIONS - 1) {
            self.topics.retain(|_, (_, t)| *t >= oldest_kept);
        }
    }

    /// The event id.
    pub(crate) fn id(&self) -> String {
        let mut entries: Vec<(&Bytes, &(Stamp, u64))> = self.topics.iter().collect();
        if entries.len() > MAX_POSITIONS {
            entries.sort_unstable_by_key(|e| std::cmp::Reverse(e.1 .1));
            entries.truncate(MAX_POSITIONS);
        }
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut id = String::new();
        for (topic, (stamp, _)) in entries {
            if !id.is_empty() {
                id.push(',');
            }
            percent_encode(topic, &mut id);
            let _ = write!(id, ":{:x}:{}", stamp.stream, stamp.offset);
        }
        id
    }
}

/// Bytes other than ASCII letters, digits and `.-_~` as `%XX`.
fn percent_encode(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn percent_decode(text: &str) -> Option<Bytes> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    (!out.is_empty()).then(|| Bytes::from(out))
}

/// One event as SSE text: its `event:` line (none for a message), its `id:`, its data.
fn event(kind: Option<&str>, id: Option<&str>, data: &serde_json::Value) -> Bytes {
    let mut s = String::new();
    if let Some(kind) = kind {
        let _ = writeln!(s, "event: {kind}");
    }
    if let Some(id) = id {
        let _ = writeln!(s, "id: {id}");
    }
    // JSON has no raw newline: one data line.
    let _ = write!(s, "data: {data}\n\n");
    Bytes::from(s)
}

/// A subscriber event as JSON, if the grant lets its topic through: its kind (`message`,
/// `gap`, `stream`) and its fields (shared by event streams and WebSockets).
pub(crate) fn event_json(ev: &SubscriberEvent, grant: &Grant) -> Option<(&'static str, Value)> {
    let (kind, topic, mut v) = match ev {
        SubscriberEvent::Message(m) => {
            let mut v = json!({ "frames": frames::to_json(&m.frames) });
            if let Some(s) = m.stamp {
                v["stream"] = json!(format!("{:x}", s.stream));
                v["offset"] = json!(s.offset);
            }
            ("message", &m.topic, v)
        }
        SubscriberEvent::Gap {
            topic,
            stream,
            from,
            to,
        } => (
            "gap",
            topic,
            json!({ "stream": format!("{stream:x}"), "from": from, "to": to }),
        ),
        SubscriberEvent::StreamChanged { topic, old, new } => (
            "stream",
            topic,
            json!({ "old": format!("{old:x}"), "new": format!("{new:x}") }),
        ),
    };
    if !grant.allows(Right::Subscribe, topic) {
        return None;
    }
    v["topic"] = json!(String::from_utf8_lossy(topic));
    Some((kind, v))
}

/// The SSE text of one subscriber event, if the grant lets it through. Messages update
/// `positions` and carry the event id.
pub(crate) fn render(
    ev: SubscriberEvent,
    grant: &Grant,
    positions: &mut Positions,
) -> Option<Bytes> {
    let (kind, data) = event_json(&ev, grant)?;
    if let SubscriberEvent::Message(m) = &ev {
        let id = m.stamp.map(|stamp| {
            positions.set(m.topic.clone(), stamp);
            positions.id()
        });
        return Some(event(None, id.as_deref(), &data));
    }
    Some(event(Some(kind), None, &data))
}

/// `?last_event_id=`.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct EventsQuery {
    last_event_id: Option<String>,
}

pub(crate) async fn topic_events(
    State(g): State<Arc<Gateway>>,
    Auth(grant): Auth,
    Path(prefix): Path<String>,
    axum::extract::Query(q): axum::extract::Query<EventsQuery>,
    headers: HeaderMap,
) -> Answer {
    grant.require(Right::Subscribe, prefix.as_bytes())?;
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(q.last_event_id);
    let resume = match &last {
        Some(id) => Positions::parse(id).map_err(|e| error(StatusCode::BAD_REQUEST, &e))?,
        None => Vec::new(),
    };
    let permit = g.stream_permit()?;
    let mut sub = g.subscriber()?;
    let mut positions = Positions::default();
    for (topic, stamp) in resume {
        if topic.starts_with(prefix.as_bytes()) {
            sub.resume_from(topic.clone(), stamp);
            positions.set(topic, stamp);
        }
    }
    sub.subscribe(prefix.as_bytes())
        .map_err(|e| error(StatusCode::BAD_GATEWAY, &e.to_string()))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(AHEAD);
    let closed = g.closing.closed();
    tokio::spawn(async move {
        tokio::pin!(closed);
        loop {
            let ev = tokio::select! {
                () = &mut closed => break,
                () = tx.closed() => break,
                ev = sub.next() => match ev {
                    Ok(ev) => ev,
                    Err(_) => break,
                },
            };
            if let Some(chunk) = render(ev, &grant, &mut positions) {
                if tx.send(chunk).await.is_err() {
                    break;
                }
            }
        }
        sub.close().await;
        drop(permit);
    });
    // Reconnect after a second; then a keepalive comment whenever nothing else is sent.
    let first = futures_util::stream::once(async { Ok(Bytes::from_static(b"retry: 1000\n\n")) });
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        match tokio::time::timeout(KEEPALIVE, rx.recv()).await {
            Ok(Some(chunk)) => Some((Ok::<_, Infallible>(chunk), rx)),
            Ok(None) => None,
            Err(_) => Some((Ok(Bytes::from_static(b": keepalive\n\n")), rx)),
        }
    });
    let body = Body::from_stream(futures_util::StreamExt::chain(first, rest));
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_id_names_every_topic_and_parses_back() {
        let mut p = Positions::default();
        p.set(
            Bytes::from_static(b"prices.eur"),
            Stamp {
                stream: 0xab,
                offset: 41,
            },
        );
        p.set(
            Bytes::from_static(b"a b:c,d"),
            Stamp {
                stream: 1,
                offset: 0,
            },
        );
        let id = p.id();
        assert_eq!(id, "a%20b%3Ac%2Cd:1:0,prices.eur:ab:41");
        let back = Positions::parse(&id).unwrap();
        assert_eq!(
            back,
            vec![
                (
                    Bytes::from_static(b"a b:c,d"),
                    Stamp {
                        stream: 1,
                        offset: 0
                    }
                ),
                (
                    Bytes::from_static(b"prices.eur"),
                    Stamp {
                        stream: 0xab,
                        offset: 41
                    }
                ),
            ]
        );
        for bad in ["x", "x:1", "x:zz:1", ":1:1", "x:1:-1", "%zz:1:1"] {
            assert!(Positions::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Positions::parse("").unwrap(), vec![]);
    }

    #[test]
    fn an_event_id_keeps_the_most_recent_topics() {
        let mut p = Positions::default();
        for i in 0..(MAX_POSITIONS as u64 * 3) {
            p.set(
                Bytes::from(format!("t{i}")),
                Stamp {
                    stream: 1,
                    offset: i,
                },
            );
        }
        let back = Positions::parse(&p.id()).unwrap();
        assert_eq!(back.len(), MAX_POSITIONS);
        let newest = MAX_POSITIONS as u64 * 3 - 1;
        assert!(back.iter().any(|(_, s)| s.offset == newest));
        assert!(back
            .iter()
            .all(|(_, s)| s.offset > newest - MAX_POSITIONS as u64));
    }

    #[test]
    fn a_message_the_token_may_not_read_is_left_out() {
        let mut p = Positions::default();
        let only_news = Grant::with_rights("x", "", "", "news").unwrap();
        let msg = |topic: &'static [u8]| {
            SubscriberEvent::Message(domo_client::TopicMessage {
                topic: Bytes::from_static(topic),
                stamp: Some(Stamp {
                    stream: 2,
                    offset: 7,
                }),
                frames: vec![Bytes::from_static(b"v")],
            })
        };
        let text = render(msg(b"news"), &only_news, &mut p).unwrap();
        assert_eq!(
            std::str::from_utf8(&text).unwrap(),
            "id: news:2:7\ndata: {\"frames\":[\"v\"],\"offset\":7,\"stream\":\"2\",\"topic\":\"news\"}\n\n"
        );
        assert_eq!(render(msg(b"newsletter"), &only_news, &mut p), None);
        assert_eq!(render(msg(b"prices"), &only_news, &mut p), None);
        // Left out of the id too.
        assert_eq!(p.id(), "news:2:7");
    }
}
