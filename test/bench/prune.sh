#!/usr/bin/env bash
# Retention pruning at scale: what a pass costs when there is nothing to
# prune among millions of recent deliveries, and how fast old ones go, in
# the worker's own batches (aloro_webhook._prune, 2,000 rows a transaction).
#
#   bash test/bench/prune.sh [YOUNG] [OLD]      (defaults: 4000000 young, 1000000 old)
#
# Builds and installs the extension, starts a throwaway cluster, fills
# delivery_log, delivery_attempts and delivery_state directly with YOUNG recent
# succeeded deliveries and OLD ones finished 40 days ago (one in ten of
# them failed, which the 90-day failed_retention keeps), with the worker's
# own pruning off, then prints:
#   - a pass over the table before anything is old enough (only the young),
#   - the pruning of the OLD: rows/s, per-batch p50/p99/max,
#   - a pass afterwards (what is left: the kept failed ones, then the young).
set -euo pipefail
aw_root=$(cd "$(dirname "$0")/../.." && pwd)
source "$aw_root/scripts/common.sh"
YOUNG=${1:-4000000}
OLD=${2:-1000000}
work=/tmp/aloro_webhook_prune_bench

rm -rf "$work"
aw_build_install "$work/src"
chown -R postgres:postgres "$work"
port=$(aw_free_port)
aw_cluster "$work" "$port" "aloro_webhook.database_name = 'postgres'
aloro_webhook.retention = 0
aloro_webhook.failed_retention = 0
shared_buffers = 512MB
max_wal_size = 8GB
checkpoint_timeout = 30min
log_min_messages = warning"
trap 'aw_as_postgres "pg_ctl -D \"$work/data\" -m immediate stop >/dev/null 2>&1" || true' EXIT
psql_() { printf '%s\n' "$1" > "$work/q.sql"; chown postgres "$work/q.sql"; aw_as_postgres "psql -X -q -At -v ON_ERROR_STOP=1 -h '$work' -p $port -d postgres -f '$work/q.sql'"; }

echo "== filling: $OLD old (finished 40 days ago, 10% failed) then $YOUNG recent deliveries"
t0=$(date +%s)
psql_ "SET client_min_messages = warning;
CREATE EXTENSION aloro_webhook;
SELECT aloro_webhook.create_webhook('http://127.0.0.1:9/x', name => 'bench') AS wid \gset
INSERT INTO aloro_webhook.delivery_log (id, webhook_id, call_id, event, test, body, bytes, created_at)
SELECT g, :wid, 'c' || g, 'call.ended', false, repeat('x', 200), 200,
       CASE WHEN g <= $OLD THEN now() - interval '41 days' ELSE now() - interval '1 hour' END
  FROM generate_series(1, $OLD + $YOUNG) g;
-- a first attempt that succeeded is all a succeeded delivery has; a failed one has its state too
INSERT INTO aloro_webhook.delivery_attempts (delivery_id, attempt, started_at, duration_ms, http_status, error)
SELECT g, 1, CASE WHEN g <= $OLD THEN now() - interval '40 days' ELSE now() - interval '59 minutes' END, 5,
       CASE WHEN g <= $OLD AND g % 10 = 0 THEN 500 ELSE 200 END,
       CASE WHEN g <= $OLD AND g % 10 = 0 THEN 'HTTP 500' END
  FROM generate_series(1, $OLD + $YOUNG) g;
INSERT INTO aloro_webhook.delivery_state (delivery_id, status, attempts, last_http_status, last_error, finished_at)
SELECT g, 'failed', 1, 500, 'HTTP 500', now() - interval '40 days'
  FROM generate_series(10, $OLD, 10) g;
VACUUM ANALYZE aloro_webhook.delivery_log;
VACUUM ANALYZE aloro_webhook.delivery_attempts;
VACUUM ANALYZE aloro_webhook.delivery_state;"
echo "   filled in $(( $(date +%s) - t0 )) s: $(psql_ "SELECT pg_size_pretty(pg_total_relation_size('aloro_webhook.delivery_log') + pg_total_relation_size('aloro_webhook.delivery_attempts') + pg_total_relation_size('aloro_webhook.delivery_state'))")"

# a pass: batches as the worker runs them, each in its own transaction; prints
# batches, rows deleted, seconds, per-batch p50/p99/max ms
pass() {
  psql_ "CREATE TEMP TABLE IF NOT EXISTS t (ms float8, n bigint);
TRUNCATE t;
DO \$\$
DECLARE a bigint := 0; r record; t0 timestamptz; b int := 0;
BEGIN
  LOOP
    t0 := clock_timestamp();
    SELECT * INTO r FROM aloro_webhook._prune(a, 2000, now() - interval '$1', now() - interval '90 days');
    INSERT INTO t VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000, r.pruned);
    COMMIT;
    a := r.last_id;
    EXIT WHEN r.pass_done;
  END LOOP;
END \$\$;
SELECT count(*) || ' batches, ' || sum(n) || ' deleted in ' || round((sum(ms) / 1000)::numeric, 2) || ' s'
       || CASE WHEN sum(n) > 0 THEN ' (' || round(sum(n) / (sum(ms) / 1000)) || ' rows/s)' ELSE '' END
       || '; per batch p50 ' || round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1)
       || ' ms, p99 ' || round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1)
       || ' ms, max ' || round(max(ms)::numeric, 1) || ' ms'
  FROM t;"
}

echo "== a pass with nothing old enough (retention 60 days): $(pass '60 days')"
echo "== pruning the old ones (retention 30 days): $(pass '30 days')"
echo "== the next pass (kept: $(psql_ "SELECT count(*) FROM aloro_webhook.deliveries WHERE finished_at < now() - interval '30 days'") failed): $(pass '30 days')"
echo "== left: $(psql_ "SELECT count(*) FROM aloro_webhook.delivery_log") deliveries, $(psql_ "SELECT count(*) FROM aloro_webhook.delivery_attempts") attempts, $(psql_ "SELECT count(*) FROM aloro_webhook.payloads") bodies"
