#!/usr/bin/env bash
# Citus for the scale-out tests and for trying aloro_webhook sharded: builds
# Citus 13.2.2 from the vendored source (test/citus/vendor/, a copy of
# ../shared/vendor/ checked against its sha256) and runs a coordinator and
# two worker nodes on this machine, loopback only.
#
#   bash scripts/citus.sh build          build and install Citus (skipped when installed)
#   bash scripts/citus.sh start DIR      a three-node cluster in DIR (owned by postgres);
#                                        prints "coordinator PORT", "worker1 PORT", "worker2 PORT"
#   bash scripts/citus.sh node DIR NAME  one more node (not yet added: citus_add_node() does
#                                        that, from the coordinator); prints "NAME PORT"
#   bash scripts/citus.sh stop DIR       stop it
#
# Run as root (build installs into PG_CONFIG's PostgreSQL tree; the servers run as
# postgres).  Each node preloads citus and aloro_webhook, with
# citus.enable_unsafe_triggers on (watch() attaches row triggers to the
# distributed calls table; see doc/scaling.md, "Citus").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/apt.sh"
# the PostgreSQL to build for and run: PG_CONFIG's (bookworm's 15 by default;
# scripts/test.sh versions gives the other majors' from scripts/pg-versions.sh)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PATH=$(dirname "$PG_CONFIG"):$PATH
pg_major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
# the majors Citus 13.2 supports
citus_majors="15 16 17"
vendor=$root/test/citus/vendor
tarball=$vendor/citus-13.2.2.tar.gz
patchfile=$vendor/citus-13.2.2-pg15.20.patch
tar_sha=dd2453caec20a830e5e63f1def5c5a98cb6f57ae510407cdcd800916fcdab430
patch_sha=4c6711d7799db2bead0cb13d9a084fa3fc3728f2796659d3fb89196373137d2f

as_postgres() { su postgres -s /bin/bash -c "PATH='$PATH'; $*"; }

build() {
  local pkglib
  [[ " $citus_majors " == *" $pg_major "* ]] \
    || { echo "Citus 13.2 does not support PostgreSQL $pg_major (it supports $citus_majors)" >&2; exit 1; }
  pkglib=$(pg_config --pkglibdir)
  if [ -f "$pkglib/citus.so" ] && grep -q "default_version = '13.2" "$(pg_config --sharedir)/extension/citus.control" 2>/dev/null; then
    echo "== citus 13.2 is installed"
    return 0
  fi
  local deps=(liblz4-dev libzstd-dev libkrb5-dev libcurl4-openssl-dev make gcc)
  [ "$pg_major" = 15 ] && deps+=(postgresql-server-dev-15)
  aw_need_packages --quiet /tmp/aloro_citus_apt.log "${deps[@]}" || exit 1
  echo "$tar_sha  $tarball" | sha256sum -c --quiet
  echo "$patch_sha  $patchfile" | sha256sum -c --quiet
  local src=${CITUS_BUILD_DIR:-/tmp/aloro_citus_build_$pg_major}
  rm -rf "$src"
  mkdir -p "$src"
  tar -C "$src" -xzf "$tarball"
  local top
  top=$(find "$src" -mindepth 1 -maxdepth 1 -type d | head -n 1)
  # the fix for minor releases that declare have_createdb_privilege() (15.20,
  # and the other majors' releases of the same date); older ones need none
  if grep -q have_createdb_privilege "$(pg_config --includedir-server)/commands/dbcommands.h"; then
    (cd "$top" && patch -p1 -s < "$patchfile")
  fi
  echo "== building citus (about 3 minutes on 2 cores)"
  (cd "$top" && ./configure -q PG_CONFIG="$(command -v pg_config)" > "$src/configure.log" 2>&1) \
    || { tail -n 40 "$src/configure.log"; exit 1; }
  (cd "$top" && make -s -j"$(nproc)" > "$src/make.log" 2>&1) || { tail -n 60 "$src/make.log"; exit 1; }
  (cd "$top" && make -s install > "$src/install.log" 2>&1) || { tail -n 40 "$src/install.log"; exit 1; }
  echo "== citus installed"
}

# node DIR NAME PORT: one node, initialised and started
node() {
  local dir=$1 name=$2 port=$3
  as_postgres "initdb -D '$dir/$name' -A trust -N >/dev/null"
  cat >> "$dir/$name/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
shared_preload_libraries = 'citus,aloro_webhook'
max_connections = 200
max_worker_processes = 24
max_prepared_transactions = 100
wal_level = logical
fsync = off
citus.enable_unsafe_triggers = on
aloro_webhook.allowed_networks = '127.0.0.0/8'
${CITUS_NODE_CONF:-}
CONF
  as_postgres "pg_ctl -D '$dir/$name' -l '$dir/$name.log' -w start >/dev/null"
  as_postgres "psql -qX -h '$dir' -p $port -d postgres -c 'CREATE EXTENSION citus'"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start() {
  local dir=$1
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  local pc pw1 pw2
  pc=${CITUS_COORDINATOR_PORT:-$(free_port)}
  pw1=${CITUS_WORKER1_PORT:-$(free_port)}
  pw2=${CITUS_WORKER2_PORT:-$(free_port)}
  node "$dir" coordinator "$pc"
  node "$dir" worker1 "$pw1"
  node "$dir" worker2 "$pw2"
  as_postgres "psql -qX -h '$dir' -p $pc -d postgres -v ON_ERROR_STOP=1" <<SQL >/dev/null
SELECT citus_set_coordinator_host('127.0.0.1', $pc);
SELECT citus_add_node('127.0.0.1', $pw1);
SELECT citus_add_node('127.0.0.1', $pw2);
SQL
  printf 'coordinator %s\nworker1 %s\nworker2 %s\n' "$pc" "$pw1" "$pw2" | tee "$dir/ports"
}

stop() {
  local dir=$1
  for pid in "$dir"/*/postmaster.pid; do
    [ -f "$pid" ] && as_postgres "pg_ctl -D '$(dirname "$pid")' -m fast -w stop >/dev/null" || true
  done
}

add_node() {
  local dir=$1 name=$2 port
  port=$(free_port)
  node "$dir" "$name" "$port"
  printf '%s %s\n' "$name" "$port" | tee -a "$dir/ports"
}

case ${1:-} in
  build) build ;;
  node) [ -n "${3:-}" ] || { echo "usage: $0 node DIR NAME" >&2; exit 2; }; add_node "$2" "$3" ;;
  start) [ -n "${2:-}" ] || { echo "usage: $0 start DIR" >&2; exit 2; }; start "$2" ;;
  stop) [ -n "${2:-}" ] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop "$2" ;;
  *) echo "usage: $0 build | start DIR | stop DIR" >&2; exit 2 ;;
esac
