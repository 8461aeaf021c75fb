//! The CURVE handshake (RFC 25, RFC 26) as two [`Mechanism`]s: client and server.
//!
//! ```text
//! C -> S  HELLO     exactly 200 bytes: version 1.0, 72 zeros, C', nonce, box[C'->S](64 zeros)
//! S -> C  WELCOME   exactly 168 bytes: long nonce, box[S->C'](S' + cookie)
//! C -> S  INITIATE  >= 257 bytes: cookie, nonce, box[C'->S'](C + vouch + metadata)
//!                   vouch = long nonce + box[C->S'](C' + S)
//! S -> C  READY     >= 30 bytes: nonce, box[S'->C'](metadata)
//! ```
//!
//! Every size is checked before any cryptography. The server keeps its transient secret in
//! memory (not only in the cookie), and still checks that the cookie it gets back is the one
//! it sent. It checks both halves of the vouch (C' as in `HELLO`, and our own S), and asks
//! the [`Authorizer`] about C only after the vouch proved the client holds it.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use zeroize::Zeroizing;

use super::crypto::{self, BoxKey, KEY_LEN, NONCE_LEN, TAG_LEN};
use super::session::Session;
use super::{Authorizer, CurveClient, CurveServer, PublicKey};
use crate::error::HandshakeError;
use crate::proto::command::{Command, Metadata};
use crate::proto::greeting::{mechanism_name, MECHANISM_LEN};
use crate::proto::mechanism::{Mechanism, MechanismStep};

/// `HELLO` command size (name included).
pub(crate) const HELLO_SIZE: usize = 200;
/// `WELCOME` command size.
pub(crate) const WELCOME_SIZE: usize = 168;
/// Smallest `INITIATE` (no metadata).
pub(crate) const INITIATE_MIN: usize = 257;
/// Largest `INITIATE` we accept: metadata is a socket type and an identity, a few hundred
/// bytes; 8 KiB leaves room and bounds what an unauthenticated peer makes us decrypt.
pub(crate) const INITIATE_MAX: usize = 8 * 1024;
/// Smallest `READY`.
pub(crate) const READY_MIN: usize = 30;
/// Largest `READY` we accept from a server.
pub(crate) const READY_MAX: usize = 8 * 1024;
/// The reason of the `ERROR` a refused client gets (libzmq's ZAP status code).
pub(crate) const NOT_AUTHORIZED: &[u8] = b"400";
/// The reason of the `ERROR` a client whose `HELLO` does not open gets.
pub(crate) const WRONG_SERVER_KEY: &[u8] = b"wrong server key";

fn nonce(prefix: &[u8], tail: &[u8]) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[..prefix.len()].copy_from_slice(prefix);
    n[prefix.len()..].copy_from_slice(tail);
    n
}

fn short_nonce(prefix: &[u8; 16], value: u64) -> [u8; NONCE_LEN] {
    nonce(prefix, &value.to_be_bytes())
}

fn key32(bytes: &[u8]) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(&bytes[..KEY_LEN]);
    k
}

fn be64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(b)
}

fn other(name: &'static [u8], data: Vec<u8>) -> Command {
    Command::Other {
        name: Bytes::from_static(name),
        data: Bytes::from(data),
    }
}

fn encode_metadata(meta: &Metadata) -> Vec<u8> {
    let mut out = BytesMut::new();
    meta.encode(&mut out);
    out.to_vec()
}

/// Splits a raw command into name and data; `ERROR` is decoded for the caller.
fn raw(cmd: Command) -> (Bytes, Bytes) {
    match cmd {
        Command::Other { name, data } => (name, data),
        other => {
            // Not reached with `raw_commands`; keep the name for the error path.
            let body = other.to_body();
            let name_len = usize::from(body[0]);
            (body.slice(1..1 + name_len), body.slice(1 + name_len..))
        }
    }
}

fn error_reason(data: &Bytes) -> Bytes {
    match data.first() {
        Some(&len) if data.len() > usize::from(len) => data.slice(1..1 + usize::from(len)),
        _ => data.clone(),
    }
}

// ---------------------------------------------------------------------------------------
// Client

#[derive(Debug)]
enum ClientState {
    ExpectWelcome,
    ExpectReady,
    Done,
}

/// The CURVE client role.
#[derive(Debug)]
pub(crate) struct ClientMechanism {
    config: CurveClient,
    state: ClientState,
    /// Our transient keypair (C', c').
    transient_public: [u8; KEY_LEN],
    transient_secret: Zeroizing<[u8; KEY_LEN]>,
    /// Metadata we send in `INITIATE`.
    local: Metadata,
    /// The box key of C' and S (HELLO and WELCOME), computed once.
    hello_key: Option<BoxKey>,
    session: Option<BoxKey>,
    taken: Option<Session>,
}

