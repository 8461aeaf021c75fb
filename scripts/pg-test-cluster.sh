#!/usr/bin/env bash
# Throw-away PostgreSQL servers (Debian's package) on loopback, for the tests of the PostgreSQL
# store (issue #18). Not a production setup: trust authentication, one local user.
#
#   eval "$(scripts/pg-test-cluster.sh start [PORT])"
#       a plain server (on PORT if given): DOMO_TEST_PG_URL, DOMO_TEST_PG_DIR
#   eval "$(scripts/pg-test-cluster.sh start-tls)"
#       a server that takes TLS connections only, its certificate from a throw-away CA:
#       DOMO_TEST_PG_TLS_URL (sslmode=require), DOMO_TEST_PG_TLS_CA (the CA, PEM), DOMO_TEST_PG_TLS_DIR
#   eval "$(scripts/pg-test-cluster.sh start-sync)"
#       a primary that commits only once its synchronous standby has the WAL (synchronous_commit
#       = on, synchronous_standby_names = '*'), and that standby: DOMO_TEST_PG_SYNC_URL,
#       DOMO_TEST_PG_SYNC_DIR
#   scripts/pg-test-cluster.sh standby-stop DIR | standby-start DIR    (DIR: DOMO_TEST_PG_SYNC_DIR)
#   scripts/pg-test-cluster.sh stop DIR                                 (any kind)
#
# A pair for failover tests (the crash campaign): two nodes, n0 and n1, one primary and one
# synchronous standby, and a multi-host URL that follows the primary:
#   eval "$(scripts/pg-test-cluster.sh ha-start)"      DOMO_PG_HA_URL, DOMO_PG_HA_DIR
#   scripts/pg-test-cluster.sh ha-crash DIR     kill -9 of the primary's postmaster and of its
#                                               processes at once (a machine that dies)
#   scripts/pg-test-cluster.sh ha-promote DIR   the standby becomes the primary
#   scripts/pg-test-cluster.sh ha-rejoin DIR    the crashed node, wiped, comes back as the new
#                                               primary's synchronous standby (base backup)
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

psql_at() { # PORT SQL
  as_pg "'$bin/psql' -h 127.0.0.1 -p $1 -U postgres -qAt -c \"$2\""
}

# wait_sync PORT: until a standby is attached to the primary at PORT as synchronous.
wait_sync() {
  for _ in $(seq 300); do
    state=$(psql_at "$1" "SELECT sync_state FROM pg_stat_replication" 2>/dev/null || true)
    [ "$state" = sync ] && return 0
    sleep 0.1
  done
  echo "pg-test-cluster: no synchronous standby attached to port $1" >&2
  exit 1
}

# standby_of DIR NODE PRIMARY_PORT: NODE's data made afresh as a standby of the primary, started.
standby_of() {
  rm -rf "$1/$2"
  as_pg "'$bin/pg_basebackup' -h 127.0.0.1 -p $3 -U postgres -D '$1/$2' -R -X stream -c fast >'$1/$2.basebackup.log' 2>&1" \
    || { cat "$1/$2.basebackup.log" >&2; exit 1; }
  start_server "$1/$2" "$(cat "$1/$2.port")" "$1" "$1/$2.log" "-c cluster_name=domo_$2"
}

