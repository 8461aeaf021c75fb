//! CURVE on the broker's endpoints: its own keypair, and the authorized keys with the rights
//! their certificates give them.
//!
//! Design: [`BrokerKeys::load`] reads the files `[security]` names, after the settings are
//! checked and before anything is bound, so `--check-config` and the start refuse the same
//! files with the same one-line message ([`KeyFileError`]: the key, the file, its line).
//! [`AuthorizedKeys`] is the allow-list the ZMTP router consults during each handshake
//! ([`Authorizer`]) and the shell consults when a peer connects (its [`Rights`]); a reload
//! (SIGHUP) swaps the whole set at once, or keeps the old one if the directory does not read.
//! The broker's own public key is always authorized with every right: the embedded Titanic
//! connects with the broker's keypair.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use domo_zmtp::curve::{Authorizer, CertError, Certificate};
use domo_zmtp::{KeyPair, PublicKey, Security};

use crate::config::{Mechanism, SecuritySettings};
use crate::core::{Patterns, Rights};

/// A key file that cannot be used: one line naming the setting, the file and (when known)
/// the line, e.g. `security.secret_key_file: /etc/domo/broker.key_secret is readable by
/// group or others (chmod 600 it)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyFileError(String);

const SECRET_KEY_FILE: &str = "security.secret_key_file";
const AUTHORIZED_KEYS: &str = "security.authorized_keys";

/// The broker's CURVE material: its keypair and the authorized keys.
#[derive(Debug, Clone)]
pub struct BrokerKeys {
    /// The broker's long-term keypair (`security.secret_key_file`).
    pub keypair: KeyPair,
    /// Who may connect, and with which rights (`security.authorized_keys`).
    pub authorized: Arc<AuthorizedKeys>,
    /// A pair's peer broker (`ha.peer_key_file`): the only key its state link accepts.
    pub peer: Option<PublicKey>,
}

impl BrokerKeys {
    /// Reads the key files of `settings`: `None` with the NULL mechanism.
    ///
    /// # Errors
    /// [`KeyFileError`] for a setting left empty, a file that is missing, unreadable or
    /// malformed, or a secret key file readable by group or others.
    pub fn load(settings: &SecuritySettings) -> Result<Option<Self>, KeyFileError> {
        if settings.mechanism == Mechanism::Null {
            return Ok(None);
        }
        let required = |key: &str, path: &Option<PathBuf>| {
            path.clone()
                .ok_or_else(|| KeyFileError(format!("{key}: required with mechanism = \"curve\"")))
        };
        let secret = required(SECRET_KEY_FILE, &settings.secret_key_file)?;
        let dir = required(AUTHORIZED_KEYS, &settings.authorized_keys)?;
        let keypair = load_keypair(&secret)?;
        let authorized = Arc::new(AuthorizedKeys::load(&dir, keypair.public)?);
        Ok(Some(Self {
            keypair,
            authorized,
            peer: None,
        }))
    }

    /// Reads the pair's peer certificate (`ha.peer_key_file`, a public `NAME.key`). It may be
    /// this broker's own key: two brokers sharing one keypair is the simple setup, since
    /// clients of a pair then need one server key.
    ///
    /// # Errors
    /// [`KeyFileError`] naming `ha.peer_key_file`.
    pub fn load_peer(&mut self, path: &Path) -> Result<(), KeyFileError> {
        let cert = Certificate::load(path)
            .map_err(|e| KeyFileError(format!("ha.peer_key_file: {}", cert_problem(path, &e))))?;
        self.peer = Some(cert.public);
        Ok(())
    }

    /// The keys of the pair's state link, once the peer's key is loaded.
    pub fn pair_keys(&self) -> Option<crate::shell::PairKeys> {
        Some(crate::shell::PairKeys {
            own: self.keypair.clone(),
            peer: self.peer?,
        })
    }

