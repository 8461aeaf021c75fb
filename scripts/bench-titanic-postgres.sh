#!/usr/bin/env bash
# Titanic's durable acknowledgements through a release domo-broker, redb against PostgreSQL
# (a plain server and one with a synchronous standby on the same box), 1, 16 and 64
# closed-loop clients, alternating at each concurrency (issue #18). Not run by CI: it needs
# Debian's postgresql package (scripts/pg-test-cluster.sh starts the throw-away servers).
#
#   scripts/bench-titanic-postgres.sh
#
# Each run starts its broker (`--no-topics`, metrics off) on a fresh data directory or a
# fresh database and runs `domo bench --phases titanic --window 1` against it; the broker's
# CPU is the broker process's only (PostgreSQL's own processes are not counted).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== build" >&2
cargo build --release --locked -p domo-broker -p domo-cli >&2
bin=${CARGO_TARGET_DIR:-target}/release

work=$(mktemp -d)
plain_dir= sync_dir= broker=
cleanup() {
  [ -n "$broker" ] && kill "$broker" 2>/dev/null || true
  [ -n "$plain_dir" ] && scripts/pg-test-cluster.sh stop "$plain_dir"
  [ -n "$sync_dir" ] && scripts/pg-test-cluster.sh stop "$sync_dir"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eval "$(scripts/pg-test-cluster.sh start)"
plain=$DOMO_TEST_PG_URL plain_dir=$DOMO_TEST_PG_DIR
eval "$(scripts/pg-test-cluster.sh start-sync)"
sync=$DOMO_TEST_PG_SYNC_URL sync_dir=$DOMO_TEST_PG_SYNC_DIR

fresh_db() {
  local name="bench_$(date +%s%N)"
  psql "$1" -qc "CREATE DATABASE $name" >/dev/null
  echo "${1%/*}/$name"
}

# run NAME CLIENTS [URL]
run() {
  local cfg=$work/$1-$2.toml
  if [ -n "${3:-}" ]; then
    printf '[titanic]\nstore = "postgres"\nurl = "%s"\n' "$3" >"$cfg"
  else
    : >"$cfg"
  fi
  "$bin/domo-broker" --config "$cfg" --bind tcp://127.0.0.1:0 --metrics-listen off --no-topics \
    --titanic-data-dir "$work/titanic-$1-$2" 2>"$work/$1-$2.log" &
  broker=$!
  local ep=
  for _ in $(seq 100); do
    ep=$(grep -o 'tcp://127.0.0.1:[0-9]*' "$work/$1-$2.log" | head -1 || true)
    [ -n "$ep" ] && grep -q "Titanic store open" "$work/$1-$2.log" && break
    sleep 0.1
  done
  local n=$(( $2 == 1 ? 3000 : 30000 ))
  "$bin/domo" bench --broker "$ep" --broker-pid "$broker" --phases titanic --rounds 1 \
    --clients "$2" --window 1 --requests "$n" --warmup $((n / 10)) 2>&1 \
    | grep "titanic:" | while read -r line; do echo "$1, $2 clients: ${line#*titanic: }"; done
  kill "$broker"
  wait "$broker" 2>/dev/null || true
  broker=
}

for clients in 1 16 64; do
  run redb "$clients"
  run postgres "$clients" "$(fresh_db "$plain")"
  run postgres-sync-standby "$clients" "$(fresh_db "$sync")"
done
