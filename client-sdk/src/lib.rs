//! Async MDP client SDK (Lazy Pirate with failover) (work in progress).
