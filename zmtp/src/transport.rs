//! TCP and IPC streams behind one type, and the async handshake that runs on them.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::endpoint::Endpoint;
use crate::error::{Error, HandshakeError};
use crate::proto::{Handshake, HandshakeStatus, PeerInfo};

/// Where a peer connected from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAddr {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A Unix domain socket peer (these have no useful address).
    Ipc,
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Ipc => f.write_str("ipc"),
        }
    }
}

/// A connected byte stream.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    pub(crate) async fn connect(ep: &Endpoint) -> io::Result<(Self, PeerAddr)> {
        match ep {
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
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A bound listening socket.
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, std::path::PathBuf),
}

impl Listener {
    /// Binds `ep`; returns the listener and the endpoint as bound (port 0 resolved).
    pub(crate) async fn bind(ep: &Endpoint) -> Result<(Self, Endpoint), Error> {
        match ep {
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
                let l = TcpListener::bind(target)
                    .await
                    .map_err(|e| Error::io(format!("bind {ep}"), e))?;
                let local = l
                    .local_addr()
                    .map_err(|e| Error::io(format!("bind {ep}"), e))?;
                Ok((Self::Tcp(l), Endpoint::from_socket_addr(local)))
            }
        }
    }

    pub(crate) async fn accept(&self) -> io::Result<(Stream, PeerAddr)> {
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
        }
    }
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
            let n = stream
                .read_buf(hs.read_buf())
                .await
                .map_err(|_| HandshakeError::Closed)?;
            if n == 0 {
                return Err(HandshakeError::Closed);
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
