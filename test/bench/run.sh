#!/usr/bin/env bash
# The benchmark: every performance figure of doc/performance.md, measured in one run
# on this machine, each beside what it is compared with.
#
#   bash test/bench/run.sh            the full run (several minutes)
#   bash test/bench/run.sh --quick    a smoke test (CI): small sizes; it only
#                                     fails when something is lost, never on
#                                     a figure
#
# Run as root on Debian bookworm; it installs what is missing (nginx-light
# among them), builds and installs the extension, and starts a throwaway
# cluster (the postgres user) and nginx on 127.0.0.1.  The figures go to
# stdout and, as JSON, to test/bench/out/results.json (BENCH_JSON=FILE for
# another file).
#
# What it measures (one webhook unless said; signed 1.8 kB bodies; nginx
# answering 200; every attempt recorded):
#   bare       curl -Z --parallel-max 64 POSTing the same body to the same nginx
#   drain      N calls ended in one transaction: deliveries/s until all succeeded,
#              at the bare client's concurrency (64 requests in flight to the
#              webhook: the cluster runs with max_in_flight_per_webhook = 64 for
#              every phase), then the same at the setting's default, 32
#   long_tx    the same while another session holds a snapshot open throughout
#   latency    commit -> nginx at 100 and 1,000 calls/s (pgbench -R), p50/p99: from
#              the commit time of the call's transaction (track_commit_timestamp)
#              to the time nginx logs the request
#   enqueue    pgbench ending calls while deliveries flow, vs the same inserts
#              into a plain table
#   isolation  1% of the calls to an endpoint that never answers: the rest's rate
#   fanout     ending one call with a 1 MB transcript and 100 webhooks
#   backlog    1,000,000 queued (full run; 100,000 with --quick): the rate per
#              100k, and the worker's private memory before and after
#   pg_net     when pg_net is installed (it is not built here): its good/s at
#              batch sizes 200..10,000, same body, same nginx
set -euo pipefail
source "$(dirname "$0")/../../scripts/common.sh"

quick=0
[ "${1:-}" = "--quick" ] && quick=1
# BENCH_PHASES="drain backlog" runs only those (bare drain long_tx latency
# enqueue isolation fanout backlog pg_net); the default is all of them
phase() { [ -z "${BENCH_PHASES:-}" ] || [[ " $BENCH_PHASES " == *" $1 "* ]]; }
if [ $quick = 1 ]; then
  N=2000; N_BACKLOG=20000; PGB_T=3; ENQ_ROUNDS=1; LAT_T=4
else
  N=20000; N_BACKLOG=1000000; PGB_T=5; ENQ_ROUNDS=4; LAT_T=10
fi
work=/tmp/aloro_webhook_bench
out_json=${BENCH_JSON:-$aw_root/test/bench/out/results.json}
mkdir -p "$(dirname "$out_json")"

aw_need_packages --quiet /tmp/aloro_webhook_bench_apt.log nginx-light
rm -rf "$work"
aw_build_install "$work/src"
mkdir -p "$work/nginx/logs"
chown -R postgres:postgres "$work"

# --- nginx on loopback: /sink answers 200 "ok"; /lat logs arrival times --------
nport=$(aw_free_port)
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_buffer_size 64k;
  log_format lat '\$msec \$http_x_aloro_delivery';
  server {
    listen 127.0.0.1:$nport;
    location /lat { access_log $work/nginx/logs/lat.log lat; return 200 "ok"; }
    location / { return 200 "ok"; }
  }
}
CONF
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf"
# an endpoint that accepts and never answers
node -e 'const s=require("net").createServer(c=>{c.on("data",()=>{});c.on("error",()=>{})});s.listen(0,"127.0.0.1",()=>console.log("listening "+s.address().port))' > "$work/hang.out" &
hang_pid=$!
hport=$(aw_wait_listening "$work/hang.out")

port=$(aw_free_port)
# BENCH_CONF: more postgresql.conf lines (settings to compare).
# BENCH_STATEMENTS=1: pg_stat_statements too, and after the drain the statements that took
# the most time (a profile; the figures of such a run are not the ones to quote)
stmts_conf=""
[ -n "${BENCH_STATEMENTS:-}" ] && stmts_conf="shared_preload_libraries = 'aloro_webhook, pg_stat_statements'
pg_stat_statements.track = all"
aw_cluster "$work" "$port" "$stmts_conf
aloro_webhook.database_name = 'postgres'
shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 30min
track_commit_timestamp = on
log_min_messages = warning
aloro_webhook.max_in_flight_per_webhook = 64
${BENCH_CONF:-}"
cleanup() {
  kill $hang_pid 2>/dev/null || true
  [ -f "$work/nginx/nginx.pid" ] && kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true
  aw_as_postgres "pg_ctl -D '$work/data' -m immediate stop >/dev/null 2>&1" || true
}
trap cleanup EXIT

psql_() { aw_as_postgres "psql -X -q -At -v ON_ERROR_STOP=1 -h '$work' -p $port -d postgres $*"; }
sqlf() { printf '%s\n' "$1" > "$work/q.sql"; chown postgres "$work/q.sql"; psql_ "-f '$work/q.sql'"; }
now_ns() { date +%s%N; }
declare -A R   # the results

