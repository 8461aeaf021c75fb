//! The security-mechanism seam (RFC 23 "Authentication and Confidentiality").
//!
//! A mechanism runs between the greetings and the data phase. It sees only commands and
//! answers with commands, so PLAIN or CURVE can be added without touching the framing or the
//! sockets. `NULL` (RFC 23 "The NULL Security Mechanism") is what libzmq uses by default.

use std::fmt;

use super::command::{Command, Metadata};
use super::greeting::{mechanism_name, MECHANISM_LEN};
use crate::curve::Session;
use crate::error::HandshakeError;
use crate::PublicKey;

/// What a mechanism says after handling a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MechanismStep {
    /// More commands are needed.
    Continue,
    /// The handshake is complete; this is the peer's metadata.
    Done(Metadata),
}

/// A ZMTP security mechanism.
pub trait Mechanism: Send + fmt::Debug {
    /// The mechanism name as it appears in the greeting.
    fn name(&self) -> [u8; MECHANISM_LEN];

    /// The greeting's as-server flag.
    fn as_server(&self) -> bool;

    /// Commands to send as soon as both greetings are exchanged. `local` is our metadata
    /// (`Socket-Type`, `Identity`), which every mechanism eventually sends in some form.
    fn start(&mut self, local: &Metadata, out: &mut Vec<Command>);

    /// Handles one command from the peer, possibly queueing replies in `out`. A mechanism
    /// that wants an `ERROR` sent with its failure queues it in `out` itself.
    fn on_command(
        &mut self,
        cmd: Command,
        out: &mut Vec<Command>,
    ) -> Result<MechanismStep, HandshakeError>;

    /// Whether every command reaches [`Mechanism::on_command`] undecoded, as
    /// [`Command::Other`] (`READY` and `ERROR` included): CURVE's `READY` is a box, not
    /// metadata.
    fn raw_commands(&self) -> bool {
        false
    }

    /// The peer's long-term public key, once the handshake has proved it (CURVE).
    fn peer_key(&self) -> Option<PublicKey> {
        None
    }

    /// The data-phase session, taken once when the handshake is done (CURVE); `None` for a
    /// mechanism whose data phase is in the clear.
    fn take_session(&mut self) -> Option<Session> {
        None
    }

    /// The error to report when the peer closes the connection at this point of the
    /// handshake, if it means more than "closed" (a CURVE server that closes after our
    /// `HELLO` could not open it: a server key mismatch).
    fn on_closed(&self) -> Option<HandshakeError> {
        None
    }
}

/// The NULL mechanism: each side sends `READY` with its metadata, no authentication.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullMechanism;

impl Mechanism for NullMechanism {
    fn name(&self) -> [u8; MECHANISM_LEN] {
        mechanism_name(b"NULL")
    }

    fn as_server(&self) -> bool {
        false
    }

    fn start(&mut self, local: &Metadata, out: &mut Vec<Command>) {
        out.push(Command::Ready(local.clone()));
    }

    fn on_command(
        &mut self,
        cmd: Command,
        _out: &mut Vec<Command>,
    ) -> Result<MechanismStep, HandshakeError> {
        match cmd {
            Command::Ready(meta) => Ok(MechanismStep::Done(meta)),
            Command::Error(reason) => Err(HandshakeError::PeerError(reason)),
            _ => Err(HandshakeError::UnexpectedCommand),
        }
    }
}
