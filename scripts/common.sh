# Shared by scripts/test.sh, scripts/demo.sh and test/bench/drain.sh: source it.
# Installs what is missing, builds the extension in a scratch copy of the tree
# and installs it.  PostgreSQL refuses to run as root, so the scratch copy is
# handed to the postgres user, who runs the servers.

aw_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=/usr/lib/postgresql/15/bin:$PATH

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
  echo "== building aloro_webhook"
  (cd "$work" && make -s && make -s install)
  chown -R postgres:postgres "$work"
}

# aw_as_postgres CMD...: run a shell command as postgres with the PG 15 tools on PATH
aw_as_postgres() {
  su postgres -s /bin/bash -c "PATH='$PATH'; $*"
}

# aw_free_port: a TCP port nobody listens on
aw_free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
