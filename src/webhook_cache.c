/*-------------------------------------------------------------------------
 * webhook_cache.c
 *		Which webhooks a call that ends matches, from a copy of the webhooks
 *		table that each backend keeps.
 *
 * Ending a call used to ask the webhooks table every time.  Webhooks change
 * rarely and calls end often, so each backend keeps a copy, and a statement
 * trigger on webhooks makes every copy stale when a transaction that
 * changed them commits (a counter in shared memory, shmem.c, bumped at
 * commit: wakeup.c).  The copy is made with a fresh snapshot, after reading
 * the counter, so it is never newer than the counter says; and it is used
 * only where a fresh snapshot is what the query would have seen anyway:
 * not in a transaction that changed webhooks itself (it sees its own
 * changes), and not under REPEATABLE READ or SERIALIZABLE (which see the
 * webhooks as of their first statement).  There the table is asked.
 *
 * IDENTIFICATION
 *		src/webhook_cache.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "spi_util.h"
#include "webhook_cache.h"

/* one webhook as matching needs it */
typedef struct AwCachedHook
{
	int64		id;
	char	   *assistant_id;	/* NULL: every assistant */
	char	   *campaign_id;	/* NULL: every campaign */
	bool		completed_only;
	bool		include_recording;
	Datum		filter;			/* jsonpath, or 0 */
	bool		enabled;		/* false: disabled by the extension, deliveries held */
} AwCachedHook;

static MemoryContext aw_cache_cxt = NULL;
static AwCachedHook *aw_cache = NULL;
static int	aw_ncache = 0;
static uint64 aw_cache_version = 0;	/* 0: no copy */

static SPIPlanPtr aw_load_plan = NULL;
static SPIPlanPtr aw_match_plan = NULL;

/*
 * The webhooks calls are queued for: the enabled ones, and those the
 * extension disabled (410, failures: disabled_reason is set), whose
 * deliveries are kept until they are enabled again.  Before ALTER EXTENSION
 * ... UPDATE the table has no disabled_reason yet: then the enabled ones.
 */
#define AW_HOOKS_SQL(filter, cond) \
	"SELECT w.id, w.include_recording, w.assistant_id, w.campaign_id, w.completed_only, " \
	"       " filter ", w.enabled " \
	"  FROM aloro_webhook.webhooks w WHERE " cond " "
#define AW_HOOKS_CURRENT AW_HOOKS_SQL("w.filter", "(w.enabled OR w.disabled_reason IS NOT NULL)")
#define AW_HOOKS_010 AW_HOOKS_SQL("NULL::pg_catalog.jsonpath", "w.enabled")
#define AW_MATCH_FILTERS \
	"   AND (w.assistant_id IS NULL OR w.assistant_id = $1) " \
	"   AND (w.campaign_id IS NULL OR w.campaign_id = $2) " \
	"   AND (NOT w.completed_only OR $3) " \
	" ORDER BY w.id"

/* which schema the saved plans were made for: -1 none, 0 0.1.0's, 1 later */
static int	aw_plans_schema = -1;

