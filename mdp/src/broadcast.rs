//! `mmi.broadcast` (a domo extension, docs/extensions.md section 5): one request to every
//! worker of a service, each reply streamed back as it comes, then a summary.
//!
//! Workers are plain RFC 7 workers: each gets one ordinary REQUEST. Only a client on a
//! multiplexed connection (`mux`) can ask, since the answer is several REPLYs carrying the
//! request's tag; a broker that does not know the service answers `["501"]` as for any unknown
//! `mmi.*` service.
//!
//! Request body: `[service][timeout-ms][frame]...`, the timeout in decimal ASCII
//! (`0`: the broker's request timeout; at most that timeout in any case), at least one frame.
//!
//! Replies, each `[""][MDPC01]["mmi.broadcast"][tag][body...]`, in this order:
//!
//! | body | when |
//! |---|---|
//! | `["reply"][worker][frame]...` | a worker answered: its reply frames |
//! | `["failed"][worker]` | the worker was lost (disconnected, expired) holding the request |
//! | `["done"][asked][answered][failed][timed_out][outcome]...` | last: counts in decimal, then one `worker outcome` frame per worker asked (`answered`, `failed` or `timed_out`) |
//! | `[status][reason]` | instead of all of these: `400` malformed, `403` the caller may not call the service, `503` the broker cannot take it now |
//!
//! `worker` names a worker in the broker (its routing id in hex), the same in every frame of
//! one broadcast. A worker that has not answered when the timeout passes is `timed_out`; its
//! late reply is dropped.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::names::ServiceName;

/// The service a client sends a broadcast to.
pub const SERVICE: &str = "mmi.broadcast";

/// How one worker's part ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It replied.
    Answered,
    /// It was lost holding the request.
    Failed,
    /// It did not reply within the timeout.
    TimedOut,
}

impl Outcome {
    /// As on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "answered" => Some(Self::Answered),
            "failed" => Some(Self::Failed),
            "timed_out" => Some(Self::TimedOut),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A broadcast request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The service whose workers are asked.
    pub service: ServiceName,
    /// How long to wait for them; `None`: the broker's request timeout.
    pub timeout: Option<Duration>,
    /// The request each worker gets.
    pub body: Vec<Bytes>,
}

/// The body of a broadcast request.
pub fn encode_request(
    service: &ServiceName,
    timeout: Option<Duration>,
    body: impl IntoIterator<Item = Bytes>,
) -> Vec<Bytes> {
    let ms = timeout.map_or(0, |t| {
        u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
    });
    let mut frames = vec![
        Bytes::copy_from_slice(service.as_bytes()),
        Bytes::from(ms.to_string()),
    ];
    frames.extend(body);
    frames
}

/// Parses a broadcast request body.
///
/// # Errors
/// What is wrong, for the `400` reply.
pub fn parse_request(mut body: Vec<Bytes>) -> Result<Request, &'static str> {
    if body.len() < 3 {
        return Err("expected [service][timeout-ms][frame]...");
    }
    let rest = body.split_off(2);
    let service = ServiceName::new(body[0].clone()).map_err(|_| "bad service name")?;
    let ms: u64 = std::str::from_utf8(&body[1])
        .ok()
        .filter(|t| !t.is_empty() && t.len() <= 19 && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
        .ok_or("the timeout is not a decimal number of milliseconds")?;
    Ok(Request {
        service,
        timeout: (ms > 0).then(|| Duration::from_millis(ms)),
        body: rest,
    })
}

/// The counts of a finished broadcast, and each worker's outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Workers asked.
    pub asked: u64,
    /// Those that replied.
    pub answered: u64,
    /// Those lost holding the request.
    pub failed: u64,
    /// Those that did not reply in time.
    pub timed_out: u64,
    /// Each worker asked, with its outcome.
    pub workers: Vec<(String, Outcome)>,
}

impl Summary {
    /// The summary of `outcomes`.
    pub fn of(outcomes: impl IntoIterator<Item = (String, Outcome)>) -> Self {
        let mut s = Self::default();
        for (worker, outcome) in outcomes {
            s.asked += 1;
            match outcome {
                Outcome::Answered => s.answered += 1,
                Outcome::Failed => s.failed += 1,
                Outcome::TimedOut => s.timed_out += 1,
            }
            s.workers.push((worker, outcome));
        }
        s
    }
}

/// One reply of a broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A worker's reply.
    Reply {
        /// The worker.
        worker: String,
        /// Its reply frames.
        body: Vec<Bytes>,
    },
    /// A worker lost holding the request.
    Failed {
        /// The worker.
        worker: String,
    },
    /// The end.
    Done(Summary),
    /// The broker did not take the broadcast.
    Refused {
        /// `400`, `403` or `503`.
        status: u16,
        /// Why.
        reason: String,
    },
}

