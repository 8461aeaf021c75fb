//! Frames (RFC 23 "Framing"): the incremental [`Decoder`] and the coalescing [`Encoder`].
//!
//! ```text
//! frame      = flags size body
//! flags      = %x00-07        ; bit 0 MORE, bit 1 LONG, bit 2 COMMAND
//! size       = OCTET / 8OCTET ; 1 byte, or 8 bytes big-endian when LONG is set
//! ```
//!
//! Memory discipline on the way in: the size of a frame is known from its header, before its
//! body arrives, and is checked against [`Limits`] before anything is allocated for it. Frames
//! smaller than [`READ_CHUNK`] are sliced out of the shared read buffer without a copy (a
//! retained small frame keeps at most one read chunk alive, as libzmq's zero-copy receive
//! does); larger frames are read straight into a buffer of their own, and a read into it never
//! runs past the frame.
//!
//! On the way out, frame headers and bodies below [`COPY_BELOW`] bytes are copied into one
//! staging buffer so that many small frames leave in one write; larger bodies are written from
//! their own `Bytes` with vectored writes, never copied.
//!
//! Large buffers are recycled: the [`Encoder`] keeps each fully written chunk longer than
//! [`READ_CHUNK`] aside ([`Encoder::drain_written`]), and the connection hands it to
//! [`Decoder::recycle`], which keeps it for a later large frame only if no other `Bytes`
//! references any part of it. Allocating and freeing a large buffer per frame makes the
//! allocator return the memory to the kernel and fault it back in on the next frame; reusing
//! the buffer avoids both.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::command::Command;
use crate::curve::session::{
    OpenError, Opener, Sealer, INNER_COMMAND, INNER_MORE, MESSAGE_OVERHEAD,
};
use crate::error::ProtocolError;

/// Flag bit: more frames follow in this message.
pub const FLAG_MORE: u8 = 0x01;
/// Flag bit: the size field is 8 bytes.
pub const FLAG_LONG: u8 = 0x02;
/// Flag bit: this frame is a command.
pub const FLAG_COMMAND: u8 = 0x04;

/// How much the decoder asks to read at a time.
pub const READ_CHUNK: usize = 16 * 1024;
/// Output bodies smaller than this are copied into the staging buffer.
pub const COPY_BELOW: usize = 2048;
/// Largest command frame accepted. Commands carry metadata, PINGs and mechanism data.
pub const MAX_COMMAND_SIZE: usize = 64 * 1024;
/// Most spare buffers a [`Decoder`] keeps, and most written chunks an [`Encoder`] holds for
/// [`Encoder::drain_written`].
pub const MAX_SPARES: usize = 8;
/// Most bytes all the decoders of a process keep in spare buffers together. Each connection
/// keeps spares only from what was written to it, and keeps them while it is idle: without a
/// shared bound, a broker with thousands of connections that once carried large messages
/// would hold a few of them each for good. Past it, large frames are allocated as before.
pub const MAX_SPARE_BYTES_PER_PROCESS: u64 = 64 << 20;

/// Bytes held in spares by every decoder of the process, against a limit.
#[derive(Debug)]
pub(crate) struct SpareBudget {
    used: AtomicU64,
    max: u64,
}

impl SpareBudget {
    pub(crate) const fn new(max: u64) -> Self {
        Self {
            used: AtomicU64::new(0),
            max,
        }
    }

    /// Takes `n` bytes of the budget if they fit.
    fn reserve(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(n).filter(|&total| total <= self.max)
            })
            .is_ok()
    }

    /// Gives back `n` bytes taken with [`SpareBudget::reserve`].
    fn release(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }

    /// Bytes taken now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// The process-wide budget of [`MAX_SPARE_BYTES_PER_PROCESS`].
static PROCESS_SPARES: SpareBudget = SpareBudget::new(MAX_SPARE_BYTES_PER_PROCESS);

/// Limits the decoder enforces before allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (sum of its frame bodies), in bytes.
    pub max_message_size: u64,
    /// Most frames in one message. Bounds the per-frame bookkeeping a peer can cause with
    /// many empty frames.
    pub max_frames: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: 64 * 1024 * 1024,
            max_frames: 4096,
        }
    }
}

