//! The sans-IO core of ZMTP 3.x: bytes in, bytes and events out.
//!
//! Nothing here touches a socket, a runtime or a clock, so every rule of the wire protocol
//! is tested with plain byte buffers.
//!
//! - [`greeting`]: the fixed 64-byte greeting both peers send first.
//! - [`frame`]: frame headers, the incremental [`Decoder`] and the coalescing [`Encoder`].
//! - [`command`]: command frames (`READY`, `ERROR`, `PING`, `PONG`, ...) and metadata.
//! - [`mechanism`]: the security-mechanism seam; `NULL` is implemented.
//! - [`handshake`]: the state machine that takes a fresh connection to the data phase.

pub mod command;
pub mod frame;
pub mod greeting;
pub mod handshake;
pub mod mechanism;

pub use command::{Command, Metadata};
pub use frame::{session_codec, Decoded, Decoder, Encoder, Limits};
pub use greeting::Greeting;
pub use handshake::{Handshake, HandshakeStatus, PeerInfo};
pub use mechanism::{Mechanism, MechanismStep, NullMechanism};
