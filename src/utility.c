/*-------------------------------------------------------------------------
 * utility.c
 *		The extension's ProcessUtility hook: what a backend needs to know
 *		about the utility statement it runs.
 *
 *	- COPY ... FROM into a table: while it runs, the call-ended trigger on
 *	  that table loads calls as they are, ending none.  pg_restore loads
 *	  data with COPY (and the extension's own tables, ended_calls among
 *	  them, come back as they were), so a restore restores state instead of
 *	  ending every call again; so does a backfill of historic calls.  Not on
 *	  a Citus node carrying out the coordinator's INSERT ... SELECT.
 *	- DROP EXTENSION aloro_webhook CASCADE also drops the triggers that
 *	  watch() attached to the platform's tables: say which, in a NOTICE.
 *	  On a Citus coordinator, webhook_config leaves Citus first.
 *	- on Citus, a COPY that places the webhooks on a node that joined
 *	  applies them to that node's own webhooks at once.
 *	- COMMIT PREPARED runs none of the commit callbacks of the transaction
 *	  it commits: tell the workers (and the copies of the webhooks) here.
 *
 * IDENTIFICATION
 *		src/utility.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "parser/parse_func.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"

static ProcessUtility_hook_type prev_process_utility = NULL;

/* the table a COPY ... FROM of this backend is loading, or InvalidOid */
static Oid	aw_copy_target = InvalidOid;

/* Is a COPY ... FROM loading rel (or the partitioned table rel belongs to)? */
bool
aw_copy_loading(Relation rel)
{
	if (!OidIsValid(aw_copy_target))
		return false;
	return RelationGetRelid(rel) == aw_copy_target || aw_watched_table(rel) == aw_copy_target;
}

