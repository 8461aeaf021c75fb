//! Topics: the bodies of the five `topic.*` services and the offset stamp of the subscriber
//! extension.
//!
//! The services are ordinary MDP services that a domo broker serves itself, so any MDP client
//! can call them. Numbers are decimal ASCII; every reply starts with a status frame of three
//! digits ([`Status`]), followed by a reason frame for the errors.
//!
//! | service        | request body                           | reply body (status 200) |
//! |----------------|----------------------------------------|-------------------------|
//! | `topic.create` | `[name]` then `key=value` frames       | `[200]["created" or "exists"]` |
//! | `topic.write`  | `[name][frame]...`                     | `[200][offset]` once stored |
//! | `topic.read`   | `[name][from]`, optionally `[max]`     | `[200][stream][first][next]` then per message `[offset][n][frame 1]...[frame n]` |
//! | `topic.delete` | `[name]`                               | `[200]` |
//! | `topic.list`   | `[]` or `[prefix]`                     | `[200]` then per topic `[name][info]` |
//!
//! * **Names** are 1 to [`MAX_NAME_LEN`] bytes; a topic's name is its messages' first frame,
//!   matched by byte prefix on the subscription side.
//! * **`topic.create` options** ([`Retention`]): `max_messages=N`, `max_bytes=N`,
//!   `max_age_ms=N` (0: no age limit) and `persist=memory` or `persist=disk`. A topic that
//!   exists with the same options answers `exists`; with others, `409`.
//! * **`topic.write`** publishes `[name][frame]...` exactly as a PUB socket would, and answers
//!   with the message's offset in its topic. To a topic nobody created it keeps the last
//!   value only, in memory, as ZeroMQ does.
//! * **`topic.read`** returns retained messages from offset `from` (at most `max`, default
//!   [`DEFAULT_READ_MAX`], at most [`MAX_READ`]): `stream` names this incarnation of the
//!   topic (offsets count within it), `first` is the oldest offset still retained (above
//!   `from` when older ones are gone: the gap a reader must report), `next` the offset the
//!   next message will get. Each message comes without its topic frame.
//! * **`topic.list`** gives, per topic whose name starts with the prefix (up to
//!   [`MAX_LIST`]), an info frame of `key=value` words: `kind=created` or
//!   `kind=last_value`, `persist=`, `stream=`, `first=`, `next=`, `messages=`, `bytes=`.
//! * **Statuses**: `400` malformed (the reason says what), `404` no such topic, `409` exists
//!   with other options, `413` over a limit, `500` the store failed (retry), `501` not
//!   available in this broker, `507` no room for the retention asked.
//!
//! # The offsets extension (subscribers)
//!
//! A subscriber that announces [`OFFSETS_PROPERTY`] = `1` in its ZMTP handshake (to a broker
//! that lists [`OFFSETS`] in its extensions) gets every message with a [`Stamp`] frame of
//! [`STAMP_LEN`] bytes after the topic frame: `[topic][stamp][frame]...`. The stamp is the
//! topic's stream id then the message's offset, both u64 big-endian. Other subscribers get the
//! message as published.

use bytes::{BufMut, Bytes, BytesMut};

/// Service name of `topic.create`.
pub const TOPIC_CREATE: &str = "topic.create";
/// Service name of `topic.write`.
pub const TOPIC_WRITE: &str = "topic.write";
/// Service name of `topic.read`.
pub const TOPIC_READ: &str = "topic.read";
/// Service name of `topic.delete`.
pub const TOPIC_DELETE: &str = "topic.delete";
/// Service name of `topic.list`.
pub const TOPIC_LIST: &str = "topic.list";

/// Longest topic name the services take.
pub const MAX_NAME_LEN: usize = 255;
/// Messages `topic.read` returns when not told.
pub const DEFAULT_READ_MAX: usize = 100;
/// Most messages one `topic.read` returns.
pub const MAX_READ: usize = 1000;
/// Most topics one `topic.list` returns.
pub const MAX_LIST: usize = 1000;