    /// The security of the broker's ROUTER: the CURVE server with our secret key, admitting
    /// the authorized keys.
    pub fn server(&self) -> Security {
        Security::curve_server_with(self.keypair.secret.clone(), self.authorized.clone())
    }

    /// The security of the broker's own clients and workers (the embedded Titanic): a CURVE
    /// client of this broker, with the broker's own keypair.
    pub fn own_client(&self) -> Security {
        Security::curve_client(self.keypair.public, self.keypair.clone())
    }
}

/// Reads the broker's secret certificate: refused if group or others may read or write it.
///
/// # Errors
/// [`KeyFileError`] naming `security.secret_key_file`.
pub fn load_keypair(path: &Path) -> Result<KeyPair, KeyFileError> {
    let fail = |problem: String| KeyFileError(format!("{SECRET_KEY_FILE}: {problem}"));
    let meta = std::fs::metadata(path)
        .map_err(|e| fail(format!("{}: cannot read: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(fail(format!("{}: not a file", path.display())));
    }
    check_private(path, &meta).map_err(fail)?;
    let cert = Certificate::load(path).map_err(|e| fail(cert_problem(path, &e)))?;
    let secret = cert.secret.ok_or_else(|| {
        fail(format!(
            "{} holds no secret-key (the public NAME.key instead of NAME.key_secret?)",
            path.display()
        ))
    })?;
    Ok(KeyPair::from_secret(secret))
}

/// The file's mode must give group and others nothing.
#[cfg(unix)]
fn check_private(path: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let what = if mode & 0o044 != 0 {
        "readable"
    } else {
        "writable"
    };
    Err(format!(
        "{} is {what} by group or others (chmod 600 it)",
        path.display()
    ))
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _meta: &std::fs::Metadata) -> Result<(), String> {
    Ok(())
}

/// `PATH:LINE: reason` for a certificate that does not parse.
fn cert_problem(path: &Path, e: &CertError) -> String {
    let path = path.display();
    match e {
        CertError::Io { source, .. } => format!("{path}: cannot read: {source}"),
        CertError::Syntax { line, reason } => format!("{path}:{line}: {reason}"),
        CertError::Key { line, source } => format!("{path}:{line}: {source}"),
        other => format!("{path}: {other}"),
    }
}

// === the authorized keys ===

/// One authorized key: the certificate it came from and its rights.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    file: PathBuf,
    rights: Rights,
}

/// The keys of one reading of the directory.
#[derive(Debug, Default)]
struct KeySet {
    keys: HashMap<PublicKey, Entry>,
}

/// The clients and workers allowed to connect, with their rights: every public certificate
/// (`*.key`) of a directory, plus the broker's own key with every right.
///
/// Rights come from the certificate's `metadata`: `call` (services it may request) and
/// `serve` (services it may register for), each a list of patterns
/// ([`Patterns::parse`]); a missing property is every service.
#[derive(Debug)]
pub struct AuthorizedKeys {
    /// The broker's own public key: always authorized, every right.
    own: PublicKey,
    set: RwLock<Arc<KeySet>>,
}

/// What a reload changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReloadSummary {
    /// Keys now authorized.
    pub keys: usize,
    /// Keys that were not there before.
    pub added: usize,
    /// Keys no longer there.
    pub removed: usize,
    /// Keys still there with other rights.
    pub changed: usize,
}

impl AuthorizedKeys {
    /// Reads every `*.key` file of `dir`; `own` is the broker's public key.
    ///
    /// # Errors
    /// [`KeyFileError`] naming `security.authorized_keys` and the file (and line) that does
    /// not read: the directory itself, a malformed certificate, bad rights, or one key in
    /// two files.
    pub fn load(dir: &Path, own: PublicKey) -> Result<Self, KeyFileError> {
        Ok(Self {
            own,
            set: RwLock::new(Arc::new(read_dir(dir)?)),
        })
    }

