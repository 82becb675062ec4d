/*-------------------------------------------------------------------------
 * spi_util.c
 *		Small SPI helpers shared by the triggers and the worker, and the
 *		hash tables keyed by webhook id.
 *
 * Every statement the extension prepares names its functions and operators
 * in pg_catalog (or aloro_webhook) and is prepared with search_path pinned
 * to pg_catalog, pg_temp (aw_prepare), whoever runs it; the worker also
 * pins it at start-up.
 *
 * IDENTIFICATION
 *		src/spi_util.c
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "access/xact.h"
#include "pgstat.h"
#include "utils/snapmgr.h"

#include "spi_util.h"

/*
 * Prepares a statement, with search_path pinned to pg_catalog whoever calls,
 * and keeps the plan for the life of the process.  (A cached plan that is
 * planned again later is planned with the search_path it was made with.)
 */
SPIPlanPtr
aw_prepare(const char *sql, int nargs, Oid *types)
{
	return aw_prepare_with(sql, nargs, types, 0);
}

/* aw_prepare, with SPI_prepare_cursor's options (CURSOR_OPT_GENERIC_PLAN) */
SPIPlanPtr
aw_prepare_with(const char *sql, int nargs, Oid *types, int options)
{
	int			nest = NewGUCNestLevel();
	SPIPlanPtr	plan;

	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	plan = SPI_prepare_cursor(sql, nargs, types, options);
	AtEOXact_GUC(true, nest);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/* *plan, prepared from sql (aw_prepare) on first use and kept after */
SPIPlanPtr
aw_prepare_once(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types)
{
	if (*plan == NULL)
		*plan = aw_prepare(sql, nargs, types);
	return *plan;
}

/* copies an SPI text column into cxt, or NULL */
char *
aw_spi_text(HeapTuple tuple, TupleDesc desc, int col, MemoryContext cxt)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tuple, desc, col, &isnull);
	MemoryContext old;
	char	   *result;

	if (isnull)
		return NULL;
	old = MemoryContextSwitchTo(cxt);
	result = TextDatumGetCString(d);
	MemoryContextSwitchTo(old);
	return result;
}

/* column col (from 1) of row row of the last SPI result; *isnull as SPI_getbinval */
Datum
aw_spi_datum(uint64 row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

/* a bigint[] datum of values[0..n) */
Datum
aw_int8_array(const int64 *values, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = Int64GetDatum(values[i]);
	return PointerGetDatum(construct_array(d, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * aw_try_in_subtransaction
 *		Runs fn(arg) in an internal subtransaction.  Returns NULL when it
 *		succeeded; when it raised an error, the subtransaction is rolled back
 *		and the error is returned (copied into the caller's memory context) --
 *		unless rethrow(its SQLSTATE) says it must stop the caller too, and
 *		then it is thrown on.
 */
ErrorData *
aw_try_in_subtransaction(void (*fn) (void *arg), void *arg, bool (*rethrow) (int sqlerrcode))
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile failed = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (rethrow(edata->sqlerrcode))
		{
			FreeErrorData(edata);
			PG_RE_THROW();
		}
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		failed = edata;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return failed;
}

/* opens a transaction of the worker's, with SPI and a snapshot */
void
aw_xact_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* commits what aw_xact_begin opened */
void
aw_xact_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * A hash table keyed by webhook id (an int64, the entry's first member),
 * of entries of entrysize bytes, in cxt.
 */
HTAB *
aw_webhook_hash(const char *name, Size entrysize, MemoryContext cxt)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(int64);
	ctl.entrysize = entrysize;
	ctl.hcxt = cxt;
	return hash_create(name, 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}
