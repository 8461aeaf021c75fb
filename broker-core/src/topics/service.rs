//! The five `topic.*` services on the core: request body in, reply body out (layouts in
//! `domo_mdp::topic`).

use std::time::Instant;

use bytes::Bytes;
use domo_mdp::topic::{
    check_name, error_reply, number, parse_number, Persist, Retention, Status, DEFAULT_READ_MAX,
    MAX_LIST, MAX_READ, TOPIC_CREATE, TOPIC_DELETE, TOPIC_LIST, TOPIC_READ, TOPIC_WRITE,
};

use super::Topics;

/// What a `topic.*` request needs: an answer now, or a disk write first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The reply.
    Reply(Vec<Bytes>),
    /// Store the topic `name` (prepared: its bytes are reserved), then
    /// [`Topics::finish_disk_create`] and answer `[200]["created"]`; if storing fails,
    /// [`Topics::abandon_disk_create`] and answer `500`.
    CreateDisk {
        /// The topic.
        name: Bytes,
        /// Its retention (`persist=disk`).
        retention: Retention,
        /// Its stream.
        stream: u64,
    },
    /// Store the message under `stamp` (reserved), then [`Topics::append_reserved`] and
    /// answer `[200][offset]`; if storing fails, answer `500`.
    WriteDisk {
        /// Where it goes.
        stamp: domo_mdp::topic::Stamp,
        /// The message, topic first.
        frames: Vec<Bytes>,
    },
    /// Delete the topic `name` from the store, then [`Topics::delete`] and answer `[200]`.
    DeleteDisk {
        /// The topic.
        name: Bytes,
        /// Its stream.
        stream: u64,
    },
}

/// One of the `topic.*` services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicService {
    /// `topic.create`.
    Create,
    /// `topic.write`.
    Write,
    /// `topic.read`.
    Read,
    /// `topic.delete`.
    Delete,
    /// `topic.list`.
    List,
}

impl TopicService {
    /// All five.
    pub const ALL: [Self; 5] = [
        Self::Create,
        Self::Write,
        Self::Read,
        Self::Delete,
        Self::List,
    ];

    /// The MDP service name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Create => TOPIC_CREATE,
            Self::Write => TOPIC_WRITE,
            Self::Read => TOPIC_READ,
            Self::Delete => TOPIC_DELETE,
            Self::List => TOPIC_LIST,
        }
    }
}

fn ok(rest: impl IntoIterator<Item = Bytes>) -> Vec<Bytes> {
    let mut out = vec![Bytes::from_static(Status::Ok.as_bytes())];
    out.extend(rest);
    out
}

impl Topics {
    /// Answers one `topic.*` request for a core without a disk store: a request that needs
    /// one gets `501`.
    pub fn handle_service(
        &mut self,
        now: Instant,
        service: TopicService,
        body: Vec<Bytes>,
    ) -> Vec<Bytes> {
        match self.plan_service(now, service, body) {
            Plan::Reply(reply) => reply,
            Plan::CreateDisk { retention, .. } => {
                self.abandon_disk_create(retention);
                error_reply(
                    Status::NotImplemented,
                    "persist=disk is not available in this broker",
                )
            }
            Plan::WriteDisk { .. } | Plan::DeleteDisk { .. } => error_reply(
                Status::NotImplemented,
                "persist=disk is not available in this broker",
            ),
        }
    }

    /// Works out one `topic.*` request: the answer, or the disk write it needs first (see
    /// [`Plan`]). Never panics on input: anything malformed gets `400` with a reason.
    pub fn plan_service(&mut self, now: Instant, service: TopicService, body: Vec<Bytes>) -> Plan {
        Plan::Reply(match self.plan_or_reply(now, service, body) {
            Ok(plan) => return plan,
            Err(reply) => reply,
        })
    }

    fn plan_or_reply(
        &mut self,
        now: Instant,
        service: TopicService,
        body: Vec<Bytes>,
    ) -> Result<Plan, Vec<Bytes>> {
        let Some((name, rest)) = body.split_first() else {
            return Err(match service {
                TopicService::List => self.list_reply(&body),
                _ => error_reply(Status::BadRequest, "missing topic name"),
            });
        };
        if service == TopicService::List {
            return Err(self.list_reply(&body));
        }
        // An empty body is one empty frame in MDP: the same "missing name".
        if let Err((status, reason)) = check_name(name) {
            return Err(error_reply(status, reason));
        }
        let reply = match service {
            TopicService::Create => {
                let retention = match Retention::parse(rest) {
                    Ok(r) => r,
                    Err(reason) => return Err(error_reply(Status::BadRequest, &reason)),
                };
                if retention.persist == Persist::Disk {
                    return match self.prepare_disk_create(name, retention) {
                        Ok(true) => Ok(Plan::CreateDisk {
                            name: name.clone(),
                            retention,
                            stream: self.new_stream(),
                        }),
                        Ok(false) => Err(ok([Bytes::from_static(b"exists")])),
                        Err((status, reason)) => Err(error_reply(status, &reason)),
                    };
                }
                match self.create(now, name.clone(), retention) {
                    Ok(true) => ok([Bytes::from_static(b"created")]),
                    Ok(false) => ok([Bytes::from_static(b"exists")]),
                    Err((status, reason)) => error_reply(status, &reason),
                }
            }
            TopicService::Write => {
                if let Some(stamp) = self.reserve_disk(name) {
                    return Ok(Plan::WriteDisk {
                        stamp,
                        frames: body,
                    });
                }
                match self.publish(now, body) {
                    Some(stamp) => ok([number(stamp.offset)]),
                    None => error_reply(Status::BadRequest, "missing topic name"),
                }
            }
            TopicService::Read => {
                let (from, max) = match rest {
                    [from] => (parse_number(from), Some(DEFAULT_READ_MAX as u64)),
                    [from, max] => (parse_number(from), parse_number(max)),
                    _ => {
                        return Err(error_reply(
                            Status::BadRequest,
                            "topic.read takes [name][from][max]",
                        ))
                    }
                };
                let (Some(from), Some(max)) = (from, max) else {
                    return Err(error_reply(
                        Status::BadRequest,
                        "from and max are whole numbers",
                    ));
                };
                let max = usize::try_from(max).unwrap_or(MAX_READ).min(MAX_READ);
                match self.read(now, name, from, max) {
                    Some(reply) => reply.encode(),
                    None => error_reply(Status::NotFound, "no such topic"),
                }
            }
            TopicService::Delete => {
                if !rest.is_empty() {
                    return Err(error_reply(Status::BadRequest, "topic.delete takes [name]"));
                }
                if let Some(stream) = self.disk_stream(name) {
                    return Ok(Plan::DeleteDisk {
                        name: name.clone(),
                        stream,
                    });
                }
                if self.delete(name) {
                    ok([])
                } else {
                    error_reply(Status::NotFound, "no such topic")
                }
            }
            TopicService::List => self.list_reply(&body),
        };
        Err(reply)
    }

    /// `topic.list`: `[]` or `[prefix]`.
    fn list_reply(&self, body: &[Bytes]) -> Vec<Bytes> {
        let prefix = match body {
            [] => Bytes::new(),
            [p] => p.clone(),
            _ => return error_reply(Status::BadRequest, "topic.list takes [prefix]"),
        };
        let mut out = ok([]);
        for (name, info) in self.list(&prefix, MAX_LIST) {
            out.push(name);
            out.push(Bytes::from(info));
        }
        out
    }
}
