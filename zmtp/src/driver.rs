//! The data phase of one connection: a hand-written future that moves bytes between a stream
//! and its owner's queues.
//!
//! Design: one task per connection does both directions. Each turn of its loop takes the
//! owner's lock once ([`Port::exchange`]) to move a batch of outbound messages into the
//! [`Encoder`] and a batch of decoded inbound messages out, then writes and reads until the
//! socket would block. When nothing moved, it returns `Pending` with its waker registered with
//! the socket (by the poll calls) and with the owner (by `exchange`), so either side wakes it.
//! After a bounded number of turns it yields, so one busy peer cannot starve the runtime.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Sleep;

use crate::curve::Session;
use crate::error::ProtocolError;
use crate::proto::{Command, Decoded, Decoder, Encoder, Limits};

/// Stop moving outbound messages into the encoder beyond this many pending bytes.
pub(crate) const OUT_BATCH_BYTES: usize = 256 * 1024;
/// Turns of the loop before the task yields to the runtime.
const TURNS_PER_POLL: usize = 16;
/// Most slices handed to one vectored write.
const MAX_SLICES: usize = 64;

/// How the owner wants the connection to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseKind {
    /// Stop reading, write what is queued (up to the linger time), then close.
    Linger,
    /// Close at once, dropping anything queued.
    Now,
}

/// Why a connection ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The peer closed the connection.
    Eof,
    /// A socket error.
    Io(io::Error),
    /// The peer broke the framing rules.
    Protocol(ProtocolError),
    /// The peer sent `ERROR`.
    PeerError(Bytes),
    /// We closed it on the owner's request.
    Closed,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Eof => f.write_str("closed by peer"),
            Self::Io(e) => write!(f, "i/o error: {e}"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::PeerError(reason) => {
                write!(f, "peer sent ERROR {:?}", String::from_utf8_lossy(reason))
            }
            Self::Closed => f.write_str("closed locally"),
        }
    }
}

/// What [`Port::exchange`] tells the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exchanged {
    /// The owner's close request, if any.
    pub(crate) close: Option<CloseKind>,
    /// Whether the connection may read from its socket now (a receive budget may say no; the
    /// owner then wakes the task when it may).
    pub(crate) may_read: bool,
}

/// The owner's side of a connection.
pub(crate) trait Port: Unpin {
    /// Moves queued outbound messages into `enc` (while it holds less than
    /// [`OUT_BATCH_BYTES`]) and delivers messages from the front of `inbound` while the
    /// owner has room. Registers `cx`'s waker so the owner can wake the task when it queues
    /// output, frees room, lets it read or asks to close. `large` is the size of the large
    /// frame the decoder is in the middle of ([`Decoder::large_frame`]), for owners that
    /// budget what their connections read.
    fn exchange(
        &mut self,
        enc: &mut Encoder,
        inbound: &mut VecDeque<Vec<Bytes>>,
        large: Option<usize>,
        cx: &Context<'_>,
    ) -> Exchanged;
}

/// A connection in its data phase.
pub(crate) struct Connection<S, P> {
    stream: S,
    port: P,
    decoder: Decoder,
    enc: Encoder,
    inbound: VecDeque<Vec<Bytes>>,
    linger: Duration,
    closing: Option<Pin<Box<Sleep>>>,
    /// The decoder may hold bytes read during the handshake: decode them before reading.
    leftover: bool,
    /// Let the other ready tasks run once before writing what was queued on an idle
    /// connection, so that messages their owners queue meanwhile go out in the same write
    /// (see [`Connection::coalescing`]).
    coalesce: bool,
    /// The task yielded for the output now in the encoder.
    yielded: bool,
    /// Deliver `SUBSCRIBE` / `CANCEL` commands as messages (`0x01`/`0x00` + prefix).
    subscriptions_in: bool,
}

