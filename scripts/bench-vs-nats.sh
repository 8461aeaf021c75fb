#!/usr/bin/env bash
# domo against NATS in one session on one machine: request-reply (issue #14), then durable messages,
# Titanic against JetStream (issue #19). Not run by CI: it
# needs nats-server (Debian: apt-get install nats-server).
#
#   scripts/bench-vs-nats.sh [ROUNDS]        (default 3)
#
# Builds domo (release) and the NATS load generator (bench/nats-load, its own workspace, so only
# this script compiles async-nats), starts nats-server on a free 127.0.0.1 port, then for each
# round runs `domo bench --phases raw,sdk` and the NATS generator in the same shape, one after
# the other. Prints the median of the rounds: server req/s and server CPU per request (domo bench
# starts its own domo-broker each time; nats-server is one process for the whole session), and
# p50 latency with 1 client, 1 worker, window 1.
#
# REQREPLY=0 skips the request-reply part.
#
# NATS_SERVER=PATH picks the nats-server (default: the one on PATH, else /usr/sbin); with 2.10 or
# later (scripts/get-nats-server.sh fetches one) the durable part also runs JetStream with
# `sync_interval: always` (an fsync before each acknowledgement) on a third server.
#
# Then durable messages (issue #19), unless DURABLE=0: Titanic (`domo bench --phases titanic`)
# against JetStream (a second nats-server with -js on a scratch directory; the generator's
# --jetstream mode), 64 connections with one submission in flight each, 64 B and 4 KiB bodies,
# alternating, and a second table. Titanic fsyncs before every acknowledgement; nats-server 2.9's
# JetStream acknowledges once the message is written to its file, before any fsync (it syncs
# every 2 minutes by default), and 2.9 has no setting to sync every write.
#
# BENCH_REQUESTS (default 200000) and BENCH_LATENCY_REQUESTS (default 20000) shorten a trial run;
# BENCH_DURABLE_REQUESTS (default 100000) the durable one. BEFORE_BROKER=PATH adds an earlier
# domo-broker binary (or a script running one) to the durable rounds (a "before" row, run with the
# same domo bench); BEFORE_LABEL names it in the table.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-3}
requests=${BENCH_REQUESTS:-200000}
latency_requests=${BENCH_LATENCY_REQUESTS:-20000}
warmup=$((requests / 20))
latency_warmup=$((latency_requests / 10))

nats_server=${NATS_SERVER:-$(command -v nats-server || true)}
[ -z "$nats_server" ] && [ -x /usr/sbin/nats-server ] && nats_server=/usr/sbin/nats-server
if [ -z "$nats_server" ]; then
  echo "bench-vs-nats: no nats-server on PATH nor in /usr/sbin (Debian: apt-get install nats-server)" >&2
  exit 1
fi
command -v python3 >/dev/null || { echo "bench-vs-nats: needs python3 for the table" >&2; exit 1; }

echo "== build" >&2
cargo build --release --locked -p domo-broker -p domo-cli >&2
cargo build --release --locked --manifest-path bench/nats-load/Cargo.toml >&2
domo=${CARGO_TARGET_DIR:-target}/release/domo
load=${CARGO_TARGET_DIR:-bench/nats-load/target}/release/domo-nats-load

work=$(mktemp -d)
nats_pid=
js_pid=
jsync_pid=
cleanup() {
  for pid in $nats_pid $js_pid $jsync_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "${REQREPLY:-1}" != 0 ]; then
