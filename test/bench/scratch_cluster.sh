# Sourced by the small benchmarks (trigger_cost.sh, enqueue_shapes.sh):
# builds and installs the extension, starts a throwaway cluster in $work as
# the postgres user with the settings the benchmarks share plus $1, stops it
# on exit, and defines psql_ (psql on it, arguments as given), sqlf (runs
# the SQL text it is given as a file) and enqueue_setup (the enqueue
# benchmarks' common start).  Needs $work set; run as root.
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/common.sh"
rm -rf "$work"
aw_build_install "$work/src" >/dev/null
chown -R postgres:postgres "$work"
port=$(aw_free_port)
aw_cluster "$work" "$port" "aloro_webhook.database_name = 'postgres'
shared_buffers = 256MB
max_wal_size = 4GB
log_min_messages = warning
${1:-}"
trap 'aw_as_postgres "pg_ctl -D '"'$work/data'"' -m immediate stop" >/dev/null 2>&1 || true' EXIT
psql_() { aw_as_postgres "psql -X -q -At -v ON_ERROR_STOP=1 -h '$work' -p $port -d postgres $*"; }
sqlf() { printf '%s\n' "$1" > "$work/q.sql"; chown postgres "$work/q.sql"; psql_ "-f '$work/q.sql'"; }
# The enqueue benchmarks' common start: the extension, run.sh's call data
# (template.sql), bench_plain (the calls table's columns, key and checks, no
# trigger), the sequence bench_ids, and a webhook for assistant asst_held that
# the extension disabled, so that the deliveries of its calls are held.
enqueue_setup() {
  sqlf "CREATE EXTENSION aloro_webhook;
$(cat "$aw_root/test/bench/template.sql")
CREATE TABLE bench_plain (LIKE aloro_webhook.calls INCLUDING ALL);
CREATE SEQUENCE bench_ids;
SELECT aloro_webhook.create_webhook('http://127.0.0.1:9/sink', 'whsec_bench', assistant_id => 'asst_held');
UPDATE aloro_webhook.webhooks SET enabled = false, disabled_reason = 'bench: held', disabled_at = now();" >/dev/null
}
