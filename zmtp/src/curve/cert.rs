//! CURVE certificates as CZMQ and pyzmq write them (ZPL, RFC 4): `NAME.key` holds the public
//! key and `NAME.key_secret` the public and secret keys, each with an optional `metadata`
//! section of `name = "value"` pairs.
//!
//! ```text
//! #   ZeroMQ CURVE Public Certificate
//! metadata
//!     call = "echo, payments.*"
//! curve
//!     public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
//! ```
//!
//! The reader takes what `zmq.auth.create_certificates` and CZMQ's `zcert` write (quoted or
//! bare values, `#` comments, 4-space indentation) and refuses anything it does not
//! understand with the line number, so a typo is never read as "no rights given".

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::keys::{KeyError, PublicKey, SecretKey};

/// A certificate: a public key, maybe its secret key, and metadata.
#[derive(Clone, Debug)]
pub struct Certificate {
    /// The public key (`curve/public-key`).
    pub public: PublicKey,
    /// The secret key (`curve/secret-key`), present in `NAME.key_secret` files.
    pub secret: Option<SecretKey>,
    /// The `metadata` section, in file order.
    pub metadata: Vec<(String, String)>,
}

/// Why a certificate does not load.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A line does not parse.
    #[error("line {line}: {reason}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A key does not parse.
    #[error("line {line}: {source}")]
    Key {
        /// 1-based line number.
        line: usize,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// No `curve/public-key`.
    #[error("no curve public-key")]
    NoPublicKey,
    /// The secret key does not belong to the public key.
    #[error("the secret-key does not match the public-key")]
    Mismatch,
}

impl Certificate {
    /// A certificate for `secret`'s keypair, with no metadata.
    pub fn new(secret: SecretKey) -> Self {
        Self {
            public: secret.public_key(),
            secret: Some(secret),
            metadata: Vec::new(),
        }
    }

    /// Reads a certificate file.
    pub fn load(path: &Path) -> Result<Self, CertError> {
        let text = Zeroizing::new(fs::read_to_string(path).map_err(|source| CertError::Io {
            path: path.to_owned(),
            source,
        })?);
        Self::parse(&text)
    }

