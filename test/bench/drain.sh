#!/usr/bin/env bash
# Drain benchmark: N calls end in one transaction (one webhook, so N
# deliveries), and we time how long the worker takes until every delivery
# has succeeded against a local receiver.  Throwaway cluster; run as root.
#
#   bash test/bench/drain.sh [N]          (default 10000)
#
# Settings to compare can be passed as extra postgresql.conf lines:
#   BENCH_CONF="aloro_webhook.max_in_flight_per_webhook = 64" bash test/bench/drain.sh
set -euo pipefail
source "$(dirname "$0")/../../scripts/common.sh"
n=${1:-10000}
work=/tmp/aloro_webhook_bench
rm -rf "$work"
aw_build_install "$work/src"

data=$work/data
chown postgres:postgres "$work"
port=$(aw_free_port)
aw_cluster "$work" "$port" "aloro_webhook.database_name = 'postgres'
${BENCH_CONF:-}"
node "$aw_root/test/bench/sink.js" "$work/count" > "$work/sink.out" &
sink=$!
cleanup() { kill $sink 2>/dev/null || true; aw_as_postgres "pg_ctl -D '$data' -m fast stop >/dev/null" || true; }
trap cleanup EXIT
sport=$(aw_wait_listening "$work/sink.out")

psql_() { aw_as_postgres "psql -X -q -At -h '$work' -p $port -d postgres -c \"$1\""; }
psql_ "CREATE EXTENSION aloro_webhook"
psql_ "SELECT aloro_webhook.create_webhook('http://127.0.0.1:$sport/bench', 'whsec_bench')" >/dev/null

t0=$(date +%s%N)
psql_ "INSERT INTO aloro_webhook.calls (id, status, started_at, ended_at, variables, transcript)
       SELECT 'bench_' || g, 'completed', now() - interval '3 minutes', now(),
              jsonb_build_object('summary', 'benchmark call ' || g),
              '[{\\\"speaker\\\": \\\"ai\\\", \\\"text\\\": \\\"Hello\\\", \\\"start\\\": 0}]'
         FROM generate_series(1, $n) g"
t1=$(date +%s%N)
deadline=$(( $(date +%s) + 600 ))
while :; do
  done_n=$(psql_ "SELECT count(*) FROM aloro_webhook.deliveries WHERE status <> 'pending'")
  [ "$done_n" -ge "$n" ] && break
  [ "$(date +%s)" -gt "$deadline" ] && { echo "gave up: $done_n of $n finished"; exit 1; }
  sleep 0.05
done
t2=$(date +%s%N)
ok=$(psql_ "SELECT count(*) FROM aloro_webhook.deliveries WHERE status = 'succeeded'")
wpid=$(psql_ "SELECT pid FROM pg_stat_activity WHERE backend_type = 'aloro_webhook worker'")
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$wpid/status")
anon=$(awk '/^RssAnon/ {print $2}' "/proc/$wpid/status")
enq_ms=$(( (t1 - t0) / 1000000 )); drain_ms=$(( (t2 - t1) / 1000000 ))
echo "deliveries: $n queued in ${enq_ms} ms, $ok succeeded in ${drain_ms} ms after commit"
echo "drain rate: $(( n * 1000 / (drain_ms > 0 ? drain_ms : 1) )) deliveries/s; worker RSS ${rss} kB, of it private (RssAnon) ${anon} kB; the rest is shared buffers it touched"
