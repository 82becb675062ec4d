/*-------------------------------------------------------------------------
 * forget.c
 *		The call-forgotten trigger: a call row that goes away takes its
 *		"ended" mark (aloro_webhook.ended_calls) with it.
 *
 * A call inserted again under that id, after DELETE or TRUNCATE, ends anew;
 * a call whose id changes keeps having ended under the new id; a row that
 * moves to another partition of the table (DELETE plus INSERT, as far as
 * triggers see) is the same call and stays ended.
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

#include "access/htup_details.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/typcache.h"
#include "utils/rel.h"

#include "spi_util.h"

static SPIPlanPtr aw_forget_plan = NULL;
static SPIPlanPtr aw_rename_plan = NULL;
static SPIPlanPtr aw_truncate_plan = NULL;

/* the statement that asks a watched table whether a call id is still in it */
typedef struct AwStillThere
{
	Oid			relid;			/* hash key: the watched table */
	Oid			idtype;			/* the type of its id column the plan was made for */
	bool		by_text;		/* compares the id as text (no equality operator) */
	SPIPlanPtr	plan;
} AwStillThere;

static HTAB *aw_still_there_plans = NULL;

/* runs one of the trigger's statements */
static void
aw_forget_run(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *args)
{
	if (*plan == NULL)
		*plan = aw_prepare(sql, nargs, types);
	if (SPI_execute_plan(*plan, args, NULL, false, 0) < 0)
		elog(ERROR, "could not update aloro_webhook.ended_calls");
}

/*
 * The plan that finds a row with a given id in a watched table.  The id is
 * compared with the equality operator of its type's default operator class
 * (which only a superuser can create), named with its schema; a type
 * without one is compared as text, read through its output function.
 */
static AwStillThere *
aw_still_there_plan(Oid relid, Oid idtype)
{
	AwStillThere *e;
	bool		found;
	TypeCacheEntry *tc;
	StringInfoData sql;
	Oid			argtype;

	if (aw_still_there_plans == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(AwStillThere);
		ctl.hcxt = TopMemoryContext;
		aw_still_there_plans = hash_create("aloro_webhook call lookups", 16, &ctl,
										   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	e = hash_search(aw_still_there_plans, &relid, HASH_ENTER, &found);
	if (found && e->idtype == idtype && e->plan != NULL)
		return e;
	if (found && e->plan != NULL)
		SPI_freeplan(e->plan);
	e->plan = NULL;
	e->idtype = idtype;

	tc = lookup_type_cache(idtype, TYPECACHE_EQ_OPR);
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT 1 FROM %s c WHERE ",
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												get_rel_name(relid)));
	if (OidIsValid(tc->eq_opr))
	{
		HeapTuple	opr = SearchSysCache1(OPEROID, ObjectIdGetDatum(tc->eq_opr));
		Form_pg_operator form;

		if (!HeapTupleIsValid(opr))
			elog(ERROR, "cache lookup failed for operator %u", tc->eq_opr);
		form = (Form_pg_operator) GETSTRUCT(opr);
		appendStringInfo(&sql, "c.id OPERATOR(%s.%s) $1 LIMIT 1",
						 quote_identifier(get_namespace_name(form->oprnamespace)),
						 NameStr(form->oprname));
		ReleaseSysCache(opr);
		e->by_text = false;
		argtype = idtype;
	}
	else
	{
		appendStringInfoString(&sql, "aloro_webhook._text_of(c.id) = $1 LIMIT 1");
		e->by_text = true;
		argtype = TEXTOID;
	}
	e->plan = aw_prepare(sql.data, 1, &argtype);
	return e;
}

/*
 * Is a call with this row's id still in the watched table?  A row that
 * moved to another partition (an UPDATE of the partition key runs as a
 * DELETE and an INSERT) is, and the call stays ended.  AFTER triggers fire
 * at the end of the statement, so the row's new home is visible.
 */
static bool
aw_call_still_there(Relation rel, HeapTuple old, const char *id)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			attnum = SPI_fnumber(desc, "id");
	AwStillThere *e;
	Datum		arg;
	bool		isnull;

	if (attnum <= 0)
		return false;
	e = aw_still_there_plan(aw_watched_table(rel), TupleDescAttr(desc, attnum - 1)->atttypid);
	arg = e->by_text ? CStringGetTextDatum(id) : heap_getattr(old, attnum, desc, &isnull);
	/* read-write: a fresh snapshot that sees what the statement did */
	if (SPI_execute_plan(e->plan, &arg, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look for call \"%s\"", id);
	return SPI_processed > 0;
}

/* the call with this id is forgotten: it may end anew */
static void
aw_forget_mark(const char *id)
{
	Oid			types[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(id)};

	aw_forget_run(&aw_forget_plan,
				  "DELETE FROM aloro_webhook.ended_calls e WHERE e.call_id = $1",
				  1, types, args);
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
		/* recorded under the table (or, before 0.2.0, under a partition of it) */
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
		if (id != NULL && !aw_call_still_there(td->tg_relation, td->tg_trigtuple, id))
			aw_forget_mark(id);
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
			aw_forget_mark(old_id);
	}
	SPI_finish();
	return PointerGetDatum(NULL);
}
