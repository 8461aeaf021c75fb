//! Connections to PostgreSQL, shared by the Titanic store, the topic store and the CLI: the
//! URL, the password from a file, a connect timeout per host, and TLS when the URL asks for
//! it (`sslmode=require`), the server's certificate verified against a CA file (PEM) or the
//! system's trust store. Without `sslmode=require` the connection is plain, as tokio-postgres
//! makes it (put the database on a trusted network then).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How to connect: the parsed URL and, if it asks for TLS, the TLS setup.
#[derive(Clone)]
pub struct Connector {
    config: Config,
    tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config may hold a password: never shown.
        f.debug_struct("Connector")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Parses `url` (a libpq-style URL or key=value string); `password` replaces any in it;
    /// each host gets `connect_timeout` unless the URL sets one; `name` is the
    /// `application_name` the server shows. With `sslmode=require`, TLS trusting `ca_file`
    /// (PEM, one or more certificates) or, without one, the system's trust store.
    ///
    /// # Errors
    ///
    /// The URL does not parse, the CA file cannot be read or holds no certificate, or the
    /// system has no trusted certificate; the message says which.
    pub fn new(
        url: &str,
        password: Option<&str>,
        ca_file: Option<&Path>,
        connect_timeout: Duration,
        name: &str,
    ) -> Result<Self, String> {
        let mut config: Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| format!("PostgreSQL URL: {e}"))?;
        if let Some(p) = password {
            config.password(p.as_bytes());
        }
        config.application_name(name);
        if config.get_connect_timeout().is_none() {
            // Each host of a multi-host URL gets this long (a host that is down on another
            // machine may not answer at all).
            config.connect_timeout(connect_timeout);
        }
        let tls = match config.get_ssl_mode() {
            SslMode::Require => Some(MakeRustlsConnect::new(tls_config(ca_file)?)),
            _ => None,
        };
        Ok(Self { config, tls })
    }

    /// Whether connections are encrypted.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Connects (to the first host of the URL that takes the connection and matches
    /// `target_session_attrs`) and drives the connection on the current runtime.
    ///
    /// # Errors
    ///
    /// tokio-postgres's: no host reached, authentication or TLS refused (the source says
    /// which: an unknown certificate issuer, a name mismatch...).
    pub async fn connect(&self) -> Result<Client, tokio_postgres::Error> {
        match &self.tls {
            Some(tls) => {
                let (client, connection) = self.config.connect(tls.clone()).await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!(error = %e, "PostgreSQL connection ended");
                    }
                });
                Ok(client)
            }
            None => {
                let (client, connection) = self.config.connect(NoTls).await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!(error = %e, "PostgreSQL connection ended");
                    }
                });
                Ok(client)
            }
        }
    }
}

/// rustls with ring, TLS 1.2 and 1.3, the server verified against `ca_file` or the system's
/// roots; no client certificate.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no PEM certificate in it", path.display()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A certificate the store cannot use is skipped, as TLS clients do.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(
                    "sslmode=require but this system has no trusted certificates: set ca_file"
                        .into(),
                );
            }
        }
    }
    // ring: no post-quantum key exchange (rustls deprecates its default provider for that),
    // but no cmake in the build either, which aws-lc-rs would need; X25519 and the NIST
    // curves protect the database link.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_only_when_the_url_requires_it_and_a_bad_ca_file_is_named() {
        let t = Duration::from_secs(1);
        let plain = Connector::new("postgres://u@h/db", None, None, t, "x").unwrap();
        assert!(!plain.tls());
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let url = "postgres://u@h/db?sslmode=require";
        let e = Connector::new(url, None, Some(&empty), t, "x").unwrap_err();
        assert!(
            e.contains("ca.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
        let missing = dir.path().join("missing.pem");
        let e = Connector::new(url, None, Some(&missing), t, "x").unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
        let e = Connector::new("postgres://u@h/db?sslmode=bogus", None, None, t, "x").unwrap_err();
        assert!(e.starts_with("PostgreSQL URL"), "{e}");
    }
}
