# Shared by scripts/test.sh, scripts/demo.sh and test/bench/drain.sh: source it.
# Installs what is missing, builds the extension in a scratch copy of the tree
# and installs it.  PostgreSQL refuses to run as root, so the scratch copy is
# handed to the postgres user, who runs the servers.

aw_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$aw_root/scripts/apt.sh"
# the PostgreSQL to build for and test against: PG_CONFIG's, bookworm's 15 by
# default (scripts/test.sh versions sets it to each major's)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG
export PATH=$(dirname "$PG_CONFIG"):$PATH

# aw_build_install DIR: copy the tree to DIR, build, install, chown to postgres
aw_build_install() {
  local work=$1
  if [ "$(id -u)" != 0 ]; then
    echo "run as root: this installs packages and the extension, then runs PostgreSQL as postgres" >&2
    exit 2
  fi
  bash "$aw_root/scripts/install-deps.sh"
  rm -rf "$work"
  mkdir -p "$work"
  (cd "$aw_root" && tar --exclude=.git --exclude=node_modules --exclude=tmp_check \
      --exclude='*.o' --exclude='*.so' --exclude='*.bc' -cf - .) | tar -C "$work" -xf -
  # the test receivers' packages (install-deps.sh installs them)
  cp -a "$aw_root/test/receiver/node_modules" "$work/test/receiver/"
  echo "== building aloro_webhook"
  (cd "$work" && make -s && make -s install)
  chown -R postgres:postgres "$work"
}

# aw_as_postgres CMD...: run a shell command as postgres with PG_CONFIG's tools on PATH
aw_as_postgres() {
  su postgres -s /bin/bash -c "PATH='$PATH'; $*"
}

# aw_free_port: a TCP port nobody listens on
aw_free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# aw_cluster DIR PORT EXTRA_CONF: a throwaway cluster in DIR/data, socket in
# DIR, with aloro_webhook preloaded and EXTRA_CONF appended; started, logging
# to DIR/server.log.  DIR must belong to postgres.
aw_cluster() {
  local dir=$1 port=$2 extra=$3
  aw_as_postgres "initdb -D '$dir/data' -A trust >/dev/null"
  cat >> "$dir/data/postgresql.conf" <<CONF
port = $port
unix_socket_directories = '$dir'
listen_addresses = ''
shared_preload_libraries = 'aloro_webhook'
aloro_webhook.allowed_networks = '127.0.0.0/8'
$extra
CONF
  aw_as_postgres "pg_ctl -D '$dir/data' -l '$dir/server.log' -w start >/dev/null"
}

# aw_wait_listening FILE: wait (bounded) for a receiver's "listening <port>" line; prints the port
aw_wait_listening() {
  for _ in $(seq 100); do
    grep -q listening "$1" 2>/dev/null && { awk '/listening/ {print $2; exit}' "$1"; return 0; }
    sleep 0.1
  done
  echo "receiver did not start: $(cat "$1")" >&2
  return 1
}
