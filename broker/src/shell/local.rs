//! Services the broker serves in process: the embedded Titanic's `titanic.*`.
//!
//! Design: each in-process service is a worker as far as the core can tell, with a peer id no
//! connection can have (a zero byte, then more than the router's five-byte generated ids,
//! which RFC 23 reserves: a peer that asks for an identity starting with zero gets a
//! generated one). The shell says READY for it with a worker credit, and the core dispatches
//! to it, queues for it, counts it and applies every rule as for any worker. The REQUESTs the
//! core sends it never reach the router: the shell calls the service's handler with the body
//! and hands the core a REPLY when the handler's future completes. The futures are polled in
//! the event loop's own task (a `FuturesUnordered`), not spawned: a group commit answering 30
//! of them then wakes the loop once from the store's thread (one syscall on this runtime), not
//! 30 tasks, and no task is made and freed per request. The shell says HEARTBEAT for it
//! often enough that it never expires.
//!
//! Compared with the same service as an MDP worker over `inproc://`, this skips per request
//! two ZMTP encodings and decodings, two copies through the in-memory pipe, and the worker
//! session's and the two connections' task wake-ups.
//!
//! A handler that panics is answered with the service's failure reply (given with the
//! handler: Titanic's is `500`, "try again later"), and the panic is logged; the service goes
//! on. A DISCONNECT from the core (a drain ending) ends the service; it is not registered
//! again.

use std::future::{poll_fn, Future};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use domo_mdp::extensions::Announced;
use domo_mdp::sync::CatchUnwind;
use domo_mdp::worker::{self, WorkerCommand};
use domo_mdp::{Credit, PeerId, ServiceName};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tracing::{debug, error, info};

use crate::core::Broker;

/// A reply body, once the in-process service has answered.
pub type LocalReply = Pin<Box<dyn Future<Output = Vec<Bytes>> + Send>>;

/// An in-process service's handler: the request body in, the reply body out.
pub type LocalHandler = Arc<dyn Fn(Vec<Bytes>) -> LocalReply + Send + Sync>;

/// One in-process service.
struct LocalWorker {
    peer: PeerId,
    service: ServiceName,
    credit: Credit,
    handler: LocalHandler,
    /// The reply to a request whose handler panicked.
    failed: Vec<Bytes>,
    /// Registered with the core (READY said, no DISCONNECT since).
    ready: bool,
    /// Ended by a DISCONNECT from the core: not registered again.
    ended: bool,
}

/// A handler's outcome: which worker, the client-address frame, the reply body (`None` if
/// the handler panicked).
type Done = (usize, PeerId, Option<Vec<Bytes>>);

/// A handler's future, with what to do with its outcome.
type Running = Pin<Box<dyn Future<Output = Done> + Send>>;

/// The shell's in-process services and their requests in progress.
#[derive(Default)]
pub(super) struct Local {
    workers: Vec<LocalWorker>,
    running: FuturesUnordered<Running>,
    last_heartbeat: Option<Instant>,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field(
                "services",
                &self.workers.iter().map(|w| &w.service).collect::<Vec<_>>(),
            )
            .field("running", &self.running.len())
            .finish()
    }
}

impl Local {
    /// Adds `service`, served by `handler` with up to `credit` requests at once (`failed` is
    /// the reply when the handler panics). The shell registers it with the core when it
    /// starts serving.
    pub(super) fn add(
        &mut self,
        service: ServiceName,
        credit: Credit,
        handler: LocalHandler,
        failed: Vec<Bytes>,
    ) {
        let id = format!("\0domo-in-process-{}", self.workers.len());
        let peer = PeerId::new(Bytes::from(id)).expect("a short, non-empty id is a peer id");
        self.workers.push(LocalWorker {
            peer,
            service,
            credit,
            handler,
            failed,
            ready: false,
            ended: false,
        });
    }

