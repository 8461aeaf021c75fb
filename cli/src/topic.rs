//! `domo topic create|write|read|list|delete`, `domo pub` and `domo sub`: topics from the
//! command line.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use domo_client::{Persist, Publisher, Retention, Subscriber, SubscriberEvent, TopicBroker};
use serde_json::json;

use crate::call::{client, fail};
use crate::output::{frame_text, frames_json, hex};
use crate::RequestArgs;

/// `domo topic create NAME`: prints `created` or `exists`.
pub(crate) async fn create(
    args: &RequestArgs,
    name: &str,
    max_messages: u64,
    max_bytes: u64,
    max_age: Option<Duration>,
    disk: bool,
) -> ExitCode {
    let retention = Retention {
        max_messages,
        max_bytes,
        max_age_ms: max_age.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        persist: if disk { Persist::Disk } else { Persist::Memory },
    };
    let created = match client(args) {
        Ok(c) => c.topic_create(name.to_string(), retention).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(true) => println!("created"),
        Ok(false) => println!("exists"),
        Err(e) => return fail(e),
    }
    ExitCode::SUCCESS
}

/// `domo topic write NAME [FRAME]...` and `domo pub TOPIC [FRAME]...`: prints the offset once
/// the broker has stored the message.
pub(crate) async fn write(args: &RequestArgs, name: &str, frames: Vec<String>) -> ExitCode {
    let frames: Vec<Bytes> = frames.into_iter().map(Bytes::from).collect();
    let offset = match client(args) {
        Ok(c) => c.topic_write(name.to_string(), frames).await,
        Err(e) => Err(e),
    };
    match offset {
        Ok(offset) => {
            println!("{offset}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `domo pub --no-ack TOPIC [FRAME]...`: sends on a PUB connection to `publish` and waits
/// (up to the linger) for it to go out; nothing says whether it arrived.
pub(crate) async fn send(
    args: &RequestArgs,
    publish: &str,
    topic: &str,
    frames: Vec<String>,
) -> ExitCode {
    let client = match client(args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let broker = TopicBroker {
        client,
        subscribe: String::new(),
        publish: publish.to_string(),
    };
    let publisher = match Publisher::new([broker]) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let frames: Vec<Bytes> = frames.into_iter().map(Bytes::from).collect();
    if let Err(e) = publisher.send(topic.to_string(), frames) {
        return fail(e);
    }
    publisher.close().await;
    ExitCode::SUCCESS
}

/// `domo topic read NAME`: one line per message, `OFFSET FRAME | FRAME...`, or JSON.
pub(crate) async fn read(
    args: &RequestArgs,
    name: &str,
    from: u64,
    max: usize,
    as_json: bool,
) -> ExitCode {
    let reply = match client(args) {
        Ok(c) => c.topic_read(name.to_string(), from, max).await,
        Err(e) => Err(e),
    };
    let reply = match reply {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if reply.first > from {
        eprintln!(
            "domo: offsets {from}..{} are no longer retained",
            reply.first
        );
    }
    if as_json {
        let messages: Vec<_> = reply
            .messages
            .iter()
            .map(|m| json!({ "offset": m.offset, "frames": frames_json(&m.frames) }))
            .collect();
        let doc = json!({
            "stream": reply.stream,
            "first": reply.first,
            "next": reply.next,
            "messages": messages,
        });
        println!("{doc}");
    } else {
        for m in &reply.messages {
            println!("{} {}", m.offset, joined(&m.frames));
        }
    }
    ExitCode::SUCCESS
}

/// `domo topic list [PREFIX]`: `NAME INFO` per topic.
pub(crate) async fn list(args: &RequestArgs, prefix: &str) -> ExitCode {
    let topics = match client(args) {
        Ok(c) => c.topic_list(prefix.to_string()).await,
        Err(e) => Err(e),
    };
    match topics {
        Ok(topics) => {
            for (name, info) in topics {
                println!("{} {info}", frame_text(&name));
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `domo topic delete NAME`
pub(crate) async fn delete(args: &RequestArgs, name: &str) -> ExitCode {
    let deleted = match client(args) {
        Ok(c) => c.topic_delete(name.to_string()).await,
        Err(e) => Err(e),
    };
    match deleted {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// `domo sub PREFIX...`: prints each message as `TOPIC OFFSET FRAME | FRAME...` (or a JSON
/// object per line) as it comes, and gaps and stream changes on stderr; stops after `count`
/// messages if given.
pub(crate) async fn sub(
    args: &RequestArgs,
    subscribe: &str,
    prefixes: &[String],
    count: Option<u64>,
    as_json: bool,
) -> ExitCode {
    let client = match client(args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut subscriber = match Subscriber::new(subscribe, client) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let prefixes: Vec<&str> = if prefixes.is_empty() {
        vec![""]
    } else {
        prefixes.iter().map(String::as_str).collect()
    };
    for p in prefixes {
        if let Err(e) = subscriber.subscribe(p) {
            return fail(e);
        }
    }
    let mut printed = 0u64;
    while count.is_none_or(|n| printed < n) {
        let event = tokio::select! {
            ev = subscriber.next() => ev,
            _ = tokio::signal::ctrl_c() => break,
        };
        match event {
            Ok(SubscriberEvent::Message(m)) => {
                let offset = m
                    .stamp
                    .map_or_else(|| "-".to_string(), |s| s.offset.to_string());
                if as_json {
                    let doc = json!({
                        "topic": frame_text(&m.topic),
                        "stream": m.stamp.map(|s| s.stream),
                        "offset": m.stamp.map(|s| s.offset),
                        "frames": frames_json(&m.frames),
                    });
                    println!("{doc}");
                } else {
                    println!("{} {offset} {}", frame_text(&m.topic), joined(&m.frames));
                }
                printed += 1;
            }
            Ok(SubscriberEvent::Gap {
                topic, from, to, ..
            }) => eprintln!(
                "domo: {}: offsets {from}..{to} missed and no longer retained",
                frame_text(&topic)
            ),
            Ok(SubscriberEvent::StreamChanged { topic, old, new }) => eprintln!(
                "domo: {}: new stream {} (was {}): offsets start over",
                frame_text(&topic),
                hex(&new.to_be_bytes()),
                hex(&old.to_be_bytes())
            ),
            Err(e) => return fail(e),
        }
    }
    subscriber.close().await;
    ExitCode::SUCCESS
}

/// Frames on one line: `a | b | c`.
fn joined(frames: &[Bytes]) -> String {
    frames
        .iter()
        .map(|f| frame_text(f))
        .collect::<Vec<_>>()
        .join(" | ")
}
