//! Who may use the gateway: bearer tokens with rights (`[gateway] tokens_file`), and the
//! pre-shared key of the WebSocket challenge (`[gateway] psk_file`).
//!
//! # Tokens file
//!
//! TOML, one `[[token]]` table per token. The file holds the SHA-256 of each token (hex),
//! never the token itself, so a copy of the file does not let anyone in:
//!
//! ```toml
//! [[token]]
//! name = "billing-frontend"          # shown in logs, never the token
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! call = "billing.*, echo"           # services it may call (POST /v1/services, Titanic, broadcast)
//! publish = "prices.*"               # topics it may publish to
//! subscribe = "prices.*, news"       # topics it may read and subscribe to
//! ```
//!
//! Rights are pattern lists as in the broker's authorized keys: names separated by commas, a
//! trailing `*` for a prefix, `*` alone for every name, empty (or left out) for none.
//! `domo token` prints a new token and its table.
//!
//! A request presents its token as `Authorization: Bearer <token>` or, where a client cannot
//! set headers (a browser's `EventSource` or `WebSocket`), as `?access_token=<token>` (RFC 6750
//! section 2.3). Without a valid one the answer is `401` with `WWW-Authenticate: Bearer`;
//! with one that lacks the right, `403`. The presented token is hashed and compared with
//! every stored hash in constant time, so neither the answer nor its timing tells how much
//! of a guess was right.
//!
//! The file is read again when it changes (checked at most once a second): revoking a token
//! is removing its table. A file that no longer parses keeps the tokens read before, and says
//! why in the log.
//!
//! # Pre-shared key file
//!
//! The key of the WebSocket challenge (see [`crate::ws`]): the file's text, blanks around it
//! ignored, at least 16 bytes. Whoever answers the challenge has every right.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use domo_broker_core::Patterns;
use domo_mdp::ServiceName;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A right a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// Call a service.
    Call,
    /// Publish to a topic.
    Publish,
    /// Read or subscribe to a topic.
    Subscribe,
}

impl Right {
    fn verb(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Publish => "publish to",
            Self::Subscribe => "subscribe to",
        }
    }
}

/// What one token may do.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Its name in the tokens file (for logs).
    pub name: String,
    call: Patterns,
    publish: Patterns,
    subscribe: Patterns,
}

impl Grant {
    /// Every right: an open gateway, or a peer that answered the pre-shared-key challenge.
    pub fn everything(name: &str) -> Self {
        Self {
            name: name.to_string(),
            call: Patterns::all(),
            publish: Patterns::all(),
            subscribe: Patterns::all(),
        }
    }

    /// Rights from pattern lists, as the tokens file writes them (`"echo, billing.*"`).
    ///
    /// # Errors
    /// A pattern list that does not parse.
    pub fn with_rights(
        name: &str,
        call: &str,
        publish: &str,
        subscribe: &str,
    ) -> Result<Self, domo_broker_core::PatternError> {
        Ok(Self {
            name: name.to_string(),
            call: Patterns::parse(call)?,
            publish: Patterns::parse(publish)?,
            subscribe: Patterns::parse(subscribe)?,
        })
    }

    /// Whether it has `right` on `name` (a service or topic name; a prefix of topics for a
    /// subscription). A name that is no valid service name (empty, over 255 bytes) is
    /// allowed only by `*`.
    pub fn allows(&self, right: Right, name: &[u8]) -> bool {
        let patterns = match right {
            Right::Call => &self.call,
            Right::Publish => &self.publish,
            Right::Subscribe => &self.subscribe,
        };
        match ServiceName::new(bytes::Bytes::copy_from_slice(name)) {
            Ok(n) => patterns.allows(&n),
            Err(_) => patterns.is_all(),
        }
    }

    /// `Ok` if it has `right` on `name`, else the `403`.
    ///
    /// # Errors
    /// [`Denied::Forbidden`].
    pub fn require(&self, right: Right, name: &[u8]) -> Result<(), Denied> {
        if self.allows(right, name) {
            Ok(())
        } else {
            Err(Denied::Forbidden(format!(
                "this token may not {} {:?}",
                right.verb(),
                String::from_utf8_lossy(name)
            )))
        }
    }
}

/// Why a request is refused before it is worked on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// `401`: no token, or none that is valid (`true`: one was presented).
    Unauthenticated(bool),
    /// `403`, with the reason.
    Forbidden(String),
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthenticated(presented) => {
                let (challenge, message) = if presented {
                    (
                        "Bearer realm=\"domo\", error=\"invalid_token\"",
                        "the token is not valid",
                    )
                } else {
                    ("Bearer realm=\"domo\"", "a bearer token is required")
                };
                let mut r =
                    (StatusCode::UNAUTHORIZED, Json(json!({ "error": message }))).into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
                r
            }
            Self::Forbidden(message) => {
                let mut r =
                    (StatusCode::FORBIDDEN, Json(json!({ "error": message }))).into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"domo\", error=\"insufficient_scope\""),
                );
                r
            }
        }
    }
}

