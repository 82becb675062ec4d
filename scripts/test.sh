#!/usr/bin/env bash
# The test command: installs what is missing, builds warning-free, installs
# the extension, and runs every test (pg_regress, then the TAP suite) as the
# postgres user from a scratch copy of the tree that postgres owns; then the
# fuzz harnesses briefly (scripts/fuzz.sh 10) and the benchmark's smoke run
# (test/bench/run.sh --quick).
#
#   bash scripts/test.sh            everything
#   bash scripts/test.sh regress    pg_regress only
#   bash scripts/test.sh tap        TAP suite only (PROVE_TESTS='test/t/0xx_name.pl' narrows it)
#
# ALORO_TEST_DIR picks the scratch copy (default /tmp/aloro_webhook_test).
set -euo pipefail
source "$(dirname "$0")/common.sh"
what=${1:-installcheck}
work=${ALORO_TEST_DIR:-/tmp/aloro_webhook_test}

aw_build_install "$work"
cd "$work"
echo "== testing ($what)"
status=0
aw_as_postgres "cd '$work' && make -s $what ${PROVE_TESTS:+PROVE_TESTS='$PROVE_TESTS'}" || status=$?

if [ $status -ne 0 ]; then
  echo "== tests failed (exit $status)"
  [ -f regression.diffs ] && { echo "== regression.diffs"; cat regression.diffs; }
  for f in tmp_check/log/*; do
    [ -f "$f" ] && { echo "== $f (last 60 lines)"; tail -n 60 "$f"; }
  done
  exit $status
fi
if [ "$what" = installcheck ]; then
  # the libFuzzer harnesses over src/validate.c, briefly
  echo "== fuzzing (scripts/fuzz.sh 10)"
  bash "$aw_root/scripts/fuzz.sh" 10
  # the benchmark's smoke run: it fails only when a delivery is lost, never on a figure
  echo "== benchmark smoke run (test/bench/run.sh --quick)"
  BENCH_JSON=/tmp/aloro_webhook_bench_quick.json bash "$aw_root/test/bench/run.sh" --quick
fi
echo "== all tests passed"
