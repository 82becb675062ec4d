/*-------------------------------------------------------------------------
 * watch.c
 *		watch(calls regclass): attaches the call-ended and call-forgotten
 *		triggers to a calls table of the platform's own.
 *
 * Columns are read by name when a call ends (row.c), so the table needs
 * only id and status; the others count as NULL when missing.  watch() runs
 * with the rights of its caller, who must be allowed to create triggers on
 * the table.
 *
 * IDENTIFICATION
 *		src/watch.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "access/relation.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

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

PG_FUNCTION_INFO_V1(aloro_webhook_watch);

/* watch(calls regclass): attach the call-ended trigger to a table */
Datum
aloro_webhook_watch(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char		relkind = get_rel_relkind(relid);
	Relation	rel;
	TupleDesc	tupdesc;
	const char *name;
	StringInfoData sql;
	bool		exists;

	if (relkind != RELKIND_RELATION && relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", get_rel_name(relid) ? get_rel_name(relid) : "?"),
				 errhint("watch() attaches a trigger, so it needs a table.")));

	rel = relation_open(relid, AccessShareLock);
	tupdesc = RelationGetDescr(rel);
	name = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
									  RelationGetRelationName(rel));
	for (int i = 0; i < 2; i++)
	{
		const char *col = i == 0 ? "id" : "status";

		if (!aw_row_has_column(tupdesc, col))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("table %s has no column \"%s\"", name, col),
					 errdetail("A calls table needs at least the columns id and status."),
					 errhint("The other columns of aloro_webhook.calls are read by name when present and count as NULL when missing.")));
	}
	/* every column the payload reads must have a type a rule converts */
	aw_row_check_types(tupdesc, name);
	relation_close(rel, AccessShareLock);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	{
		Oid			argtypes[1] = {OIDOID};
		Datum		args[1] = {ObjectIdGetDatum(relid)};

		if (SPI_execute_with_args("SELECT 1 FROM pg_catalog.pg_trigger "
								  "WHERE tgrelid = $1 AND tgname = 'aloro_webhook_call_ended'",
								  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not look up triggers");
		exists = SPI_processed > 0;
	}
	if (exists)
		ereport(NOTICE,
				(errmsg("table %s is already watched", name)));
	else
	{
		/*
		 * One statement each: Citus sends a trigger on a distributed table
		 * to every shard as the statement it was given, and a string of
		 * several is refused there.
		 */
		static const char *const triggers[3] = {
			"CREATE TRIGGER aloro_webhook_call_ended "
			"AFTER INSERT OR UPDATE ON %s FOR EACH ROW "
			"EXECUTE FUNCTION aloro_webhook._call_ended()",
			"CREATE TRIGGER aloro_webhook_call_forgotten "
			"AFTER DELETE OR UPDATE OF id ON %s FOR EACH ROW "
			"EXECUTE FUNCTION aloro_webhook._call_forgotten()",
			"CREATE TRIGGER aloro_webhook_calls_truncated "
			"AFTER TRUNCATE ON %s FOR EACH STATEMENT "
			"EXECUTE FUNCTION aloro_webhook._call_forgotten()",
		};

		const char *unsafe = GetConfigOption("citus.enable_unsafe_triggers", true, false);

		/* Citus creates row triggers on a distributed table only when told to */
		if (unsafe != NULL)
			SetConfigOption("citus.enable_unsafe_triggers", "on", PGC_USERSET, PGC_S_SESSION);
		for (int i = 0; i < 3; i++)
		{
			initStringInfo(&sql);
			appendStringInfo(&sql, triggers[i], name);
			if (SPI_execute(sql.data, false, 0) != SPI_OK_UTILITY)
				elog(ERROR, "could not create the triggers on %s", name);
		}
		if (unsafe != NULL)
			SetConfigOption("citus.enable_unsafe_triggers", unsafe, PGC_USERSET, PGC_S_SESSION);
	}

	/* on a Citus coordinator, the configuration goes to every node (not in a 0.1.0 schema) */
	{
		Oid			argtypes[1] = {REGCLASSOID};
		Datum		args[1] = {ObjectIdGetDatum(relid)};

		if (OidIsValid(LookupFuncName(list_make2(makeString("aloro_webhook"),
												 makeString("_citus_setup")),
									  1, argtypes, true)) &&
			SPI_execute_with_args("SELECT aloro_webhook._citus_setup($1)", 1, argtypes, args,
								  NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not set up the Citus cluster");
	}
	SPI_finish();
	PG_RETURN_VOID();
}
