/*-------------------------------------------------------------------------
 * enqueue.c
 *		The call-ended trigger: queues the deliveries of a call that ends.
 *
 * A call ends when a row arrives with a terminal status, or moves from a
 * live (or NULL) status to a terminal one.  In that same transaction the
 * trigger marks the call ended (ended_calls: a call ends once), and queues
 * one delivery per enabled webhook whose filters match: a delivery_log row
 * each, which the worker reads from the stream (stream.c).  Each distinct
 * body is built once -- with the recording, without it, or both -- and
 * stored in the delivery's own row, or once in payloads when several
 * deliveries carry it.  The common call end, one webhook, writes the ended
 * mark and one row.
 *
 * The extension is never the reason a call cannot end.  A body that cannot
 * be built (a value no rule can read) or is larger than
 * aloro_webhook.max_payload_size still ends the call: its deliveries are
 * recorded failed with an error that says why, are never sent, and can be
 * redelivered once the data or the setting is fixed.
 *
 * A COPY into a watched table loads calls as they are -- a restore, a
 * backfill of historic calls -- and ends none of them (utility.c tells),
 * unless the session sets aloro_webhook.copy_ends_calls.
 *
 * The trigger function is SECURITY DEFINER with a pinned search_path, so a
 * role that may only write calls can end them without any right on the
 * extension's tables; it reads the row only through its types' output
 * functions (row.c).
 *
 * IDENTIFICATION
 *		src/enqueue.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "access/htup_details.h"
#include "access/toast_compression.h"
#include "access/toast_internals.h"
#include "catalog/pg_proc.h"
#include "miscadmin.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "spi_util.h"
#include "webhook_cache.h"

static SPIPlanPtr aw_end_plan = NULL;
static SPIPlanPtr aw_end_one_plan = NULL;
static SPIPlanPtr aw_end_020_plan = NULL;
static SPIPlanPtr aw_ended_plan = NULL;
static SPIPlanPtr aw_legacy_plan = NULL;

static bool aw_mark_ended(const char *call_id, Oid source);

/* one body variant of a call: built once, stored once */
typedef struct AwVariant
{
	int			wanted;			/* by how many deliveries */
	char	   *body;			/* NULL when it could not be built */
	char	   *error;			/* why not, or why it is not sent */
} AwVariant;

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

/* errors that must not be turned into a failed delivery: the statement stops */
static bool
aw_error_stops_statement(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_QUERY_CANCELED || sqlerrcode == ERRCODE_ADMIN_SHUTDOWN;
}

/* what aw_build_guarded hands to its subtransaction */
typedef struct AwBuildArgs
{
	AwRow	   *row;
	bool		include_recording;
	char	   *body;
} AwBuildArgs;

static void
aw_build_arg(void *arg)
{
	AwBuildArgs *a = (AwBuildArgs *) arg;

	a->body = aw_build_payload(a->row, a->include_recording, GetCurrentTransactionStartTimestamp());
}

/*
 * Builds one body in a subtransaction, so that a value that cannot be read
 * fails this delivery, not the platform's statement.  Returns the body, or
 * NULL with *error set.
 */
static char *
aw_build_guarded(AwRow *row, bool include_recording, char **error)
{
	AwBuildArgs a = {row, include_recording, NULL};
	ErrorData  *edata;

	aw_row_reset_reading();
	edata = aw_try_in_subtransaction(aw_build_arg, &a, aw_error_stops_statement);
	if (edata == NULL)
		return a.body;
	*error = aw_payload_error_message(aw_row_column_being_read(),
									  edata->detail ? psprintf("%s (%s)", edata->message, edata->detail) :
									  edata->message);
	FreeErrorData(edata);
	return NULL;
}

/* what aw_filter_guarded hands to its subtransaction */
typedef struct AwFilterArgs
{
	const char *body;			/* the body as sent */
	Datum	   *parsed;			/* it as jsonb, once parsed (0 before) */
	Datum		filter;			/* jsonpath */
	bool		result;
} AwFilterArgs;

