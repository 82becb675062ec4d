#!/usr/bin/env bash
# Runs the libFuzzer harnesses (test/fuzz/fuzz_*.c), each for a bounded time,
# with clang's fuzzer, address and undefined-behaviour sanitizers: the URL,
# address-policy (CIDR), header and retry-schedule checks of src/validate.c,
# and the byte rule's scalars of the payload serializer (src/json_bytes.c,
# linked with the server's src/common and src/port for StringInfo and the
# shortest-decimal code).
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
pg_config=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
pg_inc=$("$pg_config" --includedir-server)
# Debian keeps the static libpgcommon/libpgport beside the server's modules
pg_lib=$("$pg_config" --pkglibdir)
[ -f "$pg_lib/libpgcommon.a" ] || pg_lib=$("$pg_config" --libdir)
for h in url cidr header schedule json; do
  case $h in
    json) srcs=("$root/src/json_bytes.c")
          flags=(-DFRONTEND -Wno-ignored-attributes -I"$pg_inc" "$pg_lib/libpgcommon.a" "$pg_lib/libpgport.a" -lm) ;;
    *)    srcs=("$root/src/validate.c"); flags=(-lcurl) ;;
  esac
  "$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$root/src" "$root/test/fuzz/fuzz_$h.c" "${srcs[@]}" "${flags[@]}" -o "$out/fuzz_$h"
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
