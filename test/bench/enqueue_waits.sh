#!/usr/bin/env bash
# Where the ending backends' time goes, and what WAL alone costs them:
# pgbench (4 clients, one call ended per transaction, the 1.8 kB body of
# run.sh) in four cases, alternating ROUNDS times:
#   plain   the call's row into a plain table with the calls table's columns
#   padded  the same row with 600 more bytes that do not compress (md5 text
#           in a column stored uncompressed, read from a one-row table that
#           every case reads): more WAL per commit, no more work otherwise
#   held    the call into aloro_webhook.calls, its delivery held (the real
#           trigger: the ended mark and the delivery row with its body)
#   held2   the same for a call two webhooks want (the body stored once, in
#           payloads, and two delivery rows)
# For each: calls per second, the WAL written per call (pg_current_wal_lsn
# before and after, over the calls), and what the four clients' backends were
# doing, sampled every 10 ms from pg_stat_activity (the share of samples per
# wait event; "CPU" is a backend active with no wait event).  "padded"
# against "plain" says what bytes of WAL cost with no other change; "held"
# against both says how much of the trigger's cost is its WAL.
#
#   bash test/bench/enqueue_waits.sh      (T=5 ROUNDS=3 by default)
#
# Run as root; it builds and installs the extension and starts a throwaway
# cluster as the postgres user, as run.sh does.
set -euo pipefail
T=${T:-5}; ROUNDS=${ROUNDS:-3}
work=/tmp/aloro_webhook_enqueue_waits
source "$(dirname "$0")/scratch_cluster.sh"
enqueue_setup
sqlf "CREATE TABLE bench_padded (LIKE aloro_webhook.calls INCLUDING ALL, pad text);
ALTER TABLE bench_padded ALTER COLUMN pad SET STORAGE EXTERNAL;
SELECT aloro_webhook.create_webhook('http://127.0.0.1:9/sink' || g, 'whsec_bench', assistant_id => 'asst_held2')
  FROM generate_series(1, 2) g;
UPDATE aloro_webhook.webhooks SET enabled = false, disabled_reason = 'bench: held', disabled_at = now();
-- 600 bytes that do not compress (md5 hex), stored as they are
CREATE TABLE bench_pad AS SELECT string_agg(md5(g::text), '') AS pad FROM generate_series(1, 19) g;
CREATE TABLE bench_waits (kase text, wait text);" >/dev/null

cols="id, status, started_at, ended_at, assistant_id, variables, transcript"
vals="'w_' || nextval('bench_ids'), 'completed', now() - interval '3 minutes', now(), 'asst_held', t.variables, t.transcript"
# the pad is read in every case (a one-row table), written only by "padded"
for c in plain padded held held2; do
  case $c in
    plain) sql="INSERT INTO bench_plain ($cols) SELECT $vals FROM bench_template t, bench_pad p;" ;;
    padded) sql="INSERT INTO bench_padded ($cols, pad) SELECT $vals, p.pad FROM bench_template t, bench_pad p;" ;;
    held) sql="INSERT INTO aloro_webhook.calls ($cols) SELECT $vals FROM bench_template t, bench_pad p;" ;;
    held2) sql="INSERT INTO aloro_webhook.calls ($cols) SELECT ${vals/asst_held/asst_held2} FROM bench_template t, bench_pad p;" ;;
  esac
  printf '%s\n' "$sql" > "$work/$c.pgb"
  chown postgres "$work/$c.pgb"
done

declare -A N S WAL
for r in $(seq "$ROUNDS"); do
  for c in plain padded held held2; do
    lsn0=$(psql_ "-c 'SELECT pg_current_wal_lsn()'")
    aw_as_postgres "pgbench -n -h '$work' -p $port -c 4 -j 2 -T $T -f '$work/$c.pgb' postgres" > "$work/pgb_$c.out" 2>&1 &
    pgb=$!
    sleep 1
    # sampled inside the server every 10 ms while pgbench runs, into a temporary table in one
    # transaction that commits without a flush: the sampling writes no WAL of its own
    sqlf "SET synchronous_commit = off;
CREATE TEMP TABLE w (wait text);
DO \$\$ BEGIN FOR i IN 1..$(( (T - 2) * 100 )) LOOP
  INSERT INTO w SELECT coalesce(a.wait_event_type || ':' || a.wait_event, 'CPU')
    FROM pg_stat_activity a WHERE a.application_name = 'pgbench' AND a.state = 'active';
  PERFORM pg_stat_clear_snapshot();
  PERFORM pg_sleep(0.01);
END LOOP; END \$\$;
INSERT INTO bench_waits SELECT '$c', wait FROM w;" >/dev/null
    wait $pgb
    n=$(awk '/^number of transactions actually processed/ {print $NF}' "$work/pgb_$c.out")
    N[$c]=$(( ${N[$c]:-0} + n )); S[$c]=$(( ${S[$c]:-0} + T ))
    WAL[$c]=$(( ${WAL[$c]:-0} + $(psql_ "-c \"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0')::bigint\"") ))
  done
done
for c in plain padded held held2; do
  echo "$c: $(( N[$c] / S[$c] )) calls/s, $(( WAL[$c] / N[$c] )) B of WAL per call"
done
echo "the ending backends, share of samples while active (per case):"
psql_ "-c \"SELECT kase || ': ' || string_agg(wait || ' ' || round(100.0 * n / total) || '%', ', ' ORDER BY n DESC)
             FROM (SELECT kase, wait, count(*) AS n, sum(count(*)) OVER (PARTITION BY kase) AS total
                     FROM bench_waits GROUP BY kase, wait) x
            WHERE 100.0 * n / total >= 1
            GROUP BY kase ORDER BY min(CASE kase WHEN 'plain' THEN 1 WHEN 'padded' THEN 2 WHEN 'held' THEN 3 ELSE 4 END)\""
