//! Identities carried in frames: service names and peer routing ids.
//!
//! Both are newtypes over [`Bytes`] whose constructors check the frame, so a value of these
//! types is always valid to put back on the wire ("parse, don't validate").

use std::fmt;

use bytes::Bytes;

use crate::consts::MMI_PREFIX;

/// Longest service name or routing id, in bytes. ZMTP limits routing ids to 255 bytes; we
/// apply the same bound to service names so both fit a one-byte length anywhere.
const MAX_LEN: usize = 255;

/// Why a frame is not a valid [`ServiceName`] or [`PeerId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The frame is empty.
    #[error("name is empty")]
    Empty,
    /// The frame is longer than 255 bytes; holds the actual length.
    #[error("name is {0} bytes long, the limit is 255")]
    TooLong(usize),
}

/// Checks the length rule shared by service names and routing ids.
const fn check_len(len: usize) -> Result<(), NameError> {
    if len == 0 {
        Err(NameError::Empty)
    } else if len > MAX_LEN {
        Err(NameError::TooLong(len))
    } else {
        Ok(())
    }
}

/// The name of a service, as carried in the service frame of MDP messages.
///
/// Always 1 to 255 bytes. Any bytes are allowed, since MDP treats the name as opaque; the
/// `Display` impl shows it as lossy UTF-8 for logs. Cloning is cheap (a reference count).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceName(Bytes);

impl ServiceName {
    /// Parses a service name from a frame without copying it.
    ///
    /// # Errors
    ///
    /// [`NameError`] if the name is empty or longer than 255 bytes.
    pub fn new(bytes: impl Into<Bytes>) -> Result<Self, NameError> {
        let bytes = bytes.into();
        check_len(bytes.len())?;
        Ok(Self(bytes))
    }

    /// Makes a service name from a string constant, usable in `const` items.
    ///
    /// # Panics
    ///
    /// If `name` is empty or longer than 255 bytes (at compile time in a `const` context).
    pub const fn from_static(name: &'static str) -> Self {
        assert!(
            check_len(name.len()).is_ok(),
            "service name must be 1 to 255 bytes"
        );
        Self(Bytes::from_static(name.as_bytes()))
    }

    /// Whether this name is in the `mmi.` namespace the broker answers itself (RFC 8).
    ///
    /// A prefix match: `foo.mmi.bar` is an ordinary service (zeromq/majordomo's substring
    /// search got this wrong).
    pub fn is_mmi(&self) -> bool {
        self.0.starts_with(MMI_PREFIX)
    }

    /// The name's bytes, as on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The name as a frame, ready to put on the wire.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl AsRef<[u8]> for ServiceName {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<ServiceName> for Bytes {
    fn from(name: ServiceName) -> Self {
        name.0
    }
}

impl TryFrom<&str> for ServiceName {
    type Error = NameError;

    /// Copies the string; use [`ServiceName::new`] with a `&'static str` to avoid the copy.
    fn try_from(name: &str) -> Result<Self, Self::Error> {
        Self::new(Bytes::copy_from_slice(name.as_bytes()))
    }
}

impl TryFrom<String> for ServiceName {
    type Error = NameError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::new(name)
    }
}

impl TryFrom<Bytes> for ServiceName {
    type Error = NameError;

    fn try_from(frame: Bytes) -> Result<Self, Self::Error> {
        Self::new(frame)
    }
}

/// The routing id of a peer: the frame a ROUTER socket puts in front of what the peer sent.
///
/// Always 1 to 255 bytes (the ZMTP limit). The broker uses it to address workers and, inside
/// worker REQUEST/REPLY commands, to name the client a request came from. `Display` prints
/// lowercase hex, for logs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(Bytes);

impl PeerId {
    /// Parses a routing id from a frame without copying it.
    ///
    /// # Errors
    ///
    /// [`NameError`] if the id is empty or longer than 255 bytes.
    pub fn new(bytes: impl Into<Bytes>) -> Result<Self, NameError> {
        let bytes = bytes.into();
        check_len(bytes.len())?;
        Ok(Self(bytes))
    }

    /// The id's bytes, as on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The id as a frame, ready to put on the wire.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl AsRef<[u8]> for PeerId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<PeerId> for Bytes {
    fn from(id: PeerId) -> Self {
        id.0
    }
}

impl TryFrom<Bytes> for PeerId {
    type Error = NameError;

    fn try_from(frame: Bytes) -> Result<Self, Self::Error> {
        Self::new(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_accepts_one_to_255_bytes() {
        assert!(ServiceName::new("e").is_ok());
        assert!(ServiceName::new(vec![0xff; 255]).is_ok());
    }

    #[test]
    fn service_name_rejects_empty_and_too_long() {
        assert_eq!(ServiceName::new(""), Err(NameError::Empty));
        assert_eq!(
            ServiceName::new(vec![b'a'; 256]),
            Err(NameError::TooLong(256))
        );
    }

    #[test]
    fn service_name_from_static_works_in_const() {
        const ECHO: ServiceName = ServiceName::from_static("echo");
        assert_eq!(ECHO.as_bytes(), b"echo");
    }

    #[test]
    #[should_panic(expected = "service name must be 1 to 255 bytes")]
    fn service_name_from_static_panics_on_empty() {
        let _ = ServiceName::from_static("");
    }

    #[test]
    fn service_name_conversions_agree() {
        let from_str = ServiceName::try_from("echo").unwrap();
        let from_string = ServiceName::try_from(String::from("echo")).unwrap();
        let from_bytes = ServiceName::try_from(Bytes::from_static(b"echo")).unwrap();
        assert_eq!(from_str, from_string);
        assert_eq!(from_str, from_bytes);
        assert_eq!(Bytes::from(from_str), Bytes::from_static(b"echo"));
        assert_eq!(ServiceName::try_from(""), Err(NameError::Empty));
    }

    #[test]
    fn is_mmi_matches_only_the_prefix() {
        assert!(ServiceName::from_static("mmi.service").is_mmi());
        assert!(ServiceName::from_static("mmi.").is_mmi());
        assert!(!ServiceName::from_static("echo.mmi.service").is_mmi());
        assert!(!ServiceName::from_static("mmi").is_mmi());
        assert!(!ServiceName::from_static("MMI.service").is_mmi());
    }

    #[test]
    fn service_name_displays_as_lossy_utf8() {
        assert_eq!(ServiceName::from_static("echo").to_string(), "echo");
        let binary = ServiceName::new(&b"a\xffb"[..]).unwrap();
        assert_eq!(binary.to_string(), "a\u{fffd}b");
    }

    #[test]
    fn peer_id_checks_length() {
        assert_eq!(PeerId::new(""), Err(NameError::Empty));
        assert_eq!(PeerId::new(vec![0; 256]), Err(NameError::TooLong(256)));
        assert!(PeerId::new(vec![0; 255]).is_ok());
    }

    #[test]
    fn peer_id_displays_as_hex() {
        let id = PeerId::new(&b"\x00\x80\x1b\xff"[..]).unwrap();
        assert_eq!(id.to_string(), "00801bff");
        assert_eq!(id.as_bytes(), b"\x00\x80\x1b\xff");
    }
}
