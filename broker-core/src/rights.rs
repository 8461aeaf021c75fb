//! What a peer may do: the services it may call and the services it may serve.
//!
//! The shell learns who a peer is from its transport (with CURVE, the client's proved public
//! key), looks its [`Rights`] up and hands them to the core with [`Broker::set_rights`]; a
//! peer the core was told nothing about has every right (the NULL mechanism: no security, as
//! before). The core enforces them:
//!
//! * a client REQUEST for a service its sender may not call is dropped and counted
//!   ([`crate::Refusals::call`]; MDP has no error reply). `mmi.*` and `titanic.*` are services
//!   like any other here: a peer that may call only `echo` cannot ask `mmi.services`;
//! * `mmi.service` and `mmi.workers` about a service the caller may not call are answered
//!   `403`, and `mmi.services` lists only the services the caller may call;
//! * a READY for a service its sender may not serve gets DISCONNECT
//!   ([`crate::Refusals::serve`]);
//! * new rights for a registered worker that no longer cover its service disconnect it the
//!   same way (a reload of the authorized keys).
//!
//! A right is a list of [`Pattern`]s: an exact service name, or a prefix ending in `*` (`*`
//! alone matches every name). Only peers with fewer than every right are remembered, and
//! only while they are connected, so the core still keeps nothing per ordinary client.
//!
//! Design: pure data and matching; reading rights from certificates is the daemon's job.

use std::fmt;

use bytes::Bytes;
use domo_mdp::{PeerId, ServiceName};
use tracing::{debug, info};

use super::stats::DisconnectReason;
use super::Broker;

/// The rights of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rights {
    /// Services it may send client requests to (`mmi.*` and `titanic.*` included).
    pub call: Patterns,
    /// Services it may register as a worker for.
    pub serve: Patterns,
}

impl Rights {
    /// Every right: what a peer without a key (NULL mechanism) has.
    pub fn all() -> Self {
        Self {
            call: Patterns::all(),
            serve: Patterns::all(),
        }
    }

    /// Whether these are every right (nothing to enforce).
    pub fn is_all(&self) -> bool {
        self.call.is_all() && self.serve.is_all()
    }
}

impl Default for Rights {
    fn default() -> Self {
        Self::all()
    }
}

/// One pattern of service names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// Exactly this name.
    Exact(ServiceName),
    /// Every name that starts with these bytes (written with a trailing `*`; empty: `*`,
    /// every name).
    Prefix(Bytes),
}

impl Pattern {
    /// Whether `name` matches.
    pub fn matches(&self, name: &ServiceName) -> bool {
        match self {
            Self::Exact(exact) => exact == name,
            Self::Prefix(prefix) => name.as_bytes().starts_with(prefix),
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => write!(f, "{name}"),
            Self::Prefix(prefix) => write!(f, "{}*", String::from_utf8_lossy(prefix)),
        }
    }
}

/// A list of [`Pattern`]s; a name is allowed if any matches. Empty: nothing is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patterns(Vec<Pattern>);

/// Why a pattern list does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Two commas with nothing between them, or a comma at either end.
    #[error("empty pattern in {0:?}")]
    Empty(String),
    /// A `*` that does not end its pattern.
    #[error("{0:?}: `*` may only end a pattern")]
    Star(String),
    /// A pattern longer than a service name may be.
    #[error("{0:?}: longer than a service name (255 bytes)")]
    TooLong(String),
}

impl Patterns {
    /// Every name.
    pub fn all() -> Self {
        Self(vec![Pattern::Prefix(Bytes::new())])
    }

    /// No name.
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// Parses `"echo, payments.*"`: patterns separated by commas, blanks around them
    /// ignored; an empty (or blank) text is no name at all.
    ///
    /// # Errors
    /// [`PatternError`] for an empty pattern between commas, a `*` that is not last, or a
    /// pattern longer than a service name.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.trim().is_empty() {
            return Ok(Self::none());
        }
        text.split(',')
            .map(|item| Self::parse_one(item.trim(), text))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    fn parse_one(item: &str, text: &str) -> Result<Pattern, PatternError> {
        if item.is_empty() {
            return Err(PatternError::Empty(text.to_string()));
        }
        let (stem, wildcard) = match item.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (item, false),
        };
        if stem.contains('*') {
            return Err(PatternError::Star(item.to_string()));
        }
        let bytes = Bytes::copy_from_slice(stem.as_bytes());
        if wildcard {
            if bytes.len() >= 255 {
                return Err(PatternError::TooLong(item.to_string()));
            }
            return Ok(Pattern::Prefix(bytes));
        }
        ServiceName::new(bytes)
            .map(Pattern::Exact)
            .map_err(|_| PatternError::TooLong(item.to_string()))
    }

    /// Whether `name` matches one of the patterns.
    pub fn allows(&self, name: &ServiceName) -> bool {
        self.0.iter().any(|p| p.matches(name))
    }

    /// Whether every name matches (a `*` among the patterns).
    pub fn is_all(&self) -> bool {
        self.0
            .iter()
            .any(|p| matches!(p, Pattern::Prefix(prefix) if prefix.is_empty()))
    }

    /// The patterns, in the order written.
    pub fn patterns(&self) -> &[Pattern] {
        &self.0
    }
}

