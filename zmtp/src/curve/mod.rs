//! CURVE security (RFC 25 ZMTP-CURVE, RFC 26 CurveZMQ), byte-compatible with libzmq.
//!
//! - [`PublicKey`], [`SecretKey`], [`KeyPair`]: X25519 keys, Z85 text ([`z85`]).
//! - [`Security`]: what a socket's [`crate::Options::security`] asks for: NULL (no security),
//!   the CURVE server role (with an [`Authorizer`] deciding which client keys may connect) or
//!   the CURVE client role (knowing the server's public key beforehand).
//! - The handshake (`HELLO`, `WELCOME`, `INITIATE`, `READY`) is a [`crate::proto::Mechanism`];
//!   after it every frame travels boxed in a `MESSAGE` command (the session in `session`).
//! - All cryptography goes through one small seam (`crypto`, over the `dryoc` crate).

use std::fmt;
use std::sync::Arc;

pub mod cert;
pub(crate) mod crypto;
mod handshake;
mod keys;
pub(crate) mod session;
pub mod z85;

pub use cert::{CertError, Certificate};
pub use keys::{KeyError, KeyPair, PublicKey, SecretKey};
pub use session::Session;

use crate::proto::{Mechanism, NullMechanism};

/// The mechanism of a new connection.
pub(crate) fn mechanism_for(security: &Security) -> Box<dyn Mechanism> {
    match security {
        Security::Null => Box::new(NullMechanism),
        Security::CurveServer(s) => Box::new(handshake::ServerMechanism::new(s.clone())),
        Security::CurveClient(c) => Box::new(handshake::ClientMechanism::new(c.clone())),
    }
}

/// Decides which client keys a CURVE server accepts.
///
/// Called during the handshake, once the client has proved it holds the secret key of
/// `client` (its `INITIATE` vouch opened). A refused client gets `ERROR "400"`, as libzmq's
/// ZAP answers.
pub trait Authorizer: Send + Sync + fmt::Debug {
    /// Whether `client` may connect.
    fn authorize(&self, client: &PublicKey) -> bool;
}

/// The CURVE server role: our secret key, and who may connect.
#[derive(Clone, Debug)]
pub struct CurveServer {
    /// The server's long-term secret key. Clients must know its public key.
    pub secret: SecretKey,
    /// Which client keys are accepted; `None` accepts any client that knows our public key
    /// (the traffic is still encrypted, but anyone may connect).
    pub authorizer: Option<Arc<dyn Authorizer>>,
}

/// The CURVE client role: the server's public key, and our keypair.
#[derive(Clone, Debug)]
pub struct CurveClient {
    /// The server's long-term public key, known beforehand.
    pub server_key: PublicKey,
    /// Our long-term keypair; the server may check the public half against its allow-list.
    pub keypair: KeyPair,
}

/// The security mechanism of a socket.
#[derive(Clone, Debug, Default)]
pub enum Security {
    /// No security (RFC 23 NULL), as libzmq by default.
    #[default]
    Null,
    /// CURVE, server role.
    CurveServer(CurveServer),
    /// CURVE, client role.
    CurveClient(CurveClient),
}

impl Security {
    /// A CURVE server that accepts any client knowing its public key.
    pub fn curve_server(secret: SecretKey) -> Self {
        Self::CurveServer(CurveServer {
            secret,
            authorizer: None,
        })
    }

    /// A CURVE server that accepts the clients `authorizer` allows.
    pub fn curve_server_with(secret: SecretKey, authorizer: Arc<dyn Authorizer>) -> Self {
        Self::CurveServer(CurveServer {
            secret,
            authorizer: Some(authorizer),
        })
    }

    /// A CURVE client of the server whose public key is `server_key`.
    pub fn curve_client(server_key: PublicKey, keypair: KeyPair) -> Self {
        Self::CurveClient(CurveClient {
            server_key,
            keypair,
        })
    }

    /// Whether this is CURVE (either role).
    pub fn is_curve(&self) -> bool {
        !matches!(self, Self::Null)
    }
}
