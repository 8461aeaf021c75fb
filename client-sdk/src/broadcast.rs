//! [`Client::broadcast`]: one request to every worker of a service (the broker's
//! `mmi.broadcast`, docs/extensions.md section 5), each reply as it comes, then a summary.

use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use domo_mdp::broadcast::{self, Reply};
use domo_mdp::ServiceName;
use tokio::time::{Instant, Sleep};

pub use domo_mdp::broadcast::{Outcome, Summary};

use crate::mux::MuxStream;
use crate::{Client, Error};

/// What a [`Broadcast`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BroadcastEvent {
    /// A worker's reply.
    Reply {
        /// The worker (its routing id in the broker, in hex).
        worker: String,
        /// Its reply frames.
        frames: Vec<Bytes>,
    },
    /// A worker was lost before it replied.
    Failed {
        /// The worker.
        worker: String,
    },
    /// The last event: who was asked, and how each part ended.
    Done(Summary),
}

/// How much longer than the broadcast's own timeout the client waits for the summary.
const GRACE: Duration = Duration::from_secs(5);

/// The replies of one broadcast, in the order they come; ends after
/// [`BroadcastEvent::Done`]. Also a [`futures_core::Stream`] of
/// `Result<BroadcastEvent, Error>`.
#[derive(Debug)]
pub struct Broadcast {
    stream: MuxStream,
    service: ServiceName,
    deadline: Pin<Box<Sleep>>,
    done: bool,
}

impl Client {
    /// Sends `body` to every worker of `service` registered at the broker now (each gets one
    /// ordinary request) and returns their replies as they come: a
    /// [`BroadcastEvent::Reply`] per worker that answers within `timeout`, a
    /// [`BroadcastEvent::Failed`] per worker lost before it answered, then the
    /// [`BroadcastEvent::Done`] summary (workers that did not answer in time are
    /// [`Outcome::TimedOut`] there). The broker waits at most its own request timeout.
    ///
    /// Needs a domo broker and multiplexing (the default): one connection carries the
    /// replies. No retries: a broadcast sent twice would reach every worker twice.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidService`](crate::ErrorKind::InvalidService) for a bad name or a
    /// body the broker calls malformed, [`ErrorKind::Forbidden`](crate::ErrorKind::Forbidden)
    /// without the right to call `service` (or `mmi.broadcast`),
    /// [`ErrorKind::ServiceUnavailable`](crate::ErrorKind::ServiceUnavailable) when the
    /// broker cannot take it now, [`ErrorKind::UnexpectedReply`](crate::ErrorKind::UnexpectedReply)
    /// from a broker without `mmi.broadcast` (or with multiplexing off), and the
    /// connection errors of [`Client::request`]. These come from the first
    /// [`Broadcast::next`] when the broker answers so.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(client: domo_client::Client) -> Result<(), domo_client::Error> {
    /// use std::time::Duration;
    /// use domo_client::BroadcastEvent;
    /// let mut replies = client
    ///     .broadcast("cache.flush", vec!["all".into()], Duration::from_secs(2))
    ///     .await?;
    /// while let Some(event) = replies.next().await? {
    ///     match event {
    ///         BroadcastEvent::Reply { worker, frames } => println!("{worker}: {frames:?}"),
    ///         BroadcastEvent::Failed { worker } => println!("{worker} was lost"),
    ///         BroadcastEvent::Done(s) => println!("{} of {} answered", s.answered, s.asked),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn broadcast(
        &self,
        service: impl Into<Bytes>,
        body: Vec<Bytes>,
        timeout: Duration,
    ) -> Result<Broadcast, Error> {
        let service = ServiceName::new(service.into())?;
        let size: usize = body.iter().map(Bytes::len).sum();
        let limit = self.pool.options.max_message_size;
        if size > limit {
            return Err(Error::too_large(size, limit));
        }
        let not_here = || {
            Error::unexpected_reply(
                "mmi.broadcast needs a domo broker and a multiplexed connection".into(),
            )
        };
        let endpoint = self.pool.current();
        let link = self.pool.mux_link(endpoint)?.ok_or_else(not_here)?;
        let frames = broadcast::encode_request(&service, Some(timeout), body);
        let name = ServiceName::from_static(broadcast::SERVICE);
        let connect = tokio::time::timeout(self.pool.options.timeout, link.stream(&name, frames));
        let stream = match connect.await {
            Ok(Ok(Some(stream))) => stream,
            Ok(Ok(None)) => return Err(not_here()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Error::disconnected(&self.pool.options.endpoints)),
        };
        Ok(Broadcast {
            stream,
            service,
            deadline: Box::pin(tokio::time::sleep_until(Instant::now() + timeout + GRACE)),
            done: false,
        })
    }
}

impl Broadcast {
    /// The next event; `Ok(None)` after [`BroadcastEvent::Done`].
    ///
    /// # Errors
    /// As [`Client::broadcast`]; [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut) when no
    /// summary comes (the broker went away).
    pub async fn next(&mut self) -> Result<Option<BroadcastEvent>, Error> {
        std::future::poll_fn(|cx| self.poll_event(cx))
            .await
            .transpose()
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<BroadcastEvent, Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let body = match self.stream.poll_recv(cx) {
            Poll::Ready(Some(body)) => body,
            Poll::Ready(None) => {
                self.done = true;
                return Poll::Ready(Some(Err(Error::connection_closed(
                    domo_zmtp::Error::Closed,
                ))));
            }
            Poll::Pending => {
                if self.deadline.as_mut().poll(cx).is_ready() {
                    self.done = true;
                    return Poll::Ready(Some(Err(Error::timed_out(1))));
                }
                return Poll::Pending;
            }
        };
        let event = match Reply::decode(body.clone()) {
            Ok(Reply::Reply { worker, body }) => Ok(BroadcastEvent::Reply {
                worker,
                frames: body,
            }),
            Ok(Reply::Failed { worker }) => Ok(BroadcastEvent::Failed { worker }),
            Ok(Reply::Done(summary)) => {
                self.done = true;
                Ok(BroadcastEvent::Done(summary))
            }
            Ok(Reply::Refused { status, reason }) => {
                self.done = true;
                Err(match status {
                    403 => Error::forbidden(&self.service),
                    503 => Error::service_unavailable(format!("{} ({reason})", self.service)),
                    _ => Error::unexpected_reply(format!("mmi.broadcast: {status} {reason}")),
                })
            }
            Err(why) => {
                self.done = true;
                let shown: Vec<String> = body
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect();
                Err(Error::unexpected_reply(format!(
                    "{why}: {}",
                    shown.join(" | ")
                )))
            }
        };
        Poll::Ready(Some(event))
    }
}

impl futures_core::Stream for Broadcast {
    type Item = Result<BroadcastEvent, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_event(cx)
    }
}
