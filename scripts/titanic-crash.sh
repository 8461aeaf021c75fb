#!/usr/bin/env bash
# Long kill -9 campaign against the Titanic store (domo-titanic's tests/crash.rs).
#
# A child process writes requests, replies and closes through the store (redb, then the log
# store with 256 KiB segments) with 8 threads (blocking calls)
# and 32 tasks (async calls), some records large enough to be kept in parts, and prints each
# acknowledged id; it is SIGKILLed a random 20-350 ms after its first acknowledgement (so every
# kill lands while it writes, however long reopening the grown store takes), the store is reopened and every
# acknowledged request and reply must be there, byte-exact. `cargo test` runs 3 kills; this
# runs many (default 200; first argument overrides). The seed is printed for reproduction.
#
#   scripts/titanic-crash.sh [ITERATIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
iterations="${1:-200}"
TITANIC_CRASH_ITERATIONS="$iterations" cargo test --release -p domo-titanic --test crash -- \
  acknowledged_writes_survive_kill_9_at_random_moments --nocapture --test-threads=1