/// One stored token.
#[derive(Debug, Clone)]
struct Stored {
    sha256: [u8; 32],
    grant: Arc<Grant>,
}

/// The tokens file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    sha256: String,
    #[serde(default)]
    call: String,
    #[serde(default)]
    publish: String,
    #[serde(default)]
    subscribe: String,
}

/// Reads a tokens file.
///
/// # Errors
/// A message naming the file, and the token and key at fault.
fn read_tokens(path: &Path) -> Result<Vec<Stored>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: TokensFile =
        toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    let mut stored = Vec::with_capacity(file.token.len());
    for (i, t) in file.token.into_iter().enumerate() {
        let at = |key: &str, why: &dyn std::fmt::Display| {
            format!(
                "{}: token {} ({:?}): {key}: {why}",
                path.display(),
                i + 1,
                t.name
            )
        };
        let sha256 = hex32(&t.sha256).ok_or_else(|| at("sha256", &"expected 64 hex digits"))?;
        let patterns = |key: &str, text: &str| Patterns::parse(text).map_err(|e| at(key, &e));
        stored.push(Stored {
            sha256,
            grant: Arc::new(Grant {
                call: patterns("call", &t.call)?,
                publish: patterns("publish", &t.publish)?,
                subscribe: patterns("subscribe", &t.subscribe)?,
                name: t.name,
            }),
        });
    }
    Ok(stored)
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// The SHA-256 of a token, in hex: what the tokens file stores.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// How often the tokens file is looked at for changes.
const RECHECK: Duration = Duration::from_secs(1);

/// The tokens, as last read, and when the file was last looked at.
#[derive(Debug)]
struct Loaded {
    tokens: Arc<Vec<Stored>>,
    modified: Option<SystemTime>,
    checked: Instant,
}

/// Who may use the gateway.
#[derive(Debug)]
pub struct Access {
    tokens: Option<(PathBuf, Mutex<Loaded>)>,
    psk: Option<Vec<u8>>,
    /// What every request gets on an open gateway (made once, shared).
    open: Arc<Grant>,
}

impl Default for Access {
    fn default() -> Self {
        Self::open()
    }
}

impl Access {
    /// No tokens file: every request may do everything.
    pub fn open() -> Self {
        Self {
            tokens: None,
            psk: None,
            open: Arc::new(Grant::everything("anonymous")),
        }
    }

    /// Tokens from `tokens_file` (if given) and the pre-shared key from `psk_file` (if
    /// given).
    ///
    /// # Errors
    /// A file that cannot be read or does not parse: the message names it and what is wrong.
    pub fn from_files(tokens_file: Option<&Path>, psk_file: Option<&Path>) -> Result<Self, String> {
        let tokens = match tokens_file {
            None => None,
            Some(path) => {
                let tokens = read_tokens(path)?;
                let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                Some((
                    path.to_path_buf(),
                    Mutex::new(Loaded {
                        tokens: Arc::new(tokens),
                        modified,
                        checked: Instant::now(),
                    }),
                ))
            }
        };
        let psk = match psk_file {
            None => None,
            Some(path) => {
                let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let key = text.trim_ascii().to_vec();
                if key.len() < 16 {
                    return Err(format!(
                        "{}: the pre-shared key must be at least 16 bytes",
                        path.display()
                    ));
                }
                Some(key)
            }
        };
        Ok(Self {
            tokens,
            psk,
            ..Self::open()
        })
    }

    /// Whether requests need a token.
    pub fn needs_token(&self) -> bool {
        self.tokens.is_some()
    }

    /// The pre-shared key of the WebSocket challenge, if one is configured.
    pub fn psk(&self) -> Option<&[u8]> {
        self.psk.as_deref()
    }

    /// What the bearer of `token` may do, if it is a valid token. Compares with every stored
    /// hash, in constant time.
    pub fn grant_of(&self, token: &str) -> Option<Arc<Grant>> {
        let tokens = self.current()?;
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for t in tokens.iter() {
            if bool::from(t.sha256.ct_eq(&presented)) {
                found = Some(t.grant.clone());
            }
        }
        found
    }

    /// The rights of a request: every right on an open gateway; else those of the token in
    /// its `Authorization: Bearer` header or its `access_token` query parameter.
    ///
    /// # Errors
    /// [`Denied::Unauthenticated`] without a valid token.
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Arc<Grant>, Denied> {
        if self.tokens.is_none() {
            return Ok(self.open.clone());
        }
        let token = bearer(headers).or_else(|| query.and_then(access_token));
        let Some(token) = token else {
            return Err(Denied::Unauthenticated(false));
        };
        self.grant_of(&token).ok_or(Denied::Unauthenticated(true))
    }

