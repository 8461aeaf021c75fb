//! Wire constants of MDP/0.1 (RFC 7) and MMI (RFC 8), each named once.
//!
//! Everything that goes on the wire as a fixed frame is defined here, so the encoders can
//! use `Bytes::from_static` and the decoders compare against the same values.

/// Header frame of MDP/Client 0.1 (`4d 44 50 43 30 31`).
pub const MDPC01: &[u8] = b"MDPC01";

/// Header frame of MDP/Worker 0.1 (`4d 44 50 57 30 31`).
pub const MDPW01: &[u8] = b"MDPW01";

/// Worker command READY (worker to broker): registers the worker for one service.
pub const READY: u8 = 0x01;

/// Worker command REQUEST (broker to worker): a client request to process.
pub const REQUEST: u8 = 0x02;

/// Worker command REPLY (worker to broker): the answer to one REQUEST.
pub const REPLY: u8 = 0x03;

/// Worker command HEARTBEAT (both directions): a sign of life while idle.
pub const HEARTBEAT: u8 = 0x04;

/// Worker command DISCONNECT (both directions): ends the session.
pub const DISCONNECT: u8 = 0x05;

/// Prefix of the service names the broker answers itself (RFC 8). Workers may not register
/// names in this namespace.
pub const MMI_PREFIX: &[u8] = b"mmi.";

/// MMI service asking whether a service has at least one worker (RFC 8).
pub const MMI_SERVICE: &[u8] = b"mmi.service";

/// MMI service listing the services that have workers (domo extension).
pub const MMI_SERVICES: &[u8] = b"mmi.services";

/// MMI service counting the workers of one service (domo extension).
pub const MMI_WORKERS: &[u8] = b"mmi.workers";

/// MMI service counting the requests queued for one service, waiting for a worker (domo
/// extension).
pub const MMI_QUEUED: &[u8] = b"mmi.queued";

/// `mmi.ha`: the broker's Binary Star role and state (domo extension).
pub const MMI_HA: &[u8] = b"mmi.ha";

/// MMI status: the service has at least one worker.
pub const STATUS_OK: &[u8] = b"200";

/// MMI status: the request's argument is not a valid service name (domo extension; RFC 8
/// defines no code for a malformed request).
pub const STATUS_BAD_REQUEST: &[u8] = b"400";

/// MMI status: the service has no worker.
pub const STATUS_NOT_FOUND: &[u8] = b"404";

/// MMI status: the `mmi.*` service is not implemented by this broker.
pub const STATUS_NOT_IMPLEMENTED: &[u8] = b"501";
