/*-------------------------------------------------------------------------
 * enqueue_write.c
 *		The statements that write a call's end: the ended mark and the
 *		delivery rows, for each version of the extension's tables.
 *
 * 0.3.0's common case, one delivery, is one statement that writes the mark
 * and the delivery_log row with its body; several deliveries write the
 * bodies they share once in payloads.  A database whose tables are still
 * 0.2.0's (the library upgraded, ALTER EXTENSION ... UPDATE not run yet)
 * gets 0.2.0's rows, and 0.1.0's one insert per delivery.  Bodies are
 * stored compressed (aw_body_datum).  The call-ended trigger (enqueue.c)
 * decides what to write; every statement here is prepared with search_path
 * pinned (spi_util.c) and run as the extension's owner.
 *
 * IDENTIFICATION
 *		src/enqueue_write.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "access/toast_compression.h"
#include "access/toast_internals.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "enqueue.h"
#include "spi_util.h"

static SPIPlanPtr aw_end_plan = NULL;
static SPIPlanPtr aw_end_one_plan = NULL;
static SPIPlanPtr aw_end_020_plan = NULL;
static SPIPlanPtr aw_ended_plan = NULL;
static SPIPlanPtr aw_legacy_plan = NULL;

/*
 * The statement that ends a call with one delivery, the common case: the
 * ended mark (a conflict means it ended before, and then nothing else is
 * written) and the delivery's row with its body.  A delivery that is not to
 * be sent (its body could not be built, or is too large) is recorded failed
 * at once: it has an error and no due time, and stays off the stream.
 *
 *	$1 call id, $2 the watched table, $3 webhook, $4 body, $5 its bytes,
 *	$6 error, $7 the delay before the first attempt
 */
#define AW_END_ONE_SQL \
	"WITH e AS (" \
	"  INSERT INTO aloro_webhook.ended_calls (call_id, source) VALUES ($1, $2) " \
	"  ON CONFLICT (call_id) DO NOTHING RETURNING call_id) " \
	"INSERT INTO aloro_webhook.delivery_log (webhook_id, call_id, body, bytes, due_at, error) " \
	"SELECT $3, e.call_id, $4, $5, CASE WHEN $6::pg_catalog.text IS NULL THEN pg_catalog.now() + $7 END, $6 " \
	"  FROM e " \
	"ON CONFLICT (call_id, webhook_id, event) DO NOTHING"

/*
 * The same for any number of deliveries: the ended mark, each body variant
 * that several deliveries carry once in payloads, and one delivery_log row
 * per matching webhook (with its body, when it is the only one to carry
 * it).  Its parts look each other up with scalar subqueries over a row or
 * two, never with joins, whose plans (a hash table for two rows) cost more
 * than the lookups.  The two variants come as parameters of their own, not
 * in an array: an array holds its elements uncompressed, a parameter keeps
 * the body as aw_body_datum compressed it.
 *
 *	$1 call id, $2 the watched table, $3..$8 the variants without and with
 *	the recording (body, body, bytes, bytes, shared, shared), $9..$11 the
 *	deliveries (webhook, variant, error), $12 the delay before the first
 *	attempt
 */
#define AW_END_SQL \
	"WITH e AS (" \
	"  INSERT INTO aloro_webhook.ended_calls (call_id, source) VALUES ($1, $2) " \
	"  ON CONFLICT (call_id) DO NOTHING RETURNING call_id), " \
	"v AS MATERIALIZED (" \
	"  SELECT CASE WHEN x.shared THEN " \
	"           pg_catalog.nextval('aloro_webhook.payloads_id_seq'::pg_catalog.regclass) END AS id, " \
	"         x.variant, x.body, x.bytes, x.shared " \
	"    FROM e CROSS JOIN (VALUES (0, $3, $5, $7), (1, $4, $6, $8)) AS x(variant, body, bytes, shared)), " \
	"p AS (" \
	"  INSERT INTO aloro_webhook.payloads (id, call_id, body, bytes) " \
	"  SELECT v.id, $1, v.body, v.bytes FROM v WHERE v.id IS NOT NULL AND v.body IS NOT NULL) " \
	"INSERT INTO aloro_webhook.delivery_log (webhook_id, call_id, payload_id, body, bytes, due_at, error) " \
	"SELECT x.w, $1, " \
	"       (SELECT v.id FROM v WHERE v.variant = x.variant AND v.body IS NOT NULL), " \
	"       (SELECT v.body FROM v WHERE v.variant = x.variant AND NOT v.shared), " \
	"       COALESCE((SELECT v.bytes FROM v WHERE v.variant = x.variant), 0), " \
	"       CASE WHEN x.err IS NULL THEN pg_catalog.now() + $12 END, x.err " \
	"  FROM e CROSS JOIN ROWS FROM (pg_catalog.unnest($9), pg_catalog.unnest($10), " \
	"                              pg_catalog.unnest($11)) AS x(w, variant, err) " \
	"ON CONFLICT (call_id, webhook_id, event) DO NOTHING"

