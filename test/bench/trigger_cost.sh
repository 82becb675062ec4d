#!/usr/bin/env bash
# What the call-ended trigger costs per call, without commits in the way:
# N calls ended by one INSERT, timed, against the same INSERT into a plain
# table with the calls table's columns, key and checks.  Three cases,
# alternating ROUNDS times:
#   plain   the plain table
#   none    calls no webhook wants (the call is only marked ended)
#   held    calls of one webhook the extension disabled (each one queued, held)
# It prints microseconds per call for each case and what the trigger adds.
#
#   bash test/bench/trigger_cost.sh        (N=20000 ROUNDS=3 by default)
#
# Run as root; it builds and installs the extension and starts a throwaway
# cluster as the postgres user, as run.sh does.
set -euo pipefail
N=${N:-20000}; ROUNDS=${ROUNDS:-3}
work=/tmp/aloro_webhook_trigger_cost
source "$(dirname "$0")/scratch_cluster.sh" "autovacuum = off"
# the 1.8 kB body of run.sh (template.sql)
sqlf "CREATE EXTENSION aloro_webhook;
$(cat "$aw_root/test/bench/template.sql")
CREATE TABLE bench_plain (LIKE aloro_webhook.calls INCLUDING ALL);
SELECT aloro_webhook.create_webhook('http://127.0.0.1:9/sink', 'whsec_bench', assistant_id => 'asst_held');
UPDATE aloro_webhook.webhooks SET enabled = false, disabled_reason = 'bench: held', disabled_at = now();" >/dev/null
declare -A ms
for r in $(seq "$ROUNDS"); do
  for t in plain none held; do
    case $t in plain) tab=bench_plain; asst=asst_held;; none) tab=aloro_webhook.calls; asst=asst_none;; held) tab=aloro_webhook.calls; asst=asst_held;; esac
    printf '%s\n' '\timing on' "INSERT INTO $tab (id, status, started_at, ended_at, assistant_id, variables, transcript)
      SELECT '${t}_${r}_' || g, 'completed', now() - interval '3 minutes', now(), '$asst', t.variables, t.transcript
        FROM generate_series(1, $N) g, bench_template t;" > "$work/r.sql"
    chown postgres "$work/r.sql"
    t_ms=$(psql_ "-f '$work/r.sql'" | awk '/^Time:/ {print $2}')
    ms[$t]=$(awk -v a="${ms[$t]:-0}" -v b="$t_ms" 'BEGIN {print a + b}')
  done
done
held=$(psql_ "-c \"SELECT count(*) FROM aloro_webhook.deliveries WHERE status = 'pending'\"")
[ "$held" = $((N * ROUNDS)) ] || { echo "LOST: $held of $((N * ROUNDS)) held deliveries are queued"; exit 1; }
us() { awk -v m="${ms[$1]}" -v n=$((N * ROUNDS)) 'BEGIN {printf "%.1f", m * 1000 / n}'; }
echo "trigger cost, $N calls per INSERT, $ROUNDS rounds, $(nproc) cores:"
echo "  plain table               $(us plain) us per call"
echo "  calls, no webhook wants   $(us none) us per call (the trigger adds $(awk -v a="$(us none)" -v b="$(us plain)" 'BEGIN {printf "%.1f", a - b}') us)"
echo "  calls, one held delivery  $(us held) us per call (the trigger adds $(awk -v a="$(us held)" -v b="$(us plain)" 'BEGIN {printf "%.1f", a - b}') us)"