/// One item off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A complete multipart message.
    Message(Vec<Bytes>),
    /// A command frame.
    Command(Command),
}

/// A frame body being read into its own allocation.
#[derive(Debug)]
struct LargeFrame {
    body: BytesMut,
    size: usize,
    more: bool,
    command: bool,
}

/// Incremental frame decoder. It owns the read buffer: the caller reads into
/// [`Decoder::read_buf`] and then calls [`Decoder::decode`] until it returns `Ok(None)`.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    buf: BytesMut,
    large: Option<LargeFrame>,
    parts: Vec<Bytes>,
    message_bytes: u64,
    /// Uniquely owned, empty buffers for large frames, oldest first (see [`Decoder::recycle`]).
    spares: VecDeque<BytesMut>,
    /// Sum of the capacities in `spares`; at most `limits.max_message_size`, and reserved
    /// from `budget`.
    spare_bytes: u64,
    /// What the spares of all decoders may hold together.
    budget: &'static SpareBudget,
    /// Commands come out undecoded, as [`Command::Other`] (handshake of CURVE).
    raw_commands: bool,
    /// CURVE data phase: every frame is a boxed `MESSAGE`.
    opener: Option<Opener>,
}

impl Drop for Decoder {
    fn drop(&mut self) {
        self.budget.release(self.spare_bytes);
    }
}

impl Decoder {
    /// A decoder with an empty buffer.
    pub fn new(limits: Limits) -> Self {
        Self::with_buffer(limits, BytesMut::new())
    }

    /// A decoder that starts with bytes already read (for example during the handshake).
    pub fn with_buffer(limits: Limits, buf: BytesMut) -> Self {
        Self {
            limits,
            buf,
            large: None,
            parts: Vec::new(),
            message_bytes: 0,
            spares: VecDeque::new(),
            spare_bytes: 0,
            budget: &PROCESS_SPARES,
            raw_commands: false,
            opener: None,
        }
    }

    /// Hands commands out undecoded ([`Command::decode_raw`]).
    pub fn set_raw_commands(&mut self, raw: bool) {
        self.raw_commands = raw;
    }

    /// CURVE: from now on every frame is a `MESSAGE` box, opened with `opener`.
    pub(crate) fn set_opener(&mut self, opener: Opener) {
        self.opener = Some(opener);
    }

