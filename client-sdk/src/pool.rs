//! The bounded pool of connections: one multiplexed connection per endpoint whose broker
//! lists `mux` (see `mux`), else one DEALER per request in flight.
//!
//! MDP/0.1 replies carry no request id, so a connection may carry one outstanding request
//! at a time, and a connection whose request was abandoned (timed out, or its future
//! dropped) may still receive that request's late reply. Such a connection is never reused
//! as is: [`Lease`]'s drop calls `reconnect()` on it (new TCP connection, new routing id,
//! both queues dropped), so the late reply goes to a routing id that no longer exists.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use domo_mdp::LockExt;
use domo_zmtp::Dealer;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::error::Error;
use crate::mux::MuxLink;
use crate::options::{ClientOptions, Failover};

/// One pooled connection and the endpoint it connects to.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) dealer: Dealer,
    endpoint: usize,
}

/// The connections of one client.
#[derive(Debug)]
pub(crate) struct Pool {
    pub(crate) options: ClientOptions,
    idle: Mutex<Vec<Conn>>,
    /// One permit per request in flight (per connection without multiplexing): bounds them
    /// to `pool_size`.
    permits: Semaphore,
    /// The multiplexed connection of each endpoint, opened with its first request.
    mux: Mutex<Vec<Option<Arc<MuxLink>>>>,
    /// Endpoints whose broker does not list `mux`: requests there use one connection each.
    plain: Vec<AtomicBool>,
    /// The endpoint new attempts go to; one lock so the endpoint and its settle point
    /// change together.
    current: Mutex<Current>,
}

/// The endpoint new attempts go to.
#[derive(Debug, Clone, Copy)]
struct Current {
    /// Its index in the endpoint list.
    endpoint: usize,
    /// With [`Failover::AnyTimeout`]: no attempt goes to `endpoint` before this instant, the
    /// start of the attempt that switched to it plus `settle`, so a Binary Star backup has
    /// taken over before any request reaches it (a passive broker drops what it gets).
    not_before: Option<Instant>,
}

impl Pool {
    pub(crate) fn new(options: ClientOptions) -> Self {
        let size = options.pool_size.max(1);
        let endpoints = options.endpoints.len();
        Self {
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Semaphore::new(size),
            mux: Mutex::new((0..endpoints).map(|_| None).collect()),
            plain: (0..endpoints).map(|_| AtomicBool::new(false)).collect(),
            options,
            current: Mutex::new(Current {
                endpoint: 0,
                not_before: None,
            }),
        }
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Conn>> {
        self.idle.lock_unpoisoned()
    }

    fn current_lock(&self) -> MutexGuard<'_, Current> {
        self.current.lock_unpoisoned()
    }

