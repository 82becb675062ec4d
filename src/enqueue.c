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
 * The statements that write the rows are in enqueue_write.c.
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

#include "enqueue.h"
#include "spi_util.h"
#include "webhook_cache.h"

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

PG_FUNCTION_INFO_V1(aloro_webhook_call_ended);

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