/// The name of the offsets extension in the broker's extension list.
pub const OFFSETS: &str = "offsets";
/// The subscriber's metadata property asking for stamps; its one valid value is `1`.
pub const OFFSETS_PROPERTY: &str = "X-Domo-Offsets";
/// Length of a [`Stamp`] frame.
pub const STAMP_LEN: usize = 16;

/// A `topic.*` reply status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `200`.
    Ok,
    /// `400`: malformed request; do not retry.
    BadRequest,
    /// `404`: no such topic.
    NotFound,
    /// `409`: the topic exists with other options.
    Conflict,
    /// `413`: over a limit (name, message).
    TooLarge,
    /// `500`: the store failed; retry later.
    Error,
    /// `501`: not available in this broker.
    NotImplemented,
    /// `507`: no room for the retention asked.
    InsufficientStorage,
}

impl Status {
    /// The status frame.
    pub const fn as_bytes(self) -> &'static [u8] {
        match self {
            Self::Ok => b"200",
            Self::BadRequest => b"400",
            Self::NotFound => b"404",
            Self::Conflict => b"409",
            Self::TooLarge => b"413",
            Self::Error => b"500",
            Self::NotImplemented => b"501",
            Self::InsufficientStorage => b"507",
        }
    }

    /// The status a frame starts with, if it is one of these.
    pub fn from_frame(frame: &[u8]) -> Option<Self> {
        let code = frame.get(..3)?;
        [
            Self::Ok,
            Self::BadRequest,
            Self::NotFound,
            Self::Conflict,
            Self::TooLarge,
            Self::Error,
            Self::NotImplemented,
            Self::InsufficientStorage,
        ]
        .into_iter()
        .find(|s| s.as_bytes() == code)
    }
}

/// Where a topic's messages are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Persist {
    /// In the broker's memory: gone with the process.
    #[default]
    Memory,
    /// On disk, durable before `topic.write` answers.
    Disk,
}

impl Persist {
    /// The option's value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Disk => "disk",
        }
    }
}

/// What a created topic keeps: the newest messages within all three bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Retention {
    /// Most messages.
    pub max_messages: u64,
    /// Most bytes (frames after the topic).
    pub max_bytes: u64,
    /// Oldest message age in milliseconds; 0: no age limit.
    pub max_age_ms: u64,
    /// Memory or disk.
    pub persist: Persist,
}

impl Default for Retention {
    /// 1,000 messages, 16 MiB, no age limit, in memory.
    fn default() -> Self {
        Self {
            max_messages: 1000,
            max_bytes: 16 << 20,
            max_age_ms: 0,
            persist: Persist::Memory,
        }
    }
}

impl Retention {
    /// Parses `topic.create`'s option frames over the defaults.
    ///
    /// # Errors
    /// A reason for `400`: an unknown key, a frame without `=`, a bad number, a zero bound.
    pub fn parse(frames: &[Bytes]) -> Result<Self, String> {
        let mut r = Self::default();
        for frame in frames {
            let text = std::str::from_utf8(frame).map_err(|_| "options are ASCII".to_string())?;
            let (key, value) = text
                .split_once('=')
                .ok_or_else(|| format!("option {text:?} is not key=value"))?;
            let number = || -> Result<u64, String> {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{key}: {value:?} is not a whole number"))
            };
            match key {
                "max_messages" => r.max_messages = number()?,
                "max_bytes" => r.max_bytes = number()?,
                "max_age_ms" => r.max_age_ms = number()?,
                "persist" => {
                    r.persist = match value {
                        "memory" => Persist::Memory,
                        "disk" => Persist::Disk,
                        _ => return Err(format!("persist: {value:?} is not memory or disk")),
                    }
                }
                _ => return Err(format!("unknown option {key:?}")),
            }
        }
        if r.max_messages == 0 || r.max_bytes == 0 {
            return Err("max_messages and max_bytes must be at least 1".to_string());
        }
        Ok(r)
    }

