//! Z85 (RFC 32): binary as printable text, 4 bytes to 5 characters. CURVE keys are written as
//! 40 Z85 characters in certificates and socket options.

use std::fmt;

const ALPHABET: &[u8; 85] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// Why a Z85 string does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Z85Error {
    /// The length is not a multiple of 5.
    Length(usize),
    /// A character outside the Z85 alphabet, at this byte offset.
    Character(usize),
    /// A 5-character group whose value is above `0xFFFF_FFFF`, starting at this offset.
    Overflow(usize),
}

impl fmt::Display for Z85Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length(n) => write!(f, "Z85 text of {n} characters (not a multiple of 5)"),
            Self::Character(i) => write!(f, "not a Z85 character at offset {i}"),
            Self::Overflow(i) => write!(f, "Z85 group at offset {i} is out of range"),
        }
    }
}

impl std::error::Error for Z85Error {}

/// Encodes `data`, whose length must be a multiple of 4 (`None` otherwise).
pub fn encode(data: &[u8]) -> Option<String> {
    if !data.len().is_multiple_of(4) {
        return None;
    }
    let mut out = String::with_capacity(data.len() / 4 * 5);
    for chunk in data.chunks_exact(4) {
        let mut v = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let mut group = [0u8; 5];
        for slot in group.iter_mut().rev() {
            *slot = ALPHABET[(v % 85) as usize];
            v /= 85;
        }
        group.iter().for_each(|&c| out.push(char::from(c)));
    }
    Some(out)
}

/// Decodes Z85 text.
pub fn decode(text: &str) -> Result<Vec<u8>, Z85Error> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(5) {
        return Err(Z85Error::Length(bytes.len()));
    }
    let mut out = Vec::with_capacity(bytes.len() / 5 * 4);
    for (g, group) in bytes.chunks_exact(5).enumerate() {
        let mut v: u64 = 0;
        for (i, &c) in group.iter().enumerate() {
            let digit = value(c).ok_or(Z85Error::Character(g * 5 + i))?;
            v = v * 85 + u64::from(digit);
        }
        let v = u32::try_from(v).map_err(|_| Z85Error::Overflow(g * 5))?;
        out.extend_from_slice(&v.to_be_bytes());
    }
    Ok(out)
}

fn value(c: u8) -> Option<u8> {
    ALPHABET.iter().position(|&a| a == c).map(|i| i as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_rfc_32_test_vector() {
        let data = [0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B];
        assert_eq!(encode(&data).as_deref(), Some("HelloWorld"));
        assert_eq!(decode("HelloWorld"), Ok(data.to_vec()));
    }

    #[test]
    fn bad_text_is_refused_with_its_position() {
        assert_eq!(decode("Hello"), Ok(vec![0x86, 0x4F, 0xD2, 0x6F]));
        assert_eq!(decode("Hell"), Err(Z85Error::Length(4)));
        assert_eq!(decode("Hel~o"), Err(Z85Error::Character(3)));
        assert_eq!(decode("He\"lo"), Err(Z85Error::Character(2)));
        // "%nSc0" is 0xFFFFFFFF; "%nSc1" one more.
        assert_eq!(decode("%nSc0"), Ok(vec![0xFF; 4]));
        assert_eq!(decode("%nSc1"), Err(Z85Error::Overflow(0)));
        assert_eq!(decode("#####"), Err(Z85Error::Overflow(0)));
        assert_eq!(encode(&[1, 2, 3]), None);
    }

    proptest! {
        #[test]
        fn round_trips(words in proptest::collection::vec(any::<[u8; 4]>(), 0..20)) {
            let data: Vec<u8> = words.concat();
            let text = encode(&data).expect("multiple of 4");
            prop_assert_eq!(text.len(), data.len() / 4 * 5);
            prop_assert_eq!(decode(&text), Ok(data));
        }

        #[test]
        fn never_panics(text in "\\PC{0,60}") {
            let _ = decode(&text);
        }
    }
}
