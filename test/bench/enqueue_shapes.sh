#!/usr/bin/env bash
# How much of the enqueue's cost is the shape of what it writes: pgbench (4
# clients, one call ended per transaction, the 1.8 kB body of run.sh) in four
# cases, alternating ROUNDS times, each against the same plain insert:
#   plain   the call's row into a plain table with the calls table's columns
#   held    the call into aloro_webhook.calls, its delivery held (the real
#           trigger: the ended mark, the body, the delivery and its queue row)
#   four    the plain row, and the same four rows written by SQL into copies of
#           the extension's tables (with their indexes), in one statement
#   one     the plain row, and one row holding the ended mark, the body and the
#           webhooks it is for (keyed by call id, numbered for a cursor)
# "four" against "held" says how much of the trigger is its rows rather than
# its code; "one" is what a call end would cost if the trigger wrote one row
# and the worker fanned the deliveries out (issue 17's first idea).  Not a
# target of its own: a measurement of the room a redesign has.
#
#   bash test/bench/enqueue_shapes.sh     (T=5 ROUNDS=4 by default, as run.sh's
#                                         enqueue phase; CHECKPOINTS=1 starts
#                                         each run after a CHECKPOINT)
#
# Run as root; it builds and installs the extension and starts a throwaway
# cluster as the postgres user, as run.sh does.
set -euo pipefail
T=${T:-5}; ROUNDS=${ROUNDS:-4}
work=/tmp/aloro_webhook_enqueue_shapes
source "$(dirname "$0")/scratch_cluster.sh"
sqlf "CREATE EXTENSION aloro_webhook;
$(cat "$aw_root/test/bench/template.sql")
CREATE TABLE bench_plain (LIKE aloro_webhook.calls INCLUDING ALL);
CREATE SEQUENCE bench_ids;
SELECT aloro_webhook.create_webhook('http://127.0.0.1:9/sink', 'whsec_bench', assistant_id => 'asst_held');
UPDATE aloro_webhook.webhooks SET enabled = false, disabled_reason = 'bench: held', disabled_at = now();
-- a body of the size the trigger builds from the template
CREATE TABLE bench_body (body text);
INSERT INTO aloro_webhook.calls (id, status, started_at, ended_at, assistant_id, variables, transcript)
SELECT 'shape_probe', 'completed', now() - interval '3 minutes', now(), 'asst_held', t.variables, t.transcript
  FROM bench_template t;
INSERT INTO bench_body SELECT aloro_webhook.call_payload('shape_probe');
CREATE SCHEMA sim;
CREATE TABLE sim.ended_calls (LIKE aloro_webhook.ended_calls INCLUDING ALL);
CREATE TABLE sim.payloads (LIKE aloro_webhook.payloads INCLUDING ALL);
CREATE TABLE sim.delivery_log (LIKE aloro_webhook.delivery_log INCLUDING ALL) WITH (fillfactor = 80);
CREATE TABLE sim.queue (LIKE aloro_webhook.queue INCLUDING ALL) WITH (fillfactor = 70);
CREATE SEQUENCE sim.delivery_ids;
CREATE TABLE sim.call_ends (
	seq			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	call_id		text NOT NULL UNIQUE,
	source		regclass NOT NULL,
	ended_at	timestamptz NOT NULL DEFAULT now(),
	webhook_ids	bigint[],
	body		text COMPRESSION lz4,
	bytes		integer
);" >/dev/null
[ "$(psql_ "-c 'SELECT octet_length(body) > 1500 FROM bench_body'")" = t ] || { echo "the probe body was not built"; exit 1; }

cols="id, status, started_at, ended_at, assistant_id, variables, transcript"
vals="nextval('bench_ids')::text, 'completed', now() - interval '3 minutes', now(), 'asst_held', t.variables, t.transcript FROM bench_template t"
cat > "$work/plain.pgb" <<EOF
INSERT INTO bench_plain ($cols) SELECT $vals;
EOF
cat > "$work/held.pgb" <<EOF
INSERT INTO aloro_webhook.calls ($cols) SELECT $vals;
EOF
cat > "$work/four.pgb" <<EOF
WITH c AS (INSERT INTO bench_plain ($cols) SELECT $vals RETURNING id),
e AS (INSERT INTO sim.ended_calls (call_id, source) SELECT c.id, 'bench_plain'::regclass FROM c),
p AS (INSERT INTO sim.payloads (call_id, body, bytes) SELECT c.id, b.body, octet_length(b.body) FROM c, bench_body b RETURNING id, call_id, bytes),
d AS (INSERT INTO sim.delivery_log (id, webhook_id, call_id, payload_id, next_attempt_at)
      SELECT nextval('sim.delivery_ids'), 1, p.call_id, p.id, now() FROM p RETURNING id)
INSERT INTO sim.queue (delivery_id, webhook_id, due_at, bytes) SELECT d.id, 1, now(), 1800 FROM d;
EOF
cat > "$work/one.pgb" <<EOF
WITH c AS (INSERT INTO bench_plain ($cols) SELECT $vals RETURNING id)
INSERT INTO sim.call_ends (call_id, source, webhook_ids, body, bytes)
SELECT c.id, 'bench_plain'::regclass, ARRAY[1::bigint], b.body, octet_length(b.body) FROM c, bench_body b;
EOF
chown postgres "$work"/*.pgb
declare -A xacts
for r in $(seq "$ROUNDS"); do
  for t in plain held four one; do
    [ "${CHECKPOINTS:-0}" = 1 ] && psql_ "-c CHECKPOINT" >/dev/null
    aw_as_postgres "pgbench -n -h '$work' -p $port -c 4 -j 2 -T $T -f '$work/$t.pgb' postgres" > "$work/pgb_$t.out" 2>&1 ||
      { cat "$work/pgb_$t.out"; exit 1; }
    n=$(awk '/^number of transactions actually processed/ {print $NF}' "$work/pgb_$t.out")
    xacts[$t]=$(( ${xacts[$t]:-0} + n ))
  done
done
held=$(psql_ "-c \"SELECT count(*) FROM aloro_webhook.queue WHERE claimed_by IS NULL\"")
[ "$held" = $(( ${xacts[held]} + 1 )) ] || { echo "LOST: $held of $(( ${xacts[held]} + 1 )) held deliveries are queued"; exit 1; }
rate() { echo $(( ${xacts[$1]} / (T * ROUNDS) )); }
ratio() { awk -v a="${xacts[$1]}" -v b="${xacts[plain]}" 'BEGIN {printf "%.2f", a / b}'; }
echo "enqueue shapes, pgbench 4 clients, $ROUNDS rounds of $T s, $(nproc) cores (calls/s, and the ratio to plain inserts):"
echo "  plain inserts                                 $(rate plain)/s"
echo "  calls, one held delivery (the real trigger)   $(rate held)/s  $(ratio held)"
echo "  the plain row + today's four rows, in SQL     $(rate four)/s  $(ratio four)"
echo "  the plain row + one call-end row, in SQL      $(rate one)/s  $(ratio one)"
