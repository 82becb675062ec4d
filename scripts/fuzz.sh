#!/usr/bin/env bash
# Runs the libFuzzer harnesses (test/fuzz/fuzz_*.c) over the checks in
# src/validate.c, each for a bounded time, with clang's fuzzer, address and
# undefined-behaviour sanitizers.
#
#   bash scripts/fuzz.sh [SECONDS_EACH]     (default 60; the test command runs 10)
#
# A crash, a sanitizer report or a broken invariant stops it with the input
# that caused it (test/fuzz/crash-*): add that input to the harness's corpus
# (test/fuzz/corpus/NAME/) and a regression test for it, then fix the cause.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-60}
out=${FUZZ_DIR:-/tmp/aloro_webhook_fuzz}
cc=$(command -v clang || command -v clang-14 || true)
[ -n "$cc" ] || { echo "fuzz: clang is not installed (Debian: clang)" >&2; exit 2; }
mkdir -p "$out"
for h in url cidr header; do
  "$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root/src" "$root/test/fuzz/fuzz_$h.c" "$root/src/validate.c" -lcurl -o "$out/fuzz_$h"
  mkdir -p "$out/corpus_$h"
  echo "== fuzz_$h: ${secs}s"
  rc=0
  "$out/fuzz_$h" -max_total_time="$secs" -max_len=4096 -artifact_prefix="$root/test/fuzz/crash-$h-" \
    -print_final_stats=1 "$out/corpus_$h" "$root/test/fuzz/corpus/$h" > "$out/fuzz_$h.log" 2>&1 || rc=$?
  grep -E "^(stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)" "$out/fuzz_$h.log" || true
  if [ $rc -ne 0 ]; then
    tail -n 40 "$out/fuzz_$h.log"
    echo "fuzz_$h found a problem (exit $rc): the input is in test/fuzz/crash-$h-*"
    exit 1
  fi
done
echo "== fuzzing found nothing"
