//! One request handed to the application, and the answer it sends back.

use bytes::Bytes;
use domo_mdp::PeerId;
use tokio::sync::oneshot;

use crate::error::Error;

/// What the application did with a request.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Send this body back as the REPLY.
    Reply(Vec<Bytes>),
    /// The handler failed (error, panic, or the [`Request`] was dropped unanswered).
    Failed,
}

/// A request from a client, received by one session of a [`crate::Worker`].
///
/// Answer it with [`Request::reply`]. Each request is answered at most once, since `reply`
/// consumes it. A request dropped without a reply counts as a failed request (see the
/// crate docs for what the client then sees).
#[derive(Debug)]
pub struct Request {
    body: Vec<Bytes>,
    client: PeerId,
    answer: Option<oneshot::Sender<Outcome>>,
}

impl Request {
    pub(crate) fn new(client: PeerId, body: Vec<Bytes>, answer: oneshot::Sender<Outcome>) -> Self {
        Self {
            body,
            client,
            answer: Some(answer),
        }
    }

    /// The request body: one or more frames, as the client sent them.
    pub fn body(&self) -> &[Bytes] {
        &self.body
    }

    /// Takes the body frames out of the request (the request stays answerable).
    pub fn take_body(&mut self) -> Vec<Bytes> {
        std::mem::take(&mut self.body)
    }

    /// The client-address frame the broker sent with the request, echoed in the reply; for
    /// logs. Opaque: domo's broker puts a token naming the request there, other brokers the
    /// client's routing id.
    pub fn client(&self) -> &PeerId {
        &self.client
    }

    /// Sends `body` back to the client. An empty body is sent as one empty frame (MDP
    /// requires at least one).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::SessionLost`](crate::ErrorKind::SessionLost) if the session that
    /// received the request lost its broker or shut down meanwhile; the reply is dropped.
    pub fn reply(mut self, body: Vec<Bytes>) -> Result<(), Error> {
        self.send(Outcome::Reply(body))
    }

    /// Declares the request failed without answering it: the session starts over on a new
    /// connection, as after a handler panic.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::SessionLost`](crate::ErrorKind::SessionLost) if the session is already
    /// gone.
    pub fn fail(mut self) -> Result<(), Error> {
        self.send(Outcome::Failed)
    }

    fn send(&mut self, outcome: Outcome) -> Result<(), Error> {
        let answer = self.answer.take().ok_or_else(Error::session_lost)?;
        answer.send(outcome).map_err(|_| Error::session_lost())
    }
}