    /// Waits until one more request may be in flight.
    pub(crate) async fn permit(&self) -> Result<SemaphorePermit<'_>, Error> {
        self.permits.acquire().await.map_err(|_| Error::closed())
    }

    /// The multiplexed connection to `endpoint`, opened if need be; `None` when
    /// multiplexing is off or that endpoint's broker does not list `mux`.
    pub(crate) fn mux_link(&self, endpoint: usize) -> Result<Option<Arc<MuxLink>>, Error> {
        if !self.options.multiplex || self.plain[endpoint].load(Ordering::Relaxed) {
            return Ok(None);
        }
        let mut links = self.mux.lock_unpoisoned();
        if let Some(link) = &links[endpoint] {
            return Ok(Some(link.clone()));
        }
        if self.permits.is_closed() {
            return Err(Error::closed());
        }
        let ep = &self.options.endpoints[endpoint];
        let link = MuxLink::open(ep, self.options.dealer_options()).map_err(|e| match e {
            domo_zmtp::Error::Closed => Error::connection_closed(e),
            other => Error::invalid_endpoint(ep, other),
        })?;
        let link = Arc::new(link);
        links[endpoint] = Some(link.clone());
        Ok(Some(link))
    }

    /// Whether the broker at `endpoint` turned out not to multiplex.
    pub(crate) fn is_plain(&self, endpoint: usize) -> bool {
        self.plain[endpoint].load(Ordering::Relaxed)
    }

    /// The broker at `endpoint` does not multiplex: its requests use one connection each
    /// from now on, and the multiplexed connection is closed.
    pub(crate) fn set_plain(&self, endpoint: usize) {
        if self.plain[endpoint].swap(true, Ordering::Relaxed) {
            return;
        }
        info!(endpoint = %self.options.endpoints[endpoint], "Broker does not multiplex; one connection per request in flight");
        let link = self.mux.lock_unpoisoned()[endpoint].take();
        if let Some(link) = link {
            tokio::spawn(async move { link.shutdown().await });
        }
    }

    /// Waits for a free connection.
    pub(crate) async fn lease(&self) -> Result<Lease<'_>, Error> {
        let permit = self.permits.acquire().await.map_err(|_| Error::closed())?;
        let current = self.current();
        let conn = match self.idle().pop() {
            Some(conn) if conn.endpoint == current => conn,
            _ => self.open(current)?,
        };
        Ok(Lease {
            pool: self,
            conn: Some(conn),
            clean: false,
            _permit: permit,
        })
    }

    /// The endpoint index new attempts use.
    pub(crate) fn current(&self) -> usize {
        self.current_lock().endpoint
    }

    /// When an attempt may go to `endpoint`, if it must wait: only for the endpoint the pool
    /// just switched to with [`Failover::AnyTimeout`], until the switch's settle point.
    pub(crate) fn not_before(&self, endpoint: usize) -> Option<Instant> {
        let current = *self.current_lock();
        current.not_before.filter(|_| current.endpoint == endpoint)
    }

    /// Moves from endpoint `from` to the next one, unless another request already moved;
    /// `started` is when the attempt that timed out on `from` was sent.
    pub(crate) fn fail_over(&self, from: usize, started: Instant) {
        let n = self.options.endpoints.len();
        let mut current = self.current_lock();
        if n < 2 || current.endpoint != from {
            return;
        }
        current.endpoint = (from + 1) % n;
        current.not_before = match self.options.failover {
            Failover::Unreachable => None,
            Failover::AnyTimeout => Some(started + self.options.settle),
        };
        let endpoint = current.endpoint;
        drop(current);
        info!(endpoint = %self.options.endpoints[endpoint], "Failing over");
    }

    fn open(&self, endpoint: usize) -> Result<Conn, Error> {
        let ep = &self.options.endpoints[endpoint];
        let dealer = Dealer::connect(ep, self.options.dealer_options()).map_err(|e| match e {
            domo_zmtp::Error::Closed => Error::connection_closed(e),
            other => Error::invalid_endpoint(ep, other),
        })?;
        debug!(endpoint = %ep, "Connection opened");
        Ok(Conn { dealer, endpoint })
    }

    /// Stops handing out connections and closes the idle ones.
    pub(crate) async fn close(&self) {
        self.permits.close();
        let links: Vec<Arc<MuxLink>> = self
            .mux
            .lock_unpoisoned()
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for link in links {
            link.shutdown().await;
        }
        let idle: Vec<Conn> = self.idle().drain(..).collect();
        for conn in idle {
            conn.dealer.shutdown().await;
        }
    }
}

/// A connection lent to one request; returned to the pool on drop, reset unless the
/// request completed cleanly.
#[derive(Debug)]
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    clean: bool,
    _permit: SemaphorePermit<'a>,
}

impl Lease<'_> {
    fn conn(&self) -> &Conn {
        // Invariant: `conn` is only taken in `drop`.
        #[allow(clippy::expect_used)]
        self.conn
            .as_ref()
            .expect("lease holds a connection until dropped")
    }

    /// The leased connection.
    pub(crate) fn dealer(&self) -> &Dealer {
        &self.conn().dealer
    }

    /// The endpoint index of the leased connection.
    pub(crate) fn endpoint(&self) -> usize {
        self.conn().endpoint
    }

    /// The request got its reply: the connection can be reused as is.
    pub(crate) fn set_clean(&mut self) {
        self.clean = true;
    }

    /// Starts a fresh connection to the pool's current endpoint for the next attempt.
    pub(crate) fn refresh(&mut self) -> Result<(), Error> {
        let current = self.pool.current();
        if self.endpoint() == current {
            self.conn().dealer.reconnect();
        } else {
            self.conn = Some(self.pool.open(current)?);
        }
        self.clean = false;
        Ok(())
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.clean {
            conn.dealer.reconnect();
        }
        if !self.pool.permits.is_closed() {
            self.pool.idle().push(conn);
        }
    }
}
