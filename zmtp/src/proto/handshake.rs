//! The connection handshake: greetings, then the mechanism, then socket-type checks.
//!
//! Design: [`Handshake`] does no I/O. The driver writes whatever [`Handshake::output`] holds,
//! reads into [`Handshake::read_buf`], and calls [`Handshake::process`] until it says
//! [`HandshakeStatus::Done`]. Our greeting is queued at construction, so it leaves at once and
//! two strict peers never wait on each other. When a failure deserves an `ERROR` command, it is
//! queued in the output before the error is returned; the driver flushes it, then closes.

use bytes::{Bytes, BytesMut};

use super::command::{Command, Metadata};
use super::frame::{Decoded, Decoder, Encoder, Limits};
use super::greeting::{Greeting, GREETING_LEN};
use super::mechanism::{Mechanism, MechanismStep, NullMechanism};
use crate::curve::{Security, Session};
use crate::error::{HandshakeError, ProtocolError};
use crate::socket_type::SocketType;
use crate::PublicKey;

/// What the handshake learned about the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's socket type (already checked against ours).
    pub socket_type: SocketType,
    /// The peer's `Identity` property, if it sent a non-empty one.
    pub identity: Option<Bytes>,
    /// ZMTP minor version of the peer (0 for 3.0, 1 for 3.1).
    pub minor_version: u8,
    /// All metadata the peer sent.
    pub metadata: Metadata,
    /// With CURVE: the peer's long-term public key (the client's, proved by its vouch, when
    /// we are the server; the server's, known beforehand, when we are the client).
    pub key: Option<PublicKey>,
}

/// Progress of a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeStatus {
    /// More input is needed.
    InProgress,
    /// The connection may enter the data phase.
    Done(PeerInfo),
}

#[derive(Debug)]
enum State {
    Greeting,
    Mechanism { minor: u8 },
    Done,
}

/// Handshake state machine for one connection.
#[derive(Debug)]
pub struct Handshake {
    socket_type: SocketType,
    local: Metadata,
    mechanism: Box<dyn Mechanism>,
    state: State,
    buf: BytesMut,
    decoder: Option<Decoder>,
    out: Encoder,
}

impl Handshake {
    /// A handshake with the NULL mechanism.
    pub fn null(socket_type: SocketType, identity: Option<Bytes>) -> Self {
        Self::new(socket_type, identity, Box::new(NullMechanism))
    }

    /// A handshake with the mechanism `security` asks for.
    pub fn with_security(
        socket_type: SocketType,
        identity: Option<Bytes>,
        security: &Security,
    ) -> Self {
        Self::new(socket_type, identity, crate::curve::mechanism_for(security))
    }

    /// A handshake with the given mechanism; our greeting is queued at once.
    pub fn new(
        socket_type: SocketType,
        identity: Option<Bytes>,
        mechanism: Box<dyn Mechanism>,
    ) -> Self {
        let mut local = Metadata::new();
        local.insert("Socket-Type", socket_type.as_str());
        if let Some(id) = identity {
            local.insert("Identity", id);
        }
        let mut out = Encoder::new();
        out.put_raw(&Greeting::new(mechanism.name(), mechanism.as_server()).encode());
        Self {
            socket_type,
            local,
            mechanism,
            state: State::Greeting,
            buf: BytesMut::with_capacity(GREETING_LEN * 4),
            decoder: None,
            out,
        }
    }

    /// Adds properties to the metadata we announce (after `Socket-Type` and `Identity`);
    /// those named `Socket-Type` or `Identity` are skipped. Call before any input is
    /// processed.
    pub fn add_properties(&mut self, extra: &Metadata) {
        for (name, value) in extra.iter() {
            let reserved = [&b"Socket-Type"[..], b"Identity"]
                .iter()
                .any(|r| name.eq_ignore_ascii_case(r));
            if !reserved {
                self.local.insert(name.clone(), value.clone());
            }
        }
    }

    /// Bytes to send to the peer.
    pub fn output(&mut self) -> &mut Encoder {
        &mut self.out
    }