# a 1.8 kB body: the call's transcript and variables make it up
sqlf "CREATE EXTENSION aloro_webhook;
$([ -n "${BENCH_STATEMENTS:-}" ] && echo "CREATE EXTENSION pg_stat_statements;")
$(cat "$aw_root/test/bench/template.sql")
CREATE SEQUENCE bench_seq;
CREATE TABLE bench_plain (LIKE aloro_webhook.calls INCLUDING ALL);"
end_calls_sql() {  # N PREFIX ASSISTANT
  echo "INSERT INTO aloro_webhook.calls (id, phone, direction, status, started_at, ended_at, assistant_id, variables, transcript)
        SELECT '$2_' || g, '+15550001111', 'inbound', 'completed', now() - interval '3 minutes', now(), '$3',
               t.variables, t.transcript
          FROM generate_series(1, $1) g, bench_template t;"
}
# whether a webhook's deliveries are all done, cheaply (the queue's index, the stream's cursors,
# then the stream's short tail), and a wait for it that polls inside the server -- committing
# between polls, so that it holds no snapshot -- rather than starting a psql every few ms, which
# costs the two cores more than what it measures
sqlf "CREATE FUNCTION bench_drained(hook bigint) RETURNS boolean LANGUAGE plpgsql AS \$\$
BEGIN
  IF EXISTS (SELECT 1 FROM aloro_webhook.queue q WHERE q.webhook_id = hook) THEN RETURN false; END IF;
  -- (a build from before the stream, measured with this script: the queue is all)
  IF to_regclass('aloro_webhook.stream_cursors') IS NULL THEN RETURN true; END IF;
  IF EXISTS (SELECT 1 FROM aloro_webhook.stream_cursors c
              WHERE c.share >= 0
                AND c.read_upto < (SELECT coalesce(max(d.id), 0) FROM aloro_webhook.delivery_log d)) THEN
    RETURN false;
  END IF;
  RETURN NOT EXISTS (SELECT 1 FROM aloro_webhook._stream_pending() p WHERE p.webhook_id = hook);
END \$\$;
CREATE PROCEDURE bench_wait(hook bigint, timeout_s float8, INOUT done_ns bigint DEFAULT NULL) LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
  LOOP
    COMMIT;
    EXIT WHEN bench_drained(hook);
    IF clock_timestamp() - t0 > timeout_s * interval '1 second' THEN
      RAISE EXCEPTION 'gave up waiting for webhook % to drain', hook;
    END IF;
    PERFORM pg_sleep(0.002);
  END LOOP;
  done_ns := (extract(epoch FROM clock_timestamp()) * 1e9)::bigint;
END \$\$;
-- the same wait for pg_net's responses (how many), when it is measured
CREATE PROCEDURE bench_wait_pg_net(n bigint, timeout_s float8, INOUT done_ns bigint DEFAULT NULL) LANGUAGE plpgsql AS \$\$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
  LOOP
    COMMIT;
    EXIT WHEN (SELECT count(*) FROM net._http_response) >= n
           OR clock_timestamp() - t0 > timeout_s * interval '1 second';
    PERFORM pg_sleep(0.002);
  END LOOP;
  done_ns := (extract(epoch FROM clock_timestamp()) * 1e9)::bigint;
END \$\$;
-- the first delivery id from from_id on not finished yet, as the workers' cursors say
CREATE FUNCTION bench_unfinished(from_id bigint) RETURNS bigint LANGUAGE plpgsql AS \$\$
BEGIN
  RETURN (SELECT least(min(c.read_upto) + 1,
                       min((SELECT min(greatest(r.lo, from_id)) FROM unnest(c.open_lo, c.open_hi) r(lo, hi)
                             WHERE r.hi >= from_id)),
                       min((SELECT min(x) FROM unnest(c.in_flight) x WHERE x >= from_id)))
            FROM aloro_webhook.stream_cursors c WHERE c.share >= 0);