impl<S, P> Connection<S, P>
where
    S: AsyncRead + AsyncWrite + Unpin,
    P: Port,
{
    /// A connection whose decoder starts with `leftover` (bytes read past the handshake) and
    /// whose frames are boxed by `session` when the handshake was CURVE.
    pub(crate) fn new(
        stream: S,
        port: P,
        limits: Limits,
        (leftover, session): (BytesMut, Option<Session>),
        linger: Duration,
    ) -> Self {
        let mut decoder = Decoder::with_buffer(limits, leftover);
        let mut enc = Encoder::new();
        if let Some(Session { sealer, opener }) = session {
            decoder.set_opener(opener);
            enc.set_sealer(sealer);
        }
        Self {
            stream,
            port,
            decoder,
            enc,
            inbound: VecDeque::new(),
            linger,
            closing: None,
            leftover: true,
            coalesce: false,
            yielded: false,
            subscriptions_in: false,
        }
    }

    /// Turns the XPUB convention on: a peer's `SUBSCRIBE prefix` command is delivered as the
    /// one-frame message `0x01` + prefix and `CANCEL prefix` as `0x00` + prefix, the form a
    /// ZMTP 3.0 peer sends them in, so the owner sees one form.
    pub(crate) fn subscriptions_in(mut self, on: bool) -> Self {
        self.subscriptions_in = on;
        self
    }

    /// Turns write coalescing on: when output arrives on a connection with nothing left to
    /// write, the task goes to the back of the scheduler's queue once before writing it. On
    /// an idle runtime it is polled again at once (a few hundred nanoseconds); under load the
    /// tasks ahead of it (the application's, queueing more messages) run first, and one
    /// vectored write carries all they queued instead of one write each.
    pub(crate) fn coalescing(mut self, on: bool) -> Self {
        self.coalesce = on;
        self
    }

    /// Writes until the encoder is empty or the socket would block.
    /// `Ready(Ok(true))` if anything was written.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut wrote = false;
        while !self.enc.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let n = self.enc.slices(&mut slices);
            match Pin::new(&mut self.stream).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(written)) => {
                    self.enc.advance(written);
                    // Large bodies written out become the buffers of later large frames
                    // read, when nothing else holds them (see `Decoder::recycle`).
                    for chunk in self.enc.drain_written() {
                        self.decoder.recycle(chunk);
                    }
                    wrote = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if wrote => return Poll::Ready(Ok(true)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(wrote))
    }

    /// Reads once and decodes everything complete. `Ready(Ok(true))` if bytes arrived.
    fn poll_read_in(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, Ended>> {
        if std::mem::take(&mut self.leftover) && self.decoder.buffered() > 0 {
            self.decode_buffered()?;
            return Poll::Ready(Ok(true));
        }
        let buf = self.decoder.read_buf();
        debug_assert!(
            buf.capacity() > buf.len(),
            "decoder always leaves room to read"
        );
        match ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.stream),
            cx,
            buf
        )) {
            Ok(0) => return Poll::Ready(Err(Ended::Eof)),
            Ok(_) => {}
            Err(e) => return Poll::Ready(Err(Ended::Io(e))),
        }
        self.decode_buffered()?;
        Poll::Ready(Ok(true))
    }

    /// Decodes every complete message and command in the read buffer.
    fn decode_buffered(&mut self) -> Result<(), Ended> {
        loop {
            match self.decoder.decode() {
                Ok(Some(Decoded::Message(msg))) => self.inbound.push_back(msg),
                Ok(Some(Decoded::Command(cmd))) => self.on_command(cmd)?,
                Ok(None) => return Ok(()),
                Err(e) => return Err(Ended::Protocol(e)),
            }
        }
    }

    fn on_command(&mut self, cmd: Command) -> Result<(), Ended> {
        match cmd {
            Command::Ping { context, .. } => {
                self.enc.encode_command(&Command::Pong { context });
                Ok(())
            }
            Command::Error(reason) => Err(Ended::PeerError(reason)),
            Command::Other { name, data } if self.subscriptions_in => {
                let flag = match &name[..] {
                    b"SUBSCRIBE" => 1u8,
                    b"CANCEL" => 0u8,
                    _ => return Ok(()),
                };
                let mut frame = bytes::BytesMut::with_capacity(1 + data.len());
                frame.extend_from_slice(&[flag]);
                frame.extend_from_slice(&data);
                self.inbound.push_back(vec![frame.freeze()]);
                Ok(())
            }
            // PONG answers a PING we never send; READY, SUBSCRIBE, CANCEL and unknown
            // commands mean nothing to ROUTER/DEALER in the data phase and are ignored.
            _ => Ok(()),
        }
    }

    fn poll_turn(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Ended>> {
        for _ in 0..TURNS_PER_POLL {
            let mut progressed = false;
            let large = self.decoder.large_frame();
            let was_empty = self.enc.is_empty();
            let exchanged = self
                .port
                .exchange(&mut self.enc, &mut self.inbound, large, cx);
            if self.coalesce
                && was_empty
                && !self.yielded
                && !self.enc.is_empty()
                && exchanged.close.is_none()
            {
                self.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if self.enc.is_exhausted() {
                return Poll::Ready(Err(Ended::Closed));
            }
            match exchanged.close {
                Some(CloseKind::Now) => return Poll::Ready(Err(Ended::Closed)),
                Some(CloseKind::Linger) if self.closing.is_none() => {
                    self.closing = Some(Box::pin(tokio::time::sleep(self.linger)));
                }
                _ => {}
            }
            if let Some(deadline) = &mut self.closing {
                // `exchange` just moved all it could: an empty encoder means an empty queue.
                if self.enc.is_empty() || deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(Ended::Closed));
                }
            }
            match self.poll_write_out(cx) {
                Poll::Ready(Ok(wrote)) => {
                    progressed |= wrote;
                    self.yielded &= !wrote;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Ended::Io(e))),
                Poll::Pending => {}
            }
            if self.inbound.is_empty() && self.closing.is_none() && exchanged.may_read {
                match self.poll_read_in(cx) {
                    Poll::Ready(Ok(read)) => progressed |= read,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            if !progressed {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<S, P> Future for Connection<S, P>
where
    S: AsyncRead + AsyncWrite + Unpin,
    P: Port,
{
    type Output = Ended;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended> {
        let this = self.get_mut();
        match ready!(this.poll_turn(cx)) {
            Ok(()) => Poll::Ready(Ended::Closed),
            Err(ended) => Poll::Ready(ended),
        }
    }
}