    /// Whether `peer` is one of the in-process services (never a connection's id).
    pub(super) fn owns(&self, peer: &PeerId) -> bool {
        !self.workers.is_empty()
            && peer.as_bytes().first() == Some(&0)
            && self.workers.iter().any(|w| &w.peer == peer)
    }

    /// Whether a handler is running (the loop then waits for one to finish).
    pub(super) fn busy(&self) -> bool {
        !self.running.is_empty()
    }

    /// Says READY for every service not registered yet, and HEARTBEAT for the registered ones when one is due: at a third of the core's
    /// heartbeat interval, so none ever expires.
    pub(super) fn keep_registered(&mut self, core: &mut Broker, now: Instant) {
        if self.workers.is_empty() {
            return;
        }
        let every = core.config().heartbeat.interval / 3;
        let beat = self.last_heartbeat.is_none_or(|t| {
            now.saturating_duration_since(t) >= every.max(Duration::from_millis(1))
        });
        if beat {
            self.last_heartbeat = Some(now);
        }
        for w in &mut self.workers {
            if w.ended {
                continue;
            }
            let announced = Announced {
                credit: w.credit,
                mux: false,
            };
            if !w.ready {
                w.ready = true;
                info!(service = %w.service, credit = %w.credit, "Serving in process");
                core.register_in_process(now, w.peer.clone(), w.service.clone(), w.credit);
            } else if beat {
                core.handle_message_from(
                    now,
                    w.peer.clone(),
                    worker::encode_heartbeat(),
                    announced,
                );
            }
        }
    }

    /// Takes a message the core sent to an in-process service: a REQUEST starts its handler.
    pub(super) fn deliver(&mut self, peer: &PeerId, frames: Vec<Bytes>) {
        let Some(index) = self.workers.iter().position(|w| &w.peer == peer) else {
            return;
        };
        match worker::decode_from_broker(frames) {
            Ok(WorkerCommand::Request { client, body }) => {
                // A panic in the handler's call (its synchronous part) or in its future is
                // answered with the failure reply alike.
                let handler = &self.workers[index].handler;
                let started = std::panic::catch_unwind(AssertUnwindSafe(|| handler(body)));
                let running: Running = match started {
                    Ok(reply) => {
                        let reply = CatchUnwind::new(reply);
                        Box::pin(async move { (index, client, reply.await.ok()) })
                    }
                    Err(_) => Box::pin(std::future::ready((index, client, None))),
                };
                self.running.push(running);
            }
            Ok(WorkerCommand::Disconnect) => {
                let w = &mut self.workers[index];
                info!(service = %w.service, "In-process service disconnected by the broker");
                w.ready = false;
                w.ended = true;
            }
            Ok(_) => {} // HEARTBEAT
            Err(e) => debug!(error = %e, "Unexpected message to an in-process service"),
        }
    }

    /// Waits for handlers to finish: every one finished by the time it polls, up to `most`
    /// (at least one). Polls the handlers themselves (they run in the caller's task).
    pub(super) async fn finished(&mut self, most: usize) -> Vec<Done> {
        let mut done = Vec::new();
        poll_fn(|cx| {
            while done.len() < most.max(1) {
                match self.running.poll_next_unpin(cx) {
                    Poll::Ready(Some(finished)) => done.push(finished),
                    Poll::Ready(None) | Poll::Pending => break,
                }
            }
            if done.is_empty() {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        done
    }

    /// Hands a finished handler's reply (or, if it panicked, the failure reply) to the core.
    pub(super) fn finish(&mut self, core: &mut Broker, now: Instant, (index, client, body): Done) {
        let Some(w) = self.workers.get(index) else {
            return;
        };
        let body = body.unwrap_or_else(|| {
            error!(service = %w.service, "In-process handler panicked; answered with its failure reply");
            w.failed.clone()
        });
        if w.ready {
            let announced = Announced {
                credit: w.credit,
                mux: false,
            };
            let reply = worker::encode_reply(&client, body);
            core.handle_message_from(now, w.peer.clone(), reply, announced);
        }
    }
}