END \$\$;" >/dev/null
# wait_drained WEBHOOK_ID TIMEOUT_S: prints when it drained (ns since the epoch)
wait_drained() { psql_ "-c 'CALL bench_wait($1, $2)'" || { echo "gave up waiting for webhook $1 to drain"; exit 1; }; }
check_all_succeeded() {  # WEBHOOK_ID EXPECTED
  local ok
  ok=$(psql_ "-c \"SELECT count(*) FROM aloro_webhook.deliveries WHERE webhook_id = $1 AND status = 'succeeded'\"")
  [ "$ok" = "$2" ] || { echo "LOST: webhook $1 has $ok of $2 deliveries succeeded"; exit 1; }
}
worker_anon_kb() {
  local pid; pid=$(psql_ "-c \"SELECT pid FROM pg_stat_activity WHERE backend_type = 'aloro_webhook worker'\"")
  awk '/^RssAnon/ {print $2}' "/proc/$pid/status"
}
rate() { echo $(( $1 * 1000000000 / ($2 > 0 ? $2 : 1) )); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

body_len=$(psql_ "-c \"SELECT octet_length(aloro_webhook._payload(c, true, now())) FROM (SELECT 'bench_x' AS id, '+15550001111' AS phone, 'inbound' AS direction, 'completed' AS status, now() - interval '3 minutes' AS started_at, now() AS ended_at, 'asst_bench' AS assistant_id, t.variables, t.transcript FROM bench_template t) c\"")
R[body_bytes]=$body_len
echo "== body: $body_len bytes, signed; nginx on 127.0.0.1:$nport; $(nproc) cores"

# --- bare client ------------------------------------------------------------------
if phase bare; then
psql_ "-c \"SELECT aloro_webhook._payload(c, true, now()) FROM (SELECT 'bench_x' AS id, 'completed' AS status, t.variables, t.transcript FROM bench_template t) c\"" > "$work/body.json"
# three runs, the median: one run of 20,000 requests lasts well under a second
bare=()
for i in 1 2 3; do
  t0=$(now_ns)
  curl -s --no-progress-meter -Z --parallel-max 64 -o /dev/null -X POST -H 'Content-Type: application/json' \
    --data-binary @"$work/body.json" "http://127.0.0.1:$nport/bare/[1-$N]"
  t1=$(now_ns)
  bare+=("$(rate $N $((t1 - t0)))")
done
R[bare_rate]=$(printf '%s\n' "${bare[@]}" | sort -n | sed -n 2p)
R[bare_runs]=$(IFS=/; echo "${bare[*]}")
echo "bare client (curl -Z --parallel-max 64): $N POSTs, ${R[bare_rate]}/s (the median of ${R[bare_runs]})"
fi

# --- drain ----------------------------------------------------------------------------
if phase drain; then
drain_hook=$(psql_ "-c \"SELECT aloro_webhook.create_webhook('http://127.0.0.1:$nport/sink', 'whsec_bench', assistant_id => 'asst_drain')\"")
sqlf "$(end_calls_sql $N drain asst_drain)"
[ -n "${BENCH_STATEMENTS:-}" ] && psql_ "-c 'SELECT pg_stat_statements_reset()'" >/dev/null
t0=$(now_ns); t1=$(wait_drained "$drain_hook" 600)
check_all_succeeded "$drain_hook" "$N"
R[drain_rate]=$(rate $N $((t1 - t0)))
R[drain_vs_bare]=$(ratio "${R[drain_rate]}" "${R[bare_rate]}")
echo "drain: $N queued in one transaction, ${R[drain_rate]} deliveries/s after commit (${R[drain_vs_bare]} of the bare client; target >= 0.7)"
# the same at the default of 32 requests in flight to one webhook (half the bare client's 64)
psql_ "-c 'ALTER SYSTEM SET aloro_webhook.max_in_flight_per_webhook = 32' -c 'SELECT pg_reload_conf()'" >/dev/null
sleep 1   # the worker reads the file at its next wake-up
sqlf "$(end_calls_sql $N drain32 asst_drain)"
t0=$(now_ns); t1=$(wait_drained "$drain_hook" 600)
check_all_succeeded "$drain_hook" "$((2 * N))"
R[drain_32_rate]=$(rate $N $((t1 - t0)))
R[drain_32_vs_bare]=$(ratio "${R[drain_32_rate]}" "${R[bare_rate]}")
psql_ "-c 'ALTER SYSTEM RESET aloro_webhook.max_in_flight_per_webhook' -c 'SELECT pg_reload_conf()'" >/dev/null
sleep 1
echo "drain at the default max_in_flight_per_webhook (32): ${R[drain_32_rate]} deliveries/s (${R[drain_32_vs_bare]} of the bare client)"
if [ -n "${BENCH_STATEMENTS:-}" ]; then
  echo "== the drain's statements by total time (calls, rows per call, mean ms, total ms, query)"
  psql_ "-F ' | ' -c \"SELECT calls, round(rows::numeric / calls, 1), round(mean_exec_time::numeric, 3), round(total_exec_time::numeric), left(regexp_replace(query, '\\s+', ' ', 'g'), 90) FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 12\""
fi
fi

# --- long transaction ----------------------------------------------------------------
if phase long_tx; then
lt_hook=$(psql_ "-c \"SELECT aloro_webhook.create_webhook('http://127.0.0.1:$nport/sink', 'whsec_bench', assistant_id => 'asst_lt')\"")
mkfifo "$work/lt.fifo"; chown postgres "$work/lt.fifo"
aw_as_postgres "psql -X -q -h '$work' -p $port -d postgres < '$work/lt.fifo' > /dev/null" &
lt_psql=$!
exec 9> "$work/lt.fifo"
echo "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM aloro_webhook.delivery_log;" >&9
sleep 0.5
sqlf "$(end_calls_sql $N lt asst_lt)"
t0=$(now_ns); t1=$(wait_drained "$lt_hook" 600)
echo "COMMIT;" >&9; exec 9>&-; wait $lt_psql || true
check_all_succeeded "$lt_hook" "$N"
R[long_tx_rate]=$(rate $N $((t1 - t0)))
R[long_tx_vs_clean]=$(ratio "${R[long_tx_rate]}" "${R[drain_rate]}")
echo "long transaction: a snapshot held open throughout, ${R[long_tx_rate]} deliveries/s (${R[long_tx_vs_clean]} of the clean rate; target >= 0.7)"
psql_ "-c 'VACUUM aloro_webhook.queue, aloro_webhook.delivery_log'"
fi

# --- latency at 100 and 1,000 calls/s ----------------------------------------------------
if phase latency; then
lat_hook=$(psql_ "-c \"SELECT aloro_webhook.create_webhook('http://127.0.0.1:$nport/lat', 'whsec_bench', assistant_id => 'asst_lat')\"")
cat > "$work/lat.pgb" <<'PGB'
INSERT INTO aloro_webhook.calls (id, status, ended_at, assistant_id, variables, transcript)
SELECT 'lat_' || nextval('bench_seq'), 'completed', clock_timestamp(), 'asst_lat', t.variables, t.transcript
  FROM bench_template t;
PGB
chown postgres "$work/lat.pgb"
for r in 100 1000; do
  : > "$work/nginx/logs/lat.log"; kill -USR1 "$(cat "$work/nginx/nginx.pid")"
  clients=$(( r >= 1000 ? 8 : 2 ))
  from_id=$(psql_ "-c \"SELECT coalesce(max(id), 0) FROM aloro_webhook.delivery_log\"")
  aw_as_postgres "pgbench -n -h '$work' -p $port -c $clients -j 2 -R $r -T $LAT_T -f '$work/lat.pgb' postgres" > "$work/pgb_lat_$r.out" 2>&1
  t_end=$(now_ns)
  backlog_ms=$(( ($(wait_drained "$lat_hook" 60) - t_end) / 1000000 ))
  sleep 0.2   # nginx writes its access log line after the response
  sent=$(psql_ "-c \"SELECT count(*) FROM aloro_webhook.delivery_log WHERE webhook_id = $lat_hook AND id > $from_id\"")
  check_all_succeeded "$lat_hook" "$(psql_ "-c \"SELECT count(*) FROM aloro_webhook.delivery_log WHERE webhook_id = $lat_hook\"")"
  cp "$work/nginx/logs/lat.log" "$work/lat_$r.log"; chown postgres "$work/lat_$r.log"
  read -r p50 p99 n <<<"$(sqlf "CREATE TEMP TABLE arrivals (at_s float8, delivery_id bigint);