/*
 * The one statement that ends a call in a database whose tables are still
 * 0.2.0's (the library was upgraded, ALTER EXTENSION ... UPDATE not run
 * yet): the ended mark, each body variant once, one delivery per matching
 * webhook, and queue rows for those to be sent.  The update carries them
 * over.
 *
 *	$1 call id, $2 the watched table, $3..$5 the variants (number, body,
 *	bytes), $6..$9 the deliveries (webhook, variant, status, error), $10
 *	the delay before the first attempt
 */
#define AW_END_020_SQL \
	"WITH e AS (" \
	"  INSERT INTO aloro_webhook.ended_calls (call_id, source) VALUES ($1, $2) " \
	"  ON CONFLICT (call_id) DO NOTHING RETURNING call_id), " \
	"v AS MATERIALIZED (" \
	"  SELECT pg_catalog.nextval('aloro_webhook.payloads_id_seq'::pg_catalog.regclass) AS id, " \
	"         x.variant, x.body, x.bytes " \
	"    FROM e CROSS JOIN ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5)) " \
	"         AS x(variant, body, bytes) " \
	"   WHERE x.body IS NOT NULL), " \
	"p AS (" \
	"  INSERT INTO aloro_webhook.payloads (id, call_id, body, bytes) " \
	"  SELECT v.id, $1, v.body, v.bytes FROM v), " \
	"d AS (" \
	"  INSERT INTO aloro_webhook.delivery_log " \
	"         (webhook_id, call_id, event, payload_id, status, next_attempt_at, last_error, finished_at) " \
	"  SELECT x.w, $1, 'call.ended', (SELECT v.id FROM v WHERE v.variant = x.variant), x.s, " \
	"         CASE WHEN x.s = 'pending' THEN pg_catalog.now() + $10 END, " \
	"         x.err, CASE WHEN x.s <> 'pending' THEN pg_catalog.now() END " \
	"    FROM e CROSS JOIN ROWS FROM (pg_catalog.unnest($6), pg_catalog.unnest($7), " \
	"                                 pg_catalog.unnest($8), pg_catalog.unnest($9)) AS x(w, variant, s, err) " \
	"  ON CONFLICT (call_id, webhook_id, event) WHERE NOT test DO NOTHING " \
	"  RETURNING id, webhook_id, status, next_attempt_at, payload_id) " \
	"INSERT INTO aloro_webhook.queue (delivery_id, webhook_id, due_at, bytes) " \
	"SELECT d.id, d.webhook_id, d.next_attempt_at, (SELECT v.bytes FROM v WHERE v.id = d.payload_id) " \
	"  FROM d WHERE d.status = 'pending'"

/*
 * The trigger's statements, prepared once per session and always run as
 * their generic plans: they insert, never search by their parameters, so a
 * custom plan only costs planning in each session's first calls -- and
 * flattens the compressed body (a parameter made a constant is detoasted).
 */
static SPIPlanPtr
aw_trigger_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types)
{
	if (*plan == NULL)
		*plan = aw_prepare_with(sql, nargs, types, CURSOR_OPT_GENERIC_PLAN);
	return *plan;
}

