#!/usr/bin/env bash
# The test command: installs what is missing, builds warning-free, installs
# the extension (and Citus, for the scale-out tests), and runs every test
# (pg_regress, then the TAP suite) as the postgres user from a scratch copy of
# the tree that postgres owns; builds the Debian packages and runs
# `make installcheck` against a server that loads the packaged extension
# (scripts/package.sh); runs PostgreSQL's own regression suite with the
# extension loaded (scripts/core-regress.sh); the fuzz harnesses briefly
# (scripts/fuzz.sh 10) and the benchmark's smoke run (test/bench/run.sh
# --quick); then the same suites on every other supported major (versions).
#
#   bash scripts/test.sh            everything, on PostgreSQL 15 and the other majors
#   bash scripts/test.sh regress    pg_regress only (in a throwaway server)
#   bash scripts/test.sh tap        TAP suite only (PROVE_TESTS='test/t/0xx_name.pl' narrows it)
#   bash scripts/test.sh suite      pg_regress, TAP (with Citus where a Citus release
#                                   supports the major) and the core regression suite,
#                                   on PG_CONFIG's PostgreSQL (bookworm's 15 by default)
#   bash scripts/test.sh versions   the suite on each other major (ALORO_OTHER_MAJORS,
#                                   default 18), each built once from Debian's source
#                                   into a cache (scripts/pg-versions.sh)
#
# ALORO_TEST_DIR picks the scratch copy (default /tmp/aloro_webhook_test,
# /tmp/aloro_webhook_test_MAJOR for the other majors).
set -euo pipefail
source "$(dirname "$0")/common.sh"
what=${1:-test}
major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
# the other supported majors the matrix runs: those whose Debian source this
# machine can fetch (doc/compatibility.md); ALORO_OTHER_MAJORS="16 17 18" where
# all of them can be
OTHER_MAJORS=${ALORO_OTHER_MAJORS:-18}
CITUS_MAJORS="15 16 17"

# the matrix: each other major, built once into the cache, then its suite
if [ "$what" = versions ]; then
  for v in $OTHER_MAJORS; do
    bash "$aw_root/scripts/pg-versions.sh" build "$v"
    echo "== PostgreSQL $v"
    PG_CONFIG=$(bash "$aw_root/scripts/pg-versions.sh" pg_config "$v") \
      ALORO_TEST_DIR=/tmp/aloro_webhook_test_$v bash "$aw_root/scripts/test.sh" suite
  done
  echo "== every major passed: 15 (bash scripts/test.sh), $OTHER_MAJORS"
  exit 0
fi

work=${ALORO_TEST_DIR:-/tmp/aloro_webhook_test}
aw_build_install "$work"
citus=no
[[ " $CITUS_MAJORS " == *" $major "* ]] && citus=yes
# Citus, built from the vendored source, for the scale-out tests (skipped when installed)
if [ "$what" != regress ] && [ $citus = yes ]; then
  bash "$aw_root/scripts/citus.sh" build
fi
prove_tests=${PROVE_TESTS:-}
if [ -z "$prove_tests" ] && [ $citus = no ]; then
  prove_tests=$(cd "$work" && ls test/t/*.pl | grep -v citus | tr '\n' ' ')
  echo "== no Citus release supports PostgreSQL $major: the TAP suite without test/t/*citus*.pl"
fi
target=$what
[ "$what" = suite ] && target=test
cd "$work"
echo "== testing ($what, PostgreSQL $major)"
set +e
aw_as_postgres "cd '$work' && make -s $target ${prove_tests:+PROVE_TESTS='$prove_tests'}" 2>&1 | tee "$work/test-output.txt"
status=${PIPESTATUS[0]}
set -e

if [ $status -ne 0 ]; then
  echo "== tests failed (exit $status, PostgreSQL $major)"
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
if [ "$what" = test ] || [ "$what" = suite ]; then
  # PostgreSQL's own regression suite, with the extension loaded and its worker running
  echo "== the core regression suite (scripts/core-regress.sh $major)"
  bash "$aw_root/scripts/core-regress.sh" "$major"
fi
if [ "$what" = test ]; then
  # the libFuzzer harnesses over src/validate.c, briefly
  echo "== fuzzing (scripts/fuzz.sh 10)"
  bash "$aw_root/scripts/fuzz.sh" 10
  # the benchmark's smoke run: it fails only when a delivery is lost, never on a figure
  echo "== benchmark smoke run (test/bench/run.sh --quick)"
  BENCH_JSON=/tmp/aloro_webhook_bench_quick.json bash "$aw_root/test/bench/run.sh" --quick
  # the other majors
  bash "$aw_root/scripts/test.sh" versions
  # the Debian packages (for every major now built), the 15 one installed with
  # dpkg, and `make installcheck` against a server that loads it
  echo "== packages (scripts/package.sh build, smoke)"
  bash "$aw_root/scripts/package.sh" build
  bash "$aw_root/scripts/package.sh" smoke
fi
echo "== all tests passed (PostgreSQL $major${what:+, $what})"