    /// The option frames that [`Retention::parse`] reads back as `self`.
    pub fn to_frames(&self) -> Vec<Bytes> {
        vec![
            Bytes::from(format!("max_messages={}", self.max_messages)),
            Bytes::from(format!("max_bytes={}", self.max_bytes)),
            Bytes::from(format!("max_age_ms={}", self.max_age_ms)),
            Bytes::from(format!("persist={}", self.persist.as_str())),
        ]
    }
}

/// Checks a topic name for the services.
///
/// # Errors
/// `(413, reason)` over [`MAX_NAME_LEN`], `(400, reason)` when empty.
pub fn check_name(name: &[u8]) -> Result<(), (Status, &'static str)> {
    if name.is_empty() {
        Err((Status::BadRequest, "empty topic name"))
    } else if name.len() > MAX_NAME_LEN {
        Err((Status::TooLarge, "topic name over 255 bytes"))
    } else {
        Ok(())
    }
}

/// A decimal ASCII number frame.
pub fn number(n: u64) -> Bytes {
    Bytes::from(n.to_string())
}

/// Parses a decimal ASCII number frame (digits only, at most 20 of them).
pub fn parse_number(frame: &[u8]) -> Option<u64> {
    if frame.is_empty() || frame.len() > 20 || !frame.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(frame).ok()?.parse().ok()
}

/// An error reply: `[status][reason]`.
pub fn error_reply(status: Status, reason: &str) -> Vec<Bytes> {
    vec![
        Bytes::from_static(status.as_bytes()),
        Bytes::copy_from_slice(reason.as_bytes()),
    ]
}

/// A message's place: its topic's stream and its offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stamp {
    /// The topic incarnation the offset counts in.
    pub stream: u64,
    /// The message's offset.
    pub offset: u64,
}

impl Stamp {
    /// The stamp frame.
    pub fn encode(self) -> Bytes {
        let mut b = BytesMut::with_capacity(STAMP_LEN);
        b.put_u64(self.stream);
        b.put_u64(self.offset);
        b.freeze()
    }

    /// Reads a stamp frame.
    pub fn decode(frame: &[u8]) -> Option<Self> {
        let bytes: [u8; STAMP_LEN] = frame.try_into().ok()?;
        let (s, o) = bytes.split_at(8);
        Some(Self {
            stream: u64::from_be_bytes(s.try_into().ok()?),
            offset: u64::from_be_bytes(o.try_into().ok()?),
        })
    }
}

/// One message of a `topic.read` reply, without its topic frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadMessage {
    /// Its offset.
    pub offset: u64,
    /// Its frames after the topic.
    pub frames: Vec<Bytes>,
}

/// A `topic.read` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReply {
    /// The topic's stream.
    pub stream: u64,
    /// The oldest offset retained.
    pub first: u64,
    /// The offset of the next message to be written.
    pub next: u64,
    /// The messages, in offset order.
    pub messages: Vec<ReadMessage>,
}

impl ReadReply {
    /// The reply body.
    pub fn encode(&self) -> Vec<Bytes> {
        let mut out = vec![
            Bytes::from_static(Status::Ok.as_bytes()),
            number(self.stream),
            number(self.first),
            number(self.next),
        ];
        for m in &self.messages {
            out.push(number(m.offset));
            out.push(number(m.frames.len() as u64));
            out.extend(m.frames.iter().cloned());
        }
        out
    }

