#!/usr/bin/env bash
# The test command: installs what is missing, builds warning-free, installs
# the extension, and runs every test (pg_regress, then the TAP suite) as the
# postgres user.  Everything is built and run in a copy of the tree that the
# postgres user owns (PostgreSQL refuses to run as root, and a root-owned tree
# cannot take the test output).
#
#   bash scripts/test.sh            everything
#   bash scripts/test.sh regress    pg_regress only
#   bash scripts/test.sh tap        TAP suite only (PROVE_TESTS='test/t/0xx_name.pl' narrows it)
#
# ALORO_TEST_DIR picks the scratch copy (default /tmp/aloro_webhook_test).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-installcheck}
work=${ALORO_TEST_DIR:-/tmp/aloro_webhook_test}

if [ "$(id -u)" != 0 ]; then
  echo "run as root: it installs packages and the extension, then tests as postgres" >&2
  exit 2
fi
bash scripts/install-deps.sh
export PATH=/usr/lib/postgresql/15/bin:$PATH

rm -rf "$work"
mkdir -p "$work"
tar --exclude=.git --exclude=node_modules --exclude=tmp_check --exclude='*.o' --exclude='*.so' -cf - . \
  | tar -C "$work" -xf -
cd "$work"
echo "== building"
make -s
make -s install
chown -R postgres:postgres "$work"

echo "== testing ($what)"
status=0
su postgres -s /bin/bash -c "cd '$work' && PATH='$PATH' make -s $what ${PROVE_TESTS:+PROVE_TESTS='$PROVE_TESTS'}" || status=$?

if [ $status -ne 0 ]; then
  echo "== tests failed (exit $status)"
  [ -f regression.diffs ] && { echo "== regression.diffs"; cat regression.diffs; }
  for f in tmp_check/log/*; do
    [ -f "$f" ] && { echo "== $f (last 60 lines)"; tail -n 60 "$f"; }
  done
  exit $status
fi
echo "== all tests passed"