COPY arrivals FROM '$work/lat_$r.log' (FORMAT text, DELIMITER ' ');
SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1), count(*)
  FROM (SELECT (a.at_s - extract(epoch FROM pg_xact_commit_timestamp(e.xmin))) * 1000 AS ms
          FROM arrivals a JOIN aloro_webhook.delivery_log d ON d.id = a.delivery_id
          JOIN aloro_webhook.ended_calls e ON e.call_id = d.call_id
         WHERE d.id > $from_id) x;" | tr '|' ' ')"
  R[latency_${r}_p50_ms]=$p50; R[latency_${r}_p99_ms]=$p99; R[latency_${r}_calls]=$sent; R[latency_${r}_backlog_ms]=$backlog_ms
  echo "latency at $r calls/s: $sent calls, commit -> nginx p50 ${p50} ms, p99 ${p99} ms; queue empty ${backlog_ms} ms after the last commit (target p99 <= $([ $r = 100 ] && echo 20 || echo 100) ms)"
done
fi

# --- enqueue cost ----------------------------------------------------------------------------
# pgbench (4 clients), each transaction ending one call, in three cases: while its deliveries
# flow (one webhook, the worker sending), with the worker idle (the webhook's deliveries are
# queued but held: the extension disabled it), and the same inserts into a plain table with
# the calls table's columns, key and checks but no trigger.  The three alternate, ENQ_ROUNDS
# rounds of PGB_T seconds each (this machine's speed drifts over a minute; alternating gives
# each case the same drift), the deliveries drained before each idle or plain run; the rate
# of each case is its transactions over its time in all rounds.
if phase enqueue; then
enq_hook=$(psql_ "-c \"SELECT aloro_webhook.create_webhook('http://127.0.0.1:$nport/sink', 'whsec_bench', assistant_id => 'asst_enq')\"")
held_hook=$(psql_ "-c \"SELECT aloro_webhook.create_webhook('http://127.0.0.1:$nport/sink', 'whsec_bench', assistant_id => 'asst_held')\"")
psql_ "-c \"UPDATE aloro_webhook.webhooks SET enabled = false, disabled_reason = 'bench: held', disabled_at = now() WHERE id = $held_hook\"" >/dev/null
for t in calls idle plain; do
  case $t in calls) tab=aloro_webhook.calls; asst=asst_enq;; idle) tab=aloro_webhook.calls; asst=asst_held;; plain) tab=bench_plain; asst=asst_enq;; esac
  cat > "$work/enq_$t.pgb" <<PGB
INSERT INTO $tab (id, status, started_at, ended_at, assistant_id, variables, transcript)
SELECT 'enq_' || nextval('bench_seq'), 'completed', now() - interval '3 minutes', now(), '$asst', t.variables, t.transcript
  FROM bench_template t;
PGB
  chown postgres "$work/enq_$t.pgb"
  R[enqueue_${t}_xacts]=0; R[enqueue_${t}_s]=0; R[enqueue_${t}_wal]=0
