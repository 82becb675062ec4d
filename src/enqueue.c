/*-------------------------------------------------------------------------
 * enqueue.c
 *		The call-ended trigger: queues the deliveries of a call that ends.
 *
 * A call ends when a row arrives with a terminal status, or moves from a
 * live (or NULL) status to a terminal one.  In that same transaction the
 * trigger queues one delivery per enabled webhook whose filters match.  The
 * unique index deliveries_once makes a second call.ended for the same
 * webhook and call impossible, whatever the row does later.
 *
 * The trigger function is SECURITY DEFINER with a pinned search_path, so a
 * role that may only write calls can end them without any right on the
 * extension's tables.
 *
 * IDENTIFICATION
 *		src/enqueue.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/relation.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "spi_util.h"


static SPIPlanPtr aw_ended_plan = NULL;
static SPIPlanPtr aw_match_plan = NULL;
static SPIPlanPtr aw_insert_plan = NULL;

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
	if (aw_insert_plan == NULL)
	{
		Oid			types[4] = {INT8OID, TEXTOID, TEXTOID, INTERVALOID};

		aw_insert_plan = aw_prepare("INSERT INTO aloro_webhook.deliveries "
									"       (webhook_id, call_id, event, body, next_attempt_at) "
									"VALUES ($1, $2, 'call.ended', $3, pg_catalog.now() + $4) "
									"ON CONFLICT (webhook_id, call_id, event) WHERE NOT test DO NOTHING",
									4, types);
	}
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
	char	   *bodies[2] = {NULL, NULL};	/* without, with recording */
	Datum		match_args[3];
	char		match_nulls[3] = {' ', ' ', ' '};
	Interval	first_delay;
	const AwSchedule *sched = aw_current_schedule();
	uint64		nmatch;
	SPITupleTable *matches;
	MemoryContext caller_cxt = CurrentMemoryContext;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("aloro_webhook._call_ended() must be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!(TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) || TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event)))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("aloro_webhook._call_ended() must fire AFTER INSERT OR UPDATE FOR EACH ROW")));

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

	/* a call ends once: if it ended before, there is nothing to do */
	{
		Datum		args[2];

		args[0] = CStringGetTextDatum(call_id);
		args[1] = ObjectIdGetDatum(RelationGetRelid(trigdata->tg_relation));
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

	for (uint64 i = 0; i < nmatch; i++)
	{
		bool		isnull;
		int64		webhook_id = DatumGetInt64(SPI_getbinval(matches->vals[i], matches->tupdesc, 1, &isnull));
		bool		with_recording = DatumGetBool(SPI_getbinval(matches->vals[i], matches->tupdesc, 2, &isnull));
		Datum		args[4];

		/* at most two bodies per call: with and without the recording */
		if (bodies[with_recording] == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(caller_cxt);

			bodies[with_recording] = aw_build_payload(&row, with_recording,
													  GetCurrentTransactionStartTimestamp());
			MemoryContextSwitchTo(old);
		}
		args[0] = Int64GetDatum(webhook_id);
		args[1] = CStringGetTextDatum(call_id);
		args[2] = CStringGetTextDatum(bodies[with_recording]);
		args[3] = IntervalPGetDatum(&first_delay);
		if (SPI_execute_plan(aw_insert_plan, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not queue a delivery");
	}
	SPI_finish();

	for (int i = 0; i < 2; i++)
		if (bodies[i])
			pfree(bodies[i]);
	return PointerGetDatum(NULL);
}