static void
aw_filter_arg(void *arg)
{
	AwFilterArgs *a = (AwFilterArgs *) arg;
	LOCAL_FCINFO(fcinfo, 4);
	FmgrInfo	flinfo;
	Datum		r;

	/* a body jsonb cannot hold (an escaped NUL in a string) matches no filter */
	if (*a->parsed == (Datum) 0)
		*a->parsed = DirectFunctionCall1(jsonb_in, CStringGetDatum(a->body));
	fmgr_info(F_JSONB_PATH_MATCH, &flinfo);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 4, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = *a->parsed;
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = a->filter;
	fcinfo->args[1].isnull = false;
	fcinfo->args[2].value = DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"));
	fcinfo->args[2].isnull = false;
	fcinfo->args[3].value = BoolGetDatum(true);	/* silent */
	fcinfo->args[3].isnull = false;
	r = FunctionCallInvoke(fcinfo);
	a->result = !fcinfo->isnull && DatumGetBool(r);
}

/*
 * Does the body match the webhook's filter?  jsonb_path_match in silent
 * mode; whatever error it still raises counts as no match, so that a filter
 * never fails the platform's statement.
 */
static bool
aw_filter_guarded(const char *body, Datum *parsed, Datum filter)
{
	AwFilterArgs a = {body, parsed, filter, false};
	ErrorData  *edata = aw_try_in_subtransaction(aw_filter_arg, &a, aw_error_stops_statement);

	if (edata == NULL)
		return a.result;
	FreeErrorData(edata);
	return false;
}

/* drops the matches whose filter the body they would carry does not match */
static int
aw_apply_filters(AwMatch *matches, int nmatch, AwVariant *variants)
{
	Datum		parsed[2] = {0, 0};
	int			kept = 0;

	for (int i = 0; i < nmatch; i++)
	{
		int			v = matches[i].include_recording ? 1 : 0;

		/* no filter, or no body to match (its delivery fails and says why) */
		if (matches[i].filter != (Datum) 0 && variants[v].body != NULL &&
			!aw_filter_guarded(variants[v].body, &parsed[v], matches[i].filter))
			continue;
		matches[kept++] = matches[i];
	}
	return kept;
}

/* 0.1.0: one insert per delivery into the deliveries table, body included */
static void
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

PG_FUNCTION_INFO_V1(aloro_webhook_call_ended);

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
static void
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
static void
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
 * The call's rows (schema 0.2.0 or 0.3.0), then the wake-up at commit: only
 * for what the worker may send -- deliveries of a webhook the extension
 * disabled are held, and enabling it wakes the worker, or this commit does,
 * when the webhooks changed since they were read.
 */
static void
aw_end_call(int schema, const char *call_id, Oid source, AwMatch *matches, int nmatch,
			AwVariant *variants, Interval *first_delay, uint64 webhooks_seen)
{
	bool		held = false;

	/* the stream's readers count on the transaction's id coming before the rows' ids (stream.c) */
	(void) GetCurrentTransactionId();
	if (schema >= 3 && nmatch == 1)
		aw_end_call_one(call_id, source, &matches[0], &variants[matches[0].include_recording ? 1 : 0],
						first_delay);
	else
		aw_end_call_many(schema, call_id, source, matches, nmatch, variants, first_delay);

	for (int i = 0; i < nmatch; i++)
		if (variants[matches[i].include_recording].error == NULL)
		{
			if (matches[i].enabled)
			{
				/* the stream's rows need no hint: the worker reads on from its cursor */
				if (schema >= 3)
					aw_wake_worker_at_commit();
				else
					aw_wake_worker_for(GetCurrentTransactionStartTimestamp() + first_delay->time);
				return;
			}
			held = true;
		}
	if (held)
		aw_wake_if_webhooks_change(webhooks_seen);
}

/*
 * Marks the call ended, alone: for 0.1.0's schema, and for a call no
 * webhook wants, which needs none of the one statement's other parts.
 * Returns false when it had ended before.
 */
static bool
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

/* 0.1.0's schema: the mark, then one insert per delivery, body included */
static void
aw_end_call_legacy(AwRow *row, const char *call_id, Oid source, AwMatch *matches, int nmatch,
				   Interval *first_delay)
{
	char	   *bodies[2] = {NULL, NULL};

	if (!aw_mark_ended(call_id, source))
		return;					/* it ended before */
	for (int i = 0; i < nmatch; i++)
	{
		int			v = matches[i].include_recording ? 1 : 0;

		if (bodies[v] == NULL)
			bodies[v] = aw_build_payload(row, v == 1, GetCurrentTransactionStartTimestamp());
		aw_queue_legacy(matches[i].id, call_id, bodies[v], first_delay);
	}
}

