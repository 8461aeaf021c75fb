//! The three RFC 9 services as pure functions: MDP request body in, MDP reply body out.
//!
//! | service | request body | reply body |
//! |---|---|---|
//! | `titanic.request` | `[service][body...]` (2 frames or more) | `[200][uuid]` once durable |
//! | `titanic.reply` | `[uuid]` | `[200][reply...]`, `[300]` pending, `[400]` unknown |
//! | `titanic.close` | `[uuid]` | `[200]`, also for an unknown uuid |
//!
//! Any store error is `[500]` (try again later). Decisions where RFC 9 is silent:
//!
//! - A malformed body (too few or too many frames, an empty service name, a uuid that is not
//!   32 hex digits) is answered `[400]`: RFC 9's "do not retry" code, the right advice for a
//!   request that can never succeed (`500` would make a client retry forever).
//! - Status frames are the bare three digits, with no text after them, so clients that
//!   compare the whole frame with `"200"` (as the Guide's `ticlient` does) work too.
//! - Uuids are accepted in either case; the ones we hand out are lowercase.
//! - `titanic.reply` never deletes: the same reply comes back until `titanic.close`.

use bytes::Bytes;
use domo_mdp::mmi::Status;
use domo_mdp::titanic::{self as wire, Reply};

use crate::error::Error;
use crate::id::Id;
use crate::store::{Lookup, Store};

/// Status `200`: done (for `titanic.reply`: the service answered).
pub const OK: &[u8] = Status::Ok.as_bytes();
/// Status `300`: pending, ask again later.
pub const PENDING: &[u8] = Status::Pending.as_bytes();
/// Status `400`: unknown id or malformed request; do not retry.
pub const UNKNOWN: &[u8] = Status::BadRequest.as_bytes();
/// Status `500`: server-side failure; retry later.
pub const ERROR: &[u8] = Status::Error.as_bytes();

/// One of the three Titanic services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TitanicService {
    /// `titanic.request`: store a request for later delivery.
    Request,
    /// `titanic.reply`: fetch a reply.
    Reply,
    /// `titanic.close`: forget a request and its reply.
    Close,
}

impl TitanicService {
    /// All three, in the order a phase-2 worker registers them.
    pub const ALL: [Self; 3] = [Self::Request, Self::Reply, Self::Close];

    /// The MDP service name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Request => "titanic.request",
            Self::Reply => "titanic.reply",
            Self::Close => "titanic.close",
        }
    }

    /// The service with this MDP name, if it is one of Titanic's.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name().as_bytes() == name)
    }
}

/// Answers one request to `service`. Blocks until the store call returns (for a durable store,
/// until the group commit that carries it is on disk), so call it from a blocking thread.
pub fn handle(store: &dyn Store, service: TitanicService, body: Vec<Bytes>) -> Vec<Bytes> {
    match service {
        TitanicService::Request => handle_request(store, body),
        TitanicService::Reply => handle_reply(store, body),
        TitanicService::Close => handle_close(store, body),
    }
}

/// `titanic.request`: `[service][body...]` -> `[200][uuid]` once durable.
pub fn handle_request(store: &dyn Store, body: Vec<Bytes>) -> Vec<Bytes> {
    match decode_request(body) {
        Ok(wire::Submission {
            key: Some(key),
            service,
            body,
        }) => request_outcome(store.put_keyed(key, service, body)),
        Ok(wire::Submission { service, body, .. }) => {
            request_outcome(store.put_request(service, body))
        }
        Err(reply) => reply,
    }
}

/// The two parts of [`handle_request`] around the store call, for callers that make the
/// call themselves ([`Store::put_request_async`]): the service name and body frames of a
/// `titanic.request`, or the reply to a malformed one.
///
/// # Errors
///
/// `[400]`, the reply to send, if the body is malformed.
pub fn decode_request(body: Vec<Bytes>) -> Result<wire::Submission, Vec<Bytes>> {
    wire::decode_request(body).ok_or_else(|| status(UNKNOWN))
}

/// The reply to a `titanic.request` whose store call ended with `stored`.
pub fn request_outcome(stored: crate::error::Result<Id>) -> Vec<Bytes> {
    match stored {
        Ok(id) => wire::request_reply(&id.wire()),
        Err(e) => failed("titanic.request", &e),
    }
}

/// `titanic.reply`: `[uuid]` -> `[200][reply...]`, `[300]`, `[400]` or `[500]`.
pub fn handle_reply(store: &dyn Store, body: Vec<Bytes>) -> Vec<Bytes> {
    let Some(id) = single_id(&body) else {
        return status(UNKNOWN);
    };
    match store.get(id) {
        Ok(Lookup::Done(reply)) => wire::reply_reply(Reply::Done(reply.frames)),
        Ok(Lookup::Pending) => wire::reply_reply(Reply::Pending),
        Ok(Lookup::Unknown) => wire::reply_reply(Reply::Unknown),
        Err(e) => failed("titanic.reply", &e),
    }
}

/// `titanic.close`: `[uuid]` -> `[200]` (unknown ids too), `[400]` if malformed, `[500]`.
pub fn handle_close(store: &dyn Store, body: Vec<Bytes>) -> Vec<Bytes> {
    match decode_close(&body) {
        Ok(id) => close_outcome(store.close(id)),
        Err(reply) => reply,
    }
}

/// The id a `titanic.close` names, or the reply to a malformed one (as [`decode_request`]).
///
/// # Errors
///
/// `[400]`, the reply to send, if the body is not one uuid.
pub fn decode_close(body: &[Bytes]) -> Result<Id, Vec<Bytes>> {
    single_id(body).ok_or_else(|| status(UNKNOWN))
}

/// The reply to a `titanic.close` whose store call ended with `closed`.
pub fn close_outcome(closed: crate::error::Result<()>) -> Vec<Bytes> {
    match closed {
        Ok(()) => status(OK),
        Err(e) => failed("titanic.close", &e),
    }
}

fn single_id(body: &[Bytes]) -> Option<Id> {
    wire::decode_id_body(body).map(Id::from)
}

fn status(code: &'static [u8]) -> Vec<Bytes> {
    vec![Bytes::from_static(code)]
}

fn failed(service: &str, e: &Error) -> Vec<Bytes> {
    tracing::warn!(service, error = %e, "Titanic store call failed");
    status(ERROR)
}

#[cfg(test)]
mod tests;