    /// The buffer the next read should append to.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        match &mut self.decoder {
            Some(decoder) => decoder.read_buf(),
            None => {
                if self.buf.capacity() == self.buf.len() {
                    self.buf.reserve(GREETING_LEN);
                }
                &mut self.buf
            }
        }
    }

    /// Advances the handshake with whatever has been read.
    pub fn process(&mut self) -> Result<HandshakeStatus, HandshakeError> {
        if let State::Greeting = self.state {
            let have = self.buf.len().min(GREETING_LEN);
            Greeting::check_prefix(&self.buf[..have])?;
            if self.buf.len() < GREETING_LEN {
                return Ok(HandshakeStatus::InProgress);
            }
            self.on_greeting()?;
        }
        let State::Mechanism { minor } = self.state else {
            return Err(HandshakeError::UnexpectedCommand);
        };
        let Some(decoder) = &mut self.decoder else {
            return Err(HandshakeError::UnexpectedCommand);
        };
        loop {
            let cmd = match decoder.decode() {
                Ok(Some(Decoded::Command(cmd))) => cmd,
                Ok(None) => return Ok(HandshakeStatus::InProgress),
                Ok(Some(Decoded::Message(_)))
                | Err(
                    ProtocolError::MessageTooLarge { .. } | ProtocolError::TooManyFrames { .. },
                ) => {
                    return self.fail(ProtocolError::MessageBeforeHandshake.into(), None);
                }
                Err(e) => return self.fail(e.into(), Some("malformed command")),
            };
            let mut replies = Vec::new();
            let step = self.mechanism.on_command(cmd, &mut replies);
            for reply in &replies {
                self.out.encode_command(reply);
            }
            match step {
                Ok(MechanismStep::Continue) => {}
                Ok(MechanismStep::Done(meta)) => return self.finish(meta, minor),
                // The peer's ERROR, or a refusal the mechanism has answered itself.
                Err(
                    e @ (HandshakeError::PeerError(_)
                    | HandshakeError::NotAuthorized
                    | HandshakeError::ServerKeyMismatch
                    | HandshakeError::WrongKey(_)),
                ) => {
                    self.state = State::Done;
                    return Err(e);
                }
                Err(e @ (HandshakeError::MalformedCurve(_) | HandshakeError::Protocol(_))) => {
                    return self.fail(e, Some("malformed command"));
                }
                Err(e) => return self.fail(e, Some("unexpected command")),
            }
        }
    }

    fn on_greeting(&mut self) -> Result<(), HandshakeError> {
        let mut raw = [0u8; GREETING_LEN];
        raw.copy_from_slice(&self.buf[..GREETING_LEN]);
        let peer = Greeting::decode(&raw)?;
        let rest = self.buf.split_off(GREETING_LEN);
        let handshake_limits = Limits {
            max_message_size: 0,
            max_frames: 1,
        };
        let mut decoder = Decoder::with_buffer(handshake_limits, rest);
        decoder.set_raw_commands(self.mechanism.raw_commands());
        self.decoder = Some(decoder);
        if peer.mechanism != self.mechanism.name() {
            let theirs = trim_zeros(&peer.mechanism);
            return self.fail(
                HandshakeError::MechanismMismatch { theirs },
                Some("security mechanism mismatch"),
            );
        }
        self.state = State::Mechanism { minor: peer.minor };
        let mut first = Vec::new();
        self.mechanism.start(&self.local, &mut first);
        for cmd in &first {
            self.out.encode_command(cmd);
        }
        Ok(())
    }

    fn finish(&mut self, meta: Metadata, minor: u8) -> Result<HandshakeStatus, HandshakeError> {
        let Some(raw_type) = meta.get("Socket-Type").cloned() else {
            return self.fail(
                HandshakeError::MissingSocketType,
                Some("missing Socket-Type"),
            );
        };
        let peer_type = match SocketType::parse(&raw_type) {
            Some(t) if self.socket_type.accepts(t) => t,
            _ => {
                let err = HandshakeError::IncompatibleSocketType {
                    ours: self.socket_type,
                    theirs: raw_type,
                };
                return self.fail(err, Some("invalid socket type"));
            }
        };
        let identity = match meta.get("Identity") {
            Some(id) if id.len() > 255 => {
                return self.fail(HandshakeError::InvalidIdentity, Some("invalid identity"));
            }
            Some(id) if !id.is_empty() => Some(id.clone()),
            _ => None,
        };
        self.state = State::Done;
        Ok(HandshakeStatus::Done(PeerInfo {
            socket_type: peer_type,
            identity,
            minor_version: minor,
            metadata: meta,
            key: self.mechanism.peer_key(),
        }))
    }

    /// Queues an `ERROR` command (when `reason` is given) and returns `err`.
    fn fail<T>(
        &mut self,
        err: HandshakeError,
        reason: Option<&'static str>,
    ) -> Result<T, HandshakeError> {
        if let Some(reason) = reason {
            self.out
                .encode_command(&Command::Error(Bytes::from_static(reason.as_bytes())));
        }
        self.state = State::Done;
        Err(err)
    }

    /// The bytes read past the handshake, to seed the data-phase decoder.
    pub fn into_leftover(self) -> BytesMut {
        self.into_parts().0
    }

    /// The bytes read past the handshake and, with CURVE, the data-phase session.
    pub fn into_parts(mut self) -> (BytesMut, Option<Session>) {
        let session = self.mechanism.take_session();
        let leftover = match self.decoder {
            Some(decoder) => decoder.into_buffer(),
            None => self.buf,
        };
        (leftover, session)
    }

    /// What the peer closing the connection now means: usually
    /// [`HandshakeError::Closed`], but a CURVE server that closes right after our `HELLO`
    /// could not open it ([`HandshakeError::ServerKeyMismatch`]).
    pub fn closed_error(&self) -> HandshakeError {
        match self.state {
            State::Mechanism { .. } => self.mechanism.on_closed().unwrap_or(HandshakeError::Closed),
            _ => HandshakeError::Closed,
        }
    }
}

fn trim_zeros(name: &[u8]) -> Bytes {
    let end = name.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    Bytes::copy_from_slice(&name[..end])
}

#[cfg(test)]
mod tests;