/* drops the saved plans when the webhooks table's schema is not theirs */
static bool
aw_plans_for_schema(void)
{
	Oid			nsp = get_namespace_oid("aloro_webhook", true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid("webhooks", nsp) : InvalidOid;
	int			schema = OidIsValid(rel) && get_attnum(rel, "disabled_reason") != InvalidAttrNumber;

	if (schema != aw_plans_schema)
	{
		if (aw_load_plan != NULL)
			SPI_freeplan(aw_load_plan);
		if (aw_match_plan != NULL)
			SPI_freeplan(aw_match_plan);
		aw_load_plan = aw_match_plan = NULL;
		aw_plans_schema = schema;
	}
	return schema == 1;
}

/* reads the webhooks calls are queued for (AW_HOOKS_SQL) into the copy, labelled version */
static void
aw_cache_load(uint64 version)
{
	MemoryContext old;
	bool		current = aw_plans_for_schema();

	if (aw_load_plan == NULL)
		aw_load_plan = aw_prepare(current ? AW_HOOKS_CURRENT "ORDER BY w.id" :
								  AW_HOOKS_010 "ORDER BY w.id", 0, NULL);
	/* read-write: a fresh snapshot, taken after the version was read */
	if (SPI_execute_plan(aw_load_plan, NULL, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read aloro_webhook.webhooks");

	if (aw_cache_cxt == NULL)
		aw_cache_cxt = AllocSetContextCreate(TopMemoryContext, "aloro_webhook webhooks",
											 ALLOCSET_SMALL_SIZES);
	MemoryContextReset(aw_cache_cxt);
	aw_cache_version = 0;
	old = MemoryContextSwitchTo(aw_cache_cxt);
	aw_cache = palloc(sizeof(AwCachedHook) * Max(SPI_processed, 1));
	aw_ncache = (int) SPI_processed;
	for (int i = 0; i < aw_ncache; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		aw_cache[i].id = DatumGetInt64(SPI_getbinval(t, desc, 1, &isnull));
		aw_cache[i].include_recording = DatumGetBool(SPI_getbinval(t, desc, 2, &isnull));
		aw_cache[i].assistant_id = aw_spi_text(t, desc, 3, aw_cache_cxt);
		aw_cache[i].campaign_id = aw_spi_text(t, desc, 4, aw_cache_cxt);
		aw_cache[i].completed_only = DatumGetBool(SPI_getbinval(t, desc, 5, &isnull));
		aw_cache[i].filter = SPI_getbinval(t, desc, 6, &isnull);
		aw_cache[i].filter = isnull ? (Datum) 0 : PointerGetDatum(PG_DETOAST_DATUM_COPY(aw_cache[i].filter));
		aw_cache[i].enabled = DatumGetBool(SPI_getbinval(t, desc, 7, &isnull));
	}
	MemoryContextSwitchTo(old);
	aw_cache_version = version;
}

/* a filter column matches when it is NULL or equal */
static bool
aw_filter_matches(const char *filter, const char *value)
{
	return filter == NULL || (value != NULL && strcmp(filter, value) == 0);
}

/* asks the table, as of the statement's snapshot */
static int
aw_match_by_query(const char *assistant_id, const char *campaign_id, bool completed,
				  AwMatch **out)
{
	Datum		args[3];
	char		nulls[3] = {' ', ' ', ' '};
	int			n;
	bool		current = aw_plans_for_schema();

	if (aw_match_plan == NULL)
	{
		Oid			types[3] = {TEXTOID, TEXTOID, BOOLOID};

		aw_match_plan = aw_prepare(current ? AW_HOOKS_CURRENT AW_MATCH_FILTERS :
								   AW_HOOKS_010 AW_MATCH_FILTERS,
								   3, types);
	}
	args[0] = assistant_id ? CStringGetTextDatum(assistant_id) : (Datum) 0;
	nulls[0] = assistant_id ? ' ' : 'n';
	args[1] = campaign_id ? CStringGetTextDatum(campaign_id) : (Datum) 0;
	nulls[1] = campaign_id ? ' ' : 'n';
	args[2] = BoolGetDatum(completed);
	if (SPI_execute_plan(aw_match_plan, args, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not look up matching webhooks");
	n = (int) SPI_processed;
	*out = palloc(sizeof(AwMatch) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		bool		isnull;

		(*out)[i].id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		(*out)[i].include_recording = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
															   SPI_tuptable->tupdesc, 2, &isnull));
		(*out)[i].filter = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 6, &isnull);
		(*out)[i].filter = isnull ? (Datum) 0 : PointerGetDatum(PG_DETOAST_DATUM_COPY((*out)[i].filter));
		(*out)[i].enabled = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 7, &isnull));
	}
	return n;
}

/*
 * aw_matching_webhooks
 *		The enabled webhooks whose filters match a call that ends now, in id
 *		order, into *out (allocated in the current memory context); returns
 *		how many.  Called inside an SPI connection.
 */
int
aw_matching_webhooks(const char *assistant_id, const char *campaign_id, bool completed,
					 AwMatch **out)
{
	uint64		version;
	int			n = 0;

	if (aw_webhooks_changed_here() || IsolationUsesXactSnapshot())
		return aw_match_by_query(assistant_id, campaign_id, completed, out);
	version = aw_webhooks_version();
	if (version != aw_cache_version)
		aw_cache_load(version);
	*out = palloc(sizeof(AwMatch) * Max(aw_ncache, 1));
	for (int i = 0; i < aw_ncache; i++)
	{
		AwCachedHook *h = &aw_cache[i];

		if (!aw_filter_matches(h->assistant_id, assistant_id) ||
			!aw_filter_matches(h->campaign_id, campaign_id) ||
			(h->completed_only && !completed))
			continue;
		(*out)[n].id = h->id;
		(*out)[n].include_recording = h->include_recording;
		(*out)[n].filter = h->filter;
		(*out)[n].enabled = h->enabled;
		n++;
	}
	return n;
}
