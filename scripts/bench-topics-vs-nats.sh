#!/usr/bin/env bash
# Topics against NATS core pub/sub in one session on one machine (issue #15). Not run by CI: it
# needs nats-server (Debian: apt-get install nats-server).
#
#   scripts/bench-topics-vs-nats.sh [ROUNDS]        (default 3)
#
# Fan-out: one publisher, 10 subscribers of one topic, 64 B messages. domo: `domo bench
# --phases topics` (a PUB connection to the broker's publish endpoint, SUB connections to its
# subscribe endpoint; the bench starts its own domo-broker each round). NATS: `domo-nats-load
# --fanout 10` (bench/nats-load, async-nats; one nats-server for the session). Alternating,
# ROUNDS times; prints the medians: messages delivered per second (all subscribers together,
# first publish to last delivery), the server's CPU per delivered message, and the share of
# the messages the subscribers got. A NATS publisher is not held back by its subscribers
# (nats-server drops for slow consumers), a domo publisher is held back by TCP when the broker
# reads slower than it routes; so NATS also runs with the publisher flushing (a round trip to
# the server) every 1,000 messages.
#
# Then acknowledged persistent writes: `domo bench --phases topic-writes` (topic.write to a
# persist=disk topic, 64 connections with one write in flight each: each answered once
# fsynced, writes waiting together sharing a commit).
#
# BENCH_FANOUT_MESSAGES (default 1000000 per subscriber) and BENCH_WRITES (default 50000)
# shorten a trial run.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-3}
messages=${BENCH_FANOUT_MESSAGES:-1000000}
writes=${BENCH_WRITES:-50000}

nats_server=$(command -v nats-server || true)
[ -z "$nats_server" ] && [ -x /usr/sbin/nats-server ] && nats_server=/usr/sbin/nats-server
if [ -z "$nats_server" ]; then
  echo "bench-topics-vs-nats: no nats-server on PATH nor in /usr/sbin (Debian: apt-get install nats-server)" >&2
  exit 1
fi
command -v python3 >/dev/null || { echo "bench-topics-vs-nats: needs python3 for the table" >&2; exit 1; }

echo "== build" >&2
cargo build --release --locked -p domo-broker -p domo-cli >&2
cargo build --release --locked --manifest-path bench/nats-load/Cargo.toml >&2
domo=${CARGO_TARGET_DIR:-target}/release/domo
load=${CARGO_TARGET_DIR:-bench/nats-load/target}/release/domo-nats-load

work=$(mktemp -d)
nats_pid=
cleanup() {
  if [ -n "$nats_pid" ]; then
    kill "$nats_pid" 2>/dev/null || true
    wait "$nats_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$nats_server" -a 127.0.0.1 -p -1 -l "$work/nats.log" &
nats_pid=$!
url=
for _ in $(seq 100); do
  url=$(sed -n 's/.*Listening for client connections on \([0-9.:]*\).*/nats:\/\/\1/p' "$work/nats.log" 2>/dev/null | head -1 || true)
  [ -n "$url" ] && break
  kill -0 "$nats_pid" 2>/dev/null || { cat "$work/nats.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "bench-topics-vs-nats: nats-server did not start" >&2; exit 1; }
echo "== $("$nats_server" --version) (pid $nats_pid) on $url; $rounds rounds" >&2

for r in $(seq "$rounds"); do
  echo "== round $r" >&2
  "$domo" bench --phases topics --rounds 1 --subscribers 10 --size 64 --requests "$messages" --json >"$work/domo.$r.json"
  "$load" --server "$url" --server-pid "$nats_pid" --fanout 10 --size 64 --requests "$messages" --json >"$work/nats.$r.json"
  "$load" --server "$url" --server-pid "$nats_pid" --fanout 10 --flush-every 1000 --size 64 --requests "$messages" --json >"$work/natsflush.$r.json"
  cat "$work/domo.$r.json" "$work/nats.$r.json" "$work/natsflush.$r.json" >&2
done
for r in $(seq "$rounds"); do
  echo "== writes round $r" >&2
  "$domo" bench --phases topic-writes --rounds 1 --clients 64 --window 1 --size 64 \
    --requests "$writes" --warmup $((writes / 10)) --json >"$work/writes.$r.json"
  cat "$work/writes.$r.json" >&2
done

python3 - "$work" "$rounds" "$messages" <<'PY'
import json, statistics, sys

work, rounds, messages = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def runs(name, phase):
    return [json.load(open(f"{work}/{name}.{r}.json"))[phase] for r in range(1, rounds + 1)]
def med(rs, key):
    values = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(values) if values else None
domo, nats = runs("domo", "topics"), runs("nats", "fanout")
natsflush = runs("natsflush", "fanout")
print(f"fan-out, medians of {rounds} rounds: 1 publisher -> 10 subscribers, 64 B, "
      f"{messages:,} messages (each subscriber should get all)")
print()
print("| server | delivered msg/s | server CPU per delivered msg | delivered of expected |")
print("|---|---:|---:|---:|")
for name, rs in (("domo-broker topics", domo), ("nats-server core pub/sub", nats),
                 ("nats-server, publisher flushing every 1,000", natsflush)):
    rate, cpu = med(rs, "req_per_s"), med(rs, "cpu_us_per_req")
    got = med(rs, "requests")
    print(f"| {name} | {rate:,.0f} | {cpu:.2f} us | {got / (10 * messages):.1%} |")
print()
for label, other in (("NATS", nats), ("NATS flushing", natsflush)):
    print(f"ratio domo/{label}, delivered msg/s: "
          f"{med(domo, 'req_per_s') / med(other, 'req_per_s'):.2f}x; CPU per delivered msg: "
          f"{med(domo, 'cpu_us_per_req') / med(other, 'cpu_us_per_req'):.2f}x")
w = runs("writes", "writes")
print()
print(f"acknowledged persistent writes (topic.write, persist=disk), medians of {rounds} rounds: "
      f"64 connections, one write in flight each, 64 B")
print()
print("| writes/s | p50 | p99 | broker CPU per write |")
print("|---:|---:|---:|---:|")
print(f"| {med(w, 'req_per_s'):,.0f} | {med(w, 'p50_us') / 1000:.1f} ms | "
      f"{med(w, 'p99_us') / 1000:.1f} ms | {med(w, 'cpu_us_per_req'):.0f} us |")
PY
