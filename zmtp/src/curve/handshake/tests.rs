//! Tests of the CURVE handshake.
