//! domo-worker: an async (tokio) MDP/0.1 worker, with Paranoid Pirate heartbeating and
//! reconnection.
//!
//! A [`Worker`] serves one service over one or more *sessions*; each session is one MDP
//! worker connection (one DEALER socket) to a broker and holds up to
//! [`WorkerOptions::credit`] requests at once (default 32), so the worker's concurrency is
//! sessions x credit.
//!
//! # Worker credit
//!
//! Each session announces its credit to the broker in its ZMTP handshake (`X-Domo-Credit`,
//! when above 1). A domo broker (which lists `credit` in its `X-Domo-Extensions`) then keeps
//! up to that many requests at the session, each with its own client-address frame, and
//! the session replies to each as soon as it is done, in whatever order they finish. The
//! handler futures of one session all run in the session's task, interleaved at their
//! `.await`s, with no task switch per request.
//!
//! * A handler that must run one request at a time: `credit(1)` (with one session).
//! * With [`Worker::recv`], the requests the application has not taken yet wait in the
//!   worker, like a prefetch; a consumer that handles one request at a time, with many
//!   workers of the same service, may want a lower credit.
//! * An RFC 7 broker ignores the property and sends each session one request at a time, as
//!   before; nothing else changes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), domo_worker::Error> {
//! use domo_worker::{Worker, WorkerOptions};
//!
//! let options = WorkerOptions::new(["tcp://127.0.0.1:5555"]).sessions(4);
//! // Checks the name and options; the sessions connect once `serve` (or `recv`) runs.
//! let worker = Worker::new("echo", options)?;
//! worker
//!     .serve(
//!         |body| async move { Ok::<_, std::convert::Infallible>(body) },
//!         async { let _ = tokio::signal::ctrl_c().await; },
//!     )
//!     .await;
//! # Ok(()) }
//! ```
//!
//! # Reliability
//!
//! * Each session heartbeats every `heartbeat.interval` (default 2500 ms) and declares the
//!   broker dead after `heartbeat.liveness` (default 3) silent intervals, the broker's own
//!   defaults. It then waits a backoff delay (1 s doubling to 32 s, jittered, back to 1 s
//!   after any sign of life) and registers again on a new connection (new identity) with
//!   the next endpoint of the list (in [`EndpointMode::Failover`], the default) or with
//!   its own endpoint (in [`EndpointMode::EachBroker`]). A DISCONNECT from the broker
//!   re-registers with the same endpoint after the backoff delay.
//! * Binary Star pair: use [`WorkerOptions::pair`] (that is, [`EndpointMode::EachBroker`]),
//!   which registers `sessions` sessions with the primary *and* `sessions` with the backup
//!   and keeps both sets registered. The backup then already knows every worker when it
//!   takes over, instead of waiting for workers to notice the loss and move over (3
//!   heartbeats plus the backoff in failover mode). The worker only gets requests from the
//!   active broker, because the passive one dispatches nothing; requests from either broker
//!   reach the same handler or [`Worker::recv`]. Losing one broker does not touch the
//!   sessions to the other.
//! * [`Worker::shutdown`] (or the end of [`Worker::serve`]) sends DISCONNECT on every
//!   session, so the broker stops routing to it at once.
//!
//! # Creating a worker
//!
//! [`Worker::new`] checks the service name and the options and opens nothing: the sessions
//! connect and register when [`Worker::serve`] or the first [`Worker::recv`] starts them,
//! so a worker never registers before it can take requests. A broker that is down then is
//! not an error: each session keeps trying (with the backoff) until it is up.
//! (`Worker::connect`, the old name, is a deprecated alias of [`Worker::new`].)
//!
//! [`WorkerOptions`] has a setter for every field. A zero where zero makes no sense
//! (sessions, credit, heartbeat interval or liveness, backoff delays), and a credit above
//! 1024, is refused by [`Worker::new`] with [`ErrorKind::InvalidOptions`]; setters never
//! clamp or panic.
//!
//! # Errors
//!
//! [`Error::kind`] says what went wrong ([`ErrorKind`]); [`std::error::Error::source`]
//! gives the underlying error (the service name check's, the endpoint parser's) where there
//! is one.
//!
//! # Security
//!
//! With [`WorkerOptions::curve`] (the broker's public key and the worker's keypair, for
//! example from certificate files with [`domo_zmtp::curve::CurveClient::from_files`]) every
//! session is encrypted and authenticated with CURVE (RFC 25/26). A broker that refuses the
//! handshake (a key it does not allow, a wrong broker key, a broker without CURVE) is not
//! taken for a silent one: from the session's next heartbeat on it is logged (at ERROR: an
//! operator must change keys or the broker's allow-list) and reported by
//! [`Worker::status`] as an [`ErrorKind::Handshake`] error (`handshake failed: not
//! authorized`, ...), while the session keeps retrying with its backoff. The first message
//! from the broker clears it.
//!
//! # When a handler fails
//!
//! A handler that returns an error or panics, or a [`Request`] dropped without a reply, does
//! not stop the worker. MDP/0.1 has no error reply, and a made-up reply body would reach the
//! client as if it were an answer, so **the client gets no reply from this worker**. Instead
//! the session sends DISCONNECT and registers again at once on a new connection. The broker
//! then treats the request as having lost its worker: domo-broker re-dispatches it to a
//! worker up to its `max_redispatch` limit and then drops it; the client's own timeout and
//! retries apply (domo-client reports `ErrorKind::TimedOut`).
//!
//! The other requests the session holds at that moment (with a credit above 1) go with the
//! old connection: their handlers are dropped unfinished, no reply is sent for them, and the
//! broker dispatches them again as requests of a lost worker. Requests held by the worker's
//! other sessions are not touched.
//!
//! # Layout
//!
//! * `session`: the pure session rules (liveness, heartbeat, backoff, endpoint rotation),
//!   driven by `now` arguments and tested with exact times.
//! * `options`: [`WorkerOptions`], including which endpoints each session may use. The
//!   reconnect schedule ([`BackoffOptions`]) is `domo_mdp`'s, shared with Titanic's store.
//! * `driver`: the tokio task of one session, owning its connection and the requests it
//!   holds (`driver::inflight`, polled in the session's task); tested on in-memory links
//!   under tokio's paused clock.
//! * `transport`: what the driver needs from a connection (a ZMTP DEALER in production).
//! * `handler`: runs the [`Worker::serve`] handler inside the session, catching panics.
//! * `request`: [`Request`], answered with [`Request::reply`].

