//! The in-process transport: a process-wide registry of bound `inproc://` names, each a
//! channel to the binding router's accept loop. A connecting dealer creates a
//! [`tokio::io::duplex`] pair, hands one end to the acceptor and keeps the other; everything
//! above the byte stream (greeting, handshake, framing) runs unchanged on it.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use tokio::io::DuplexStream;
use tokio::sync::mpsc;

/// Bytes each direction of an inproc connection buffers before the writer waits for the
/// reader. The same as the driver's outbound batch (`driver::OUT_BATCH_BYTES`), so a full
/// batch goes in one vectored write, and in the range of a Unix socket's default buffer
/// (about 208 KiB on Linux): large enough that a burst of small messages or a large message
/// moves with few task switches, small enough that a connection pins at most 512 KiB when
/// its reader stalls (the high-water marks bound the queues above it, as with TCP).
pub(crate) const BUFFER_SIZE: usize = 256 * 1024;

type Acceptor = mpsc::UnboundedSender<DuplexStream>;

struct Entry {
    /// Tells this binding apart from a later one of the same name.
    id: u64,
    acceptor: Acceptor,
}

fn registry() -> MutexGuard<'static, HashMap<String, Entry>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Entry>>> = OnceLock::new();
    REGISTRY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A bound name; unbinds it when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    name: String,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registry = registry();
        if registry.get(&self.name).is_some_and(|e| e.id == self.id) {
            registry.remove(&self.name);
        }
    }
}

/// Binds `name`: returns its registration and the receiving end of its connections.
///
/// # Errors
/// `AddrInUse` if the name is bound already.
pub(crate) fn bind(
    name: &str,
) -> io::Result<(Registration, mpsc::UnboundedReceiver<DuplexStream>)> {
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);
    let mut registry = registry();
    // An acceptor whose receiver is gone belongs to a router that went away without its
    // registration being dropped yet (a task aborted, not yet dropped): the name is free.
    if registry.get(name).is_some_and(|e| !e.acceptor.is_closed()) {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "inproc name already bound",
        ));
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (acceptor, rx) = mpsc::unbounded_channel();
    registry.insert(name.to_string(), Entry { id, acceptor });
    let registration = Registration {
        name: name.to_string(),
        id,
    };
    Ok((registration, rx))
}

/// Connects to the router bound to `name`: returns our end of a fresh duplex pair.
///
/// # Errors
/// `ConnectionRefused` if nothing is bound to `name` (or its router is going away), as a TCP
/// connect to a closed port fails; the dealer retries with its usual backoff.
pub(crate) fn connect(name: &str) -> io::Result<DuplexStream> {
    let refused = || io::Error::new(io::ErrorKind::ConnectionRefused, "inproc name not bound");
    let acceptor = registry()
        .get(name)
        .map(|e| e.acceptor.clone())
        .ok_or_else(refused)?;
    let (ours, theirs) = tokio::io::duplex(BUFFER_SIZE);
    acceptor.send(theirs).map_err(|_| refused())?;
    Ok(ours)
}
