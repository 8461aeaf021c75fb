#!/usr/bin/env bash
# The long crash campaign of Titanic on PostgreSQL (issue #18): N rounds (default 200) of
# kill -9 of the database primary and of the active broker of a pair, promotion of the
# standby, the pair following the multi-host URL; then every acknowledged id must be answered.
# The same test runs 20 rounds in CI (tests/tests/titanic_postgres_crash.rs). Release build.
# Needs Debian's PostgreSQL server (apt-get install postgresql).
#
#   scripts/pg-crash-campaign.sh [ROUNDS] [SEED]
#
# The result line is printed and written to target/pg-crash-campaign.txt; the last one is in
# deploy/README.md ("Titanic on PostgreSQL").
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-200}
export DOMO_PG_CRASH_ROUNDS=$rounds
[ -n "${2:-}" ] && export DOMO_PG_CRASH_SEED=$2
export DOMO_PG_CRASH_RESULT=$PWD/target/pg-crash-campaign.txt
mkdir -p target
rm -f "$DOMO_PG_CRASH_RESULT"
cargo build --release --workspace --bins -q
cargo test --release -q -p domo-tests --test titanic_postgres_crash -- --nocapture
cat "$DOMO_PG_CRASH_RESULT"