    /// Reads `dir` again and, if it reads, puts its keys in force at once; otherwise the
    /// keys in force stay.
    ///
    /// # Errors
    /// As [`AuthorizedKeys::load`]; nothing changes then.
    pub fn reload(&self, dir: &Path) -> Result<ReloadSummary, KeyFileError> {
        let new = Arc::new(read_dir(dir)?);
        let old = std::mem::replace(&mut *self.write(), new.clone());
        let mut summary = ReloadSummary {
            keys: new.keys.len(),
            ..ReloadSummary::default()
        };
        for (key, entry) in &new.keys {
            match old.keys.get(key) {
                None => summary.added += 1,
                Some(before) if before.rights != entry.rights => summary.changed += 1,
                Some(_) => {}
            }
        }
        summary.removed = old
            .keys
            .keys()
            .filter(|k| !new.keys.contains_key(k))
            .count();
        Ok(summary)
    }

    /// The rights of `key`, or `None` if it may not connect.
    pub fn rights(&self, key: &PublicKey) -> Option<Rights> {
        if *key == self.own {
            return Some(Rights::all());
        }
        self.read().keys.get(key).map(|e| e.rights.clone())
    }

    /// How many keys the directory authorized (the broker's own not counted).
    pub fn len(&self) -> usize {
        self.read().keys.len()
    }

    /// Whether the directory authorized no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> Arc<KeySet> {
        self.set.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Arc<KeySet>> {
        self.set.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Authorizer for AuthorizedKeys {
    fn authorize(&self, client: &PublicKey) -> bool {
        *client == self.own || self.read().keys.contains_key(client)
    }
}

impl fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} keys ({} added, {} removed, {} with new rights)",
            self.keys, self.added, self.removed, self.changed
        )
    }
}

/// Every public certificate of `dir`, in file-name order.
fn read_dir(dir: &Path) -> Result<KeySet, KeyFileError> {
    let fail = |problem: String| KeyFileError(format!("{AUTHORIZED_KEYS}: {problem}"));
    let entries =
        std::fs::read_dir(dir).map_err(|e| fail(format!("{}: cannot read: {e}", dir.display())))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| fail(format!("{}: cannot read: {e}", dir.display())))?;
        let path = entry.path();
        let is_key = path.extension().is_some_and(|ext| ext == "key");
        if is_key && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut set = KeySet::default();
    for file in files {
        let (key, rights) = read_certificate(&file).map_err(fail)?;
        if let Some(first) = set.keys.get(&key) {
            return Err(fail(format!(
                "{}: the same public key as {}",
                file.display(),
                first.file.display()
            )));
        }
        set.keys.insert(key, Entry { file, rights });
    }
    Ok(set)
}

/// A public certificate's key and the rights its metadata gives.
fn read_certificate(file: &Path) -> Result<(PublicKey, Rights), String> {
    let cert = Certificate::load(file).map_err(|e| cert_problem(file, &e))?;
    let right = |name: &str| match cert.meta(name) {
        None => Ok(Patterns::all()),
        Some(text) => Patterns::parse(text).map_err(|e| {
            let at = metadata_line(file, name).map_or_else(String::new, |l| format!(":{l}"));
            format!("{}{at}: metadata {name}: {e}", file.display())
        }),
    };
    let rights = Rights {
        call: right("call")?,
        serve: right("serve")?,
    };
    Ok((cert.public, rights))
}