# Port -1: nats-server picks a free port and logs it.
"$nats_server" -a 127.0.0.1 -p -1 -l "$work/nats.log" &
nats_pid=$!
url=
for _ in $(seq 100); do
  url=$(sed -n 's/.*Listening for client connections on \([0-9.:]*\).*/nats:\/\/\1/p' "$work/nats.log" 2>/dev/null | head -1 || true)
  [ -n "$url" ] && break
  kill -0 "$nats_pid" 2>/dev/null || { cat "$work/nats.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "bench-vs-nats: nats-server did not start" >&2; cat "$work/nats.log" >&2; exit 1; }
echo "== $("$nats_server" --version) (pid $nats_pid) on $url; $rounds rounds" >&2

throughput="--clients 4 --workers 4 --size 64 --window 50 --requests $requests --warmup $warmup"
latency="--clients 1 --workers 1 --size 64 --window 1 --requests $latency_requests --warmup $latency_warmup"
for r in $(seq "$rounds"); do
  echo "== round $r" >&2
  # shellcheck disable=SC2086 # the shape flags are meant to split
  "$domo" bench --phases raw,sdk --rounds 1 $throughput --json >"$work/domo.$r.json"
  # shellcheck disable=SC2086
  "$load" --server "$url" --server-pid "$nats_pid" $throughput --json >"$work/nats.$r.json"
  # shellcheck disable=SC2086
  "$domo" bench --phases raw,sdk --rounds 1 $latency --json >"$work/domo-latency.$r.json"
  # shellcheck disable=SC2086
  "$load" --server "$url" --server-pid "$nats_pid" $latency --json >"$work/nats-latency.$r.json"
  cat "$work/domo.$r.json" "$work/nats.$r.json" "$work/domo-latency.$r.json" "$work/nats-latency.$r.json" >&2
done

python3 - "$work" "$rounds" <<'EOF'
import json, statistics, sys

work, rounds = sys.argv[1], int(sys.argv[2])
def load(name):
    return [json.load(open(f"{work}/{name}.{r}.json")) for r in range(1, rounds + 1)]
domo, nats = load("domo"), load("nats")
domo_lat, nats_lat = load("domo-latency"), load("nats-latency")

def median(runs, phase, field):
    values = [run[phase][field] for run in runs if run[phase].get(field) is not None]
    return statistics.median(values) if values else None

rows = [("domo-broker, raw phase", domo, domo_lat, "raw"),
        ("domo-broker, sdk phase", domo, domo_lat, "sdk"),
        ("nats-server", nats, nats_lat, "nats")]
print(f"medians of {rounds} rounds; 4 clients x 4 workers, window 50, 64 B; "
      "latency: 1 client x 1 worker, window 1")
print()
print("| server | req/s | server CPU per request | p50, 1x1 window 1 |")
print("|---|---:|---:|---:|")
for name, runs, lat, phase in rows:
    rate, cpu = median(runs, phase, "req_per_s"), median(runs, phase, "cpu_us_per_req")
    p50 = median(lat, phase, "p50_us")
    cpu = f"{cpu:.1f} us" if cpu is not None else "?"
    print(f"| {name} | {rate:,.0f} | {cpu} | {p50:.0f} us |")
errors = sum(run["nats"].get("errors", 0) for run in nats + nats_lat)
if errors:
    print(f"\n{errors} NATS requests failed")
EOF

fi
[ "${DURABLE:-1}" = 0 ] && exit 0

# Durable: JetStream on its own server (file store in the scratch directory).
durable_requests=${BENCH_DURABLE_REQUESTS:-100000}
before=${BEFORE_BROKER:-}
"$nats_server" -a 127.0.0.1 -p -1 -js -sd "$work/js" -l "$work/js.log" &
js_pid=$!
js_url=
for _ in $(seq 100); do
  js_url=$(sed -n 's/.*Listening for client connections on \([0-9.:]*\).*/nats:\/\/\1/p' "$work/js.log" 2>/dev/null | head -1 || true)
  [ -n "$js_url" ] && break
  kill -0 "$js_pid" 2>/dev/null || { cat "$work/js.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$js_url" ] || { echo "bench-vs-nats: nats-server -js did not start" >&2; exit 1; }
echo "== durable: JetStream (pid $js_pid) on $js_url; $rounds rounds" >&2
# 2.10 and later: a third server whose JetStream fsyncs every write before acknowledging it.
nats_version=$("$nats_server" --version | sed -n 's/.*v\([0-9][0-9.]*\).*/\1/p')
jsync_url=
if printf '2.10\n%s\n' "$nats_version" | sort -V -C; then
  printf 'host: 127.0.0.1\nport: -1\njetstream {\n  store_dir: "%s"\n  sync_interval: always\n}\n' \
    "$work/jsync" >"$work/jsync.conf"
  "$nats_server" -c "$work/jsync.conf" -l "$work/jsync.log" &
  jsync_pid=$!
  for _ in $(seq 100); do
    jsync_url=$(sed -n 's/.*Listening for client connections on \([0-9.:]*\).*/nats:\/\/\1/p' "$work/jsync.log" 2>/dev/null | head -1 || true)
    [ -n "$jsync_url" ] && break
    kill -0 "$jsync_pid" 2>/dev/null || { cat "$work/jsync.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -n "$jsync_url" ] || { echo "bench-vs-nats: nats-server (sync_interval: always) did not start" >&2; exit 1; }
  echo "== durable: JetStream with sync_interval: always (pid $jsync_pid) on $jsync_url" >&2
else
  echo "== nats-server $nats_version has no sync_interval: always (2.10+; scripts/get-nats-server.sh)" >&2
fi
durable="--clients 64 --window 1 --requests $durable_requests --warmup $((durable_requests / 10))"
for r in $(seq "$rounds"); do
  for size in 64 4096; do
    echo "== durable round $r, $size B" >&2
    # shellcheck disable=SC2086
    "$domo" bench --phases titanic --rounds 1 --size "$size" $durable --json >"$work/titanic.$size.$r.json"
    # shellcheck disable=SC2086
    "$load" --server "$js_url" --server-pid "$js_pid" --jetstream --size "$size" $durable --json >"$work/js.$size.$r.json"
    cat "$work/titanic.$size.$r.json" "$work/js.$size.$r.json" >&2
    if [ -n "$jsync_url" ]; then
      # shellcheck disable=SC2086
      "$load" --server "$jsync_url" --server-pid "$jsync_pid" --jetstream --size "$size" $durable --json >"$work/jsync.$size.$r.json"
      cat "$work/jsync.$size.$r.json" >&2
    fi
    if [ -n "$before" ]; then
      # shellcheck disable=SC2086
      "$domo" bench --broker-bin "$before" --phases titanic --rounds 1 --size "$size" $durable --json >"$work/before.$size.$r.json"
      cat "$work/before.$size.$r.json" >&2
    fi
  done
done

python3 - "$work" "$rounds" "$before" "${BEFORE_LABEL:-}" "$nats_version" "$jsync_url" <<'EOF'
import json, statistics, sys

work, rounds, before, before_label, version, jsync = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
print()
print(f"durable, medians of {rounds} rounds; 64 connections, one submission in flight each")
print()
print("| system | body | acks/s | p50 | p99 | server CPU per ack | fsync before the ack? |")
print("|---|---:|---:|---:|---:|---:|---|")
for size in (64, 4096):
    systems = [
        ("domo Titanic (embedded, log store)", "titanic", "titanic", "yes, one per group commit"),
        (f"nats-server {version} JetStream, default", "js", "jetstream", "**no** (every 2 min)"),
    ]
    if jsync:
        systems.append((f"nats-server {version} JetStream, sync_interval: always", "jsync", "jetstream", "yes, one per write"))
    if before:
        systems.insert(0, ("domo Titanic, " + (before_label or "before (" + before + ")"), "before", "titanic", "yes, one per group commit"))
    for name, file, phase, fsync in systems:
        runs = [json.load(open(f"{work}/{file}.{size}.{r}.json"))[phase] for r in range(1, rounds + 1)]
        med = lambda k: statistics.median(run[k] for run in runs if run.get(k) is not None)
        body = "64 B" if size == 64 else "4 KiB"
        print(f"| {name} | {body} | {med('req_per_s'):,.0f} | {med('p50_us') / 1000:.1f} ms | "
              f"{med('p99_us') / 1000:.1f} ms | {med('cpu_us_per_req'):.0f} us | {fsync} |")
print()
print("round by round, Titanic / JetStream acks/s (and server CPU per ack):")
for size in (64, 4096):
    for r in range(1, rounds + 1):
        t = json.load(open(f"{work}/titanic.{size}.{r}.json"))["titanic"]
        j = json.load(open(f"{work}/js.{size}.{r}.json"))["jetstream"]
        print(f"  {size:>4} B round {r}: {t['req_per_s']:,.0f} / {j['req_per_s']:,.0f} = "
              f"{t['req_per_s'] / j['req_per_s']:.2f}x (CPU {t['cpu_us_per_req']:.0f} / {j['cpu_us_per_req']:.0f} us)")
EOF
