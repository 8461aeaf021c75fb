#!/usr/bin/env bash
# Long kill -9 campaign against the domo-broker binary with its embedded Titanic
# (tests/tests/titanic_crash.rs).
#
# Four submitters send titanic.request for an echo service (a libzmq MDP worker) and record
# every id acknowledged with 200; the broker process is SIGKILLed at a random 0.2-1.5 s,
# restarted on the same endpoint and data directory (and the worker with it). Afterwards every
# acknowledged id must be answered through titanic.reply with its own body. `cargo test` runs
# 3 kills; this runs many (default 200; the first argument overrides). The last line gives
# kills, acknowledged ids and lost ids; the seed is printed first.
#
#   scripts/broker-crash-campaign.sh [KILLS]
set -euo pipefail
cd "$(dirname "$0")/.."
kills="${1:-200}"
DOMO_CRASH_KILLS="$kills" cargo test --release -p domo-tests --test titanic_crash -- \
  --exact every_acknowledged_request_survives_sigkill_and_is_answered --nocapture
