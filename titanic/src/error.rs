//! Errors of the Titanic store.
//!
//! Every variant is answered with status `500` ("try again later") by [`crate::service`]; the
//! variants exist so that health checks (`/readyz`) and logs can say *why*.

use std::io;

/// An error from a [`crate::Store`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The disk (or filesystem quota) is full: nothing was stored.
    #[error("disk full: {0}")]
    DiskFull(#[source] io::Error),
    /// Writing or syncing failed for another reason (I/O error, or an earlier failure left the
    /// database refusing writes until it is reopened): nothing was stored.
    #[error("store write failed: {0}")]
    WriteFailed(String),
    /// The configured limit on stored bytes would be exceeded: nothing was stored.
    #[error("store full: {used} of {limit} bytes in use, {needed} more needed")]
    StoreFull {
        /// Bytes of live records stored now.
        used: u64,
        /// The configured limit ([`crate::Limits::max_bytes`]).
        limit: u64,
        /// The size of the record that was refused.
        needed: u64,
    },
    /// A stored record could not be decoded (a bug or a damaged file).
    #[error("corrupt record for {id}: {reason}")]
    Corrupt {
        /// The id of the record, as 32 hex characters.
        id: String,
        /// What was wrong.
        reason: String,
    },
    /// The store could not be opened or read.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store's writer has stopped (the store is shutting down or its thread died).
    #[error("store closed")]
    Closed,
}

impl Error {
    /// True when writes are failing (disk full, write or sync error): what `/readyz` reports as
    /// not ready.
    pub fn is_write_failure(&self) -> bool {
        matches!(self, Self::DiskFull(_) | Self::WriteFailed(_))
    }

    /// A copy of this error, to report one failed group commit to every caller in it.
    pub fn duplicate(&self) -> Self {
        match self {
            Self::DiskFull(e) => Self::DiskFull(match e.raw_os_error() {
                Some(code) => io::Error::from_raw_os_error(code),
                None => io::Error::new(e.kind(), e.to_string()),
            }),
            Self::WriteFailed(s) => Self::WriteFailed(s.clone()),
            Self::StoreFull {
                used,
                limit,
                needed,
            } => Self::StoreFull {
                used: *used,
                limit: *limit,
                needed: *needed,
            },
            Self::Corrupt { id, reason } => Self::Corrupt {
                id: id.clone(),
                reason: reason.clone(),
            },
            Self::Unavailable(s) => Self::Unavailable(s.clone()),
            Self::Closed => Self::Closed,
        }
    }

    /// Classifies an I/O error: `ENOSPC`/`EDQUOT` are [`Error::DiskFull`], others
    /// [`Error::WriteFailed`].
    pub fn from_write_io(e: io::Error) -> Self {
        const ENOSPC: i32 = 28;
        const EDQUOT: i32 = 122;
        let full = e.kind() == io::ErrorKind::StorageFull
            || e.kind() == io::ErrorKind::QuotaExceeded
            || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT));
        if full {
            Self::DiskFull(e)
        } else {
            Self::WriteFailed(e.to_string())
        }
    }
}

/// The result type of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
