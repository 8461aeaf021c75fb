//! The ZMTP 3.x greeting (RFC 23 section "Greeting", RFC 37).
//!
//! ```text
//! greeting  = signature version mechanism as-server filler   ; 64 octets
//! signature = %xFF 8OCTET %x7F                               ; 10 octets
//! version   = %x03 %x01                                      ; major, minor
//! mechanism = 20OCTET                                        ; "NULL" padded with zeros
//! as-server = %x00 / %x01
//! filler    = 31%x00
//! ```

use crate::error::HandshakeError;

/// Length of a complete greeting.
pub const GREETING_LEN: usize = 64;
/// Length of the mechanism name field.
pub const MECHANISM_LEN: usize = 20;

/// Our protocol version: ZMTP 3.1.
const VERSION_MAJOR: u8 = 3;
const VERSION_MINOR: u8 = 1;

/// A parsed greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Greeting {
    /// Major protocol version (3 for ZMTP 3.x).
    pub major: u8,
    /// Minor protocol version (0 for ZMTP 3.0, 1 for ZMTP 3.1).
    pub minor: u8,
    /// Mechanism name, zero padded.
    pub mechanism: [u8; MECHANISM_LEN],
    /// Whether the sender acts as server for the mechanism.
    pub as_server: bool,
}

impl Greeting {
    /// A ZMTP 3.1 greeting for `mechanism`.
    pub fn new(mechanism: [u8; MECHANISM_LEN], as_server: bool) -> Self {
        Self {
            major: VERSION_MAJOR,
            minor: VERSION_MINOR,
            mechanism,
            as_server,
        }
    }

    /// The 64 bytes on the wire.
    pub fn encode(&self) -> [u8; GREETING_LEN] {
        let mut out = [0u8; GREETING_LEN];
        out[0] = 0xFF;
        out[9] = 0x7F;
        out[10] = self.major;
        out[11] = self.minor;
        out[12..32].copy_from_slice(&self.mechanism);
        out[32] = u8::from(self.as_server);
        out
    }

    /// Checks the prefix of a greeting received so far, so that a peer that does not speak
    /// ZMTP 3 is refused after as few bytes as possible rather than after 64.
    pub fn check_prefix(prefix: &[u8]) -> Result<(), HandshakeError> {
        if let Some(&b) = prefix.first() {
            if b != 0xFF {
                return Err(HandshakeError::BadSignature);
            }
        }
        if let Some(&b) = prefix.get(9) {
            if b != 0x7F {
                return Err(HandshakeError::BadSignature);
            }
        }
        if let Some(&major) = prefix.get(10) {
            if major < VERSION_MAJOR {
                return Err(HandshakeError::UnsupportedVersion(major));
            }
        }
        Ok(())
    }

    /// Parses a complete greeting. Padding and filler bytes are ignored, as RFC 23 allows.
    pub fn decode(bytes: &[u8; GREETING_LEN]) -> Result<Self, HandshakeError> {
        Self::check_prefix(bytes)?;
        let mut mechanism = [0u8; MECHANISM_LEN];
        mechanism.copy_from_slice(&bytes[12..32]);
        Ok(Self {
            major: bytes[10],
            minor: bytes[11],
            mechanism,
            as_server: bytes[32] == 1,
        })
    }
}

/// Pads a mechanism name such as `b"NULL"` to the 20-byte wire field.
///
/// Names longer than 20 bytes are truncated; mechanism names are short ASCII constants.
pub const fn mechanism_name(name: &[u8]) -> [u8; MECHANISM_LEN] {
    let mut out = [0u8; MECHANISM_LEN];
    let mut i = 0;
    while i < name.len() && i < MECHANISM_LEN {
        out[i] = name[i];
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_rfc_layout() {
        let g = Greeting::new(mechanism_name(b"NULL"), false).encode();
        assert_eq!(g[0], 0xFF);
        assert_eq!(&g[1..9], &[0u8; 8]);
        assert_eq!(g[9], 0x7F);
        assert_eq!(&g[10..12], &[3, 1]);
        assert_eq!(&g[12..16], b"NULL");
        assert!(g[16..].iter().all(|&b| b == 0));
    }

    #[test]
    fn round_trips() {
        let g = Greeting::new(mechanism_name(b"PLAIN"), true);
        assert_eq!(Greeting::decode(&g.encode()).unwrap(), g);
    }

    #[test]
    fn accepts_zmtp_3_0_and_libzmq_padding() {
        let mut g = Greeting::new(mechanism_name(b"NULL"), false).encode();
        g[11] = 0;
        g[8] = 1; // libzmq puts identity length + 1 here for ZMTP 1.0 peers
        let parsed = Greeting::decode(&g).unwrap();
        assert_eq!((parsed.major, parsed.minor), (3, 0));
    }

    #[test]
    fn refuses_bad_signature_early() {
        assert_eq!(
            Greeting::check_prefix(b"G"),
            Err(HandshakeError::BadSignature)
        );
        let mut p = [0u8; 10];
        p[0] = 0xFF;
        p[9] = 0x01;
        assert_eq!(
            Greeting::check_prefix(&p),
            Err(HandshakeError::BadSignature)
        );
    }

    #[test]
    fn refuses_old_versions() {
        let mut g = Greeting::new(mechanism_name(b"NULL"), false).encode();
        g[10] = 2;
        assert_eq!(
            Greeting::decode(&g),
            Err(HandshakeError::UnsupportedVersion(2))
        );
    }
}
