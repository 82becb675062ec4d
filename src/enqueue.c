/*-------------------------------------------------------------------------
 * enqueue.c
 *		The call-ended trigger: queues the deliveries of a call that ends.
 *
 * A call ends when a row arrives with a terminal status, or moves from a
 * live (or NULL) status to a terminal one.  In that same transaction the
 * trigger marks the call ended (ended_calls: a call ends once), and queues
 * one delivery per enabled webhook whose filters match.  Each distinct body
 * is built and stored once (payloads): with the recording, without it, or
 * both.
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
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "spi_util.h"

static SPIPlanPtr aw_ended_plan = NULL;
static SPIPlanPtr aw_match_plan = NULL;
static SPIPlanPtr aw_payload_plan = NULL;
static SPIPlanPtr aw_queue_plan = NULL;
static SPIPlanPtr aw_legacy_plan = NULL;

/* one body variant of a call: built once, stored once */
typedef struct AwVariant
{
	bool		wanted;
	char	   *body;			/* NULL when it could not be built */
	char	   *error;			/* why not, or why it is not sent */
	int64		payload_id;		/* 0 when not stored */
} AwVariant;

/* prepares and keeps the statements the trigger runs */
static void
aw_prepare_plans(void)
{
	if (aw_ended_plan == NULL)
	{
		Oid			types[2] = {TEXTOID, OIDOID};

		aw_ended_plan = aw_prepare("INSERT INTO aloro_webhook.ended_calls (call_id, source) "
								   "VALUES ($1, $2) ON CONFLICT (call_id) DO NOTHING",
								   2, types);
	}
	if (aw_match_plan == NULL)
	{
		Oid			types[3] = {TEXTOID, TEXTOID, BOOLOID};

		aw_match_plan = aw_prepare("SELECT w.id, w.include_recording "
								   "  FROM aloro_webhook.webhooks w "
								   " WHERE w.enabled "
								   "   AND (w.assistant_id IS NULL OR w.assistant_id = $1) "
								   "   AND (w.campaign_id IS NULL OR w.campaign_id = $2) "
								   "   AND (NOT w.completed_only OR $3) "
								   " ORDER BY w.id",
								   3, types);
	}
}

/* the statements that store bodies and queue deliveries (0.2.0 schema) */
static void
aw_prepare_queue_plans(void)
{
	if (aw_payload_plan == NULL)
	{
		Oid			types[3] = {TEXTOID, TEXTOID, INT4OID};

		aw_payload_plan = aw_prepare("INSERT INTO aloro_webhook.payloads (call_id, body, bytes) "
									 "VALUES ($1, $2, $3) RETURNING id",
									 3, types);
	}
	if (aw_queue_plan == NULL)
	{
		Oid			types[6] = {INT8ARRAYOID, TEXTOID, INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		INTERVALOID};

		/*
		 * One statement for every webhook of the call: the delivery rows,
		 * and queue rows for those that are to be sent.  A delivery that is
		 * not (its body could not be built, or is too large) is recorded
		 * failed at once.
		 */
		aw_queue_plan = aw_prepare(
								   "WITH d AS ("
								   "  INSERT INTO aloro_webhook.delivery_log "
								   "         (webhook_id, call_id, event, payload_id, status, "
								   "          next_attempt_at, last_error, finished_at) "
								   "  SELECT x.w, $2, 'call.ended', x.p, x.s, "
								   "         CASE WHEN x.s = 'pending' THEN pg_catalog.now() + $6 END, "
								   "         x.e, CASE WHEN x.s <> 'pending' THEN pg_catalog.now() END "
								   "    FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($3), "
								   "                    pg_catalog.unnest($4), pg_catalog.unnest($5)) AS x(w, p, s, e) "
								   "  ON CONFLICT (call_id, webhook_id, event) WHERE NOT test DO NOTHING "
								   "  RETURNING id, webhook_id, status, next_attempt_at, payload_id) "
								   "INSERT INTO aloro_webhook.queue (delivery_id, webhook_id, due_at, bytes) "
								   "SELECT d.id, d.webhook_id, d.next_attempt_at, "
								   "       (SELECT p.bytes FROM aloro_webhook.payloads p WHERE p.id = d.payload_id) "
								   "  FROM d WHERE d.status = 'pending'",
								   6, types);
	}
}

/*
 * Is the extension in this database still at 0.1.0 (the library was
 * upgraded, ALTER EXTENSION ... UPDATE not run yet)?  Its one deliveries
 * table is a table then, not a view.
 */
static bool
aw_schema_is_legacy(void)
{
	Oid			nsp = get_namespace_oid("aloro_webhook", true);

	return OidIsValid(nsp) && !OidIsValid(get_relname_relid("queue", nsp));
}

