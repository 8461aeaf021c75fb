#!/usr/bin/env bash
# Runs each domo-zmtp fuzz target (FUZZ_TARGETS, default all three) for N seconds (default 300). Needs `cargo install cargo-fuzz`.
set -euo pipefail
secs=${1:-300}
cd "$(dirname "$0")/../zmtp"
for target in ${FUZZ_TARGETS:-decoder handshake curve}; do
  echo "== fuzz $target for ${secs}s"
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$secs" -print_final_stats=1
done