    /// Reads a `200` reply body.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn decode(body: &[Bytes]) -> Result<Self, &'static str> {
        let [status, stream, first, next, rest @ ..] = body else {
            return Err("a read reply has at least four frames");
        };
        if Status::from_frame(status) != Some(Status::Ok) {
            return Err("not a 200 reply");
        }
        let num = |f: &Bytes| parse_number(f).ok_or("a number frame is not a number");
        let mut reply = Self {
            stream: num(stream)?,
            first: num(first)?,
            next: num(next)?,
            messages: Vec::new(),
        };
        let mut rest = rest;
        while let [offset, n, tail @ ..] = rest {
            let n = usize::try_from(num(n)?).map_err(|_| "frame count too large")?;
            if tail.len() < n {
                return Err("a message is cut short");
            }
            reply.messages.push(ReadMessage {
                offset: num(offset)?,
                frames: tail[..n].to_vec(),
            });
            rest = &tail[n..];
        }
        if !rest.is_empty() {
            return Err("a trailing frame");
        }
        Ok(reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn retention_options_round_trip_and_bad_ones_say_why() {
        let r = Retention {
            max_messages: 5,
            max_bytes: 100,
            max_age_ms: 60_000,
            persist: Persist::Disk,
        };
        assert_eq!(Retention::parse(&r.to_frames()), Ok(r));
        assert_eq!(Retention::parse(&[]), Ok(Retention::default()));
        for (frame, words) in [
            ("max_messages=x", "whole number"),
            ("max_messages=0", "at least 1"),
            ("colour=red", "unknown option"),
            ("persist=cloud", "memory or disk"),
            ("max_bytes", "key=value"),
        ] {
            let e = Retention::parse(&[b(frame)]).unwrap_err();
            assert!(e.contains(words), "{frame}: {e}");
        }
    }

    #[test]
    fn read_replies_round_trip_with_empty_and_binary_frames() {
        let reply = ReadReply {
            stream: u64::MAX,
            first: 3,
            next: 6,
            messages: vec![
                ReadMessage {
                    offset: 3,
                    frames: vec![],
                },
                ReadMessage {
                    offset: 5,
                    frames: vec![Bytes::new(), Bytes::from_static(&[0, 255, 10])],
                },
            ],
        };
        let body = reply.encode();
        assert_eq!(
            body[..6],
            [
                b("200"),
                b("18446744073709551615"),
                b("3"),
                b("6"),
                b("3"),
                b("0")
            ]
        );
        assert_eq!(ReadReply::decode(&body), Ok(reply));
    }

    #[test]
    fn malformed_read_replies_are_errors_not_panics() {
        for body in [
            vec![],
            vec![b("200"), b("1"), b("2")],
            vec![b("404"), b("1"), b("2"), b("3")],
            vec![b("200"), b("1"), b("2"), b("3"), b("4"), b("5"), b("x")],
            vec![b("200"), b("1"), b("2"), b("3"), b("4")],
            vec![b("200"), b("-1"), b("2"), b("3")],
            vec![
                b("200"),
                b("1"),
                b("2"),
                b("3"),
                b("4"),
                b("99999999999999999999"),
            ],
        ] {
            assert!(ReadReply::decode(&body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn stamps_are_sixteen_big_endian_bytes() {
        let s = Stamp {
            stream: 0x0102_0304_0506_0708,
            offset: 9,
        };
        let f = s.encode();
        assert_eq!(&f[..], &[1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(Stamp::decode(&f), Some(s));
        assert_eq!(Stamp::decode(&f[..15]), None);
    }

    #[test]
    fn names_numbers_and_statuses() {
        assert!(check_name(b"a").is_ok());
        assert_eq!(check_name(b"").unwrap_err().0, Status::BadRequest);
        assert_eq!(check_name(&[b'x'; 256]).unwrap_err().0, Status::TooLarge);
        assert_eq!(parse_number(b"0"), Some(0));
        assert_eq!(parse_number(b"+1"), None);
        assert_eq!(parse_number(b""), None);
        assert_eq!(parse_number(b"18446744073709551616"), None);
        assert_eq!(Status::from_frame(b"409 exists"), Some(Status::Conflict));
        assert_eq!(Status::from_frame(b"20"), None);
    }
}