/* The table a call is recorded under: the watched table, not its partition. */
Oid
aw_watched_table(Relation rel)
{
	if (rel->rd_rel->relispartition)
	{
		List	   *ancestors = get_partition_ancestors(RelationGetRelid(rel));

		if (ancestors != NIL)
			return llast_oid(ancestors);
	}
	return RelationGetRelid(rel);
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

/* builds and stores one variant of the call's body */
static void
aw_store_variant(AwVariant *v, AwRow *row, bool include_recording, const char *call_id)
{
	Datum		args[3];
	int			bytes;
	bool		isnull;

	v->body = aw_build_guarded(row, include_recording, &v->error);
	if (v->body == NULL)
		return;
	bytes = strlen(v->body);
	/* too large: stored, so that a redelivery can send it once the cap is raised */
	v->error = aw_payload_too_large(bytes);
	args[0] = CStringGetTextDatum(call_id);
	args[1] = CStringGetTextDatum(v->body);
	args[2] = Int32GetDatum(bytes);
	if (SPI_execute_plan(aw_payload_plan, args, NULL, false, 0) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "could not store the body of call \"%s\"", call_id);
	v->payload_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* 0.1.0: one insert per delivery into the deliveries table, body included */
static void
aw_queue_legacy(int64 webhook_id, const char *call_id, const char *body, Interval *first_delay)
{
	Datum		args[4];

	if (aw_legacy_plan == NULL)
	{
		Oid			types[4] = {INT8OID, TEXTOID, TEXTOID, INTERVALOID};

		aw_legacy_plan = aw_prepare("INSERT INTO aloro_webhook.deliveries "
									"       (webhook_id, call_id, event, body, next_attempt_at) "
									"VALUES ($1, $2, 'call.ended', $3, pg_catalog.now() + $4) "
									"ON CONFLICT (webhook_id, call_id, event) WHERE NOT test DO NOTHING",
									4, types);
	}
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

/* a bigint[] datum of values[0..n), NULL where values[i] is 0 */
static Datum
aw_id_array(const int64 *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(n, 1));
	int			dims[1] = {n};
	int			lbs[1] = {1};

	for (int i = 0; i < n; i++)
	{
		nulls[i] = values[i] == 0;
		d[i] = Int64GetDatum(values[i]);
	}
	return PointerGetDatum(construct_md_array(d, nulls, 1, dims, lbs, INT8OID, 8, FLOAT8PASSBYVAL,
											  TYPALIGN_DOUBLE));
}

PG_FUNCTION_INFO_V1(aloro_webhook_call_ended);

/* AFTER INSERT OR UPDATE FOR EACH ROW trigger on a calls table */
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
	Datum		match_args[3];
	char		match_nulls[3] = {' ', ' ', ' '};
	Interval	first_delay;
	const AwSchedule *sched = aw_current_schedule();
	uint64		nmatch;
	SPITupleTable *matches;
	bool		legacy;
	int64	   *hooks;
	int64	   *payloads;
	char	  **statuses;
	char	  **errors;

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

	memset(&first_delay, 0, sizeof(first_delay));
	if (sched != NULL && sched->nentries > 0)
		first_delay.time = sched->delay_ms[0] * 1000;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	aw_prepare_plans();
	legacy = aw_schema_is_legacy();
	if (!legacy)
		aw_prepare_queue_plans();

	/* a call ends once: if it ended before, there is nothing to do */
	{
		Datum		args[2];

		args[0] = CStringGetTextDatum(call_id);
		args[1] = ObjectIdGetDatum(aw_watched_table(trigdata->tg_relation));
		if (SPI_execute_plan(aw_ended_plan, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not record that call \"%s\" ended", call_id);
		if (SPI_processed == 0)
		{
			SPI_finish();
			return PointerGetDatum(NULL);
		}
	}

	match_args[0] = assistant_id ? CStringGetTextDatum(assistant_id) : (Datum) 0;
	match_nulls[0] = assistant_id ? ' ' : 'n';
	match_args[1] = campaign_id ? CStringGetTextDatum(campaign_id) : (Datum) 0;
	match_nulls[1] = campaign_id ? ' ' : 'n';
	match_args[2] = BoolGetDatum(strcmp(status, "completed") == 0);
	if (SPI_execute_plan(aw_match_plan, match_args, match_nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not look up matching webhooks");
	nmatch = SPI_processed;
	matches = SPI_tuptable;
	if (nmatch == 0)
	{
		SPI_finish();
		return PointerGetDatum(NULL);
	}

	/* which bodies are needed: at most two per call, each built once */
	memset(variants, 0, sizeof(variants));
	hooks = palloc(sizeof(int64) * nmatch);
	payloads = palloc(sizeof(int64) * nmatch);
	statuses = palloc(sizeof(char *) * nmatch);
	errors = palloc(sizeof(char *) * nmatch);
	for (uint64 i = 0; i < nmatch; i++)
	{
		bool		isnull;

		hooks[i] = DatumGetInt64(SPI_getbinval(matches->vals[i], matches->tupdesc, 1, &isnull));
		variants[DatumGetBool(SPI_getbinval(matches->vals[i], matches->tupdesc, 2, &isnull))].wanted = true;
	}
	for (int v = 0; v < 2; v++)
	{
		if (!variants[v].wanted)
			continue;
		if (legacy)
			variants[v].body = aw_build_payload(&row, v == 1, GetCurrentTransactionStartTimestamp());
		else
			aw_store_variant(&variants[v], &row, v == 1, call_id);
	}
	for (uint64 i = 0; i < nmatch; i++)
	{
		bool		isnull;
		AwVariant  *v = &variants[DatumGetBool(SPI_getbinval(matches->vals[i], matches->tupdesc, 2, &isnull))];

		if (legacy)
		{
			aw_queue_legacy(hooks[i], call_id, v->body, &first_delay);
			continue;
		}
		payloads[i] = v->payload_id;
		statuses[i] = v->error == NULL ? "pending" : "failed";
		errors[i] = v->error;
	}

	if (!legacy)
	{
		Datum		args[6];

		args[0] = aw_int8_array(hooks, (int) nmatch);
		args[1] = CStringGetTextDatum(call_id);
		args[2] = aw_id_array(payloads, (int) nmatch);
		args[3] = aw_text_array(statuses, (int) nmatch);
		args[4] = aw_text_array(errors, (int) nmatch);
		args[5] = IntervalPGetDatum(&first_delay);
		if (SPI_execute_plan(aw_queue_plan, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not queue the deliveries of call \"%s\"", call_id);
	}
	SPI_finish();
	return PointerGetDatum(NULL);
}
