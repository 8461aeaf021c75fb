//! Endpoint strings: `tcp://host:port`, `tcp://*:port`, `tcp://[::1]:port`, `ipc://path`,
//! `inproc://name`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Error;

/// A place to bind or connect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// TCP. `host` is an IP address, a host name, or `*` (all IPv4 interfaces) for binding.
    Tcp {
        /// Host part, without brackets for IPv6.
        host: String,
        /// Port; 0 asks the system for a free port when binding.
        port: u16,
    },
    /// A Unix domain socket path.
    Ipc(PathBuf),
    /// An in-process endpoint: a name (any non-empty UTF-8) bound by a [`crate::Router`] of
    /// this process, to which [`crate::Dealer`]s of the same process connect. The bytes go
    /// through memory ([`tokio::io::duplex`]), with no socket and no system call; the ZMTP
    /// handshake (NULL or CURVE), framing and limits are those of TCP. Only a router binds
    /// and only a dealer connects. Names are process-wide and case-sensitive; a name is
    /// bound by one router at a time, until it shuts down or is dropped. A dealer may
    /// connect before the name is bound: its attempts fail, as against a closed TCP port,
    /// and it retries with its usual backoff until the router binds.
    Inproc(String),
}

impl Endpoint {
    /// The endpoint of a bound or connected TCP address.
    pub fn from_socket_addr(addr: SocketAddr) -> Self {
        Self::Tcp {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }

    /// The TCP port, if this is a TCP endpoint.
    pub fn port(&self) -> Option<u16> {
        match self {
            Self::Tcp { port, .. } => Some(*port),
            Self::Ipc(_) | Self::Inproc(_) => None,
        }
    }

    /// `host:port` as a string the resolver understands (`*` becomes `0.0.0.0`).
    pub(crate) fn host_port(&self) -> Option<String> {
        match self {
            Self::Tcp { host, port } if host == "*" => Some(format!("0.0.0.0:{port}")),
            Self::Tcp { host, port } if host.contains(':') => Some(format!("[{host}]:{port}")),
            Self::Tcp { host, port } => Some(format!("{host}:{port}")),
            Self::Ipc(_) | Self::Inproc(_) => None,
        }
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidEndpoint(s.to_string());
        if let Some(name) = s.strip_prefix("inproc://") {
            if name.is_empty() {
                return Err(invalid());
            }
            return Ok(Self::Inproc(name.to_string()));
        }
        if let Some(path) = s.strip_prefix("ipc://") {
            if path.is_empty() {
                return Err(invalid());
            }
            return Ok(Self::Ipc(PathBuf::from(path)));
        }
        let rest = s.strip_prefix("tcp://").ok_or_else(invalid)?;
        let (host, port) = rest.rsplit_once(':').ok_or_else(invalid)?;
        let host = match host.strip_prefix('[') {
            Some(h) => h.strip_suffix(']').ok_or_else(invalid)?,
            None => host,
        };
        if host.is_empty() || (host.contains(':') && !rest.starts_with('[')) {
            return Err(invalid());
        }
        let port = port.parse::<u16>().map_err(|_| invalid())?;
        Ok(Self::Tcp {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Self::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Self::Ipc(path) => write!(f, "ipc://{}", path.display()),
            Self::Inproc(name) => write!(f, "inproc://{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_libzmq_users_write() {
        let cases = [
            ("tcp://127.0.0.1:5555", "127.0.0.1", 5555),
            ("tcp://*:0", "*", 0),
            ("tcp://localhost:80", "localhost", 80),
            ("tcp://[::1]:9", "::1", 9),
        ];
        for (s, host, port) in cases {
            let ep: Endpoint = s.parse().unwrap();
            assert_eq!(
                ep,
                Endpoint::Tcp {
                    host: host.into(),
                    port
                },
                "{s}"
            );
            assert_eq!(ep.to_string(), s);
        }
        let ep: Endpoint = "ipc:///tmp/x.sock".parse().unwrap();
        assert_eq!(ep, Endpoint::Ipc("/tmp/x.sock".into()));
    }

    #[test]
    fn refuses_malformed() {
        for s in [
            "",
            "tcp://",
            "tcp://host",
            "tcp://:5",
            "tcp://h:99999",
            "udp://h:1",
            "ipc://",
            "tcp://::1:5",
            "inproc://",
            "inproc:/x",
        ] {
            assert!(s.parse::<Endpoint>().is_err(), "{s}");
        }
    }

    #[test]
    fn inproc_names_round_trip() {
        for name in ["x", "titanic", "a/b:c", "ünïcode name", " "] {
            let s = format!("inproc://{name}");
            let ep: Endpoint = s.parse().unwrap();
            assert_eq!(ep, Endpoint::Inproc(name.into()), "{s}");
            assert_eq!(ep.to_string(), s);
            assert_eq!(ep.port(), None);
            assert_eq!(ep.host_port(), None);
        }
    }

    #[test]
    fn star_binds_all_ipv4() {
        let ep: Endpoint = "tcp://*:7".parse().unwrap();
        assert_eq!(ep.host_port().unwrap(), "0.0.0.0:7");
    }
}
