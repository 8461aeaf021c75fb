//! Synchronous tests of the broker core: a fake clock, no sockets, exact times.
//!
//! Every test runs through [`util::Harness`], which checks the core's invariants after each
//! input and fails if the broker sends anything to a peer it disconnected.

mod admission;
mod bad_input;
mod broadcast;
mod credit;
mod drain;
mod liveness;
mod mmi;
mod mux;
mod pair;
mod props;
mod queues;
mod rights;
mod routing;
mod session;
mod tokens;
mod util;
