//! CURVE key files as an operator lays them out: the broker's secret certificate (mode 0600)
//! and a directory of the public certificates allowed to connect, with their rights.

use std::path::PathBuf;

use domo_zmtp::curve::Certificate;
use domo_zmtp::{KeyPair, Security};

use crate::temp::TempDir;

/// A broker's keys in a scratch directory: `broker.key_secret`, `broker.key` and the
/// `authorized/` directory.
pub struct CurveKeys {
    dir: TempDir,
    /// The broker's keypair.
    pub broker: KeyPair,
    /// `broker.key_secret` (mode 0600).
    pub secret_file: PathBuf,
    /// The authorized-keys directory.
    pub authorized: PathBuf,
}

impl CurveKeys {
    /// A fresh broker keypair and an empty authorized-keys directory.
    pub fn new(tag: &str) -> Self {
        let dir = TempDir::new(tag);
        let broker = KeyPair::generate();
        let (_, secret) = Certificate::new(broker.secret.clone())
            .save(dir.path(), "broker")
            .unwrap();
        let authorized = dir.path().join("authorized");
        std::fs::create_dir(&authorized).unwrap();
        Self {
            dir,
            broker,
            secret_file: secret.unwrap(),
            authorized,
        }
    }

    /// The scratch directory itself.
    pub fn dir(&self) -> &TempDir {
        &self.dir
    }

    /// A fresh keypair, authorized as `authorized/NAME.key` with these metadata properties
    /// (`call`, `serve`).
    pub fn authorize(&self, name: &str, metadata: &[(&str, &str)]) -> KeyPair {
        let pair = KeyPair::generate();
        self.write_public(name, &pair, metadata);
        pair
    }

    /// Writes `authorized/NAME.key` for `pair` (replacing it: new rights for the same key).
    pub fn write_public(&self, name: &str, pair: &KeyPair, metadata: &[(&str, &str)]) {
        let cert = Certificate {
            public: pair.public,
            secret: None,
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let path = self.authorized.join(format!("{name}.key"));
        std::fs::write(path, cert.public_text()).unwrap();
    }

    /// Removes `authorized/NAME.key`.
    pub fn revoke(&self, name: &str) {
        std::fs::remove_file(self.authorized.join(format!("{name}.key"))).unwrap();
    }

    /// The broker flags that turn CURVE on with these files.
    pub fn broker_args(&self) -> Vec<String> {
        vec![
            "--security-mechanism".into(),
            "curve".into(),
            "--security-secret-key-file".into(),
            self.secret_file.display().to_string(),
            "--security-authorized-keys".into(),
            self.authorized.display().to_string(),
        ]
    }

    /// The security of a client or worker with `pair`, for this broker.
    pub fn client(&self, pair: &KeyPair) -> Security {
        Security::curve_client(self.broker.public, pair.clone())
    }
}
