//! Titanic (RFC 9) for domo (work in progress).
