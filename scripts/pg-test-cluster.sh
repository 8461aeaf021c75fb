#!/usr/bin/env bash
# Throw-away PostgreSQL servers (Debian's package) on loopback, for the tests of the PostgreSQL
# store (issue #18). Not a production setup: trust authentication, one local user.
#
#   eval "$(scripts/pg-test-cluster.sh start)"
#       a plain server: DOMO_TEST_PG_URL, DOMO_TEST_PG_DIR
#   eval "$(scripts/pg-test-cluster.sh start-sync)"
#       a primary that commits only once its synchronous standby has the WAL (synchronous_commit
#       = on, synchronous_standby_names = '*'), and that standby: DOMO_TEST_PG_SYNC_URL,
#       DOMO_TEST_PG_SYNC_DIR
#   scripts/pg-test-cluster.sh standby-stop DIR | standby-start DIR    (DIR: DOMO_TEST_PG_SYNC_DIR)
#   scripts/pg-test-cluster.sh stop DIR                                 (either kind)
#
# As root it runs the servers as the `postgres` user (initdb refuses root).
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
[ -n "$bin" ] || { echo "pg-test-cluster: no PostgreSQL server (Debian: apt-get install postgresql)" >&2; exit 1; }

as_pg() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$1"; else sh -c "$1"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server DATADIR PORT SOCKETDIR LOG [EXTRA SETTINGS]
start_server() {
  as_pg "'$bin/pg_ctl' -D '$1' -l '$4' -w -t 60 \
    -o \"-c listen_addresses=127.0.0.1 -p $2 -k '$3' -c max_connections=200 ${5:-}\" start >/dev/null" \
    || { cat "$4" >&2; exit 1; }
}

new_dir() {
  dir=$(mktemp -d /tmp/domo-pg.XXXXXX)
  if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; fi
  echo "$dir"
}

init() {
  as_pg "'$bin/initdb' -D '$1' -A trust -U postgres >'$1.initdb.log' 2>&1" \
    || { cat "$1.initdb.log" >&2; exit 1; }
}

case "${1:-}" in
  start)
    dir=$(new_dir)
    port=$(free_port)
    init "$dir/data"
    start_server "$dir/data" "$port" "$dir" "$dir/server.log"
    echo "export DOMO_TEST_PG_URL='postgres://postgres@127.0.0.1:$port/postgres' DOMO_TEST_PG_DIR='$dir'"
    ;;
  start-sync)
    dir=$(new_dir)
    port=$(free_port)
    init "$dir/data"
    start_server "$dir/data" "$port" "$dir" "$dir/server.log" "-c wal_level=replica -c max_wal_senders=4"
    # The standby: a base backup that follows the primary (-R), under a name the primary
    # waits for.
    sport=$(free_port)
    as_pg "'$bin/pg_basebackup' -h 127.0.0.1 -p $port -U postgres -D '$dir/standby' -R -X stream >'$dir/basebackup.log' 2>&1" \
      || { cat "$dir/basebackup.log" >&2; exit 1; }
    echo "$sport" >"$dir/standby.port"
    start_server "$dir/standby" "$sport" "$dir" "$dir/standby.log" "-c cluster_name=domo_standby"
    as_pg "'$bin/psql' -h 127.0.0.1 -p $port -U postgres -qAt -c \"ALTER SYSTEM SET synchronous_standby_names = '*'\" -c 'SELECT pg_reload_conf()' >/dev/null"
    # Wait until the standby is attached as synchronous.
    for _ in $(seq 100); do
      state=$(as_pg "'$bin/psql' -h 127.0.0.1 -p $port -U postgres -qAt -c \"SELECT sync_state FROM pg_stat_replication\"" || true)
      [ "$state" = sync ] && break
      sleep 0.1
    done
    [ "$state" = sync ] || { echo "pg-test-cluster: the standby did not attach as synchronous" >&2; exit 1; }
    echo "export DOMO_TEST_PG_SYNC_URL='postgres://postgres@127.0.0.1:$port/postgres' DOMO_TEST_PG_SYNC_DIR='$dir'"
    ;;
  standby-stop)
    dir=${2:?usage: pg-test-cluster.sh standby-stop DIR}
    as_pg "'$bin/pg_ctl' -D '$dir/standby' -m fast -w stop >/dev/null"
    ;;
  standby-start)
    dir=${2:?usage: pg-test-cluster.sh standby-start DIR}
    start_server "$dir/standby" "$(cat "$dir/standby.port")" "$dir" "$dir/standby.log" "-c cluster_name=domo_standby"
    ;;
  stop)
    dir=${2:?usage: pg-test-cluster.sh stop DIR}
    for d in "$dir/standby" "$dir/data"; do
      [ -d "$d" ] && as_pg "'$bin/pg_ctl' -D '$d' -m immediate stop >/dev/null 2>&1" || true
    done
    rm -rf "$dir"
    ;;
  *)
    echo "usage: pg-test-cluster.sh start | start-sync | standby-stop DIR | standby-start DIR | stop DIR" >&2
    exit 2
    ;;
esac