impl fmt::Display for Patterns {
    /// The form [`Patterns::parse`] reads back: `echo, payments.*` (empty: no name).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pattern) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{pattern}")?;
        }
        Ok(())
    }
}

impl Broker {
    /// Sets the rights of `peer` from now on: when it connects (before its first message) and
    /// again whenever they change (a reload of the authorized keys). Every right
    /// ([`Rights::all`]) is what a peer the core was never told about has.
    ///
    /// A registered worker whose new rights no longer cover its service is removed and sent
    /// DISCONNECT (its request, if any, goes back to its queue). The rights are forgotten
    /// when the peer's connection closes ([`Broker::handle_disconnect`]).
    pub fn set_rights(&mut self, now: std::time::Instant, peer: PeerId, rights: Rights) {
        let now = self.begin(now);
        let revoked = self
            .workers
            .get(&peer)
            .is_some_and(|w| !rights.serve.allows(&w.service));
        if rights.is_all() {
            self.rights.remove(&peer);
        } else {
            self.rights.insert(peer.clone(), rights);
        }
        if revoked {
            info!(worker = %peer, "Worker may no longer serve its service; disconnected");
            self.stats.refusals.serve += 1;
            self.reject_worker(now, &peer, DisconnectReason::NotAuthorized);
        }
    }

    /// Whether `peer` may call `service`.
    pub(super) fn may_call(&self, peer: &PeerId, service: &ServiceName) -> bool {
        self.rights.is_empty() || self.rights.get(peer).is_none_or(|r| r.call.allows(service))
    }

    /// Whether `peer` may serve `service`.
    pub(super) fn may_serve(&self, peer: &PeerId, service: &ServiceName) -> bool {
        self.rights.is_empty()
            || self
                .rights
                .get(peer)
                .is_none_or(|r| r.serve.allows(service))
    }

    /// Counts and logs a client request refused for lack of the call right.
    pub(super) fn refuse_call(&mut self, peer: &PeerId, service: &ServiceName) {
        debug!(client = %peer, %service, "May not call this service; request dropped");
        self.stats.refusals.call += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> ServiceName {
        ServiceName::try_from(text).unwrap()
    }

    #[test]
    fn patterns_match_exact_names_and_prefixes() {
        let p = Patterns::parse(" echo , payments.* ,titanic.request").unwrap();
        for yes in ["echo", "payments.refund", "payments.", "titanic.request"] {
            assert!(p.allows(&name(yes)), "{yes}");
        }
        for no in ["echo2", "ech", "payments", "titanic.reply", "mmi.service"] {
            assert!(!p.allows(&name(no)), "{no}");
        }
        assert!(!p.is_all());
        assert_eq!(p.to_string(), "echo, payments.*, titanic.request");
        assert_eq!(Patterns::parse(&p.to_string()), Ok(p));
    }

    #[test]
    fn a_star_alone_is_every_name_and_empty_is_none() {
        let all = Patterns::parse("*").unwrap();
        assert!(all.is_all() && all.allows(&name("mmi.services")));
        assert_eq!(all, Patterns::all());
        assert!(Patterns::parse("echo, *").unwrap().is_all());
        for empty in ["", "  "] {
            let none = Patterns::parse(empty).unwrap();
            assert_eq!(none, Patterns::none());
            assert!(!none.allows(&name("echo")) && !none.is_all());
        }
        assert!(Rights::all().is_all() && Rights::default().is_all());
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        let err = |text: &str| Patterns::parse(text).unwrap_err().to_string();
        assert_eq!(err("echo,,x"), "empty pattern in \"echo,,x\"");
        assert_eq!(err("echo,"), "empty pattern in \"echo,\"");
        assert_eq!(
            err("pay*ments"),
            "\"pay*ments\": `*` may only end a pattern"
        );
        assert_eq!(err("**"), "\"**\": `*` may only end a pattern");
        assert!(err(&"x".repeat(256)).contains("longer than a service name"));
        assert!(err(&format!("{}*", "x".repeat(255))).contains("longer"));
        assert!(Patterns::parse(&"x".repeat(255)).is_ok());
    }
}