case "${1:-}" in
  start)
    dir=$(new_dir)
    port=${2:-$(free_port)}
    init "$dir/data"
    start_server "$dir/data" "$port" "$dir" "$dir/server.log"
    echo "export DOMO_TEST_PG_URL='postgres://postgres@127.0.0.1:$port/postgres' DOMO_TEST_PG_DIR='$dir'"
    ;;
  start-tls)
    # TLS only (pg_hba refuses plain connections), with a certificate for 127.0.0.1 from a
    # throw-away CA (openssl comes with Debian's postgresql, through ssl-cert).
    dir=$(new_dir)
    port=$(free_port)
    init "$dir/data"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=domo test CA" \
      -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
      -keyout "$dir/data/server.key" -out "$dir/server.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/san.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
      -CAcreateserial -days 2 -extfile "$dir/san.ext" -out "$dir/data/server.crt" 2>/dev/null
    chmod 600 "$dir/data/server.key"
    printf 'hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\nlocal all all trust\n' \
      >"$dir/data/pg_hba.conf"
    if [ "$(id -u)" = 0 ]; then chown -R postgres: "$dir"; fi
    start_server "$dir/data" "$port" "$dir" "$dir/server.log" \
      "-c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key"
    echo "export DOMO_TEST_PG_TLS_URL='postgres://postgres@127.0.0.1:$port/postgres?sslmode=require' DOMO_TEST_PG_TLS_CA='$dir/ca.crt' DOMO_TEST_PG_TLS_DIR='$dir'"
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
  ha-start)
    dir=$(new_dir)
    free_port >"$dir/n0.port"
    free_port >"$dir/n1.port"
    p0=$(cat "$dir/n0.port")
    p1=$(cat "$dir/n1.port")
    init "$dir/n0"
    start_server "$dir/n0" "$p0" "$dir" "$dir/n0.log" "-c wal_level=replica -c max_wal_senders=4 -c cluster_name=domo_n0"
    # Kept by base backups, so a promoted standby waits for its own standby in turn.
    psql_at "$p0" "ALTER SYSTEM SET synchronous_standby_names = '*'" >/dev/null
    psql_at "$p0" "ALTER SYSTEM SET wal_level = 'replica'" >/dev/null
    psql_at "$p0" "SELECT pg_reload_conf()" >/dev/null
    standby_of "$dir" n1 "$p0"
    wait_sync "$p0"
    echo n0 >"$dir/primary"
    echo "export DOMO_PG_HA_URL='postgres://postgres@127.0.0.1:$p0,127.0.0.1:$p1/postgres?target_session_attrs=read-write' DOMO_PG_HA_DIR='$dir'"
    ;;
  ha-crash)
    dir=${2:?usage: pg-test-cluster.sh ha-crash DIR}
    node=$(cat "$dir/primary")
    pid=$(head -1 "$dir/$node/postmaster.pid")
    # Its processes (no procps needed): every process whose parent it is.
    children=$(awk -v p="$pid" '$1 == "PPid:" && $2 == p { split(FILENAME, f, "/"); print f[3] }' \
      /proc/[0-9]*/status 2>/dev/null || true)
    # shellcheck disable=SC2086
    kill -9 "$pid" $children
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    ;;
  ha-promote)
    dir=${2:?usage: pg-test-cluster.sh ha-promote DIR}
    old=$(cat "$dir/primary")
    if [ "$old" = n0 ]; then new=n1; else new=n0; fi
    as_pg "'$bin/pg_ctl' -D '$dir/$new' -w -t 60 promote >/dev/null"
    echo "$new" >"$dir/primary"
    ;;
  ha-rejoin)
    dir=${2:?usage: pg-test-cluster.sh ha-rejoin DIR}
    new=$(cat "$dir/primary")
    if [ "$new" = n0 ]; then old=n1; else old=n0; fi
    # Whatever of the crashed server is still running goes first.
    if [ -f "$dir/$old/postmaster.pid" ]; then
      opid=$(head -1 "$dir/$old/postmaster.pid")
      kill -9 "$opid" 2>/dev/null || true
    fi
    standby_of "$dir" "$old" "$(cat "$dir/$new.port")"
    wait_sync "$(cat "$dir/$new.port")"
    ;;
  stop)
    dir=${2:?usage: pg-test-cluster.sh stop DIR}
    for d in "$dir/standby" "$dir/data" "$dir/n0" "$dir/n1"; do
      [ -d "$d" ] && as_pg "'$bin/pg_ctl' -D '$d' -m immediate stop >/dev/null 2>&1" || true
    done
    rm -rf "$dir"
    ;;
  *)
    echo "usage: pg-test-cluster.sh start [PORT] | start-tls | start-sync | standby-stop DIR | standby-start DIR | ha-start | ha-crash DIR | ha-promote DIR | ha-rejoin DIR | stop DIR" >&2
    exit 2
    ;;
esac
