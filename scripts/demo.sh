#!/usr/bin/env bash
# The demo: a throwaway PostgreSQL cluster with aloro_webhook preloaded, a
# local receiver that verifies signatures, a call that ends, the POSTs that
# arrive (one endpoint fails twice first, to show retries), and the delivery
# history queried in SQL.  Run as root on Debian bookworm; installs what is
# missing first.  Leaves nothing running.
set -euo pipefail
source "$(dirname "$0")/common.sh"
work=/tmp/aloro_webhook_demo
rm -rf "$work"
aw_build_install "$work/src"
chown postgres:postgres "$work"

data=$work/data
port=$(aw_free_port)
echo "== a throwaway cluster on port $port"
aw_cluster "$work" "$port" "aloro_webhook.database_name = 'calls_db'
aloro_webhook.retry_schedule = '0, 1s, 2s, 5s'
timezone = 'UTC'"

secret=whsec_demo_$(date +%s)
node "$aw_root/scripts/demo-receiver.js" "$secret" > "$work/receiver.out" 2>&1 &
receiver=$!
cleanup() {
  kill $receiver 2>/dev/null || true
  aw_as_postgres "pg_ctl -D '$data' -m fast stop >/dev/null 2>&1" || true
}
trap cleanup EXIT
rport=$(aw_wait_listening "$work/receiver.out")
echo "== a receiver on 127.0.0.1:$rport that verifies signatures"

psql_() { aw_as_postgres "psql -X -h '$work' -p $port -d calls_db $*"; }
aw_as_postgres "createdb -h '$work' -p $port calls_db"

sql() { echo; echo "calls_db=# $1"; psql_ -c "\"$1\""; }
sql "CREATE EXTENSION aloro_webhook"
sql "SELECT aloro_webhook.create_webhook('http://127.0.0.1:$rport/crm', secret => '$secret', name => 'CRM sync')"
sql "SELECT aloro_webhook.create_webhook('http://127.0.0.1:$rport/flaky', secret => '$secret', name => 'flaky endpoint', completed_only => true)"

# the contract's example call, still in progress: no status, duration or end yet
sed -e "s/'completed', 180,/'in-progress', NULL,/" \
    -e "s/'2024-03-15 14:30:00+00',/NULL,/" \
    -e 's/"status": true, //' \
    "$aw_root/test/fixtures/example_call.sql" > "$work/call.sql"
grep -q "'in-progress', NULL," "$work/call.sql" || { echo "demo: could not make the example call live" >&2; exit 1; }
chown postgres "$work/call.sql"
echo; echo "== a call is in progress (nothing is sent yet)"
psql_ -q -f "'$work/call.sql'"
sql "SELECT count(*) AS deliveries_queued FROM aloro_webhook.deliveries"

echo; echo "== the call ends"
sql "UPDATE aloro_webhook.calls SET status = 'completed', duration = 180, ended_at = '2024-03-15 14:30:00+00' WHERE id = 'call_abc123'"

for _ in $(seq 200); do
  left=$(psql_ -Atc "\"SELECT count(*) FROM aloro_webhook.deliveries WHERE status = 'pending'\"")
  [ "$left" = 0 ] && break
  sleep 0.1
done

echo; echo "== what the receiver saw"
grep -v listening "$work/receiver.out"

echo; echo "== the history, in SQL"
sql "SELECT d.id, w.name AS webhook, d.call_id, d.status, d.attempts, d.last_http_status, d.finished_at - d.created_at AS took FROM aloro_webhook.deliveries d JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id ORDER BY d.id"
sql "SELECT delivery_id, attempt, http_status, error, duration_ms, response_body FROM aloro_webhook.delivery_attempts ORDER BY delivery_id, attempt"
sql "SELECT body FROM aloro_webhook.deliveries WHERE id = 1"
echo; echo "== done: the cluster and the receiver are stopped"
