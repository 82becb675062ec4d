#!/usr/bin/env bash
# The test command: installs what is missing, builds warning-free, installs
# the extension (and Citus, for the scale-out tests), and runs every test
# (pg_regress, then the TAP suite) as the postgres user from a scratch copy of
# the tree that postgres owns; then builds the Debian packages and runs
# `make installcheck` against a server that loads the packaged extension
# (scripts/package.sh), the fuzz harnesses briefly (scripts/fuzz.sh 10) and
# the benchmark's smoke run (test/bench/run.sh --quick).
#
#   bash scripts/test.sh            everything
#   bash scripts/test.sh regress    pg_regress only (in a throwaway server)
#   bash scripts/test.sh tap        TAP suite only (PROVE_TESTS='test/t/0xx_name.pl' narrows it)
#
# ALORO_TEST_DIR picks the scratch copy (default /tmp/aloro_webhook_test).
set -euo pipefail
source "$(dirname "$0")/common.sh"
what=${1:-test}
work=${ALORO_TEST_DIR:-/tmp/aloro_webhook_test}

aw_build_install "$work"
# Citus, built from the vendored source, for the scale-out tests (skipped when installed)
[ "$what" = regress ] || bash "$aw_root/scripts/citus.sh" build
cd "$work"
echo "== testing ($what)"
set +e
aw_as_postgres "cd '$work' && make -s $what ${PROVE_TESTS:+PROVE_TESTS='$PROVE_TESTS'}" 2>&1 | tee "$work/test-output.txt"
status=${PIPESTATUS[0]}
set -e

if [ $status -ne 0 ]; then
  echo "== tests failed (exit $status)"
  [ -f regression.diffs ] && { echo "== regression.diffs"; cat regression.diffs; }
  # the logs of the TAP tests that did not pass (a failed check, or no plan at the end), and
  # their servers' logs; then the summary again, so that the last lines name what failed
  for f in tmp_check/log/regress_log_*; do
    [ -f "$f" ] || continue
    if grep -q '^\[[0-9:.]*\]([0-9.]*s) not ok' "$f" || ! grep -q '^\[[0-9:.]*\]([0-9.]*s) 1\.\.[0-9]' "$f"; then
      t=${f#tmp_check/log/regress_log_}
      echo "== $f (last 80 lines)"; tail -n 80 "$f"
      for g in tmp_check/log/"${t}"_*.log; do
        [ -f "$g" ] && { echo "== $g (last 40 lines)"; tail -n 40 "$g"; }
      done
    fi
  done
  echo "== what failed"
  grep -E 'not ok|Failed|Dubious|Wstat|Parse errors|^Result|FAILED|failed \(' "$work/test-output.txt" | tail -n 40 || true
  exit $status
fi
if [ "$what" = test ]; then
  # the Debian packages, installed with dpkg, and `make installcheck` against a
  # server that loads the packaged extension
  echo "== packages (scripts/package.sh build, smoke)"
  bash "$aw_root/scripts/package.sh" build
  bash "$aw_root/scripts/package.sh" smoke
  # the libFuzzer harnesses over src/validate.c, briefly
  echo "== fuzzing (scripts/fuzz.sh 10)"
  bash "$aw_root/scripts/fuzz.sh" 10
  # the benchmark's smoke run: it fails only when a delivery is lost, never on a figure
  echo "== benchmark smoke run (test/bench/run.sh --quick)"
  BENCH_JSON=/tmp/aloro_webhook_bench_quick.json bash "$aw_root/test/bench/run.sh" --quick
fi
echo "== all tests passed"
