#!/usr/bin/env bash
# A throw-away PostgreSQL (Debian's package) on loopback, for the tests of the PostgreSQL
# store (issue #18). Not a production setup: trust authentication, one local user.
#
#   eval "$(scripts/pg-test-cluster.sh start)"   # prints the exports: DOMO_TEST_PG_URL, DOMO_TEST_PG_DIR
#   scripts/pg-test-cluster.sh stop "$DOMO_TEST_PG_DIR"
#
# As root it runs the server as the `postgres` user (initdb refuses root).
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
[ -n "$bin" ] || { echo "pg-test-cluster: no PostgreSQL server (Debian: apt-get install postgresql)" >&2; exit 1; }

as_pg() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}

case "${1:-}" in
  start)
    dir=$(mktemp -d /tmp/domo-pg.XXXXXX)
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_pg "'$bin/initdb' -D '$dir/data' -A trust -U postgres >'$dir/initdb.log' 2>&1" \
      || { cat "$dir/initdb.log" >&2; exit 1; }
    as_pg "'$bin/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w -t 60 \
      -o \"-c listen_addresses=127.0.0.1 -p $port -k '$dir' -c max_connections=200\" start >/dev/null" \
      || { cat "$dir/server.log" >&2; exit 1; }
    echo "export DOMO_TEST_PG_URL='postgres://postgres@127.0.0.1:$port/postgres' DOMO_TEST_PG_DIR='$dir'"
    ;;
  stop)
    dir=${2:?usage: pg-test-cluster.sh stop DIR}
    as_pg "'$bin/pg_ctl' -D '$dir/data' -m immediate stop >/dev/null 2>&1" || true
    rm -rf "$dir"
    ;;
  *)
    echo "usage: pg-test-cluster.sh start | stop DIR" >&2
    exit 2
    ;;
esac