/* the owner of the trigger function: the extension's owner */
static Oid
aw_function_owner(Oid fn)
{
	static Oid	cached_fn = InvalidOid;
	static Oid	cached_owner = InvalidOid;
	HeapTuple	tup;

	if (fn == cached_fn)
		return cached_owner;
	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(fn));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", fn);
	cached_owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
	cached_fn = fn;
	ReleaseSysCache(tup);
	return cached_owner;
}

/*
 * AFTER INSERT OR UPDATE FOR EACH ROW trigger on a calls table.
 *
 * It switches to the extension's owner once it knows the call ended (as a
 * SECURITY DEFINER function would, without one's cost on every row): the
 * row's columns are read through their types' output functions only
 * (row.c), and every statement it runs was prepared with search_path
 * pinned to pg_catalog (spi_util.c).
 */
Datum
aloro_webhook_call_ended(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	AwRow		row;
	char	   *status;
	char	   *call_id;
	char	   *assistant_id;
	char	   *campaign_id;
	AwVariant	variants[2];	/* without, with the recording */
	Interval	first_delay;
	const AwSchedule *sched = aw_current_schedule();
	Oid			source;
	Oid			save_user;
	int			save_sec;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("aloro_webhook._call_ended() must be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) || TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("aloro_webhook._call_ended() must fire AFTER INSERT OR UPDATE FOR EACH ROW")));

	/* a COPY loads calls as they are: it ends none (a restore, a backfill) */
	if (aw_copy_loading(trigdata->tg_relation) && !aw_copy_ends_calls)
		return PointerGetDatum(NULL);

	row.tupdesc = RelationGetDescr(trigdata->tg_relation);

	/* did the call end just now? */
	row.tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_trigtuple : NULL;
	if (row.tuple != NULL && aw_status_is_terminal(aw_row_text(&row, "status")))
		return PointerGetDatum(NULL);	/* it had ended already */
	row.tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple : trigdata->tg_trigtuple;
	status = aw_row_text(&row, "status");
	if (!aw_status_is_terminal(status))
		return PointerGetDatum(NULL);

	call_id = aw_row_text(&row, "id");
	if (call_id == NULL)
	{
		ereport(WARNING,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("call with a NULL id ended in table \"%s\"; no webhook was queued",
						RelationGetRelationName(trigdata->tg_relation))));
		return PointerGetDatum(NULL);
	}
	assistant_id = aw_row_text(&row, "assistant_id");
	campaign_id = aw_row_text(&row, "campaign_id");
	source = aw_watched_table(trigdata->tg_relation);

	memset(&first_delay, 0, sizeof(first_delay));
	if (sched != NULL && sched->nentries > 0)
		first_delay.time = sched->delay_ms[0] * 1000;

	/* from here on, as the extension's owner */
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(aw_function_owner(fcinfo->flinfo->fn_oid),
						   save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		AwMatch    *matches;
		int			nmatch;
		int			schema;
		uint64		webhooks_seen;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		/* read before the webhooks are: a change after it wakes the worker (wakeup.c) */
		webhooks_seen = aw_shmem_attached() ? aw_webhooks_version() : 0;
		nmatch = aw_matching_webhooks(assistant_id, campaign_id, strcmp(status, "completed") == 0,
									  &matches);
		schema = aw_schema_version();
		if (schema == 1)
			aw_end_call_legacy(&row, call_id, source, matches, nmatch, &first_delay);
		else
		{
			/* which bodies are needed: at most two per call, each built once */
			memset(variants, 0, sizeof(variants));
			for (int i = 0; i < nmatch; i++)
				variants[matches[i].include_recording ? 1 : 0].wanted = 1;
			for (int v = 0; v < 2; v++)
			{
				if (!variants[v].wanted)
					continue;
				variants[v].body = aw_build_guarded(&row, v == 1, &variants[v].error);
				/* too large: stored, so that a redelivery can send it once the cap is raised */
				if (variants[v].body != NULL)
					variants[v].error = aw_payload_too_large(strlen(variants[v].body));
			}
			nmatch = aw_apply_filters(matches, nmatch, variants);
			/* how many deliveries carry each body: one carried by several is stored once */
			variants[0].wanted = variants[1].wanted = 0;
			for (int i = 0; i < nmatch; i++)
				variants[matches[i].include_recording ? 1 : 0].wanted++;
			if (nmatch == 0)
				(void) aw_mark_ended(call_id, source);
			else
				aw_end_call(schema, call_id, source, matches, nmatch, variants, &first_delay,
							webhooks_seen);
		}
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_user, save_sec);
	}
	PG_END_TRY();
	return PointerGetDatum(NULL);
}
