//! domo-broker: the Majordomo broker (work in progress).