    /// The buffer the next read should append to. Its spare capacity is what may be read:
    /// while a large frame is pending this is the frame's own buffer, whose capacity ends
    /// where the frame ends, so a read never runs past the frame.
    ///
    /// A large frame's buffer is only allocated here, when the caller is about to read into
    /// it (with the bytes of the frame already read moved in), not when its header is
    /// decoded: a caller that must wait before reading it (a receive budget) holds no memory
    /// for it meanwhile.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        if self.large.as_ref().is_some_and(|l| l.body.capacity() == 0) {
            self.allocate_large();
        }
        if let Some(large) = &mut self.large {
            return &mut large.body;
        }
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        &mut self.buf
    }

    /// Appends bytes as if they had been read (for tests and fuzzing).
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let buf = self.read_buf();
            let room = (buf.capacity() - buf.len()).max(1);
            let n = room.min(bytes.len());
            buf.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
    }

    /// Bytes buffered but not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() + self.large.as_ref().map_or(0, |l| l.body.len())
    }

    /// The size of the large frame being read into its own buffer, if one is: its header
    /// has been decoded, and this many body bytes will be held once it is complete. Lets a
    /// caller reserve the memory before reading the rest.
    pub fn large_frame(&self) -> Option<usize> {
        self.large.as_ref().map(|large| large.size)
    }

    /// Whether a message is partially received.
    pub fn in_message(&self) -> bool {
        !self.parts.is_empty() || self.large.is_some()
    }

    /// Decodes the next complete message or command, `Ok(None)` if more bytes are needed.
    pub fn decode(&mut self) -> Result<Option<Decoded>, ProtocolError> {
        loop {
            if let Some(mut large) = self.large.take() {
                if large.body.len() < large.size {
                    self.large = Some(large);
                    return Ok(None);
                }
                if large.body.len() > large.size {
                    // A read ran past the frame: `read_buf` never offers that much room, but
                    // `feed` and a caller's own reads can. The excess is the start of what
                    // follows, which belongs in front of anything in `buf`.
                    self.give_back(&large.body[large.size..]);
                    large.body.truncate(large.size);
                }
                let LargeFrame {
                    body,
                    more,
                    command,
                    ..
                } = large;
                if let Some(item) = self.finish_frame(body, more, command)? {
                    return Ok(Some(item));
                }
                continue;
            }
            let Some((header, size, flags)) = self.peek_header()? else {
                return Ok(None);
            };
            let (more, command) = (flags & FLAG_MORE != 0, flags & FLAG_COMMAND != 0);
            if self.buf.len() >= header + size {
                self.buf.advance(header);
                let body = self.buf.split_to(size);
                if let Some(item) = self.finish_frame(body, more, command)? {
                    return Ok(Some(item));
                }
            } else if size > READ_CHUNK {
                // `size` has passed the limits in `peek_header`. The body's bytes read so far
                // stay in `buf` until `read_buf` allocates the frame's buffer.
                self.buf.advance(header);
                self.large = Some(LargeFrame {
                    body: BytesMut::new(),
                    size,
                    more,
                    command,
                });
                return Ok(None);
            } else {
                self.buf.reserve(header + size - self.buf.len());
                return Ok(None);
            }
        }
    }

    /// Gives the pending large frame its buffer (a spare if one fits) and moves the bytes of
    /// its body already read into it.
    fn allocate_large(&mut self) {
        let Some(size) = self.large.as_ref().map(|l| l.size) else {
            return;
        };
        let mut body = self
            .take_spare(size)
            .unwrap_or_else(|| BytesMut::with_capacity(size));
        body.extend_from_slice(&self.buf);
        self.buf.clear();
        if let Some(large) = &mut self.large {
            large.body = body;
        }
    }

    /// Parses and checks the header at the front of the buffer: `(header_len, body_len, flags)`.
    fn peek_header(&self) -> Result<Option<(usize, usize, u8)>, ProtocolError> {
        let Some(&flags) = self.buf.first() else {
            return Ok(None);
        };
        let (header, size) = if flags & FLAG_LONG != 0 {
            let Some(raw) = self.buf.get(1..9) else {
                return Ok(None);
            };
            let mut be = [0u8; 8];
            be.copy_from_slice(raw);
            (9, u64::from_be_bytes(be))
        } else {
            let Some(&size) = self.buf.get(1) else {
                return Ok(None);
            };
            (2, u64::from(size))
        };
        if self.opener.is_some() {
            // CURVE: every frame is a `MESSAGE` whose payload is one frame of a message (or
            // a command); the message limits apply to the payloads.
            let payload = size.saturating_sub(MESSAGE_OVERHEAD as u64);
            let total = self.message_bytes.saturating_add(payload);
            if total > self.limits.max_message_size {
                return Err(ProtocolError::MessageTooLarge {
                    size: total,
                    max: self.limits.max_message_size,
                });
            }
            if self.parts.len() >= self.limits.max_frames {
                return Err(ProtocolError::TooManyFrames {
                    max: self.limits.max_frames,
                });
            }
        } else if flags & FLAG_COMMAND != 0 {
            if flags & FLAG_MORE != 0 {
                return Err(ProtocolError::CommandWithMore);
            }
            if !self.parts.is_empty() {
                return Err(ProtocolError::CommandInsideMessage);
            }
            if size > MAX_COMMAND_SIZE as u64 {
                return Err(ProtocolError::CommandTooLarge {
                    size,
                    max: MAX_COMMAND_SIZE,
                });
            }
        } else {
            let total = self.message_bytes.saturating_add(size);
            if total > self.limits.max_message_size {
                return Err(ProtocolError::MessageTooLarge {
                    size: total,
                    max: self.limits.max_message_size,
                });
            }
            if self.parts.len() >= self.limits.max_frames {
                return Err(ProtocolError::TooManyFrames {
                    max: self.limits.max_frames,
                });
            }
        }
        // No allocation can exceed isize::MAX bytes, whatever the configured limit; refusing
        // here also keeps `header + size` from overflowing.
        const ALLOCATABLE: u64 = (isize::MAX as u64) / 2;
        if size > ALLOCATABLE {
            return Err(ProtocolError::MessageTooLarge {
                size,
                max: ALLOCATABLE,
            });
        }
        let size = usize::try_from(size).map_err(|_| ProtocolError::MessageTooLarge {
            size,
            max: usize::MAX as u64,
        })?;
        Ok(Some((header, size, flags)))
    }

    fn finish_frame(
        &mut self,
        mut body: BytesMut,
        mut more: bool,
        mut command: bool,
    ) -> Result<Option<Decoded>, ProtocolError> {
        if let Some(opener) = &mut self.opener {
            let flags = opener.open_in_place(&mut body).map_err(|e| match e {
                OpenError::Malformed => ProtocolError::CurveMalformed,
                OpenError::StaleNonce => ProtocolError::CurveStaleNonce,
                OpenError::BadTag => ProtocolError::CurveBadTag,
            })?;
            body.advance(MESSAGE_OVERHEAD);
            more = flags & INNER_MORE != 0;
            command = flags & INNER_COMMAND != 0;
            if command && !self.parts.is_empty() {
                return Err(ProtocolError::CommandInsideMessage);
            }
            if command && body.len() > MAX_COMMAND_SIZE {
                return Err(ProtocolError::CommandTooLarge {
                    size: body.len() as u64,
                    max: MAX_COMMAND_SIZE,
                });
            }
        }
        let body = body.freeze();
        if command {
            let cmd = if self.raw_commands {
                Command::decode_raw(body)?
            } else {
                Command::decode(body)?
            };
            return Ok(Some(Decoded::Command(cmd)));
        }
        self.message_bytes += body.len() as u64;
        self.parts.push(body);
        if more {
            return Ok(None);
        }
        self.message_bytes = 0;
        // The next message most likely has as many frames: size its Vec once, not by regrowth.
        let next = Vec::with_capacity(self.parts.len());
        Ok(Some(Decoded::Message(std::mem::replace(
            &mut self.parts,
            next,
        ))))
    }

    /// Puts `bytes` back in front of the read buffer.
    fn give_back(&mut self, bytes: &[u8]) {
        if self.buf.is_empty() {
            self.buf.extend_from_slice(bytes);
        } else {
            let mut joined = BytesMut::with_capacity(bytes.len() + self.buf.len());
            joined.extend_from_slice(bytes);
            joined.extend_from_slice(&self.buf);
            self.buf = joined;
        }
    }

    /// Offers a buffer for reuse by a later large frame, typically a chunk the [`Encoder`]
    /// has finished writing ([`Encoder::drain_written`]).
    ///
    /// The buffer is kept only if `chunk` is the sole reference to all of its memory
    /// ([`Bytes::try_into_mut`]): while any other `Bytes` shares it, it is simply dropped, so a
    /// buffer is never written while someone can still read it. It is also dropped unless its
    /// capacity is above [`READ_CHUNK`] (smaller frames do not use a buffer of their own).
    ///
    /// At most [`MAX_SPARES`] buffers are kept, together no larger than the largest message
    /// the limits allow: what a decoder holds in spares is bounded like what one message in
    /// progress may make it hold. A newer buffer pushes out the oldest, so buffers of sizes no
    /// longer seen do not linger.
    pub fn recycle(&mut self, chunk: Bytes) {
        if chunk.len() <= READ_CHUNK {
            return;
        }
        let Ok(mut spare) = chunk.try_into_mut() else {
            return;
        };
        spare.clear();
        // The `BytesMut` starts where `chunk` started; take back any memory before that, so
        // that `capacity` is the whole allocation (what the size checks below are about).
        // This never allocates.
        let _ = spare.try_reclaim(spare.capacity() + 1);
        let capacity = spare.capacity() as u64;
        if capacity <= READ_CHUNK as u64 || capacity > self.limits.max_message_size {
            return;
        }
        while self.spares.len() >= MAX_SPARES
            || self.spare_bytes + capacity > self.limits.max_message_size
        {
            let Some(old) = self.spares.pop_front() else {
                break;
            };
            self.spare_bytes -= old.capacity() as u64;
            self.budget.release(old.capacity() as u64);
        }
        if !self.budget.reserve(capacity) {
            return;
        }
        self.spare_bytes += capacity;
        self.spares.push_back(spare);
    }

    /// Spare buffers held for reuse.
    pub fn spares(&self) -> usize {
        self.spares.len()
    }

    /// A recycled buffer for a frame of `size` bytes, if one fits: at least `size` and at
    /// most a quarter more, so a small frame does not pin a much larger buffer. Its capacity
    /// is cut at `size`, so reads into it stop at the end of the frame; the cut-off part
    /// stays with the allocation and comes back when the buffer is recycled again.
    fn take_spare(&mut self, size: usize) -> Option<BytesMut> {
        let max = size.saturating_add(size / 4);
        let i = self
            .spares
            .iter()
            .rposition(|b| (size..=max).contains(&b.capacity()))?;
        let mut spare = self.spares.remove(i)?;
        self.spare_bytes -= spare.capacity() as u64;
        self.budget.release(spare.capacity() as u64);
        if spare.capacity() > size {
            drop(spare.split_off(size));
        }
        Some(spare)
    }

    /// Hands back bytes buffered beyond what was decoded (used when switching decoders).
    pub fn into_buffer(mut self) -> BytesMut {
        std::mem::take(&mut self.buf)
    }
}