impl Reply {
    /// Its body frames.
    pub fn encode(&self) -> Vec<Bytes> {
        match self {
            Self::Reply { worker, body } => {
                let mut frames = Vec::with_capacity(2 + body.len());
                frames.push(Bytes::from_static(b"reply"));
                frames.push(Bytes::copy_from_slice(worker.as_bytes()));
                frames.extend(body.iter().cloned());
                frames
            }
            Self::Failed { worker } => vec![
                Bytes::from_static(b"failed"),
                Bytes::copy_from_slice(worker.as_bytes()),
            ],
            Self::Done(s) => {
                let mut frames = vec![Bytes::from_static(b"done")];
                for n in [s.asked, s.answered, s.failed, s.timed_out] {
                    frames.push(Bytes::from(n.to_string()));
                }
                for (worker, outcome) in &s.workers {
                    frames.push(Bytes::from(format!("{worker} {outcome}")));
                }
                frames
            }
            Self::Refused { status, reason } => vec![
                Bytes::from(status.to_string()),
                Bytes::copy_from_slice(reason.as_bytes()),
            ],
        }
    }

    /// Parses a reply body.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn decode(mut body: Vec<Bytes>) -> Result<Self, &'static str> {
        if body.is_empty() {
            return Err("empty broadcast reply");
        }
        let rest = body.split_off(1);
        let text = |b: &Bytes| String::from_utf8(b.to_vec()).map_err(|_| "not UTF-8");
        match &body[0][..] {
            b"reply" => {
                let (worker, frames) = rest.split_first().ok_or("reply without a worker")?;
                Ok(Self::Reply {
                    worker: text(worker)?,
                    body: frames.to_vec(),
                })
            }
            b"failed" => Ok(Self::Failed {
                worker: text(rest.first().ok_or("failed without a worker")?)?,
            }),
            b"done" => {
                if rest.len() < 4 {
                    return Err("done without its four counts");
                }
                let count = |b: &Bytes| -> Result<u64, &'static str> {
                    std::str::from_utf8(b)
                        .ok()
                        .and_then(|t| t.parse().ok())
                        .ok_or("bad count")
                };
                let mut workers = Vec::with_capacity(rest.len() - 4);
                for frame in &rest[4..] {
                    let line = text(frame)?;
                    let (worker, outcome) = line.rsplit_once(' ').ok_or("bad outcome")?;
                    let outcome = Outcome::parse(outcome).ok_or("bad outcome")?;
                    workers.push((worker.to_string(), outcome));
                }
                Ok(Self::Done(Summary {
                    asked: count(&rest[0])?,
                    answered: count(&rest[1])?,
                    failed: count(&rest[2])?,
                    timed_out: count(&rest[3])?,
                    workers,
                }))
            }
            status => {
                let code = std::str::from_utf8(status)
                    .ok()
                    .filter(|t| t.len() == 3)
                    .and_then(|t| t.parse().ok())
                    .ok_or("unknown broadcast reply")?;
                Ok(Self::Refused {
                    status: code,
                    reason: rest.first().map(text).transpose()?.unwrap_or_default(),
                })
            }
        }
    }
}

/// A worker's name in broadcast replies: its routing id in hex.
pub fn worker_name(routing_id: &[u8]) -> String {
    use fmt::Write as _;
    routing_id.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn a_request_round_trips_and_bad_ones_say_why() {
        let echo = ServiceName::from_static("echo");
        let frames = encode_request(&echo, Some(Duration::from_millis(1500)), [b("x"), b("")]);
        assert_eq!(frames, [b("echo"), b("1500"), b("x"), b("")]);
        let r = parse_request(frames).unwrap();
        assert_eq!(
            (r.service, r.timeout, r.body),
            (
                echo.clone(),
                Some(Duration::from_millis(1500)),
                vec![b("x"), b("")]
            )
        );
        assert_eq!(
            parse_request(encode_request(&echo, None, [b("x")]))
                .unwrap()
                .timeout,
            None
        );
        for bad in [
            vec![b("echo"), b("10")],
            vec![b(""), b("10"), b("x")],
            vec![b("echo"), b("-1"), b("x")],
            vec![b("echo"), b(""), b("x")],
            vec![b("echo"), b("99999999999999999999"), b("x")],
        ] {
            assert!(parse_request(bad.clone()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_reply_round_trips() {
        let summary = Summary::of([
            ("0a".to_string(), Outcome::Answered),
            ("0b".to_string(), Outcome::Failed),
            ("0c".to_string(), Outcome::TimedOut),
        ]);
        assert_eq!(
            (
                summary.asked,
                summary.answered,
                summary.failed,
                summary.timed_out
            ),
            (3, 1, 1, 1)
        );
        for reply in [
            Reply::Reply {
                worker: "0a".into(),
                body: vec![b("hi"), b("")],
            },
            Reply::Failed {
                worker: "0b".into(),
            },
            Reply::Done(summary),
            Reply::Done(Summary::default()),
            Reply::Refused {
                status: 403,
                reason: "no".into(),
            },
        ] {
            assert_eq!(Reply::decode(reply.encode()), Ok(reply.clone()));
        }
        assert_eq!(
            Reply::Done(Summary::of([("0a".to_string(), Outcome::TimedOut)])).encode(),
            [b("done"), b("1"), b("0"), b("0"), b("1"), b("0a timed_out")]
        );
        for bad in [
            vec![],
            vec![b("reply")],
            vec![b("done"), b("1")],
            vec![b("what")],
        ] {
            assert!(Reply::decode(bad.clone()).is_err(), "{bad:?}");
        }
        assert_eq!(worker_name(&[0, 0x80, 0, 0, 0x29]), "0080000029");
    }
}
