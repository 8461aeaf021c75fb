//! `domo token new`: a bearer token for the HTTP gateway, and its entry for the gateway's
//! tokens file (which holds only the token's SHA-256).

use std::process::ExitCode;

use sha2::{Digest, Sha256};

/// Rights of a new token, as pattern lists (`echo, billing.*`; empty: none).
#[derive(Debug, Default)]
pub(crate) struct Rights {
    pub call: String,
    pub publish: String,
    pub subscribe: String,
}

/// A new token (32 random bytes, URL-safe base64) and the SHA-256 the file stores, in hex.
pub(crate) fn generate() -> Result<(String, String), getrandom::Error> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)?;
    let token = base64url(&raw);
    Ok((token.clone(), hash(&token)))
}

/// The hex SHA-256 of a token, as the tokens file holds it.
pub(crate) fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
        }
    }
    out
}

/// The `[[token]]` table of the tokens file.
pub(crate) fn entry(name: &str, sha256: &str, rights: &Rights) -> String {
    let quote = |s: &str| format!("{:?}", s);
    format!(
        "[[token]]\nname = {}\nsha256 = {}\ncall = {}\npublish = {}\nsubscribe = {}\n",
        quote(name),
        quote(sha256),
        quote(&rights.call),
        quote(&rights.publish),
        quote(&rights.subscribe)
    )
}

/// Prints the entry on stdout (to append to the tokens file) and the token on stderr (to
/// give to the client; it is kept nowhere).
pub(crate) fn new(name: &str, rights: &Rights) -> ExitCode {
    match generate() {
        Ok((token, sha256)) => {
            eprintln!("token for {name:?} (give it to the client; only its hash is below):");
            eprintln!("{token}");
            print!("{}", entry(name, &sha256, rights));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("domo: no random bytes for a token: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_url_safe_and_hashed() {
        let (a, ha) = generate().unwrap();
        let (b, _) = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(ha, hash(&a));
        // SHA-256("abc"), FIPS 180-2.
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
    }

    #[test]
    fn the_entry_is_toml_the_gateway_reads() {
        let rights = Rights {
            call: "echo, billing.*".into(),
            ..Rights::default()
        };
        let e = entry("front \"end\"", "ab", &rights);
        assert_eq!(
            e,
            "[[token]]\nname = \"front \\\"end\\\"\"\nsha256 = \"ab\"\ncall = \"echo, billing.*\"\npublish = \"\"\nsubscribe = \"\"\n"
        );
    }
}