/// The encoder and decoder of a connection's data phase on an established CURVE `session`
/// (as the sockets set them up; public for tests and fuzzing).
pub fn session_codec(session: crate::curve::Session, limits: Limits) -> (Encoder, Decoder) {
    let mut enc = Encoder::new();
    let mut dec = Decoder::new(limits);
    enc.set_sealer(session.sealer);
    dec.set_opener(session.opener);
    (enc, dec)
}

/// Encoder that coalesces small frames and keeps large bodies zero-copy.
#[derive(Debug, Default)]
pub struct Encoder {
    staging: BytesMut,
    chunks: VecDeque<Bytes>,
    /// Bytes of the front chunk already written. The chunk itself stays whole, so that once
    /// written it can be recycled as the buffer it was.
    front_written: usize,
    /// Fully written chunks longer than [`READ_CHUNK`], for [`Encoder::drain_written`].
    written: Vec<Bytes>,
    pending: usize,
    /// CURVE data phase: every frame goes out boxed in a `MESSAGE`.
    sealer: Option<Sealer>,
    /// The sealer's nonce counter ran out: the connection must close.
    exhausted: bool,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// CURVE: from now on every frame is boxed in a `MESSAGE`.
    pub(crate) fn set_sealer(&mut self, sealer: Sealer) {
        self.sealer = Some(sealer);
    }