done
# the WAL the server writes while a case runs (for the delivered case, until its deliveries
# are recorded: the worker's records are part of what a call end costs)
wal_lsn() { psql_ "-c 'SELECT pg_current_wal_lsn()'"; }
wal_since() { psql_ "-c \"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$1')::bigint\""; }
for round in $(seq "$ENQ_ROUNDS"); do
  for t in calls idle plain; do
    wait_drained "$enq_hook" 120 >/dev/null
    lsn0=$(wal_lsn)
    aw_as_postgres "pgbench -n -h '$work' -p $port -c 4 -j 2 -T $PGB_T -f '$work/enq_$t.pgb' postgres" > "$work/pgb_enq_$t.out" 2>&1
    [ $t = calls ] && wait_drained "$enq_hook" 120 >/dev/null
    R[enqueue_${t}_wal]=$(( ${R[enqueue_${t}_wal]} + $(wal_since "$lsn0") ))
    R[enqueue_${t}_xacts]=$(( ${R[enqueue_${t}_xacts]} + $(awk '/^number of transactions actually processed/ {print $NF}' "$work/pgb_enq_$t.out") ))
    R[enqueue_${t}_s]=$(( ${R[enqueue_${t}_s]} + PGB_T ))
  done
done
for t in calls idle plain; do R[enqueue_${t}_wal_per_call]=$(( ${R[enqueue_${t}_wal]} / ${R[enqueue_${t}_xacts]} )); done
wait_drained "$enq_hook" 120 >/dev/null
check_all_succeeded "$enq_hook" "${R[enqueue_calls_xacts]}"
held=$(psql_ "-c \"SELECT count(*) FROM aloro_webhook.queue WHERE webhook_id = $held_hook AND claimed_by IS NULL\"")
[ "$held" = "${R[enqueue_idle_xacts]}" ] || { echo "LOST: $held of ${R[enqueue_idle_xacts]} held deliveries are queued"; exit 1; }
for t in calls idle plain; do R[enqueue_${t}_tps]=$(( ${R[enqueue_${t}_xacts]} / ${R[enqueue_${t}_s]} )); done
R[enqueue_vs_plain]=$(ratio "${R[enqueue_calls_tps]}" "${R[enqueue_plain_tps]}")
R[enqueue_idle_vs_plain]=$(ratio "${R[enqueue_idle_tps]}" "${R[enqueue_plain_tps]}")
echo "enqueue ($ENQ_ROUNDS rounds of ${PGB_T} s each): ending calls ${R[enqueue_calls_tps]}/s while they are delivered, ${R[enqueue_idle_tps]}/s with the worker idle (deliveries held), plain inserts ${R[enqueue_plain_tps]}/s (${R[enqueue_vs_plain]}, target >= 0.6; ${R[enqueue_idle_vs_plain]}, target >= 0.75)"
echo "enqueue: WAL written per call end: ${R[enqueue_calls_wal_per_call]} B delivered (the worker's records of it included), ${R[enqueue_idle_wal_per_call]} B held, ${R[enqueue_plain_wal_per_call]} B for the plain insert"
psql_ "-c \"DELETE FROM aloro_webhook.webhooks WHERE id = $held_hook\"" >/dev/null
fi

# --- isolation: 1% to an endpoint that never answers -----------------------------------------
if phase isolation; then
iso_hook=$(psql_ "-c \"SELECT aloro_webhook.create_webhook('http://127.0.0.1:$nport/sink', 'whsec_bench', assistant_id => 'asst_iso')\"")
hang_hook=$(psql_ "-c \"SELECT aloro_webhook.create_webhook('http://127.0.0.1:$hport/hang', 'whsec_bench', assistant_id => 'asst_hang')\"")
nhang=$(( N / 100 ))
sqlf "BEGIN; $(end_calls_sql $((N - nhang)) iso asst_iso) $(end_calls_sql $nhang hang asst_hang) COMMIT;"
t0=$(now_ns); t1=$(wait_drained "$iso_hook" 600)
check_all_succeeded "$iso_hook" "$((N - nhang))"
R[isolation_rate]=$(rate $((N - nhang)) $((t1 - t0)))
R[isolation_vs_clean]=$(ratio "${R[isolation_rate]}" "${R[drain_rate]}")
echo "isolation: $nhang of $N to an endpoint that never answers; the rest ${R[isolation_rate]} deliveries/s (${R[isolation_vs_clean]} of the clean rate; target >= 0.8)"
psql_ "-c \"DELETE FROM aloro_webhook.webhooks WHERE id = $hang_hook\""
fi

# --- fan-out enqueue: 1 MB transcript, 100 webhooks -------------------------------------------
if phase fanout; then
sqlf "SELECT count(aloro_webhook.create_webhook('http://192.0.2.1/fan/' || g, assistant_id => 'asst_fan')) FROM generate_series(1, 100) g;
INSERT INTO aloro_webhook.calls (id, status, assistant_id, transcript)
SELECT 'fan_live', 'in-progress', 'asst_fan',
       jsonb_agg(jsonb_build_object('speaker', 'ai', 'text', repeat(md5(g::text), 14), 'start', g))
  FROM generate_series(1, 2100) g;" >/dev/null
