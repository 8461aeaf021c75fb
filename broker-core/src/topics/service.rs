//! The five `topic.*` services on the core: request body in, reply body out (layouts in
//! `domo_mdp::topic`).

use std::time::Instant;

use bytes::Bytes;
use domo_mdp::topic::{
    check_name, error_reply, number, parse_number, Persist, Retention, Status, DEFAULT_READ_MAX,
    MAX_LIST, MAX_READ, TOPIC_CREATE, TOPIC_DELETE, TOPIC_LIST, TOPIC_READ, TOPIC_WRITE,
};

use super::Topics;

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
    /// Answers one `topic.*` request. Never panics on input: anything malformed gets `400`
    /// with a reason.
    pub fn handle_service(
        &mut self,
        now: Instant,
        service: TopicService,
        body: Vec<Bytes>,
    ) -> Vec<Bytes> {
        let Some((name, rest)) = body.split_first() else {
            return match service {
                TopicService::List => self.list_reply(&body),
                _ => error_reply(Status::BadRequest, "missing topic name"),
            };
        };
        if service == TopicService::List {
            return self.list_reply(&body);
        }
        // An empty body is one empty frame in MDP: the same "missing name".
        if let Err((status, reason)) = check_name(name) {
            return error_reply(status, reason);
        }
        match service {
            TopicService::Create => {
                let retention = match Retention::parse(rest) {
                    Ok(r) => r,
                    Err(reason) => return error_reply(Status::BadRequest, &reason),
                };
                if retention.persist == Persist::Disk {
                    return error_reply(
                        Status::NotImplemented,
                        "persist=disk is not available in this broker yet",
                    );
                }
                match self.create(now, name.clone(), retention) {
                    Ok(true) => ok([Bytes::from_static(b"created")]),
                    Ok(false) => ok([Bytes::from_static(b"exists")]),
                    Err((status, reason)) => error_reply(status, &reason),
                }
            }
            TopicService::Write => match self.publish(now, body) {
                Some(stamp) => ok([number(stamp.offset)]),
                None => error_reply(Status::BadRequest, "missing topic name"),
            },
            TopicService::Read => {
                let (from, max) = match rest {
                    [from] => (parse_number(from), Some(DEFAULT_READ_MAX as u64)),
                    [from, max] => (parse_number(from), parse_number(max)),
                    _ => {
                        return error_reply(
                            Status::BadRequest,
                            "topic.read takes [name][from][max]",
                        )
                    }
                };
                let (Some(from), Some(max)) = (from, max) else {
                    return error_reply(Status::BadRequest, "from and max are whole numbers");
                };
                let max = usize::try_from(max).unwrap_or(MAX_READ).min(MAX_READ);
                match self.read(now, name, from, max) {
                    Some(reply) => reply.encode(),
                    None => error_reply(Status::NotFound, "no such topic"),
                }
            }
            TopicService::Delete => {
                if !rest.is_empty() {
                    return error_reply(Status::BadRequest, "topic.delete takes [name]");
                }
                if self.delete(name) {
                    ok([])
                } else {
                    error_reply(Status::NotFound, "no such topic")
                }
            }
            TopicService::List => self.list_reply(&body),
        }
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