    /// Whether the CURVE nonce counter ran out (after 2^64 frames): nothing more may be
    /// sent on this connection.
    pub fn is_exhausted(&self) -> bool {
        self.exhausted
    }

    /// Queues a multipart message. An empty `Vec` is sent as one empty frame, since a ZMTP
    /// message has at least one frame.
    pub fn encode_message(&mut self, msg: Vec<Bytes>) {
        if msg.is_empty() {
            if self.sealer.is_some() {
                self.put_sealed(0, &[]);
            } else {
                self.put_header(0, 0);
            }
            return;
        }
        let last = msg.len() - 1;
        for (i, body) in msg.into_iter().enumerate() {
            let flags = if i < last { FLAG_MORE } else { 0 };
            self.put_frame(flags, body);
        }
    }

    /// Queues a command frame.
    pub fn encode_command(&mut self, cmd: &Command) {
        let body = cmd.to_body();
        self.put_frame(FLAG_COMMAND, body);
    }

    /// Queues one frame with the given ZMTP flags (`FLAG_MORE`, `FLAG_COMMAND`), whatever
    /// its content: for tests and fuzzing, which need frames no well-behaved peer sends.
    #[doc(hidden)]
    pub fn put_any_frame(&mut self, flags: u8, body: Bytes) {
        self.put_frame(flags & (FLAG_MORE | FLAG_COMMAND), body);
    }

    /// Queues raw bytes (the greeting).
    pub fn put_raw(&mut self, bytes: &[u8]) {
        self.staging.extend_from_slice(bytes);
        self.pending += bytes.len();
    }

