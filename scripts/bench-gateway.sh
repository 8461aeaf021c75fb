#!/usr/bin/env bash
# The HTTP gateway against the SDK in one session on one broker (issue #16). Not run by CI: it
# needs wrk (Debian: apt-get install wrk) or oha (cargo install oha).
#
#   scripts/bench-gateway.sh [ROUNDS]        (default 3)
#
# One release domo-broker with the embedded gateway (no Titanic, no topics), four echo worker
# sessions (`domo worker echo`). Each round, alternating:
#   - HTTP: POST /v1/services/echo with a 64-byte body over 16 keep-alive HTTP/1.1
#     connections for BENCH_SECONDS (default 8) seconds (wrk, or oha when wrk is missing);
#   - SDK: `domo bench --phases sdk` against the same broker, 16 clients with one request in
#     flight each, 64 B (the same concurrency).
# The broker's CPU (user + system, /proc) is read around each run: the gateway runs in the
# broker process, so HTTP's figure includes the gateway's parsing and its MDP client. Prints
# the medians: req/s, p50, p99 and broker CPU per request, and their ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-3}
seconds=${BENCH_SECONDS:-8}
requests=${BENCH_SDK_REQUESTS:-200000}

tool=
if command -v wrk >/dev/null; then tool=wrk; elif command -v oha >/dev/null; then tool=oha; fi
[ -n "$tool" ] || { echo "bench-gateway: needs wrk or oha on PATH" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench-gateway: needs python3 for the table" >&2; exit 1; }

echo "== build" >&2
cargo build --release --locked -p domo-broker -p domo-cli >&2
bin=${CARGO_TARGET_DIR:-target}/release

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$bin/domo-broker" --no-titanic --no-topics --metrics-listen off --bind tcp://127.0.0.1:0 \
  --gateway-listen 127.0.0.1:0 --log-format text 2>"$work/broker.log" &
broker=$!
pids+=("$broker")
endpoint= gateway=
for _ in $(seq 100); do
  endpoint=$(grep -o 'tcp://127.0.0.1:[0-9]*' "$work/broker.log" | head -1 || true)
  gateway=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/broker.log" | head -1 || true)
  [ -n "$endpoint" ] && [ -n "$gateway" ] && break
  kill -0 "$broker" 2>/dev/null || { cat "$work/broker.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$gateway" ] || { echo "bench-gateway: the broker did not start" >&2; cat "$work/broker.log" >&2; exit 1; }
"$bin/domo" --broker "$endpoint" worker echo echo --sessions 4 2>"$work/worker.log" &
pids+=("$!")
for _ in $(seq 100); do
  "$bin/domo" --broker "$endpoint" service echo >/dev/null 2>&1 && break
  sleep 0.1
done
echo "== broker $broker on $endpoint, gateway $gateway, $tool, $rounds rounds" >&2

body=$(printf 'x%.0s' $(seq 64))
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = "$body"
LUA

cpu() { awk '{ print $14 + $15 }' "/proc/$broker/stat"; }

for r in $(seq "$rounds"); do
  echo "== round $r" >&2
  before=$(cpu)
  if [ "$tool" = wrk ]; then
    wrk -t 2 -c 16 -d "${seconds}s" --latency -s "$work/post.lua" "$gateway/v1/services/echo" >"$work/http.$r.txt"
  else
    oha --no-tui -z "${seconds}s" -c 16 -m POST -d "$body" --output-format json \
      "$gateway/v1/services/echo" >"$work/http.$r.txt"
  fi
  after=$(cpu)
  echo "$before $after" >"$work/http.$r.cpu"
  cat "$work/http.$r.txt" >&2
  "$bin/domo" bench --broker "$endpoint" --broker-pid "$broker" --phases sdk --rounds 1 \
    --clients 16 --window 1 --workers 4 --size 64 --requests "$requests" \
    --warmup $((requests / 10)) --json >"$work/sdk.$r.json"
  cat "$work/sdk.$r.json" >&2
done

python3 - "$work" "$rounds" "$tool" "$(getconf CLK_TCK)" <<'PY'
import json, re, statistics, sys

work, rounds, tool, hz = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])

def ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

http = []
for r in range(1, rounds + 1):
    text = open(f"{work}/http.{r}.txt").read()
    before, after = map(float, open(f"{work}/http.{r}.cpu").read().split())
    if tool == "wrk":
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
        total = int(re.search(r"(\d+) requests in", text).group(1))
        p50 = ms(re.search(r"\s50%\s+(\S+)", text).group(1))
        p99 = ms(re.search(r"\s99%\s+(\S+)", text).group(1))
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        assert errors is None, f"round {r}: {errors.group(0)}"
    else:
        doc = json.loads(text)
        rate = doc["summary"]["requestsPerSec"]
        total = sum(doc["statusCodeDistribution"].values())
        assert set(doc["statusCodeDistribution"]) == {"200"}, doc["statusCodeDistribution"]
        p50 = doc["latencyPercentiles"]["p50"] * 1000
        p99 = doc["latencyPercentiles"]["p99"] * 1000
    cpu_us = (after - before) / hz * 1e6 / total
    http.append({"rate": rate, "p50": p50, "p99": p99, "cpu": cpu_us})

sdk = []
for r in range(1, rounds + 1):
    p = json.load(open(f"{work}/sdk.{r}.json"))["sdk"]
    sdk.append({"rate": p["req_per_s"], "p50": p["p50_us"] / 1000, "p99": p["p99_us"] / 1000,
                "cpu": p["broker_cpu_us_per_req"]})

med = lambda rs, k: statistics.median(x[k] for x in rs)
print(f"echo, 64 B, 16 connections with one request in flight each, medians of {rounds} "
      f"alternating rounds, one broker")
print()
print("| path | req/s | p50 | p99 | broker CPU per request |")
print("|---|---:|---:|---:|---:|")
for name, rs in ((f"HTTP/1.1 keep-alive through the gateway ({tool})", http),
                 ("domo-client SDK (domo bench --phases sdk)", sdk)):
    print(f"| {name} | {med(rs, 'rate'):,.0f} | {med(rs, 'p50'):.2f} ms | "
          f"{med(rs, 'p99'):.2f} ms | {med(rs, 'cpu'):.1f} us |")
print()
print(f"gateway/SDK: req/s {med(http, 'rate') / med(sdk, 'rate'):.2f}x, "
      f"broker CPU per request {med(http, 'cpu') / med(sdk, 'cpu'):.2f}x")
PY