R[fanout_transcript_bytes]=$(psql_ "-c \"SELECT octet_length(transcript::text) FROM aloro_webhook.calls WHERE id = 'fan_live'\"")
R[fanout_ms]=$(aw_as_postgres "psql -X -q -h '$work' -p $port -d postgres -c '\\timing on' -c \"UPDATE aloro_webhook.calls SET status = 'completed' WHERE id = 'fan_live'\"" | awk '/^Time:/ {printf "%d", $2}')
R[fanout_bodies_stored]=$(psql_ "-c \"SELECT count(*) FROM aloro_webhook.payloads WHERE call_id = 'fan_live'\"")
echo "fan-out: ending a call with a ${R[fanout_transcript_bytes]}-byte transcript and 100 webhooks took ${R[fanout_ms]} ms, ${R[fanout_bodies_stored]} bodies stored (target < 1000 ms)"
sqlf "DELETE FROM aloro_webhook.webhooks WHERE assistant_id = 'asst_fan';" >/dev/null
fi

# --- backlog ---------------------------------------------------------------------------------
if phase backlog; then
bl_hook=$(psql_ "-c \"SELECT aloro_webhook.create_webhook('http://127.0.0.1:$nport/sink', 'whsec_bench', assistant_id => 'asst_bl')\"")
chunk=100000; [ $N_BACKLOG -lt $chunk ] && chunk=$N_BACKLOG
# the worker's private memory before the backlog is queued
anon0=$(worker_anon_kb)
# queued in one transaction, so that the drain starts from the whole backlog
t_enq=$(now_ns)
sqlf "$(end_calls_sql $N_BACKLOG bl asst_bl)"
# the drain starts at the commit, and so does its clock: finding the first id below scans the
# whole delivery_log while the worker is already sending (the line below says how long it took)
t0=$(now_ns); last=$t0; next=$chunk; rates=()
R[backlog_enqueue_rate]=$(rate $N_BACKLOG $(( t0 - t_enq )))
bl_first=$(psql_ "-c \"SELECT min(id) FROM aloro_webhook.delivery_log WHERE webhook_id = $bl_hook\"")
R[backlog_first_id_ms]=$(( ($(now_ns) - t0) / 1000000 ))
prev_t=$t0; prev_n=0
while :; do
  # done: the rows before the first one the cursors have not finished, but those gone to the queue
  ta=$(now_ns)
  done_n=$(psql_ "-c \"SELECT least($N_BACKLOG, greatest(0, bench_unfinished($bl_first) - $bl_first)
                                    - (SELECT count(*) FROM aloro_webhook.queue WHERE webhook_id = $bl_hook))\"")
  t=$(( (ta + $(now_ns)) / 2 ))
  left=$(( N_BACKLOG - done_n ))
  [ "$left" = 0 ] && ! [ "$(psql_ "-c 'SELECT bench_drained($bl_hook)'")" = t ] && left=1
  # a chunk ended between the last poll and this one: when, by the count's pace between the two
  # (polls come every 0.2 s or so, 5% of a chunk; taking the poll's time would add that error)
  while [ "$done_n" -ge "$next" ]; do
    tc=$(( prev_t + (next - prev_n) * (t - prev_t) / (done_n - prev_n) ))
    rates+=("$(rate $chunk $((tc - last)))"); last=$tc; next=$((next + chunk))
  done
  prev_t=$t; prev_n=$done_n
  [ "$left" = 0 ] && break
  [ -n "${BENCH_TRACE:-}" ] && psql_ "-c \"SELECT $left, backend_type, state, wait_event_type, wait_event, left(query, 60) FROM pg_stat_activity WHERE backend_type IN ('aloro_webhook worker', 'autovacuum worker', 'checkpointer') AND (state IS DISTINCT FROM 'idle' OR backend_type = 'aloro_webhook worker')\""
  [ $(( ($(now_ns) - t0) / 1000000000 )) -gt 3600 ] && { echo "backlog: gave up"; exit 1; }
  sleep 0.2