    fn put_frame(&mut self, flags: u8, body: Bytes) {
        if self.sealer.is_some() {
            let mut inner = 0;
            if flags & FLAG_MORE != 0 {
                inner |= INNER_MORE;
            }
            if flags & FLAG_COMMAND != 0 {
                inner |= INNER_COMMAND;
            }
            self.put_sealed(inner, &body);
            return;
        }
        let len = body.len();
        self.put_header(flags, len);
        if len < COPY_BELOW {
            self.staging.extend_from_slice(&body);
        } else {
            self.seal();
            self.chunks.push_back(body);
        }
        self.pending += len;
    }

    /// Boxes one frame into a `MESSAGE` data frame (outer flags 0, as libzmq): small ones
    /// straight into the staging buffer, large ones into a buffer of their own.
    fn put_sealed(&mut self, inner_flags: u8, body: &[u8]) {
        let len = MESSAGE_OVERHEAD + body.len();
        self.put_header(0, len);
        let sealed = if len < COPY_BELOW {
            let start = self.staging.len();
            self.staging.put_bytes(0, MESSAGE_OVERHEAD);
            self.staging.put_slice(body);
            self.sealer
                .as_mut()
                .is_some_and(|s| s.seal_in_place(&mut self.staging[start..], inner_flags))
        } else {
            self.seal();
            let mut buf = BytesMut::with_capacity(len);
            buf.put_bytes(0, MESSAGE_OVERHEAD);
            buf.put_slice(body);
            let ok = self
                .sealer
                .as_mut()
                .is_some_and(|s| s.seal_in_place(&mut buf[..], inner_flags));
            self.chunks.push_back(buf.freeze());
            ok
        };
        self.exhausted |= !sealed;
        self.pending += len;
    }

    fn put_header(&mut self, flags: u8, len: usize) {
        if len <= usize::from(u8::MAX) {
            self.staging.put_u8(flags);
            self.staging.put_u8(len as u8);
            self.pending += 2;
        } else {
            self.staging.put_u8(flags | FLAG_LONG);
            self.staging.put_u64(len as u64);
            self.pending += 9;
        }
    }

    fn seal(&mut self) {
        if !self.staging.is_empty() {
            self.chunks.push_back(self.staging.split().freeze());
        }
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Whether nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Fills `slices` with the next bytes to write, returns how many slices were filled.
    pub fn slices<'a>(&'a mut self, slices: &mut [IoSlice<'a>]) -> usize {
        self.seal();
        let mut n = 0;
        for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
            let skip = if n == 0 { self.front_written } else { 0 };
            *slot = IoSlice::new(&chunk[skip..]);
            n += 1;
        }
        n
    }

    /// Marks `n` bytes as written. A fully written chunk longer than [`READ_CHUNK`] is kept
    /// for [`Encoder::drain_written`] (at most [`MAX_SPARES`] of them; beyond that it is
    /// dropped at once).
    pub fn advance(&mut self, mut n: usize) {
        self.pending -= n.min(self.pending);
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let rest = front.len() - self.front_written;
            if n >= rest {
                n -= rest;
                self.front_written = 0;
                if let Some(chunk) = self.chunks.pop_front() {
                    if chunk.len() > READ_CHUNK && self.written.len() < MAX_SPARES {
                        self.written.push(chunk);
                    }
                }
            } else {
                self.front_written += n;
                n = 0;
            }
        }
    }

    /// Takes the large chunks written since the last call, to be offered to
    /// [`Decoder::recycle`]. Dropping them instead is fine.
    pub fn drain_written(&mut self) -> std::vec::Drain<'_, Bytes> {
        self.written.drain(..)
    }

    /// Everything queued as one contiguous buffer (for tests and the handshake).
    pub fn take_all(&mut self) -> Bytes {
        self.seal();
        let mut out = BytesMut::with_capacity(self.pending);
        let skip = std::mem::take(&mut self.front_written);
        for (i, chunk) in self.chunks.drain(..).enumerate() {
            out.extend_from_slice(&chunk[if i == 0 { skip } else { 0 }..]);
        }
        self.pending = 0;
        out.freeze()
    }
}

#[cfg(test)]
mod tests;
