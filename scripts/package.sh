#!/usr/bin/env bash
# The Debian packages, built the way the PostgreSQL Debian packaging names
# them (postgresql-MAJOR-aloro-webhook, one per major), and their smoke test.
#
#   bash scripts/package.sh build [MAJOR...]   build the packages (default:
#                                              15, and every major that
#                                              scripts/pg-versions.sh has
#                                              built) into build/debs/
#   bash scripts/package.sh smoke              install the 15 package with
#                                              dpkg and run `make installcheck`
#                                              against a server that loads it;
#                                              check the others' contents
#
# Run as root on Debian bookworm.  dpkg-buildpackage runs in a scratch copy
# of the tree (ALORO_PKG_DIR, default /tmp/aloro_webhook_pkg).
set -euo pipefail
source "$(dirname "$0")/common.sh"
work=${ALORO_PKG_DIR:-/tmp/aloro_webhook_pkg}
debs=$aw_root/build/debs

need() { aw_need_packages --quiet /tmp/aloro_webhook_pkg_apt.log "$@"; }

# debian/control for these majors: the source stanza, then control.in's
# package stanza once per major
write_control() {
  local dir=$1; shift
  awk -v majors="$*" '
    BEGIN { n = split(majors, m, " ") }
    /^$/ && !done { done = 1; print; next }
    !done { print; next }
    { tmpl = tmpl $0 "\n" }
    END { for (i = 1; i <= n; i++) { s = tmpl; gsub(/PGVERSION/, m[i], s); printf "%s%s", s, (i < n ? "\n" : "") } }
  ' "$dir/debian/control.in" > "$dir/debian/control.tmp"
}

build() {
  local majors=("$@")
  if [ ${#majors[@]} -eq 0 ]; then
    majors=(15)
    for v in $(bash "$aw_root/scripts/pg-versions.sh" list 2>/dev/null | awk '{print $1}'); do
      [ "$v" = 15 ] || majors+=("$v")
    done
  fi
  need dpkg-dev debhelper postgresql-server-dev-15 libcurl4-openssl-dev libssl-dev
  rm -rf "$work"; mkdir -p "$work/src"
  (cd "$aw_root" && tar --exclude=.git --exclude=node_modules --exclude=tmp_check --exclude=./build \
      --exclude='*.o' --exclude='*.so' --exclude='*.bc' -cf - .) | tar -C "$work/src" -xf -
  (cd "$work/src" && write_control . "${majors[*]}" && mv debian/control.tmp debian/control)
  echo "== building the packages for PostgreSQL ${majors[*]}"
  (cd "$work/src" && dpkg-buildpackage -us -uc -b > "$work/build.log" 2>&1) \
    || { tail -n 60 "$work/build.log"; exit 1; }
  rm -rf "$debs"; mkdir -p "$debs"
  cp "$work"/*.deb "$debs/"
  ls -1 "$debs"
}

smoke() {
  local deb15 dir port
  deb15=$(ls "$debs"/postgresql-15-aloro-webhook_*.deb 2>/dev/null | head -n 1)
  [ -n "$deb15" ] || { echo "no postgresql-15 package in $debs: run 'bash scripts/package.sh build' first" >&2; exit 1; }
  echo "== installing $(basename "$deb15") with dpkg"
  dpkg -i "$deb15" >/dev/null
  dpkg -L postgresql-15-aloro-webhook | grep -qx /usr/lib/postgresql/15/lib/aloro_webhook.so
  dpkg -L postgresql-15-aloro-webhook | grep -qx /usr/share/postgresql/15/extension/aloro_webhook.control
  # the other majors' packages: their files where Debian's layout of that major puts them
  for deb in "$debs"/postgresql-*-aloro-webhook_*.deb; do
    local v
    v=$(basename "$deb" | sed 's/^postgresql-\([0-9]*\)-.*/\1/')
    dpkg-deb -c "$deb" > "$work/contents.txt"
    grep -q "\./usr/lib/postgresql/$v/lib/aloro_webhook\.so$" "$work/contents.txt" \
      || { echo "$deb has no /usr/lib/postgresql/$v/lib/aloro_webhook.so" >&2; exit 1; }
    grep -q "\./usr/share/postgresql/$v/extension/aloro_webhook--$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$aw_root/aloro_webhook.control")\.sql$" "$work/contents.txt" \
      || { echo "$deb has no install script for PostgreSQL $v" >&2; exit 1; }
    echo "== $(basename "$deb"): files for PostgreSQL $v in place"
  done
  # make installcheck, as a DBA runs it: against a server that loads the
  # packaged extension with test/regress.conf's settings
  dir=$work/server; rm -rf "$dir"; mkdir -p "$dir"; chown postgres:postgres "$dir"
  rm -rf "$work/check"; mkdir -p "$work/check"
  (cd "$aw_root" && tar --exclude=.git --exclude=node_modules --exclude=tmp_check --exclude=./build \
      --exclude='*.o' --exclude='*.so' --exclude='*.bc' -cf - Makefile aloro_webhook.control sql test expected) \
    | tar -C "$work/check" -xf -
  chown -R postgres:postgres "$work/check"
  port=$(aw_free_port)
  aw_cluster "$dir" "$port" "$(cat "$aw_root/test/regress.conf")"
  set +e
  aw_as_postgres "cd '$work/check' && make -s installcheck PGHOST='$dir' PGPORT=$port"
  local status=$?
  set -e
  [ $status -eq 0 ] || { [ -f "$work/check/regression.diffs" ] && cat "$work/check/regression.diffs"; tail -n 40 "$dir/server.log"; }
  aw_as_postgres "pg_ctl -D '$dir/data' -m fast stop >/dev/null"
  return $status
}

case "${1:-}" in
  build) shift; build "$@" ;;
  smoke) smoke ;;
  *) sed -n '2,15{s/^# \{0,1\}//p}' "$0" >&2; exit 2 ;;
esac
