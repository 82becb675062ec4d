/*-------------------------------------------------------------------------
 * forget.c
 *		The call-forgotten trigger: a call row that goes away takes its
 *		"ended" mark (aloro_webhook.ended_calls) with it.
 *
 * A call inserted again under that id, after DELETE or TRUNCATE, ends anew;
 * a call whose id changes keeps having ended under the new id.
 *
 * The trigger is SECURITY DEFINER (the roles that write calls have no right
 * on ended_calls), so it must not evaluate anything the owner of the
 * watched table chose: no cast, operator or function of the table's column
 * types.  The id is read as text through its type's output function, as the
 * call-ended trigger reads it (row.c), and every statement names only
 * pg_catalog and aloro_webhook objects.
 *
 * IDENTIFICATION
 *		src/forget.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/rel.h"

#include "spi_util.h"

static SPIPlanPtr aw_forget_plan = NULL;
static SPIPlanPtr aw_rename_plan = NULL;
static SPIPlanPtr aw_truncate_plan = NULL;

/* runs one of the trigger's statements */
static void
aw_forget_run(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *args)
{
	if (*plan == NULL)
		*plan = aw_prepare(sql, nargs, types);
	if (SPI_execute_plan(*plan, args, NULL, false, 0) < 0)
		elog(ERROR, "could not update aloro_webhook.ended_calls");
}

PG_FUNCTION_INFO_V1(aloro_webhook_call_forgotten);

/*
 * AFTER DELETE OR UPDATE OF id FOR EACH ROW, and AFTER TRUNCATE FOR EACH
 * STATEMENT, on a watched calls table.
 */
Datum
aloro_webhook_call_forgotten(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	AwRow		row;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("aloro_webhook._call_forgotten() must be called as an AFTER trigger")));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	row.tupdesc = RelationGetDescr(td->tg_relation);
	if (TRIGGER_FIRED_BY_TRUNCATE(td->tg_event))
	{
		/* the table itself, or (partitioned) any of its partitions */
		Oid			types[1] = {OIDOID};
		Datum		args[1] = {ObjectIdGetDatum(RelationGetRelid(td->tg_relation))};

		aw_forget_run(&aw_truncate_plan,
					  "DELETE FROM aloro_webhook.ended_calls e "
					  " WHERE e.source = $1::pg_catalog.regclass "
					  "    OR e.source IN (SELECT t.relid FROM pg_catalog.pg_partition_tree($1::pg_catalog.regclass) t)",
					  1, types, args);
	}
	else if (TRIGGER_FIRED_BY_DELETE(td->tg_event))
	{
		char	   *id;

		row.tuple = td->tg_trigtuple;
		id = aw_row_text(&row, "id");
		if (id != NULL)
		{
			Oid			types[1] = {TEXTOID};
			Datum		args[1] = {CStringGetTextDatum(id)};

			aw_forget_run(&aw_forget_plan,
						  "DELETE FROM aloro_webhook.ended_calls e "
						  " WHERE e.call_id = $1",
						  1, types, args);
		}
	}
	else if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		char	   *old_id;
		char	   *new_id;

		row.tuple = td->tg_trigtuple;
		old_id = aw_row_text(&row, "id");
		row.tuple = td->tg_newtuple;
		new_id = aw_row_text(&row, "id");
		/* compared as the text the marks hold, not with the type's operator */
		if (old_id != NULL && new_id != NULL && strcmp(old_id, new_id) != 0)
		{
			Oid			types[2] = {TEXTOID, TEXTOID};
			Datum		args[2] = {CStringGetTextDatum(old_id), CStringGetTextDatum(new_id)};

			aw_forget_run(&aw_rename_plan,
						  "WITH gone AS ("
						  "  DELETE FROM aloro_webhook.ended_calls e "
						  "   WHERE e.call_id = $1 "
						  "  RETURNING e.source, e.ended_at) "
						  "INSERT INTO aloro_webhook.ended_calls (call_id, source, ended_at) "
						  "SELECT $2, gone.source, gone.ended_at FROM gone "
						  "ON CONFLICT (call_id) DO NOTHING",
						  2, types, args);
		}
		else if (old_id != NULL && new_id == NULL)
		{
			Oid			types[1] = {TEXTOID};
			Datum		args[1] = {CStringGetTextDatum(old_id)};

			aw_forget_run(&aw_forget_plan,
						  "DELETE FROM aloro_webhook.ended_calls e "
						  " WHERE e.call_id = $1",
						  1, types, args);
		}
	}
	SPI_finish();
	return PointerGetDatum(NULL);
}