impl ClientMechanism {
    pub(crate) fn new(config: CurveClient) -> Self {
        let (public, secret) = crypto::keypair();
        Self {
            config,
            state: ClientState::ExpectWelcome,
            transient_public: public,
            transient_secret: Zeroizing::new(secret),
            local: Metadata::new(),
            hello_key: None,
            session: None,
            taken: None,
        }
    }

    fn hello(&mut self) -> Result<Command, HandshakeError> {
        let key = BoxKey::precompute(self.config.server_key.as_bytes(), &self.transient_secret)
            .ok_or(HandshakeError::WrongKey("server key"))?;
        let mut data = Vec::with_capacity(HELLO_SIZE - 6);
        data.extend_from_slice(&[1, 0]);
        data.extend_from_slice(&[0u8; 72]);
        data.extend_from_slice(&self.transient_public);
        data.extend_from_slice(&1u64.to_be_bytes());
        data.extend_from_slice(&key.seal(&short_nonce(b"CurveZMQHELLO---", 1), &[0u8; 64]));
        self.hello_key = Some(key);
        Ok(other(b"HELLO", data))
    }

    fn on_welcome(&mut self, data: &Bytes) -> Result<Command, HandshakeError> {
        if data.len() != WELCOME_SIZE - 8 {
            return Err(HandshakeError::MalformedCurve("WELCOME"));
        }
        let hello_key = self
            .hello_key
            .take()
            .ok_or(HandshakeError::UnexpectedCommand)?;
        let plain = Zeroizing::new(
            hello_key
                .open(&nonce(b"WELCOME-", &data[..16]), &data[16..])
                .ok_or(HandshakeError::WrongKey("WELCOME"))?,
        );
        let server_transient = key32(&plain[..KEY_LEN]);
        let cookie = &plain[KEY_LEN..KEY_LEN + 96];
        let session = BoxKey::precompute(&server_transient, &self.transient_secret)
            .ok_or(HandshakeError::WrongKey("WELCOME"))?;
        // The vouch: our long-term key signs (C', S) for the server's transient key.
        let vouch_key =
            BoxKey::precompute(&server_transient, self.config.keypair.secret.as_bytes())
                .ok_or(HandshakeError::WrongKey("WELCOME"))?;
        let mut vouch_nonce = [0u8; 16];
        crypto::random_bytes(&mut vouch_nonce);
        let mut vouch_plain = [0u8; 64];
        vouch_plain[..32].copy_from_slice(&self.transient_public);
        vouch_plain[32..].copy_from_slice(self.config.server_key.as_bytes());
        let vouch = vouch_key.seal(&nonce(b"VOUCH---", &vouch_nonce), &vouch_plain);
        let mut inner = Zeroizing::new(Vec::with_capacity(128 + 64));
        inner.extend_from_slice(self.config.keypair.public.as_bytes());
        inner.extend_from_slice(&vouch_nonce);
        inner.extend_from_slice(&vouch);
        inner.extend_from_slice(&encode_metadata(&self.local));
        let mut out = Vec::with_capacity(96 + 8 + TAG_LEN + inner.len());
        out.extend_from_slice(cookie);
        out.extend_from_slice(&2u64.to_be_bytes());
        out.extend_from_slice(&session.seal(&short_nonce(b"CurveZMQINITIATE", 2), &inner));
        self.session = Some(session);
        Ok(other(b"INITIATE", out))
    }

    fn on_ready(&mut self, data: &Bytes) -> Result<MechanismStep, HandshakeError> {
        if data.len() < READY_MIN - 6 || data.len() > READY_MAX {
            return Err(HandshakeError::MalformedCurve("READY"));
        }
        let session = self
            .session
            .take()
            .ok_or(HandshakeError::UnexpectedCommand)?;
        let short = be64(&data[..8]);
        let plain = session
            .open(&nonce(b"CurveZMQREADY---", &data[..8]), &data[8..])
            .ok_or(HandshakeError::WrongKey("READY"))?;
        let meta = Metadata::decode(Bytes::from(plain)).map_err(HandshakeError::Protocol)?;
        self.taken = Some(Session::new(session, false, 2, short));
        self.state = ClientState::Done;
        Ok(MechanismStep::Done(meta))
    }
}

impl Mechanism for ClientMechanism {
    fn name(&self) -> [u8; MECHANISM_LEN] {
        mechanism_name(b"CURVE")
    }

    fn as_server(&self) -> bool {
        false
    }