/* the tables watch() attached the call-ended trigger to, as a list for a message */
static char *
aw_watched_tables_text(void)
{
	StringInfoData out;

	initStringInfo(&out);
	if (SPI_connect() != SPI_OK_CONNECT)
		return out.data;
	if (SPI_execute("SELECT pg_catalog.string_agg(pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.' "
					"                             OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname), ', ' "
					"                             ORDER BY n.nspname, c.relname) "
					"  FROM pg_catalog.pg_trigger t "
					"  JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid "
					"  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
					" WHERE t.tgname = 'aloro_webhook_call_ended' AND t.tgparentid = 0 "
					"   AND c.relnamespace <> 'aloro_webhook'::pg_catalog.regnamespace",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		char	   *list = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (list != NULL)
			appendStringInfoString(&out, list);
	}
	SPI_finish();
	return out.data;
}

/* DROP EXTENSION aloro_webhook CASCADE: name the watched tables that lose their triggers */
static void
aw_notice_drop(DropStmt *stmt)
{
	ListCell   *lc;

	if (stmt->removeType != OBJECT_EXTENSION || stmt->behavior != DROP_CASCADE)
		return;
	foreach(lc, stmt->objects)
	{
		Node	   *obj = lfirst(lc);

		if (IsA(obj, String) && strcmp(strVal(obj), "aloro_webhook") == 0 &&
			OidIsValid(get_extension_oid("aloro_webhook", true)))
		{
			char	   *tables = aw_watched_tables_text();

			if (tables[0] != '\0')
				ereport(NOTICE,
						(errmsg("dropping aloro_webhook also drops the triggers that watch() attached to %s",
								tables),
						 errdetail("Calls that end in those tables queue nothing from now on."),
						 errhint("After CREATE EXTENSION aloro_webhook, call aloro_webhook.watch() again for each of them.")));
		}
	}
}

/*
 * Is this backend a Citus node carrying out a statement of the coordinator
 * (in a transaction that Citus commits in two phases)?  Citus runs INSERT
 * ... SELECT (and COPY) into a distributed table as COPY into its shards,
 * so a COPY there is an INSERT of the platform's: it ends calls.  (Citus
 * moves shards without firing triggers at all.)
 */
bool
aw_citus_carries_dml(void)
{
	return application_name != NULL &&
		strncmp(application_name, "citus_internal gpid=", strlen("citus_internal gpid=")) == 0;
}

/*
 * After a COPY into a shard of webhook_config (Citus placing the reference
 * table on a node that joined, before any call can end there): apply it to
 * this node's webhooks now, not at the worker's next look, and take this
 * node's range of delivery ids.
 */
static void
aw_copied_webhook_config(CopyStmt *stmt)
{
	const char *rel = stmt->relation->relname;
	const char *nsp = stmt->relation->schemaname;
	size_t		plen = strlen("webhook_config_");
	StringInfoData sql;

	if (nsp == NULL || strcmp(nsp, "aloro_webhook") != 0 ||
		strncmp(rel, "webhook_config_", plen) != 0 || rel[plen] == '\0' ||
		strspn(rel + plen, "0123456789") != strlen(rel + plen))
		return;
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT aloro_webhook._webhook_apply(c.config) FROM aloro_webhook.%s c",
					 quote_identifier(rel));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(sql.data, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not apply the webhooks copied to this node");
	/* and its range of delivery ids, before a shard (and a call) can arrive */
	if (SPI_execute("SELECT aloro_webhook._citus_node_ids()", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not set up this node's delivery ids");
	SPI_finish();
	pfree(sql.data);
}

/*
 * DROP EXTENSION aloro_webhook on a Citus coordinator: first take
 * webhook_config out of Citus, shards and all, as DROP TABLE of a
 * distributed table does (Citus leaves the shards of an extension's table
 * behind, in the extension's schema on every node, and CREATE EXTENSION
 * refuses a schema that holds tables).
 */
static void
aw_citus_before_drop(DropStmt *stmt)
{
	ListCell   *lc;
	bool		ours = false;
	bool		isnull;

	if (stmt->removeType != OBJECT_EXTENSION)
		return;
	foreach(lc, stmt->objects)
		if (IsA(lfirst(lc), String) && strcmp(strVal(lfirst(lc)), "aloro_webhook") == 0)
			ours = true;
	if (!ours || !OidIsValid(get_extension_oid("aloro_webhook", true)) ||
		!OidIsValid(LookupFuncName(list_make2(makeString("aloro_webhook"),
											  makeString("_citus_coordinator")),
								   0, NULL, true)))
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT aloro_webhook._citus_coordinator()", true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not tell whether this is a Citus coordinator");
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)) &&
		SPI_execute("SELECT pg_catalog.master_remove_distributed_table_metadata_from_workers("
					"  'aloro_webhook.webhook_config'::pg_catalog.regclass, 'aloro_webhook', 'webhook_config'), "
					"  pg_catalog.citus_drop_all_shards("
					"  'aloro_webhook.webhook_config'::pg_catalog.regclass, 'aloro_webhook', 'webhook_config'), "
					"  pg_catalog.master_remove_partition_metadata("
					"  'aloro_webhook.webhook_config'::pg_catalog.regclass, 'aloro_webhook', 'webhook_config')",
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not take webhook_config out of Citus");
	SPI_finish();
}

static void
aw_process_utility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
				   ProcessUtilityContext context, ParamListInfo params,
				   QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	Oid			saved = aw_copy_target;

	if (IsA(parsetree, CopyStmt) && ((CopyStmt *) parsetree)->is_from &&
		((CopyStmt *) parsetree)->relation != NULL && !aw_citus_carries_dml())
		aw_copy_target = RangeVarGetRelid(((CopyStmt *) parsetree)->relation, NoLock, true);
	else if (IsA(parsetree, DropStmt))
	{
		aw_notice_drop((DropStmt *) parsetree);
		aw_citus_before_drop((DropStmt *) parsetree);
	}

	PG_TRY();
	{
		if (prev_process_utility)
			prev_process_utility(pstmt, queryString, readOnlyTree, context, params,
								 queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
									queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		aw_copy_target = saved;
	}
	PG_END_TRY();
	if (IsA(parsetree, CopyStmt) && ((CopyStmt *) parsetree)->is_from &&
		((CopyStmt *) parsetree)->relation != NULL)
		aw_copied_webhook_config((CopyStmt *) parsetree);

	if (IsA(parsetree, TransactionStmt) &&
		((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED)
		aw_after_commit_prepared();
}

/* Installs the hook (from _PG_init). */
void
aw_install_utility_hook(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = aw_process_utility;
}