    /// The tokens, read again if the file changed.
    fn current(&self) -> Option<Arc<Vec<Stored>>> {
        let (path, loaded) = self.tokens.as_ref()?;
        let mut l = loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if l.checked.elapsed() >= RECHECK {
            l.checked = Instant::now();
            let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if modified != l.modified {
                l.modified = modified;
                match read_tokens(path) {
                    Ok(tokens) => {
                        tracing::info!(file = %path.display(), tokens = tokens.len(), "Gateway tokens read again");
                        l.tokens = Arc::new(tokens);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Gateway tokens file not read again; the tokens read before still apply");
                    }
                }
            }
        }
        Some(l.tokens.clone())
    }
}

/// The token of an `Authorization: Bearer` header.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// The `access_token` parameter of a query string.
fn access_token(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "access_token").then(|| percent_decode(v))
    })
}

/// `%XX` and `+` of a query value.
fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tokens.toml");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn a_token_is_known_by_its_hash_and_gets_only_its_rights() {
        let (_d, p) = file(&format!(
            "[[token]]\nname = \"front\"\nsha256 = \"{}\"\ncall = \"echo, billing.*\"\nsubscribe = \"prices.*\"\n",
            token_hash("s3cret")
        ));
        let access = Access::from_files(Some(&p), None).unwrap();
        let g = access.authorize(&headers("Bearer s3cret"), None).unwrap();
        assert_eq!(g.name, "front");
        assert!(g.allows(Right::Call, b"echo") && g.allows(Right::Call, b"billing.pay"));
        assert!(!g.allows(Right::Call, b"mmi.service"));
        assert!(!g.allows(Right::Publish, b"prices.eur"));
        assert!(g.allows(Right::Subscribe, b"prices.eur"));
        assert!(g.require(Right::Publish, b"x").is_err());
        // The query form, percent-encoded.
        let g = access
            .authorize(&HeaderMap::new(), Some("from=1&access_token=s3cr%65t"))
            .unwrap();
        assert_eq!(g.name, "front");
        assert_eq!(
            access
                .authorize(&headers("Bearer s3cre"), None)
                .unwrap_err(),
            Denied::Unauthenticated(true)
        );
        assert_eq!(
            access
                .authorize(&headers("Basic czNjcmV0"), None)
                .unwrap_err(),
            Denied::Unauthenticated(false)
        );
        assert_eq!(
            access.authorize(&HeaderMap::new(), None).unwrap_err(),
            Denied::Unauthenticated(false)
        );
    }

    #[test]
    fn an_open_gateway_allows_everything() {
        let g = Access::open().authorize(&HeaderMap::new(), None).unwrap();
        assert!(g.allows(Right::Publish, b"anything") && g.allows(Right::Call, b""));
    }

    #[test]
    fn a_bad_file_is_refused_naming_the_token_and_key() {
        let (_d, p) = file("[[token]]\nname = \"a\"\nsha256 = \"abc\"\n");
        let e = Access::from_files(Some(&p), None).unwrap_err();
        assert!(e.contains("token 1 (\"a\"): sha256"), "{e}");
        let (_d, p) = file(&format!(
            "[[token]]\nname = \"a\"\nsha256 = \"{}\"\ncall = \"a*b\"\n",
            token_hash("x")
        ));
        let e = Access::from_files(Some(&p), None).unwrap_err();
        assert!(e.contains(": call: "), "{e}");
        let (_d, p) = file("[[token]]\nname = \"a\"\nsha = \"abc\"\n");
        assert!(Access::from_files(Some(&p), None).is_err());
    }

    #[test]
    fn a_changed_file_is_read_again() {
        let (_d, p) = file(&format!(
            "[[token]]\nname = \"a\"\nsha256 = \"{}\"\n",
            token_hash("one")
        ));
        let access = Access::from_files(Some(&p), None).unwrap();
        assert!(access.grant_of("one").is_some());
        std::fs::write(
            &p,
            format!(
                "[[token]]\nname = \"b\"\nsha256 = \"{}\"\n",
                token_hash("two")
            ),
        )
        .unwrap();
        // Make the change visible whatever the file system's timestamp resolution.
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(later)
            .unwrap();
        if let Some((_, l)) = &access.tokens {
            l.lock().unwrap().checked -= RECHECK;
        }
        assert!(access.grant_of("one").is_none());
        assert!(access.grant_of("two").is_some());
    }

    #[test]
    fn a_short_psk_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("psk");
        std::fs::write(&p, "short\n").unwrap();
        assert!(Access::from_files(None, Some(&p))
            .unwrap_err()
            .contains("16 bytes"));
        std::fs::write(&p, "  0123456789abcdef0123\n").unwrap();
        let a = Access::from_files(None, Some(&p)).unwrap();
        assert_eq!(a.psk(), Some(&b"0123456789abcdef0123"[..]));
    }
}