    fn start(&mut self, local: &Metadata, out: &mut Vec<Command>) {
        self.local = local.clone();
        match self.hello() {
            Ok(hello) => out.push(hello),
            // A low-order server key: no HELLO can be sent; the server will time us out.
            Err(_) => self.state = ClientState::Done,
        }
    }

    fn on_command(
        &mut self,
        cmd: Command,
        out: &mut Vec<Command>,
    ) -> Result<MechanismStep, HandshakeError> {
        let (name, data) = raw(cmd);
        match (&self.state, &name[..]) {
            (ClientState::ExpectWelcome, b"WELCOME") => {
                out.push(self.on_welcome(&data)?);
                self.state = ClientState::ExpectReady;
                Ok(MechanismStep::Continue)
            }
            (ClientState::ExpectReady, b"READY") => self.on_ready(&data),
            (_, b"ERROR") => {
                let reason = error_reason(&data);
                Err(match &reason[..] {
                    NOT_AUTHORIZED => HandshakeError::NotAuthorized,
                    WRONG_SERVER_KEY => HandshakeError::ServerKeyMismatch,
                    _ => HandshakeError::PeerError(reason),
                })
            }
            _ => Err(HandshakeError::UnexpectedCommand),
        }
    }

    fn raw_commands(&self) -> bool {
        true
    }

    fn peer_key(&self) -> Option<PublicKey> {
        Some(self.config.server_key)
    }

    fn take_session(&mut self) -> Option<Session> {
        self.taken.take()
    }

    fn on_closed(&self) -> Option<HandshakeError> {
        matches!(self.state, ClientState::ExpectWelcome)
            .then_some(HandshakeError::ServerKeyMismatch)
    }
}

// ---------------------------------------------------------------------------------------
// Server

#[derive(Debug)]
enum ServerState {
    ExpectHello,
    ExpectInitiate,
    Done,
}

/// The CURVE server role.
#[derive(Debug)]
pub(crate) struct ServerMechanism {
    secret: super::SecretKey,
    public: PublicKey,
    authorizer: Option<Arc<dyn Authorizer>>,
    state: ServerState,
    local: Metadata,
    /// The client's transient key from `HELLO`.
    client_transient: [u8; KEY_LEN],
    hello_nonce: u64,
    /// Our transient keypair, made when `HELLO` opened.
    transient_secret: Zeroizing<[u8; KEY_LEN]>,
    /// The cookie we sent (compared with the one `INITIATE` returns).
    cookie: [u8; 96],
    client_key: Option<PublicKey>,
    taken: Option<Session>,
}

impl ServerMechanism {
    pub(crate) fn new(config: CurveServer) -> Self {
        let public = config.secret.public_key();
        Self {
            secret: config.secret,
            public,
            authorizer: config.authorizer,
            state: ServerState::ExpectHello,
            local: Metadata::new(),
            client_transient: [0; KEY_LEN],
            hello_nonce: 0,
            transient_secret: Zeroizing::new([0; KEY_LEN]),
            cookie: [0; 96],
            client_key: None,
            taken: None,
        }
    }

    fn on_hello(
        &mut self,
        data: &Bytes,
        out: &mut Vec<Command>,
    ) -> Result<MechanismStep, HandshakeError> {
        if data.len() != HELLO_SIZE - 6 {
            return Err(HandshakeError::MalformedCurve("HELLO"));
        }
        if data[0] != 1 {
            return Err(HandshakeError::MalformedCurve("HELLO version"));
        }
        let client_transient = key32(&data[74..106]);
        let short = &data[106..114];
        let hello_key = BoxKey::precompute(&client_transient, self.secret.as_bytes());
        let opened = hello_key
            .as_ref()
            .and_then(|k| k.open(&nonce(b"CurveZMQHELLO---", short), &data[114..]));
        let (Some(hello_key), Some(_zeros)) = (hello_key, opened) else {
            out.push(Command::Error(Bytes::from_static(WRONG_SERVER_KEY)));
            return Err(HandshakeError::WrongKey("HELLO"));
        };
        self.client_transient = client_transient;
        self.hello_nonce = be64(short);
        // Our transient keypair and the cookie: secretbox(C' + s') under a key of this
        // connection alone.
        let (transient_public, transient_secret) = crypto::keypair();
        self.transient_secret = Zeroizing::new(transient_secret);
        let cookie_key = BoxKey::random();
        let mut long = [0u8; 16];
        crypto::random_bytes(&mut long);
        let mut cookie_plain = Zeroizing::new([0u8; 64]);
        cookie_plain[..32].copy_from_slice(&client_transient);
        cookie_plain[32..].copy_from_slice(&*self.transient_secret);
        let sealed = cookie_key.seal(&nonce(b"COOKIE--", &long), &*cookie_plain);
        self.cookie[..16].copy_from_slice(&long);
        self.cookie[16..].copy_from_slice(&sealed);
        let mut welcome_plain = [0u8; 128];
        welcome_plain[..32].copy_from_slice(&transient_public);
        welcome_plain[32..].copy_from_slice(&self.cookie);
        let mut welcome_nonce = [0u8; 16];
        crypto::random_bytes(&mut welcome_nonce);
        let mut data = Vec::with_capacity(WELCOME_SIZE - 8);
        data.extend_from_slice(&welcome_nonce);
        data.extend_from_slice(
            &hello_key.seal(&nonce(b"WELCOME-", &welcome_nonce), &welcome_plain),
        );
        out.push(other(b"WELCOME", data));
        self.state = ServerState::ExpectInitiate;
        Ok(MechanismStep::Continue)
    }