/// The line of the metadata property `name` in `file`, for an error message.
fn metadata_line(file: &Path, name: &str) -> Option<usize> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .position(|line| {
            line.trim_start()
                .strip_prefix(name)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domo_mdp::ServiceName;

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir()
                .join(format!("domo-security-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, text).unwrap();
            path
        }

        /// A certificate for a fresh key, with `metadata` lines; returns its key.
        fn cert(&self, name: &str, metadata: &[(&str, &str)]) -> PublicKey {
            let pair = KeyPair::generate();
            self.write(&format!("{name}.key"), &public_text(&pair.public, metadata));
            pair.public
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn public_text(key: &PublicKey, metadata: &[(&str, &str)]) -> String {
        let mut text = String::from("#   ZeroMQ CURVE Public Certificate\nmetadata\n");
        for (name, value) in metadata {
            text.push_str(&format!("    {name} = \"{value}\"\n"));
        }
        text.push_str(&format!("curve\n    public-key = \"{key}\"\n"));
        text
    }

    fn name(text: &str) -> ServiceName {
        ServiceName::try_from(text).unwrap()
    }

    fn own() -> PublicKey {
        KeyPair::generate().public
    }

    #[test]
    fn rights_come_from_metadata_and_default_to_everything() {
        let dir = Scratch::new("rights");
        let plain = dir.cert("plain", &[]);
        let limited = dir.cert("limited", &[("call", "echo, billing.*"), ("serve", "")]);
        let store = AuthorizedKeys::load(&dir.0, own()).unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(store.rights(&plain), Some(Rights::all()));
        let rights = store.rights(&limited).unwrap();
        assert!(rights.call.allows(&name("echo")) && rights.call.allows(&name("billing.x")));
        assert!(!rights.call.allows(&name("mmi.services")));
        assert_eq!(rights.serve, Patterns::none());
        assert!(store.authorize(&limited));
        let stranger = KeyPair::generate().public;
        assert!(!store.authorize(&stranger) && store.rights(&stranger).is_none());
    }

    #[test]
    fn the_brokers_own_key_is_always_authorized_with_every_right() {
        let dir = Scratch::new("own");
        let own = own();
        let store = AuthorizedKeys::load(&dir.0, own).unwrap();
        assert!(store.is_empty());
        assert!(store.authorize(&own));
        assert_eq!(store.rights(&own), Some(Rights::all()));
    }

    #[test]
    fn only_key_files_count() {
        let dir = Scratch::new("only");
        let key = dir.cert("alice", &[]);
        dir.write("alice.key_secret", "not even a certificate");
        dir.write("README", "not a certificate");
        dir.write("alice.key.bak", "not a certificate either");
        std::fs::create_dir(dir.0.join("old.key")).unwrap();
        let store = AuthorizedKeys::load(&dir.0, own()).unwrap();
        assert_eq!(store.len(), 1);
        assert!(store.authorize(&key));
    }

    #[test]
    fn a_malformed_certificate_names_the_file_and_line() {
        let dir = Scratch::new("bad");
        dir.cert("alice", &[]);
        let bad = dir.write("bob.key", "metadata\ncurve\n    public-key = \"short\"\n");
        let e = AuthorizedKeys::load(&dir.0, own()).unwrap_err().to_string();
        let expected = format!("security.authorized_keys: {}:3: ", bad.display());
        assert!(e.starts_with(&expected), "{e}");
        let key = KeyPair::generate().public;
        let pattern = dir.write("bob.key", &public_text(&key, &[("serve", "a*b")]));
        let e = AuthorizedKeys::load(&dir.0, own()).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "security.authorized_keys: {}:3: metadata serve: \"a*b\": `*` may only end a \
                 pattern",
                pattern.display()
            )
        );
        let e = AuthorizedKeys::load(&dir.0.join("nowhere"), own())
            .unwrap_err()
            .to_string();
        assert!(e.contains("nowhere: cannot read: "), "{e}");
    }

    #[test]
    fn one_key_in_two_files_is_refused() {
        let dir = Scratch::new("twice");
        let key = dir.cert("a", &[]);
        dir.write("b.key", &public_text(&key, &[("call", "echo")]));
        let e = AuthorizedKeys::load(&dir.0, own()).unwrap_err().to_string();
        assert!(e.contains("b.key: the same public key as"), "{e}");
    }

    #[test]
    fn reload_swaps_the_set_or_keeps_the_old_one_on_a_bad_file() {
        let dir = Scratch::new("reload");
        let alice = dir.cert("alice", &[("call", "echo")]);
        let bob = dir.cert("bob", &[]);
        let store = AuthorizedKeys::load(&dir.0, own()).unwrap();
        // A bad file: the keys in force stay.
        dir.write("carol.key", "curve\n    public-key = \"x\"\n");
        assert!(store.reload(&dir.0).is_err());
        assert!(store.authorize(&alice) && store.authorize(&bob));
        // Fixed: bob removed, alice's rights changed, carol added.
        let carol = dir.cert("carol", &[]);
        std::fs::remove_file(dir.0.join("bob.key")).unwrap();
        dir.write(
            "alice.key",
            &public_text(&alice, &[("call", "echo, mmi.*")]),
        );
        let summary = store.reload(&dir.0).unwrap();
        assert_eq!(
            summary,
            ReloadSummary {
                keys: 2,
                added: 1,
                removed: 1,
                changed: 1
            }
        );
        assert!(!store.authorize(&bob) && store.authorize(&carol));
        let rights = store.rights(&alice).unwrap();
        assert!(rights.call.allows(&name("mmi.service")));
        assert_eq!(
            summary.to_string(),
            "2 keys (1 added, 1 removed, 1 with new rights)"
        );
    }

    fn curve(secret: &Path, dir: &Path) -> SecuritySettings {
        SecuritySettings {
            mechanism: Mechanism::Curve,
            secret_key_file: Some(secret.to_path_buf()),
            authorized_keys: Some(dir.to_path_buf()),
        }
    }

    #[cfg(unix)]
    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn the_secret_key_file_must_be_private_and_hold_a_secret_key() {
        let dir = Scratch::new("secret");
        let keys = Scratch::new("secret-keys");
        let cert = Certificate::new(KeyPair::generate().secret);
        let (public, secret) = cert.save(&dir.0, "broker").unwrap();
        let secret = secret.unwrap();
        let loaded = BrokerKeys::load(&curve(&secret, &keys.0)).unwrap().unwrap();
        assert_eq!(loaded.keypair.public, cert.public);
        assert!(loaded.authorized.authorize(&cert.public), "its own key");
        chmod(&secret, 0o644);
        let e = BrokerKeys::load(&curve(&secret, &keys.0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "security.secret_key_file: {} is readable by group or others (chmod 600 it)",
                secret.display()
            )
        );
        chmod(&secret, 0o620);
        let e = BrokerKeys::load(&curve(&secret, &keys.0)).unwrap_err();
        assert!(
            e.to_string().contains("is writable by group or others"),
            "{e}"
        );
        chmod(&secret, 0o400);
        assert!(BrokerKeys::load(&curve(&secret, &keys.0)).is_ok());
        chmod(&public, 0o600);
        let e = BrokerKeys::load(&curve(&public, &keys.0)).unwrap_err();
        assert!(e.to_string().contains("holds no secret-key"), "{e}");
        let missing = dir.0.join("missing.key_secret");
        let e = BrokerKeys::load(&curve(&missing, &keys.0)).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "security.secret_key_file: {}: cannot read",
                missing.display()
            )),
            "{e}"
        );
        let garbled = dir.write("garbled.key_secret", "curve\n    secret-key = \"nope\"\n");
        chmod(&garbled, 0o600);
        let e = BrokerKeys::load(&curve(&garbled, &keys.0)).unwrap_err();
        assert!(e.to_string().contains("garbled.key_secret:2: "), "{e}");
        let e = BrokerKeys::load(&curve(&secret, &keys.0.join("no"))).unwrap_err();
        assert!(
            e.to_string().starts_with("security.authorized_keys: "),
            "{e}"
        );
    }

    #[test]
    fn null_reads_no_file() {
        let settings = SecuritySettings {
            mechanism: Mechanism::Null,
            secret_key_file: Some("/nonexistent".into()),
            authorized_keys: None,
        };
        assert!(BrokerKeys::load(&settings).unwrap().is_none());
        let e = BrokerKeys::load(&SecuritySettings {
            mechanism: Mechanism::Curve,
            ..settings
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "security.authorized_keys: required with mechanism = \"curve\""
        );
    }
}