    /// Parses certificate text.
    pub fn parse(text: &str) -> Result<Self, CertError> {
        #[derive(PartialEq)]
        enum Section {
            None,
            Metadata,
            Curve,
            Other,
        }
        let mut section = Section::None;
        let mut public = None;
        let mut secret = None;
        let mut metadata = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let syntax = |reason: &str| CertError::Syntax {
                line,
                reason: reason.to_owned(),
            };
            let content = raw.trim_end();
            let trimmed = content.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = content.len() - trimmed.len();
            if indent == 0 {
                if trimmed.contains('=') {
                    return Err(syntax("a name = value line outside any section"));
                }
                section = match trimmed {
                    "metadata" => Section::Metadata,
                    "curve" => Section::Curve,
                    _ => Section::Other,
                };
                continue;
            }
            let Some((name, value)) = trimmed.split_once('=') else {
                // A nested section name: nothing we read lives there.
                continue;
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(syntax("empty name before '='"));
            }
            let value = unquote(value.trim()).ok_or_else(|| syntax("unterminated quote"))?;
            match section {
                Section::Metadata => metadata.push((name.to_owned(), value.to_owned())),
                Section::Curve if name == "public-key" => {
                    public = Some(
                        value
                            .parse::<PublicKey>()
                            .map_err(|source| CertError::Key { line, source })?,
                    );
                }
                Section::Curve if name == "secret-key" => {
                    secret = Some(
                        value
                            .parse::<SecretKey>()
                            .map_err(|source| CertError::Key { line, source })?,
                    );
                }
                Section::None => return Err(syntax("a name = value line outside any section")),
                _ => {}
            }
        }
        let public = public.ok_or(CertError::NoPublicKey)?;
        if secret.as_ref().is_some_and(|s| s.public_key() != public) {
            return Err(CertError::Mismatch);
        }
        Ok(Self {
            public,
            secret,
            metadata,
        })
    }

    /// The value of a metadata property.
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The text of the public certificate (`NAME.key`).
    pub fn public_text(&self) -> String {
        let mut out = String::from(
            "#   ****  Generated by domo keygen  ****\n\
             #   ZeroMQ CURVE Public Certificate\n\
             #   Exchange securely, or use a secure mechanism to verify the contents\n\
             #   of this file after exchange.\n\n",
        );
        self.write_sections(&mut out, None);
        out
    }

    /// The text of the secret certificate (`NAME.key_secret`); `None` without a secret key.
    pub fn secret_text(&self) -> Option<Zeroizing<String>> {
        let secret = self.secret.as_ref()?;
        let mut out = Zeroizing::new(String::from(
            "#   ****  Generated by domo keygen  ****\n\
             #   ZeroMQ CURVE **Secret** Certificate\n\
             #   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n",
        ));
        self.write_sections(&mut out, Some(secret));
        Some(out)
    }

    fn write_sections(&self, out: &mut String, secret: Option<&SecretKey>) {
        use fmt::Write as _;
        out.push_str("metadata\n");
        for (name, value) in &self.metadata {
            let _ = writeln!(out, "    {name} = \"{value}\"");
        }
        out.push_str("curve\n");
        let _ = writeln!(out, "    public-key = \"{}\"", self.public);
        if let Some(secret) = secret {
            let text = secret.to_z85();
            out.push_str("    secret-key = \"");
            out.push_str(&text);
            out.push_str("\"\n");
        }
    }

    /// Writes `DIR/NAME.key` and, with a secret key, `DIR/NAME.key_secret` (created with mode
    /// 0600 on Unix, never readable by others even for a moment). Refuses to overwrite either.
    pub fn save(&self, dir: &Path, name: &str) -> io::Result<(PathBuf, Option<PathBuf>)> {
        let public_path = dir.join(format!("{name}.key"));
        let secret_path = dir.join(format!("{name}.key_secret"));
        for p in [&public_path, &secret_path] {
            if p.exists() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} already exists", p.display()),
                ));
            }
        }
        let written_secret = match self.secret_text() {
            Some(text) => {
                write_new(&secret_path, text.as_bytes(), 0o600)?;
                Some(secret_path)
            }
            None => None,
        };
        write_new(&public_path, self.public_text().as_bytes(), 0o644)?;
        Ok((public_path, written_secret))
    }
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use io::Write as _;
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = opts.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Strips one pair of matching quotes; a bare value is taken as is.
fn unquote(v: &str) -> Option<&str> {
    match v.chars().next() {
        Some(q @ ('"' | '\'')) => {
            let rest = &v[1..];
            let end = rest.find(q)?;
            Some(&rest[..end])
        }
        _ => Some(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curve::KeyPair;

    /// What pyzmq 27's `zmq.auth.create_certificates(dir, "srv", metadata=...)` wrote
    /// (secret file; pyzmq writes bare metadata values).
    const PYZMQ_SECRET: &str = "#   ****  Generated on 2026-12-06 05:27:14.447084 by pyzmq  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

metadata
    call = echo, pay*
curve
    public-key = \"6GpY&3RPqRspPR.P6pNN@z2RZ(QoN$@}1Hx}8+z@\"
    secret-key = \"HG}3GLa4a]I{1W>sDqF9Ck<=^WoSS)uRj]pnSz{p\"
";

    #[test]
    fn reads_a_pyzmq_secret_certificate() {
        let cert = Certificate::parse(PYZMQ_SECRET).expect("parse");
        assert_eq!(
            cert.public.to_string(),
            "6GpY&3RPqRspPR.P6pNN@z2RZ(QoN$@}1Hx}8+z@"
        );
        let secret = cert.secret.as_ref().expect("secret");
        assert_eq!(secret.public_key(), cert.public);
        assert_eq!(cert.meta("call"), Some("echo, pay*"));
        assert_eq!(cert.meta("serve"), None);
    }

    #[test]
    fn written_certificates_read_back() {
        let mut cert = Certificate::new(KeyPair::generate().secret);
        cert.metadata.push(("serve".into(), "echo, pay*".into()));
        let back = Certificate::parse(&cert.public_text()).expect("public");
        assert_eq!(back.public, cert.public);
        assert!(back.secret.is_none());
        assert_eq!(back.meta("serve"), Some("echo, pay*"));
        let text = cert.secret_text().expect("secret");
        let back = Certificate::parse(&text).expect("secret");
        assert_eq!(
            back.secret.expect("secret").as_bytes(),
            cert.secret.expect("secret").as_bytes()
        );
    }

    #[test]
    fn mistakes_are_refused_with_the_line() {
        let err = |t: &str| Certificate::parse(t).expect_err(t).to_string();
        assert_eq!(err("metadata\ncurve\n"), "no curve public-key");
        assert_eq!(
            err("curve\n    public-key = \"short\"\n"),
            "line 2: a CURVE key is 40 Z85 characters, got 5"
        );
        assert_eq!(
            err("public-key = \"x\"\n"),
            "line 1: a name = value line outside any section"
        );
        assert_eq!(
            err("metadata\n    call = \"echo\n"),
            "line 2: unterminated quote"
        );
        let a = KeyPair::generate();
        let b = KeyPair::generate();
        let mixed = format!(
            "curve\n    public-key = \"{}\"\n    secret-key = \"{}\"\n",
            a.public,
            &*b.secret.to_z85()
        );
        assert_eq!(err(&mixed), "the secret-key does not match the public-key");
    }
}
