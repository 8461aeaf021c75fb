//! One lane: the task that sends one service's requests, with its own FIFO, connection pool
//! and backoff (see the parent module's docs).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use domo_client::{Client, ClientOptions, ErrorKind};
use domo_mdp::{Backoff, BackoffOptions};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{DispatcherOptions, Finished, Gate};
use crate::id::Id;
use crate::record::Request;
use crate::store::{Lookup, Store};

/// What one delivery attempt came to.
enum Outcome {
    /// Answered and stored.
    Done(Id),
    /// Not answered; try again after the backoff.
    Retry(Id, Request),
    /// Can never be sent; left pending in the store.
    Dropped,
    /// Not sent because the gate closed; send it once it opens again.
    Paused(Id, Request),
}

/// The retry schedule: [`DispatcherOptions::retry_min`] doubling to
/// [`DispatcherOptions::retry_max`], without jitter.
fn retry_backoff(options: &DispatcherOptions) -> Backoff {
    Backoff::new(
        BackoffOptions::default()
            .initial(options.retry_min)
            .max(options.retry_max)
            .jitter(false),
    )
}

/// The task sending one service's requests.
pub(super) struct Lane {
    pub(super) service: Bytes,
    pub(super) rx: mpsc::UnboundedReceiver<(Id, Request)>,
    pub(super) done: mpsc::UnboundedSender<Finished>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) store: Arc<dyn Store>,
    pub(super) client_options: ClientOptions,
    pub(super) options: DispatcherOptions,
}

impl Lane {
    pub(super) async fn run(mut self) {
        let service = String::from_utf8_lossy(&self.service).into_owned();
        let Ok(client) = Client::new(self.client_options.clone()) else {
            return; // the endpoints were checked in Dispatcher::new
        };
        let mut queue: VecDeque<(Id, Request)> = VecDeque::new();
        let mut inflight: JoinSet<Outcome> = JoinSet::new();
        let mut backoff = retry_backoff(&self.options);
        // Ask mmi.service before the first send.
        let mut probe_at = Some(Instant::now());
        let mut stop = self.stop.clone();
        let mut stop_probe = self.stop.clone();
        let mut active = Gate::new(&self.options);
        loop {
            let open = active.is_open();
            if open && probe_at.is_none() {
                while inflight.len() < self.options.concurrency {
                    let Some((id, request)) = queue.pop_front() else {
                        break;
                    };
                    inflight.spawn(deliver(
                        client.clone(),
                        self.store.clone(),
                        id,
                        request,
                        self.options.clone(),
                    ));
                }
            }
            let probe_due = async {
                match probe_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => break,
                _ = active.until(!open) => {
                    if open {
                        debug!(%service, "Lane paused");
                    } else {
                        // Resumed (e.g. after a takeover): start over like a new lane, so a
                        // backoff from before or during the pause does not delay anything.
                        debug!(%service, "Lane resumed");
                        backoff.reset();
                        probe_at = Some(Instant::now());
                    }
                }
                Some(outcome) = inflight.join_next(), if !inflight.is_empty() => {
                    match outcome {
                        Ok(Outcome::Done(id)) => {
                            backoff.reset();
                            let _ = self.done.send(Finished { service: self.service.clone(), id });
                        }
                        Ok(Outcome::Retry(id, request)) => {
                            queue.push_front((id, request));
                            if probe_at.is_none() {
                                let delay = backoff.next_delay();
                                debug!(%service, backoff = ?delay, "Service did not answer; retrying later");
                                probe_at = Some(Instant::now() + delay);
                            }
                        }
                        Ok(Outcome::Dropped) => {}
                        Ok(Outcome::Paused(id, request)) => queue.push_front((id, request)),
                        Err(e) => warn!(%service, error = %e, "Delivery task failed"),
                    }
                }
                item = self.rx.recv() => match item {
                    Some(item) => queue.push_back(item),
                    None => break,
                },
                _ = probe_due, if open && !queue.is_empty() => {
                    if !active.is_open() {
                        continue; // closed meanwhile: the next round waits for it
                    }
                    let available = tokio::select! {
                        _ = stopped(&mut stop_probe) => break,
                        a = client.service_available(self.service.clone()) => a,
                    };
                    match available {
                        // Available; or a broker without MMI (another answer, or none while
                        // the broker is reachable); or a name only `deliver` can judge.
                        Ok(true) => probe_at = None,
                        Err(e)
                            if matches!(
                                e.kind(),
                                ErrorKind::UnexpectedReply
                                    | ErrorKind::TimedOut
                                    | ErrorKind::InvalidService
                            ) =>
                        {
                            probe_at = None;
                        }
                        other => {
                            let delay = backoff.next_delay();
                            debug!(%service, ?other, backoff = ?delay, "Service not available; waiting");
                            probe_at = Some(Instant::now() + delay);
                        }
                    }
                }
            }
        }
        inflight.abort_all();
        client.close().await;
    }
}

/// Whether `id` still waits for its reply (true when the store cannot tell: send it).
async fn still_pending(store: &Arc<dyn Store>, id: Id) -> bool {
    let store = store.clone();
    !matches!(
        tokio::task::spawn_blocking(move || store.get(id)).await,
        Ok(Ok(Lookup::Done(_) | Lookup::Unknown))
    )
}

/// Completes once `stop` is true (or its sender is gone).
pub(super) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sends one request and stores its reply.
async fn deliver(
    client: Client,
    store: Arc<dyn Store>,
    id: Id,
    request: Request,
    options: DispatcherOptions,
) -> Outcome {
    if !still_pending(&store, id).await {
        // Closed or expired meanwhile (or already answered): nobody wants the answer.
        return Outcome::Done(id);
    }
    if !Gate::new(&options).is_open() {
        // The gate closed since this delivery was started: nothing may leave now.
        return Outcome::Paused(id, request);
    }
    let reply = match client
        .request(request.service.clone(), request.body.clone())
        .await
    {
        Ok(reply) => reply,
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::TimedOut
                    | ErrorKind::ServiceUnavailable
                    | ErrorKind::Disconnected
                    | ErrorKind::Handshake
                    | ErrorKind::Closed
            ) =>
        {
            return Outcome::Retry(id, request)
        }
        Err(e) => {
            warn!(request_id = %id, error = %e, "Request cannot be sent; left pending until it expires");
            return Outcome::Dropped;
        }
    };
    let mut backoff = retry_backoff(&options);
    loop {
        match store.complete_async(id, reply.clone()).await {
            Ok(()) => return Outcome::Done(id),
            Err(e) => warn!(request_id = %id, error = %e, "Storing a reply failed; retrying"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