/* 0.1.0: one insert per delivery into the deliveries table, body included */
void
aw_queue_legacy(int64 webhook_id, const char *call_id, const char *body, Interval *first_delay)
{
	Datum		args[4];

	aw_trigger_plan(&aw_legacy_plan, "INSERT INTO aloro_webhook.deliveries "
					"       (webhook_id, call_id, event, body, next_attempt_at) "
					"VALUES ($1, $2, 'call.ended', $3, pg_catalog.now() + $4) "
					"ON CONFLICT (webhook_id, call_id, event) WHERE NOT test DO NOTHING",
					4, (Oid[]) {INT8OID, TEXTOID, TEXTOID, INTERVALOID});
	args[0] = Int64GetDatum(webhook_id);
	args[1] = CStringGetTextDatum(call_id);
	args[2] = CStringGetTextDatum(body);
	args[3] = IntervalPGetDatum(first_delay);
	if (SPI_execute_plan(aw_legacy_plan, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not queue a delivery");
}

/* a text[] datum of values[0..n), NULL where values[i] is */
static Datum
aw_text_array(char **values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		nulls[i] = values[i] == NULL;
		d[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(values[i]);
	}
	return PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
}

/* an int[] datum */
static Datum
aw_int4_array(const int32 *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int32GetDatum(values[i]);
	return PointerGetDatum(construct_array(d, n, INT4OID, 4, true, TYPALIGN_INT));
}

/*
 * A body as the text datum delivery_log stores, compressed (lz4) when that
 * makes it smaller: rows of a couple of kB are under the size at which
 * PostgreSQL compresses a row itself, and the body is most of what a call
 * end writes to the WAL.  Reading it back decompresses it, as for any
 * compressed value.
 */
static Datum
aw_body_datum(const char *body)
{
	Datum		plain = CStringGetTextDatum(body);
	Datum		packed = toast_compress_datum(plain, TOAST_LZ4_COMPRESSION);

	return packed != (Datum) 0 ? packed : plain;
}

/* 0.3.0: the ended mark and one delivery_log row, the common case */
void
aw_end_call_one(const char *call_id, Oid source, const AwMatch *match, const AwVariant *v,
				Interval *first_delay)
{
	Datum		args[7];
	char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};

	aw_trigger_plan(&aw_end_one_plan, AW_END_ONE_SQL, 7,
					(Oid[]) {TEXTOID, OIDOID, INT8OID, TEXTOID, INT4OID, TEXTOID, INTERVALOID});
	args[0] = CStringGetTextDatum(call_id);
	args[1] = ObjectIdGetDatum(source);
	args[2] = Int64GetDatum(match->id);
	args[3] = v->body ? aw_body_datum(v->body) : (Datum) 0;
	nulls[3] = v->body ? ' ' : 'n';
	args[4] = Int32GetDatum(v->body ? (int32) strlen(v->body) : 0);
	args[5] = v->error ? CStringGetTextDatum(v->error) : (Datum) 0;
	nulls[5] = v->error ? ' ' : 'n';
	args[6] = IntervalPGetDatum(first_delay);
	if (SPI_execute_plan(aw_end_one_plan, args, nulls, false, 0) < 0)
		elog(ERROR, "could not queue the delivery of call \"%s\"", call_id);
}

/*
 * A call's deliveries as the arrays the statements take; for 0.2.0's
 * statement (for_020) also its body variants and each delivery's status.
 */
typedef struct AwCallArrays
{
	Datum		numbers;		/* per variant: 0 without the recording, 1 with */
	Datum		bodies;
	Datum		bytes;
	Datum		hooks;			/* per delivery: its webhook, */
	Datum		which;			/* its variant, */
	Datum		statuses;		/* pending, or failed when its body is not sent, */
	Datum		errors;			/* and why not */
} AwCallArrays;

static void
aw_call_arrays(AwMatch *matches, int nmatch, AwVariant *variants, bool for_020, AwCallArrays *a)
{
	char	   *bodies[2];
	int32		bytes[2];
	int32		numbers[2] = {0, 1};
	int64	   *hooks = palloc(sizeof(int64) * Max(nmatch, 1));
	int32	   *which = palloc(sizeof(int32) * Max(nmatch, 1));
	char	  **statuses = palloc(sizeof(char *) * Max(nmatch, 1));
	char	  **errors = palloc(sizeof(char *) * Max(nmatch, 1));

	for (int v = 0; v < 2; v++)
	{
		bodies[v] = variants[v].body;
		bytes[v] = variants[v].body ? (int32) strlen(variants[v].body) : 0;
	}
	for (int i = 0; i < nmatch; i++)
	{
		hooks[i] = matches[i].id;
		which[i] = matches[i].include_recording ? 1 : 0;
		errors[i] = variants[which[i]].error;
		statuses[i] = errors[i] == NULL ? "pending" : "failed";
	}
	if (for_020)
	{
		a->numbers = aw_int4_array(numbers, 2);
		a->bodies = aw_text_array(bodies, 2);
		a->bytes = aw_int4_array(bytes, 2);
		a->statuses = aw_text_array(statuses, nmatch);
	}
	a->hooks = aw_int8_array(hooks, nmatch);
	a->which = aw_int4_array(which, nmatch);
	a->errors = aw_text_array(errors, nmatch);
}

/*
 * The ended mark and every delivery of the call in one statement: 0.3.0's
 * (shared bodies in payloads, compressed as in a delivery's own row, one
 * delivery_log row per match), or 0.2.0's (every body in payloads, a queue
 * row per pending delivery).
 */
void
aw_end_call_many(int schema, const char *call_id, Oid source, AwMatch *matches, int nmatch,
				 AwVariant *variants, Interval *first_delay)
{
	Datum		args[12];
	char		nulls[12];
	AwCallArrays a;
	SPIPlanPtr	plan;

	aw_call_arrays(matches, nmatch, variants, schema == 2, &a);
	memset(nulls, ' ', sizeof(nulls));
	args[0] = CStringGetTextDatum(call_id);
	args[1] = ObjectIdGetDatum(source);
	if (schema == 2)
	{
		/* the variants as arrays, and each delivery's status */
		plan = aw_trigger_plan(&aw_end_020_plan, AW_END_020_SQL, 10,
							   (Oid[]) {TEXTOID, OIDOID, INT4ARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
							   INT8ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INTERVALOID});
		args[2] = a.numbers;
		args[3] = a.bodies;
		args[4] = a.bytes;
		args[5] = a.hooks;
		args[6] = a.which;
		args[7] = a.statuses;
		args[8] = a.errors;
		args[9] = IntervalPGetDatum(first_delay);
	}
	else
	{
		/* each variant's body compressed, its size, and whether several carry it */
		plan = aw_trigger_plan(&aw_end_plan, AW_END_SQL, 12,
							   (Oid[]) {TEXTOID, OIDOID, TEXTOID, TEXTOID, INT4OID, INT4OID, BOOLOID, BOOLOID,
							   INT8ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, INTERVALOID});
		for (int v = 0; v < 2; v++)
		{
			args[2 + v] = variants[v].body ? aw_body_datum(variants[v].body) : (Datum) 0;
			nulls[2 + v] = variants[v].body ? ' ' : 'n';
			args[4 + v] = Int32GetDatum(variants[v].body ? (int32) strlen(variants[v].body) : 0);
			args[6 + v] = BoolGetDatum(variants[v].wanted > 1);
		}
		args[8] = a.hooks;
		args[9] = a.which;
		args[10] = a.errors;
		args[11] = IntervalPGetDatum(first_delay);
	}
	if (SPI_execute_plan(plan, args, nulls, false, 0) < 0)
		elog(ERROR, "could not queue the deliveries of call \"%s\"", call_id);
}

/*
 * Marks the call ended, alone: for 0.1.0's schema, and for a call no
 * webhook wants, which needs none of the one statement's other parts.
 * Returns false when it had ended before.
 */
bool
aw_mark_ended(const char *call_id, Oid source)
{
	Datum		args[2];

	aw_trigger_plan(&aw_ended_plan, "INSERT INTO aloro_webhook.ended_calls (call_id, source) "
					"VALUES ($1, $2) ON CONFLICT (call_id) DO NOTHING",
					2, (Oid[]) {TEXTOID, OIDOID});
	args[0] = CStringGetTextDatum(call_id);
	args[1] = ObjectIdGetDatum(source);
	if (SPI_execute_plan(aw_ended_plan, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not record that call \"%s\" ended", call_id);
	return SPI_processed > 0;
}