    fn on_initiate(
        &mut self,
        data: &Bytes,
        out: &mut Vec<Command>,
    ) -> Result<MechanismStep, HandshakeError> {
        if data.len() < INITIATE_MIN - 9 || data.len() > INITIATE_MAX {
            return Err(HandshakeError::MalformedCurve("INITIATE"));
        }
        if data[..96] != self.cookie {
            return Err(HandshakeError::WrongKey("INITIATE cookie"));
        }
        let short = be64(&data[96..104]);
        if short <= self.hello_nonce {
            return Err(HandshakeError::MalformedCurve("INITIATE nonce"));
        }
        let session = BoxKey::precompute(&self.client_transient, &self.transient_secret)
            .ok_or(HandshakeError::WrongKey("INITIATE"))?;
        let plain = Zeroizing::new(
            session
                .open(&nonce(b"CurveZMQINITIATE", &data[96..104]), &data[104..])
                .ok_or(HandshakeError::WrongKey("INITIATE"))?,
        );
        // C (32), vouch nonce (16), vouch box (80), metadata.
        let client_key = PublicKey::from_bytes(key32(&plain[..32]));
        let vouch_key = BoxKey::precompute(client_key.as_bytes(), &self.transient_secret)
            .ok_or(HandshakeError::WrongKey("vouch"))?;
        let vouch = vouch_key
            .open(&nonce(b"VOUCH---", &plain[32..48]), &plain[48..128])
            .ok_or(HandshakeError::WrongKey("vouch"))?;
        if vouch[..32] != self.client_transient || vouch[32..] != self.public.as_bytes()[..] {
            return Err(HandshakeError::WrongKey("vouch"));
        }
        let meta = Metadata::decode(Bytes::copy_from_slice(&plain[128..]))
            .map_err(HandshakeError::Protocol)?;
        if let Some(authorizer) = &self.authorizer {
            if !authorizer.authorize(&client_key) {
                out.push(Command::Error(Bytes::from_static(NOT_AUTHORIZED)));
                return Err(HandshakeError::NotAuthorized);
            }
        }
        let ready_plain = encode_metadata(&self.local);
        let mut data = Vec::with_capacity(8 + TAG_LEN + ready_plain.len());
        data.extend_from_slice(&1u64.to_be_bytes());
        data.extend_from_slice(&session.seal(&short_nonce(b"CurveZMQREADY---", 1), &ready_plain));
        out.push(other(b"READY", data));
        self.client_key = Some(client_key);
        self.taken = Some(Session::new(session, true, 1, short));
        self.state = ServerState::Done;
        Ok(MechanismStep::Done(meta))
    }
}

impl Mechanism for ServerMechanism {
    fn name(&self) -> [u8; MECHANISM_LEN] {
        mechanism_name(b"CURVE")
    }

    fn as_server(&self) -> bool {
        true
    }

    fn start(&mut self, local: &Metadata, _out: &mut Vec<Command>) {
        self.local = local.clone();
    }

    fn on_command(
        &mut self,
        cmd: Command,
        out: &mut Vec<Command>,
    ) -> Result<MechanismStep, HandshakeError> {
        let (name, data) = raw(cmd);
        match (&self.state, &name[..]) {
            (ServerState::ExpectHello, b"HELLO") => self.on_hello(&data, out),
            (ServerState::ExpectInitiate, b"INITIATE") => self.on_initiate(&data, out),
            (_, b"ERROR") => Err(HandshakeError::PeerError(error_reason(&data))),
            _ => Err(HandshakeError::UnexpectedCommand),
        }
    }

    fn raw_commands(&self) -> bool {
        true
    }

    fn peer_key(&self) -> Option<PublicKey> {
        self.client_key
    }

    fn take_session(&mut self) -> Option<Session> {
        self.taken.take()
    }
}

#[cfg(test)]
mod tests;
