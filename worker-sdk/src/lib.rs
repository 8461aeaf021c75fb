//! Async MDP worker SDK (Paranoid Pirate) (work in progress).
