//! TCP, IPC and inproc streams behind one type, and the async handshake that runs on them.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::endpoint::Endpoint;
use crate::error::{Error, HandshakeError};
use crate::inproc;
use crate::proto::{Handshake, HandshakeStatus, PeerInfo};

/// Where a peer connected from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAddr {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A Unix domain socket peer (these have no useful address).
    Ipc,
    /// A peer in this process, connected through an `inproc://` endpoint.
    Inproc,
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Ipc => f.write_str("ipc"),
            Self::Inproc => f.write_str("inproc"),
        }
    }
}

/// A connected byte stream.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// One end of an in-process [`tokio::io::duplex`] pair.
    Mem(DuplexStream),
}

impl Stream {
    pub(crate) async fn connect(ep: &Endpoint) -> io::Result<(Self, PeerAddr)> {
        match ep {
            Endpoint::Inproc(name) => Ok((Self::Mem(inproc::connect(name)?), PeerAddr::Inproc)),
            Endpoint::Ipc(path) => {
                Ok((Self::Unix(UnixStream::connect(path).await?), PeerAddr::Ipc))
            }
            Endpoint::Tcp { .. } => {
                let target = ep.host_port().unwrap_or_default();
                let stream = TcpStream::connect(target).await?;
                stream.set_nodelay(true)?;
                let addr = stream.peer_addr()?;
                Ok((Self::Tcp(stream), PeerAddr::Tcp(addr)))
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Self::Mem(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Self::Mem(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Mem(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
            Self::Mem(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Self::Mem(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A bound listening socket.
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, std::path::PathBuf),
    /// Streams handed over by connecting dealers; the registration unbinds the name when
    /// dropped (see [`Listener::take_registration`]).
    Inproc(
        mpsc::UnboundedReceiver<DuplexStream>,
        Option<inproc::Registration>,
    ),
}

impl Listener {
    /// Binds `ep`; returns the listener and the endpoint as bound (port 0 resolved).
    pub(crate) async fn bind(ep: &Endpoint) -> Result<(Self, Endpoint), Error> {
        match ep {
            Endpoint::Inproc(name) => {
                let (registration, rx) =
                    inproc::bind(name).map_err(|e| Error::io(format!("bind {ep}"), e))?;
                Ok((Self::Inproc(rx, Some(registration)), ep.clone()))
            }
            Endpoint::Ipc(path) => {
                // Like libzmq, take over a stale socket file left by a previous run.
                if path.exists() {
                    let _ = std::fs::remove_file(path);
                }
                let l = UnixListener::bind(path).map_err(|e| Error::io(format!("bind {ep}"), e))?;
                Ok((Self::Unix(l, path.clone()), ep.clone()))
            }
            Endpoint::Tcp { .. } => {
                let target = ep.host_port().unwrap_or_default();
                let l = bind_tcp(&target)
                    .await
                    .map_err(|e| Error::io(format!("bind {ep}"), e))?;
                let local = l
                    .local_addr()
                    .map_err(|e| Error::io(format!("bind {ep}"), e))?;
                Ok((Self::Tcp(l), Endpoint::from_socket_addr(local)))
            }
        }
    }

    /// The registration of an inproc name, for an owner that unbinds it at once when it
    /// closes rather than when the accept loop is gone. `None` for other transports.
    pub(crate) fn take_registration(&mut self) -> Option<inproc::Registration> {
        match self {
            Self::Inproc(_, registration) => registration.take(),
            Self::Tcp(_) | Self::Unix(..) => None,
        }
    }

    pub(crate) async fn accept(&mut self) -> io::Result<(Stream, PeerAddr)> {
        match self {
            Self::Tcp(l) => {
                let (s, addr) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok((Stream::Tcp(s), PeerAddr::Tcp(addr)))
            }
            Self::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), PeerAddr::Ipc))
            }
            Self::Inproc(rx, _) => match rx.recv().await {
                Some(s) => Ok((Stream::Mem(s), PeerAddr::Inproc)),
                // Every sender is gone only once the name is unbound, when the owner
                // closes and drops this listener: nothing more to accept, wait for that.
                None => std::future::pending().await,
            },
        }
    }
}

/// The TCP listen backlog asked for: as many as the system allows (Linux caps it at
/// `net.core.somaxconn`, 4096 by default since 5.4). `TcpListener::bind` would ask for 128, and
/// a burst of connects larger than that (a client pool opening its connections at once, every
/// peer reconnecting after a restart) overflows the accept queue before the accept loop runs:
/// the kernel drops the extra SYNs and each of those clients waits for its SYN retransmit, a
/// full second (the initial RTO), before its first message can go.
const LISTEN_BACKLOG: u32 = i32::MAX as u32;

/// Binds the first address `target` resolves to that accepts a bind, as
/// `TcpListener::bind` does (`SO_REUSEADDR` included), with [`LISTEN_BACKLOG`].
async fn bind_tcp(target: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(target).await? {
        let attempt = (|| {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            #[cfg(not(windows))]
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(LISTEN_BACKLOG)
        })();
        match attempt {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any address",
        )
    }))
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Self::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Runs `hs` over `stream` until it completes, fails, or `timeout` passes. On failure any
/// `ERROR` command the handshake queued is sent before returning.
pub(crate) async fn handshake<S>(
    stream: &mut S,
    hs: &mut Handshake,
    timeout: Duration,
) -> Result<PeerInfo, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let run = async {
        loop {
            let status = hs.process();
            // Whatever the step produced (greeting, READY, ERROR) leaves before we wait.
            let written = write_pending(stream, hs).await;
            match status {
                Ok(HandshakeStatus::Done(info)) => return written.map(|()| info),
                Ok(HandshakeStatus::InProgress) => written?,
                Err(e) => return Err(e),
            }
            match stream.read_buf(hs.read_buf()).await {
                Ok(0) | Err(_) => return Err(hs.closed_error()),
                Ok(_) => {}
            }
        }
    };
    match tokio::time::timeout_at(deadline, run).await {
        Ok(result) => result,
        Err(_) => Err(HandshakeError::Timeout),
    }
}

async fn write_pending<S: AsyncWrite + Unpin>(
    stream: &mut S,
    hs: &mut Handshake,
) -> Result<(), HandshakeError> {
    let bytes = hs.output().take_all();
    if !bytes.is_empty() {
        stream
            .write_all(&bytes)
            .await
            .map_err(|_| HandshakeError::Closed)?;
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A burst of connects larger than the 128 `TcpListener::bind` asks for is queued by the
    /// kernel while nothing accepts, so no client waits for a SYN retransmit. Deterministic:
    /// on loopback a blocking connect returns once the kernel has queued the connection; with
    /// a full accept queue its SYN is dropped, and as nothing accepts here, every retransmit
    /// is dropped too and the connect times out.
    #[tokio::test(flavor = "current_thread")]
    async fn a_connect_burst_fits_the_accept_queue() {
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        // The bench's burst: 4 clients x 50 connections; the kernel queues backlog + 1.
        let burst = 200.min(somaxconn + 1);
        if burst <= 129 {
            eprintln!("net.core.somaxconn is {somaxconn}: the kernel caps the backlog, skipped");
            return;
        }
        let ep: Endpoint = "tcp://127.0.0.1:0".parse().unwrap();
        let (mut listener, bound) = Listener::bind(&ep).await.unwrap();
        let addr: SocketAddr = bound.host_port().unwrap().parse().unwrap();
        let mut streams = Vec::with_capacity(burst);
        for i in 0..burst {
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
                Ok(s) => streams.push(s),
                Err(e) => panic!(
                    "connect {} of {burst} not queued ({e}): backlog too small",
                    i + 1
                ),
            }
        }
        // All of them are waiting in the accept queue.
        for _ in 0..burst {
            let accepted = tokio::time::timeout(Duration::from_secs(5), listener.accept());
            accepted.await.unwrap().unwrap();
        }
    }
}
