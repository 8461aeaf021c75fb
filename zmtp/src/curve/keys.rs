//! CURVE keys: X25519 public and secret keys, written as 40 Z85 characters.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use zeroize::Zeroizing;

use super::crypto::{self, KEY_LEN};
use super::z85::{self, Z85Error};

/// Why a key does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 40 characters of Z85 (or 32 raw bytes).
    #[error("a CURVE key is 40 Z85 characters, got {0}")]
    Length(usize),
    /// Not valid Z85.
    #[error("{0}")]
    Z85(Z85Error),
}

/// A CURVE (X25519) public key. Printed and parsed as Z85.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// The key from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Its 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Its 40-character Z85 text.
    pub fn to_z85(&self) -> String {
        z85::encode(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_z85())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        parse_key(s).map(Self)
    }
}

/// A CURVE (X25519) secret key. Zeroed when the last copy is dropped; never printed.
#[derive(Clone)]
pub struct SecretKey(Arc<Zeroizing<[u8; KEY_LEN]>>);

impl SecretKey {
    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(Arc::new(Zeroizing::new(bytes)))
    }

    /// Its 32 bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(crypto::public_of(self.as_bytes()))
    }

    /// Its 40-character Z85 text (for writing a secret certificate).
    pub fn to_z85(&self) -> Zeroizing<String> {
        Zeroizing::new(z85::encode(self.as_bytes()).unwrap_or_default())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(of {})", self.public_key())
    }
}

impl FromStr for SecretKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        let mut bytes = parse_key(s)?;
        let key = Self::from_bytes(bytes);
        zeroize::Zeroize::zeroize(&mut bytes);
        Ok(key)
    }
}

/// A public key and its secret key.
#[derive(Clone, Debug)]
pub struct KeyPair {
    /// The public half, given to peers.
    pub public: PublicKey,
    /// The secret half.
    pub secret: SecretKey,
}

impl KeyPair {
    /// A new random keypair.
    pub fn generate() -> Self {
        let (public, mut secret) = crypto::keypair();
        let pair = Self {
            public: PublicKey(public),
            secret: SecretKey::from_bytes(secret),
        };
        zeroize::Zeroize::zeroize(&mut secret);
        pair
    }

    /// The keypair of a secret key.
    pub fn from_secret(secret: SecretKey) -> Self {
        Self {
            public: secret.public_key(),
            secret,
        }
    }
}

fn parse_key(s: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let s = s.trim();
    if s.len() != 40 {
        return Err(KeyError::Length(s.len()));
    }
    let bytes = Zeroizing::new(z85::decode(s).map_err(KeyError::Z85)?);
    let mut out = [0u8; KEY_LEN];
    out.copy_from_slice(&bytes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keypair pyzmq's `zmq.curve_keypair()` printed (libzmq 4.3.5).
    #[test]
    fn a_libzmq_keypair_matches() {
        let public: PublicKey = "APo7RdfFhonHck@}zU$:ngQRf2n3O*G.&/qdRHzC"
            .parse()
            .expect("pk");
        let secret: SecretKey = "3(:Pm>m9LP!Yd6#k7ahBzquzV=*gf*vEfmv+}w]E"
            .parse()
            .expect("sk");
        assert_eq!(secret.public_key(), public);
        assert_eq!(
            public.to_string(),
            "APo7RdfFhonHck@}zU$:ngQRf2n3O*G.&/qdRHzC"
        );
        assert!(
            !format!("{secret:?}").contains("3(:Pm"),
            "secrets are never printed"
        );
    }

    #[test]
    fn generated_keys_round_trip_through_text() {
        let pair = KeyPair::generate();
        let text = pair.secret.to_z85();
        let back: SecretKey = text.parse().expect("parse");
        assert_eq!(back.public_key(), pair.public);
        assert_eq!(
            pair.public.to_string().parse::<PublicKey>(),
            Ok(pair.public)
        );
        assert_eq!("short".parse::<PublicKey>(), Err(KeyError::Length(5)));
    }
}
