//! The tokio task behind one worker session: owns the DEALER connection and drives the pure
//! [`Session`] with tokio's clock. No protocol rules live here.
//!
//! A session holds up to [`WorkerOptions::credit`] requests at once ([`InFlight`]), their
//! outcome futures polled by the session task itself; each REPLY echoes its own request's
//! client-address frame, in the order the outcomes settle.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use domo_mdp::worker::{
    decode_from_broker, encode_disconnect, encode_heartbeat, encode_ready, encode_reply,
};
use domo_mdp::{PeerId, ServiceName, WorkerCommand};
use domo_zmtp::HandshakeError;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, trace, warn};

use self::inflight::InFlight;
use crate::handler::{Handler, OutcomeFuture};
use crate::request::{Outcome, Request};
use crate::session::{Action, Session};
use crate::status::{Refusal, Reporter};
use crate::transport::{Connector, Link};
use crate::WorkerOptions;

/// Where a session's requests go.
#[derive(Clone)]
pub(crate) enum Sink {
    /// To [`crate::Worker::recv`], as [`Request`]s.
    Channel(mpsc::Sender<Request>),
    /// Straight into the handler given to [`crate::Worker::serve`], run by the session.
    Handler(Handler),
}

/// Everything one session task needs.
pub(crate) struct Driver<C> {
    pub(crate) connector: Arc<C>,
    pub(crate) service: ServiceName,
    pub(crate) options: Arc<WorkerOptions>,
    /// The endpoints this session may use, rotated through on losing the broker: the whole
    /// list in failover mode, its one endpoint when pinned ([`crate::EndpointMode`]).
    pub(crate) endpoints: Arc<[String]>,
    pub(crate) sink: Sink,
    pub(crate) stop: watch::Receiver<bool>,
    /// This session's slot of [`crate::WorkerStatus`].
    pub(crate) status: Reporter,
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl<C: Connector> Driver<C> {
    /// Runs the session until the worker stops; sends DISCONNECT on the way out.
    pub(crate) async fn run(mut self, session_no: usize) {
        let mut session = Session::new(
            now(),
            self.options.heartbeat,
            self.options.new_backoff(),
            self.endpoints.len(),
        );
        let Ok(mut dealer) = self.connect(0).await else {
            return;
        };
        let mut pending = InFlight::with_capacity(self.credit().min(64));
        // The endpoint of `dealer` (the session's may already point to the next one), and
        // whether a failed handshake on it is being reported.
        let mut linked = 0;
        let mut refused = false;
        info!(service = %self.service, session = session_no, endpoint = %self.endpoints[0], "Worker session registering");
        let timer =
            tokio::time::sleep_until(tokio::time::Instant::from_std(session.poll_timeout()));
        tokio::pin!(timer);
        loop {
            // Reset the one timer only when the deadline moved: a new `Sleep` per message
            // would cost a timer-wheel insert and removal each time.
            let wake = tokio::time::Instant::from_std(session.poll_timeout());
            if timer.deadline() != wake {
                timer.as_mut().reset(wake);
            }
            tokio::select! {
                biased;
                _ = self.stop.changed() => break,
                (client, outcome) = pending.next() => {
                    if !self.finish(&dealer, &mut session, client, outcome).await {
                        // The other requests of this connection go with it: the broker
                        // dispatches them again once it sees the DISCONNECT.
                        pending.clear();
                        let Ok(d) = self.restart(dealer, &mut session).await else {
                            return;
                        };
                        dealer = d;
                        linked = session.endpoint();
                    }
                }
                msg = dealer.recv() => match msg {
                    Some(msg) => {
                        // A message means a handshake succeeded.
                        if refused {
                            refused = false;
                            self.status.set(None);
                            info!(service = %self.service, endpoint = %self.endpoints[linked], "Handshake accepted");
                        }
                        self.inbound(msg, &mut session, &mut pending);
                    }
                    None => break,
                },
                _ = &mut timer => {}
            }
            while let Some(action) = session.poll_action(now()) {
                match action {
                    Action::SendHeartbeat => {
                        dealer.try_send(encode_heartbeat());
                        session.handle_sent(now());
                        refused |= self.report_handshake(&dealer, linked);
                    }
                    Action::Abandon => {
                        refused |= self.report_handshake(&dealer, linked);
                        let error = dealer.handshake_error().filter(HandshakeError::is_refusal);
                        let error = error.map(tracing::field::display);
                        warn!(service = %self.service, endpoint = %self.endpoints[linked], error, "Broker lost; reconnecting after backoff");
                        dealer.abandon();
                        pending.clear();
                    }
                    Action::Connect { endpoint } => {
                        debug!(service = %self.service, endpoint = %self.endpoints[endpoint], "Re-registering");
                        let Ok(d) = self.connect(endpoint).await else {
                            return;
                        };
                        dealer = d;
                        linked = endpoint;
                    }
                }
            }
        }
        if session.is_live() {
            dealer.try_send(encode_disconnect());
        }
        dealer.close().await;
    }

    /// A new connection to endpoint `index`, with READY queued on it.
    ///
    /// Fails only for an endpoint that does not parse, which [`crate::Worker::new`]
    /// already checked.
    async fn connect(&self, index: usize) -> Result<C::Link, domo_zmtp::Error> {
        let endpoint = &self.endpoints[index];
        let link = self.connector.connect(endpoint)?;
        link.send(encode_ready(&self.service)).await;
        Ok(link)
    }

    /// Puts the broker's refusal of `link`'s handshake (to endpoint `index`) in the status,
    /// logging it when it is news; true if there was one. The transport keeps reconnecting
    /// meanwhile, and the session's liveness and backoff go on as for a silent broker. A
    /// connection closed or stalled mid-handshake is bad luck, not a refusal: the
    /// transport logs those (at DEBUG).
    fn report_handshake(&self, link: &C::Link, index: usize) -> bool {
        let Some(error) = link.handshake_error().filter(HandshakeError::is_refusal) else {
            return false;
        };
        let endpoint = &self.endpoints[index];
        let refusal = Refusal {
            endpoint: endpoint.clone(),
            error: error.clone(),
        };
        if self.status.set(Some(refusal)) {
            // Keys or the broker's allow-list must change: an operator must act.
            error!(service = %self.service, %endpoint, %error, "Broker refused the handshake; retrying");
        }
        true
    }

    /// How many requests the session may hold at once (see [`WorkerOptions::credit`],
    /// checked by [`crate::Worker::new`]).
    fn credit(&self) -> usize {
        usize::try_from(self.options.credit.max(1)).unwrap_or(usize::MAX)
    }

    /// Handles one message from the broker.
    fn inbound(&self, msg: Vec<Bytes>, session: &mut Session, pending: &mut InFlight) {
        let at = now();
        if !session.is_live() {
            // Between connections: whatever arrives belongs to the abandoned one.
            return;
        }
        match decode_from_broker(msg) {
            Ok(WorkerCommand::Request { client, body }) => {
                session.handle_traffic(at);
                if pending.len() >= self.credit() {
                    // A broker that keeps to the credit we announced (or, not knowing of
                    // credit, to one at a time) never gets here.
                    warn!(service = %self.service, %client, held = pending.len(), "REQUEST beyond the credit; dropped");
                    return;
                }
                trace!(service = %self.service, %client, "Request");
                if let Some(outcome) = self.dispatch(&client, body) {
                    pending.insert(client, outcome);
                }
            }
            Ok(WorkerCommand::Disconnect) => {
                info!(service = %self.service, "Broker sent DISCONNECT; re-registering");
                session.handle_disconnect(at);
                pending.clear();
            }
            Ok(_) => session.handle_traffic(at),
            Err(error) => debug!(service = %self.service, %error, "Malformed message dropped"),
        }
    }

    /// Hands a request to the application; the future of its outcome.
    fn dispatch(&self, client: &PeerId, body: Vec<Bytes>) -> Option<OutcomeFuture> {
        match &self.sink {
            Sink::Handler(handler) => Some(handler(body)),
            Sink::Channel(requests) => {
                let (tx, rx) = oneshot::channel();
                let request = Request::new(client.clone(), body, tx);
                // Capacity is `credit` per session (of every endpoint) and a session holds
                // at most `credit` requests, so `Full` needs requests left in the queue by
                // a connection since lost; `Closed` means the worker is going away.
                if let Err(error) = requests.try_send(request) {
                    if matches!(error, mpsc::error::TrySendError::Full(_)) {
                        warn!(service = %self.service, %client, "Request queue full; request dropped");
                    }
                    return None;
                }
                Some(Box::pin(async move { rx.await.unwrap_or(Outcome::Failed) }))
            }
        }
    }

    /// Sends the reply; false if the request failed and the session must start over.
    async fn finish(
        &self,
        dealer: &C::Link,
        session: &mut Session,
        client: PeerId,
        outcome: Outcome,
    ) -> bool {
        match outcome {
            Outcome::Reply(body) => {
                dealer.send(encode_reply(&client, body)).await;
                session.handle_sent(now());
                true
            }
            Outcome::Failed => {
                warn!(service = %self.service, %client, "Handler failed; no reply, session restarts");
                false
            }
        }
    }

    /// DISCONNECT on the old connection (flushed as it lingers), READY on a new one.
    async fn restart(
        &self,
        old: C::Link,
        session: &mut Session,
    ) -> Result<C::Link, domo_zmtp::Error> {
        old.try_send(encode_disconnect());
        tokio::spawn(old.close());
        let dealer = self.connect(session.endpoint()).await?;
        session.handle_restart(now());
        Ok(dealer)
    }
}

mod inflight;
#[cfg(test)]
mod tests;
