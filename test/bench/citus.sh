#!/usr/bin/env bash
# Citus benchmark: a coordinator and two worker nodes on this machine
# (scripts/citus.sh), the calls table distributed by id and watched, one
# webhook to a local sink.  Measures, across the cluster:
#   - calls ended per second by single-row INSERTs from C clients (pgbench,
#     each a transaction routed to the node of the call's shard);
#   - calls ended per second by one INSERT ... SELECT of N calls;
#   - deliveries per second: the N calls' deliveries, from that commit until
#     every one has succeeded (each worker node drains its own queue).
# Run as root.
#
#   bash test/bench/citus.sh [N] [SECONDS] [CLIENTS]     (defaults 20000, 10, 8)
set -euo pipefail
source "$(dirname "$0")/../../scripts/common.sh"
n=${1:-20000}
secs=${2:-10}
clients=${3:-8}
work=/tmp/aloro_webhook_bench_citus
[ -d "$work/cluster" ] && bash "$aw_root/scripts/citus.sh" stop "$work/cluster" || true
rm -rf "$work"
aw_build_install "$work/src"
bash "$aw_root/scripts/citus.sh" build
mkdir -p "$work/cluster"
chown postgres:postgres "$work"
CITUS_NODE_CONF="aloro_webhook.database_name = 'postgres'
${BENCH_CONF:-}" bash "$aw_root/scripts/citus.sh" start "$work/cluster" > "$work/ports"
port=$(awk '/coordinator/ {print $2}' "$work/ports")
node "$aw_root/test/bench/sink.js" "$work/count" > "$work/sink.out" &
sink=$!
cleanup() { kill $sink 2>/dev/null || true; bash "$aw_root/scripts/citus.sh" stop "$work/cluster" || true; }
trap cleanup EXIT
sport=$(aw_wait_listening "$work/sink.out")

psql_() { aw_as_postgres "psql -X -q -At -h '$work/cluster' -p $port -d postgres -c \"$1\""; }
psql_ "CREATE TABLE public.calls (id text PRIMARY KEY, status text NOT NULL, started_at timestamptz,
         ended_at timestamptz, variables jsonb, transcript jsonb)"
psql_ "SELECT create_distributed_table('public.calls', 'id')" >/dev/null
psql_ "CREATE EXTENSION aloro_webhook"
psql_ "SELECT aloro_webhook.watch('public.calls')" >/dev/null
psql_ "SELECT aloro_webhook.create_webhook('http://127.0.0.1:$sport/bench', 'whsec_bench')" >/dev/null
psql_ "CREATE SEQUENCE public.bench_ids"

# delivered so far, on every node (counted there: the history view would ship every row)
delivered() {
  psql_ "SELECT sum(result::bigint) FROM run_command_on_all_nodes(
           'SELECT count(*) FROM aloro_webhook.deliveries WHERE status <> ''pending''')"
}
wait_delivered() {
  local want=$1 deadline=$(( $(date +%s) + 900 ))
  while :; do
    local got
    got=$(delivered)
    [ "$got" -ge "$want" ] && return 0
    [ "$(date +%s)" -gt "$deadline" ] && { echo "gave up: $got of $want delivered"; exit 1; }
    sleep 0.2
  done
}

# 1. single-row INSERTs from several clients
cat > "$work/end_call.sql" <<'SQL'
INSERT INTO public.calls (id, status, started_at, ended_at, variables, transcript)
VALUES ('pgb_' || nextval('public.bench_ids'), 'completed', now() - interval '3 minutes', now(),
        '{"summary": "benchmark call"}', '[{"speaker": "ai", "text": "Hello", "start": 0}]');
SQL
chown postgres:postgres "$work/end_call.sql"
aw_as_postgres "pgbench -n -h '$work/cluster' -p $port -c $clients -j 2 -T $secs -f '$work/end_call.sql' postgres" > "$work/pgbench.out" 2>&1 \
  || { cat "$work/pgbench.out"; exit 1; }
tps=$(awk '/^tps/ {printf "%d", $3; exit}' "$work/pgbench.out")
ended1=$(psql_ "SELECT count(*) FROM public.calls")
wait_delivered "$ended1"
echo "calls ended one per transaction by $clients clients: $tps calls/s across the cluster ($ended1 calls in ${secs} s)"

# 2. one INSERT ... SELECT of N calls, then their deliveries
before=$(delivered)
t0=$(date +%s%N)
psql_ "INSERT INTO public.calls (id, status, started_at, ended_at, variables, transcript)
       SELECT 'bulk_' || g, 'completed', now() - interval '3 minutes', now(),
              jsonb_build_object('summary', 'benchmark call ' || g),
              '[{\\\"speaker\\\": \\\"ai\\\", \\\"text\\\": \\\"Hello\\\", \\\"start\\\": 0}]'
         FROM generate_series(1, $n) g"
t1=$(date +%s%N)
wait_delivered $(( before + n ))
t2=$(date +%s%N)
ok=$(psql_ "SELECT sum(result::bigint) FROM run_command_on_all_nodes(
              'SELECT count(*) FROM aloro_webhook.deliveries WHERE status = ''succeeded''')")
t3=$(date +%s%N)
hist=$(psql_ "SELECT count(*) FROM aloro_webhook.delivery_history")
t4=$(date +%s%N)
psql_ "SELECT count(*) FROM aloro_webhook.delivery_history_of('bulk_77')" >/dev/null
t5=$(date +%s%N)
enq_ms=$(( (t1 - t0) / 1000000 )); drain_ms=$(( (t2 - t1) / 1000000 ))
echo "calls ended by one INSERT ... SELECT: $n in ${enq_ms} ms = $(( n * 1000 / (enq_ms > 0 ? enq_ms : 1) )) calls/s"
echo "deliveries across the cluster: $n succeeded in ${drain_ms} ms after that commit = $(( n * 1000 / (drain_ms > 0 ? drain_ms : 1) )) deliveries/s"
echo "per node: $(psql_ "SELECT string_agg('group ' || g || ': ' || c, ', ' ORDER BY g) FROM (SELECT (id >> 48) AS g, count(*) AS c FROM aloro_webhook.delivery_history GROUP BY 1) x")"
echo "succeeded in all: $ok"
echo "history on the coordinator: all $hist rows of delivery_history in $(( (t4 - t3) / 1000000 )) ms; one call's (delivery_history_of) in $(( (t5 - t4) / 1000000 )) ms"