mod driver;
mod error;
mod handler;
mod options;
mod request;
mod session;
mod status;
mod transport;

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use domo_mdp::ServiceName;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::warn;

use crate::driver::Sink;
pub use crate::error::{Error, ErrorKind};
pub use crate::options::{EndpointMode, WorkerOptions};
pub use crate::request::Request;
pub use crate::status::WorkerStatus;
pub use domo_mdp::{BackoffOptions, Heartbeat};

/// A worker for one service: a set of sessions plus the queue of requests they received.
///
/// The sessions start (connect and send READY) on the first [`Worker::recv`], or in
/// [`Worker::serve`], so a worker never registers before it is ready to take requests.
/// Dropping it stops the sessions (without waiting for their DISCONNECT to be flushed; use
/// [`Worker::shutdown`] for that).
#[derive(Debug)]
pub struct Worker {
    service: ServiceName,
    options: Arc<WorkerOptions>,
    connector: Arc<transport::Zmtp>,
    /// The sessions' status slots, one per session.
    board: status::Board,
    /// Set once the sessions run in channel mode (`recv`).
    requests: Option<mpsc::Receiver<Request>>,
    stop: watch::Sender<bool>,
    sessions: JoinSet<()>,
}

impl Worker {
    /// Checks the name and options and returns a worker. It opens nothing: its sessions
    /// start on the first [`Worker::recv`] or in [`Worker::serve`]; from then on they
    /// connect, register and re-register in the background until shutdown. Use it inside a
    /// tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidService`] or [`ErrorKind::ReservedService`] for a bad name,
    /// [`ErrorKind::NoEndpoints`] or [`ErrorKind::InvalidEndpoint`] for bad endpoints,
    /// [`ErrorKind::InvalidOptions`] for a zero where zero makes no sense or a credit above
    /// 1024 (see the crate docs).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), domo_worker::Error> {
    /// use domo_worker::{Worker, WorkerOptions};
    /// let mut worker = Worker::new("echo", WorkerOptions::default())?;
    /// while let Some(mut request) = worker.recv().await {
    ///     let body = request.take_body();
    ///     let _ = request.reply(body);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn new(service: impl Into<Bytes>, options: WorkerOptions) -> Result<Self, Error> {
        let service = ServiceName::new(service.into())?;
        if service.is_mmi() {
            return Err(Error::reserved_service());
        }
        options.check()?;
        let (stop, _) = watch::channel(false);
        let connector = Arc::new(transport::Zmtp(options.dealer_options()));
        Ok(Self {
            connector,
            board: status::Board::new(options.total_sessions()),
            service,
            options: Arc::new(options),
            requests: None,
            stop,
            sessions: JoinSet::new(),
        })
    }

    /// The old name of [`Worker::new`], which opens no connection either.
    ///
    /// # Errors
    ///
    /// As [`Worker::new`].
    #[deprecated(
        note = "renamed to `Worker::new`: sessions connect once `serve` or `recv` starts them"
    )]
    pub fn connect(service: impl Into<Bytes>, options: WorkerOptions) -> Result<Self, Error> {
        Self::new(service, options)
    }

    /// The service this worker serves.
    pub fn service(&self) -> &ServiceName {
        &self.service
    }

    /// The health of the sessions, readable (and awaitable) while [`Worker::serve`] runs:
    /// see [`WorkerStatus`].
    pub fn status(&self) -> WorkerStatus {
        self.board.status()
    }

    fn start(&mut self, sink: &Sink) {
        for (n, endpoints) in self.options.session_endpoints().into_iter().enumerate() {
            let driver = driver::Driver {
                connector: self.connector.clone(),
                service: self.service.clone(),
                options: self.options.clone(),
                endpoints,
                sink: sink.clone(),
                stop: self.stop.subscribe(),
                status: self.board.reporter(n),
            };
            self.sessions.spawn(driver.run(n));
        }
    }

    /// The next request from any session; `None` once every session has ended. The first
    /// call starts the sessions.
    pub async fn recv(&mut self) -> Option<Request> {
        if self.requests.is_none() {
            // `credit` slots per session (on every endpoint): a session holds at most
            // `credit` requests, so it never finds the channel full.
            let (tx, rx) = mpsc::channel(self.options.max_requests());
            self.start(&Sink::Channel(tx));
            self.requests = Some(rx);
        }
        self.requests.as_mut()?.recv().await
    }

    /// Starts the sessions and answers every request with `handler` until `shutdown`
    /// completes, then shuts down (DISCONNECT on every session).
    ///
    /// Each session runs its handler futures itself, so up to [`WorkerOptions::total_sessions`]
    /// x [`WorkerOptions::credit`] handlers run at once (sessions alone against an RFC 7
    /// broker) and a request costs no task switch. A handler error or panic is logged
    /// (the panic is caught) and the request is failed (see the crate docs). A handler that blocks
    /// the thread also stops its session's heartbeats, as in the zguide's worker.
    pub async fn serve<F, Fut, E>(mut self, handler: F, shutdown: impl Future<Output = ()>)
    where
        F: Fn(Vec<Bytes>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Bytes>, E>> + Send + 'static,
        E: Display + Send + 'static,
    {
        if self.requests.is_some() {
            warn!(service = %self.service, "serve() after recv(): sessions already started");
        } else {
            self.start(&Sink::Handler(handler::wrap(handler)));
        }
        let sessions = async { while self.sessions.join_next().await.is_some() {} };
        tokio::select! {
            _ = shutdown => {}
            _ = sessions => {}
        }
        self.shutdown().await;
    }

    /// Stops every session: each sends DISCONNECT and closes its connection, flushing for up
    /// to the transport's linger time.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(rx) = self.requests.as_mut() {
            rx.close();
        }
        while self.sessions.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_opens_nothing_and_connect_is_its_old_name() {
        // Nothing listens on port 1: creating the worker must still succeed.
        let worker = Worker::new("echo", WorkerOptions::new(["tcp://127.0.0.1:1"])).unwrap();
        assert_eq!(worker.service().as_ref(), b"echo");
        #[allow(deprecated)]
        let old = Worker::connect("mmi.echo", WorkerOptions::default()).unwrap_err();
        assert_eq!(old.kind(), ErrorKind::ReservedService);
        let zero = Worker::new("echo", WorkerOptions::default().sessions(0)).unwrap_err();
        assert_eq!(zero.kind(), ErrorKind::InvalidOptions);
    }
}