done
t1=$(now_ns)
check_all_succeeded "$bl_hook" "$N_BACKLOG"
anon1=$(worker_anon_kb)
R[backlog_n]=$N_BACKLOG; R[backlog_rate]=$(rate $N_BACKLOG $((t1 - t0)))
R[backlog_rates_per_chunk]=$(IFS=,; echo "${rates[*]}")
R[backlog_slowest_vs_fastest]=$(printf '%s\n' "${rates[@]}" | sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.2f", (hi > 0 ? lo / hi : 0)}')
R[memory_before_kb]=$anon0; R[memory_after_kb]=$anon1; R[memory_growth_kb]=$((anon1 - anon0))
# the growth with its sign: "+N kB", or "-N kB" when the worker gave memory back
R[memory_growth_signed]=$(printf '%+d' "${R[memory_growth_kb]}")
echo "backlog: $N_BACKLOG queued in one transaction (${R[backlog_enqueue_rate]} calls/s), drained at ${R[backlog_rate]}/s overall (its first id found ${R[backlog_first_id_ms]} ms after the commit); per $chunk: ${R[backlog_rates_per_chunk]} (slowest ${R[backlog_slowest_vs_fastest]} of the fastest; target >= 0.85)"
echo "memory: worker private memory ${anon0} kB before, ${anon1} kB after $N_BACKLOG deliveries (growth $((anon1 - anon0)) kB; target <= 16384 kB over 1,000,000)"
fi

# --- two workers (aloro_webhook.workers = 2): the same drain ------------------------------------
if phase workers; then
aw_as_postgres "pg_ctl -D '$work/data' -m fast stop >/dev/null"
echo "aloro_webhook.workers = 2" >> "$work/data/postgresql.conf"
aw_as_postgres "pg_ctl -D '$work/data' -l '$work/server.log' -w start >/dev/null"
w2_hook=$(psql_ "-c \"SELECT aloro_webhook.create_webhook('http://127.0.0.1:$nport/sink', 'whsec_bench', assistant_id => 'asst_w2')\"")
until [ "$(psql_ "-c \"SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'aloro_webhook worker'\"")" = 2 ]; do sleep 0.1; done
sqlf "$(end_calls_sql $N w2 asst_w2)"
t0=$(now_ns); t1=$(wait_drained "$w2_hook" 600)
check_all_succeeded "$w2_hook" "$N"
R[drain_2_workers_rate]=$(rate $N $((t1 - t0)))
R[drain_2_workers_vs_1]=$(ratio "${R[drain_2_workers_rate]}" "${R[drain_rate]:-0}")
echo "two workers: $N queued in one transaction, ${R[drain_2_workers_rate]} deliveries/s (${R[drain_2_workers_vs_1]} of one worker's drain)"
aw_as_postgres "pg_ctl -D '$work/data' -m fast stop >/dev/null"
sed -i '/^aloro_webhook.workers = 2$/d' "$work/data/postgresql.conf"
aw_as_postgres "pg_ctl -D '$work/data' -l '$work/server.log' -w start >/dev/null"
fi

# --- pg_net, when installed -------------------------------------------------------------------
if phase pg_net; then
if [ $quick = 1 ]; then
  :
elif [ -f "$(aw_as_postgres "pg_config --sharedir")/extension/pg_net.control" ]; then
  echo "== pg_net is installed: measuring it side by side (same body, same nginx)"
  aw_as_postgres "pg_ctl -D '$work/data' -m fast stop >/dev/null"
  sed -i "s/^shared_preload_libraries = 'aloro_webhook'/shared_preload_libraries = 'aloro_webhook, pg_net'/" "$work/data/postgresql.conf"
  for b in 200 1000 3000 10000; do
    sed -i '/^pg_net.batch_size/d' "$work/data/postgresql.conf"; echo "pg_net.batch_size = $b" >> "$work/data/postgresql.conf"
    aw_as_postgres "pg_ctl -D '$work/data' -l '$work/server.log' -w start >/dev/null"
    psql_ "-c 'SET client_min_messages = warning' -c 'CREATE EXTENSION IF NOT EXISTS pg_net'" >/dev/null
    psql_ "-c 'TRUNCATE net._http_response'" >/dev/null
    printf '%s' "$(cat "$work/body.json")" > "$work/body.sql.txt"; chown postgres "$work/body.sql.txt"
    sqlf "CREATE TEMP TABLE b AS SELECT pg_read_file('$work/body.sql.txt')::jsonb AS body;
SELECT count(net.http_post('http://127.0.0.1:$nport/pgnet', (SELECT body FROM b))) FROM generate_series(1, $N);" >/dev/null
    # polled inside the server, as aloro_webhook's drain is (bench_wait)
    t0=$(now_ns)
    t1=$(psql_ "-c 'CALL bench_wait_pg_net($N, 600)'")
    good=$(psql_ "-c 'SELECT count(*) FROM net._http_response WHERE status_code = 200'")
    R[pg_net_${b}_good_rate]=$(rate "$good" $((t1 - t0)))
    echo "pg_net batch_size $b: $good of $N answered 200, ${R[pg_net_${b}_good_rate]} good/s"
    aw_as_postgres "pg_ctl -D '$work/data' -m fast stop >/dev/null"
  done
  best=0; for b in 200 1000 3000 10000; do [ "${R[pg_net_${b}_good_rate]}" -gt $best ] && best=${R[pg_net_${b}_good_rate]}; done
  R[pg_net_best_good_rate]=$best
  R[drain_vs_pg_net]=$(ratio "${R[drain_rate]}" "$best")
  echo "aloro_webhook's drain is ${R[drain_vs_pg_net]}x pg_net's best good rate (target >= 10)"
else
  echo "pg_net: not installed here, not measured"
fi
fi

# --- the summary, as doc/performance.md's table ----------------------------------------------
v() { echo "${R[$1]:-n/a}"; }
# met KEY MIN: "met" when the figure KEY is at least MIN, "not met" below, "n/a" unmeasured
met() { [ -n "${R[$1]:-}" ] || { echo "n/a"; return; }; awk -v a="${R[$1]}" -v b="$2" 'BEGIN { print (a + 0 >= b + 0 ? "met" : "not met") }'; }
# met_max KEY MAX: the same for a figure that must stay at most MAX
met_max() { [ -n "${R[$1]:-}" ] || { echo "n/a"; return; }; awk -v a="${R[$1]}" -v b="$2" 'BEGIN { print (a + 0 <= b + 0 ? "met" : "not met") }'; }
{
  echo "| figure | measured | compared with | target | |"
  echo "|---|---|---|---|---|"
  echo "| ending calls while they are delivered (pgbench, 4 clients, ${ENQ_ROUNDS}×${PGB_T} s) | $(v enqueue_calls_tps) calls/s | $(v enqueue_vs_plain) of the same inserts into a plain table ($(v enqueue_plain_tps)/s) | ≥ 0.6 | $(met enqueue_vs_plain 0.6) |"
  echo "| ending calls with the worker idle (deliveries held) | $(v enqueue_idle_tps) calls/s | $(v enqueue_idle_vs_plain) of the plain inserts | ≥ 0.75 | $(met enqueue_idle_vs_plain 0.75) |"
  echo "| WAL written per call end (all the server wrote during the runs, over the calls ended) | $(v enqueue_calls_wal_per_call) B delivered, $(v enqueue_idle_wal_per_call) B held | $(v enqueue_plain_wal_per_call) B for the plain insert | | |"
  echo "| bare client (\`curl -Z --parallel-max 64\`), same body, same nginx | $(v bare_rate) POST/s (median of $(v bare_runs)) | | | |"
  echo "| drain: $N queued in one transaction, 64 in flight (the bare client's 64) | $(v drain_rate) deliveries/s | $(v drain_vs_bare) of the bare client | ≥ 0.7 | $(met drain_vs_bare 0.7) |"
  echo "| the same at the default \`max_in_flight_per_webhook\` (32) | $(v drain_32_rate) deliveries/s | $(v drain_32_vs_bare) of the bare client | | |"
  echo "| backlog: $(v backlog_n) queued in one transaction, drained | $(v backlog_rate) deliveries/s overall; per ${chunk:-100000}: $(v backlog_rates_per_chunk) | slowest $(v backlog_slowest_vs_fastest) of the fastest | ≥ 0.85 | $(met backlog_slowest_vs_fastest 0.85) |"
  echo "| pg_net 0.20, same body, same nginx, best batch size (200 / 1,000 / 3,000 / 10,000) | $(v pg_net_best_good_rate) answered 200/s ($(v pg_net_200_good_rate) / $(v pg_net_1000_good_rate) / $(v pg_net_3000_good_rate) / $(v pg_net_10000_good_rate)) | drain is $(v drain_vs_pg_net)× pg_net's best | ≥ 10× | $(met drain_vs_pg_net 10) |"
  echo "| commit → receiver at 100 calls/s | p50 $(v latency_100_p50_ms) ms, p99 $(v latency_100_p99_ms) ms | | p99 ≤ 20 ms | $(met_max latency_100_p99_ms 20) |"
  echo "| commit → receiver at 1,000 calls/s for ${LAT_T} s | p50 $(v latency_1000_p50_ms) ms, p99 $(v latency_1000_p99_ms) ms; queue empty $(v latency_1000_backlog_ms) ms after the last commit | | p99 ≤ 100 ms | $(met_max latency_1000_p99_ms 100) |"
  echo "| drain with two workers (\`aloro_webhook.workers = 2\`) | $(v drain_2_workers_rate) deliveries/s | $(v drain_2_workers_vs_1) of one worker's drain | | |"
  echo "| drain while another session holds a snapshot open | $(v long_tx_rate) deliveries/s | $(v long_tx_vs_clean) of the clean drain | ≥ 0.7 | $(met long_tx_vs_clean 0.7) |"
  echo "| drain with 1% to an endpoint that never answers | $(v isolation_rate) deliveries/s | $(v isolation_vs_clean) of the clean drain | ≥ 0.8 | $(met isolation_vs_clean 0.8) |"
  echo "| ending one call: 1 MB transcript, 100 webhooks | $(v fanout_ms) ms, $(v fanout_bodies_stored) body stored | | < 1000 ms | $(met_max fanout_ms 999) |"
  echo "| worker private memory over $(v backlog_n) deliveries | $(v memory_before_kb) kB → $(v memory_after_kb) kB ($(v memory_growth_signed) kB) | | ≤ +16 MB | $(met_max memory_growth_kb 16384) |"
} > "${out_json%.json}.md"
echo "== summary"
cat "${out_json%.json}.md"

# --- the JSON ----------------------------------------------------------------------------------
{
  echo "{"
  echo "  \"machine\": {\"cores\": $(nproc), \"kernel\": \"$(uname -r)\", \"postgres\": \"$(aw_as_postgres "pg_config --version")\", \"quick\": $([ $quick = 1 ] && echo true || echo false)},"
  first=1
  for k in $(printf '%s\n' "${!R[@]}" | sort); do
    v=${R[$k]}
    [[ "$v" =~ ^-?[0-9]+(\.[0-9]+)?$ ]] || v="\"$v\""
    [ $first = 1 ] || echo ","
    printf '  "%s": %s' "$k" "$v"; first=0
  done
  echo; echo "}"
} > "$out_json"
echo "== results written to $out_json and ${out_json%.json}.md"
