#!/usr/bin/env bash
# The test command: installs what is missing, builds warning-free, installs
# the extension, and runs every test (pg_regress, then the TAP suite) as the
# postgres user from a copy of the tree that postgres owns.
#
#   bash scripts/test.sh            everything
#   bash scripts/test.sh regress    pg_regress only
#   bash scripts/test.sh tap        TAP suite only (PROVE_TESTS=... narrows it)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
what=${1:-installcheck}

if [ "$(id -u)" = 0 ]; then
  bash scripts/install-deps.sh
fi

export PATH=/usr/lib/postgresql/15/bin:$PATH
make -s clean >/dev/null 2>&1 || true
make -s
if [ "$(id -u)" = 0 ]; then make -s install; else sudo make -s install; fi

# PostgreSQL refuses to run as root: test from a copy that postgres owns.
work=/tmp/aloro_webhook_test
rm -rf "$work"
mkdir -p "$work"
tar --exclude=.git --exclude=node_modules --exclude=tmp_check -cf - . | tar -C "$work" -xf -
chown -R postgres:postgres "$work"

status=0
su postgres -s /bin/bash -c "cd '$work' && PATH='$PATH' make -s $what ${PROVE_TESTS:+PROVE_TESTS='$PROVE_TESTS'}" || status=$?

if [ $status -ne 0 ]; then
  echo "== tests failed (exit $status)"
  for f in "$work"/regression.diffs; do
    [ -f "$f" ] && { echo "== $f"; cat "$f"; }
  done
  for f in "$work"/tmp_check/log/*.log "$work"/log/*.log; do
    [ -f "$f" ] && { echo "== $f (last 80 lines)"; tail -n 80 "$f"; }
  done
  exit $status
fi
echo "== all tests passed"
