//! A CURVE client's keys from certificate files: the server's public certificate (`NAME.key`)
//! and our own secret one (`NAME.key_secret`), with errors that name the file.

use std::io;
use std::path::{Path, PathBuf};

use super::cert::{CertError, Certificate};
use super::keys::KeyPair;
use super::CurveClient;

/// Why a key file given to [`CurveClient::from_files`] cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The file is not a certificate.
    #[error("{}: {source}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        #[source]
        source: CertError,
    },
    /// Our own certificate has no secret key: the public `NAME.key` was given instead of
    /// `NAME.key_secret`.
    #[error("{}: no curve secret-key (give the NAME.key_secret file)", path.display())]
    NoSecretKey {
        /// The file.
        path: PathBuf,
    },
}

impl KeyFileError {
    /// The file concerned.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. } | Self::Invalid { path, .. } | Self::NoSecretKey { path } => path,
        }
    }
}

impl CurveClient {
    /// Reads the server's certificate and ours: `server_cert` is the server's `NAME.key`
    /// (only its public key is read, so its `NAME.key_secret` would do too), `secret_cert`
    /// our `NAME.key_secret`. Files as `domo keygen`, CZMQ's `zcert` or pyzmq's
    /// `zmq.auth.create_certificates` write them.
    ///
    /// # Errors
    ///
    /// [`KeyFileError`], naming the file that cannot be read or parsed, or our certificate
    /// if it holds no secret key.
    pub fn from_files(server_cert: &Path, secret_cert: &Path) -> Result<Self, KeyFileError> {
        let server = load(server_cert)?;
        let ours = load(secret_cert)?;
        let secret = ours.secret.ok_or_else(|| KeyFileError::NoSecretKey {
            path: secret_cert.to_owned(),
        })?;
        Ok(Self {
            server_key: server.public,
            keypair: KeyPair::from_secret(secret),
        })
    }
}

impl CurveClient {
    /// The keys of a program's `--server-key FILE` (the server's public certificate) and
    /// `--key FILE` (`whose` secret certificate, e.g. "your") flags: both or neither.
    /// Whether the secret certificate is readable by others is for the caller to warn about
    /// ([`readable_by_others`]).
    ///
    /// # Errors
    ///
    /// A one-line usage message: one flag without the other (naming the missing one), or a
    /// file that cannot be used (naming its flag).
    pub fn from_flags(
        server_key: Option<&Path>,
        key: Option<&Path>,
        whose: &str,
    ) -> Result<Option<Self>, String> {
        let (server, ours) = match (server_key, key) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(format!(
                    "--server-key needs --key FILE ({whose} secret certificate, NAME.key_secret)"
                ))
            }
            (None, Some(_)) => {
                return Err(
                    "--key needs --server-key FILE (the broker's public certificate, NAME.key)"
                        .into(),
                )
            }
            (Some(server), Some(ours)) => (server, ours),
        };
        Self::from_files(server, ours).map(Some).map_err(|e| {
            // The server's file is read first; a missing secret key is always ours.
            let server_file = e.path() == server && !matches!(e, KeyFileError::NoSecretKey { .. });
            let flag = if server_file { "--server-key" } else { "--key" };
            format!("{flag} {e}")
        })
    }
}

fn load(path: &Path) -> Result<Certificate, KeyFileError> {
    Certificate::load(path).map_err(|e| match e {
        CertError::Io { path, source } => KeyFileError::Io { path, source },
        source => KeyFileError::Invalid {
            path: path.to_owned(),
            source,
        },
    })
}

/// Whether users other than the owner may read the file at `path` (its mode has any group
/// or other bit set). A secret certificate should be `0600`; pyzmq writes `0644`. Always
/// false where there are no Unix permissions.
///
/// # Errors
///
/// The error of reading the file's metadata.
pub fn readable_by_others(path: &Path) -> io::Result<bool> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        Ok(meta.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().expect("scratch dir")
    }

    #[test]
    fn keys_load_from_saved_certificates() {
        let scratch = scratch();
        let dir = scratch.path();
        let server = Certificate::new(KeyPair::generate().secret);
        let client = Certificate::new(KeyPair::generate().secret);
        server.save(dir, "server").expect("save server");
        client.save(dir, "client").expect("save client");
        let keys = CurveClient::from_files(&dir.join("server.key"), &dir.join("client.key_secret"))
            .expect("load");
        assert_eq!(keys.server_key, server.public);
        assert_eq!(keys.keypair.public, client.public);
        // Saved secrets are private; a chmod makes them readable by others.
        let secret = dir.join("client.key_secret");
        assert!(!readable_by_others(&secret).expect("metadata"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let open = std::fs::Permissions::from_mode(0o644);
            std::fs::set_permissions(&secret, open).expect("chmod");
            assert!(readable_by_others(&secret).expect("metadata"));
        }
    }

    #[test]
    fn errors_name_the_file() {
        let scratch = scratch();
        let dir = scratch.path();
        let cert = Certificate::new(KeyPair::generate().secret);
        cert.save(dir, "a").expect("save");
        let public = dir.join("a.key");
        let missing = dir.join("missing.key");
        let garbage = dir.join("garbage.key");
        std::fs::write(&garbage, "curve\n    public-key = \"short\"\n").expect("write");

        let e = CurveClient::from_files(&public, &public).expect_err("no secret");
        assert!(matches!(e, KeyFileError::NoSecretKey { .. }), "{e}");
        assert_eq!(e.path(), public);
        assert!(e.to_string().contains("NAME.key_secret"), "{e}");

        let e = CurveClient::from_files(&missing, &public).expect_err("missing");
        assert!(matches!(e, KeyFileError::Io { .. }), "{e}");
        // The path once, then the reason.
        let text = e.to_string();
        assert_eq!(text.matches("missing.key").count(), 1, "{text}");

        let e = CurveClient::from_files(&public, &garbage).expect_err("garbage");
        assert_eq!(e.path(), garbage);
        assert!(e
            .to_string()
            .ends_with("line 2: a CURVE key is 40 Z85 characters, got 5"));
    }
}
