#!/usr/bin/env bash
# Syscalls the broker makes per request: runs a release domo-broker on a free 127.0.0.1 port,
# counts its syscalls (perf's raw_syscalls:sys_enter tracepoint; with --by-type, strace -c,
# which slows the broker more but names each syscall) during one `domo bench` phase, and
# prints the count per request. The broker is killed by its pid at exit.
#
#   scripts/syscalls-per-request.sh [--by-type] [PHASE] [REQUESTS]     (default raw 100000)
#
# Needs perf (Debian: linux-perf) or, with --by-type, strace. Not run in CI.
set -euo pipefail
by_type=0
if [[ "${1:-}" == "--by-type" ]]; then by_type=1; shift; fi
phase=${1:-raw}
requests=${2:-100000}
cd "$(dirname "$0")/.."
cargo build --release -q -p domo-broker -p domo-cli
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/release/domo-broker --bind "tcp://127.0.0.1:$port" --metrics-listen off --no-titanic --no-topics \
  --log-level warn &
broker=$!
counter=""
out=$(mktemp)
cleanup() {
  [[ -n "$counter" ]] && kill -INT "$counter" 2>/dev/null || true
  kill "$broker" 2>/dev/null || true
  rm -f "$out"
}
trap cleanup EXIT
sleep 0.5
if [[ $by_type == 1 ]]; then
  strace -f -c -o "$out" -p "$broker" &
else
  perf stat -x, -e raw_syscalls:sys_enter -p "$broker" -o "$out" &
fi
counter=$!
sleep 0.5
target/release/domo --broker "tcp://127.0.0.1:$port" bench --phases "$phase" --rounds 1 \
  --clients 4 --workers 4 --size 64 --window 50 --requests "$requests" --json >/dev/null
kill -INT "$counter"
wait "$counter" 2>/dev/null || true
counter=""
if [[ $by_type == 1 ]]; then
  awk -v n="$requests" '$NF ~ /^[a-z_0-9]+$/ && $4 ~ /^[0-9]+$/ && $NF != "total" {
    printf "%-14s %8.2f per request\n", $NF, $4 / n }' "$out"
  awk -v n="$requests" '$NF == "total" { printf "%-14s %8.2f per request\n", "all", $4 / n }' "$out"
else
  awk -F, -v n="$requests" -v phase="$phase" '$3 ~ /sys_enter/ {
    printf "%s phase: %d syscalls for %d requests = %.2f per request\n", phase, $1, n, $1 / n }' "$out"
fi
