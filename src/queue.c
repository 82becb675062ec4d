/*-------------------------------------------------------------------------
 * queue.c
 *		The worker's SQL: releasing stale claims, claiming due deliveries,
 *		the next due time, deliveries of deleted webhooks.  Recording the
 *		attempts is record.c.  All of it runs over SPI inside the short
 *		transactions that worker.c opens; none of it waits on the network.
 *
 * The worker works on aloro_webhook.queue, the narrow table of pending
 * deliveries; delivery_log holds where each delivery stands and payloads its
 * body.  A delivery in flight has queue.claimed_by set to the token of the
 * worker that holds it.  Claims do not expire: a claim whose token is not
 * that of a running worker was cut off (a crash, a kill, an immediate
 * shutdown, a restore) and is released -- at start-up, and by the sweep --
 * so that the delivery is simply due again.  (At least once: the receiver
 * may see that attempt twice, with the same X-Aloro-Delivery.)
 *
 * IDENTIFICATION
 *		src/queue.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "storage/lmgr.h"

#include "queue.h"
#include "rate.h"
#include "spi_util.h"

static SPIPlanPtr aw_plan_candidates = NULL;
static SPIPlanPtr aw_plan_claim = NULL;
static SPIPlanPtr aw_plan_claim_read = NULL;
static SPIPlanPtr aw_plan_next_due = NULL;
static SPIPlanPtr aw_plan_release = NULL;
static SPIPlanPtr aw_plan_any_stale = NULL;
static SPIPlanPtr aw_plan_orphans = NULL;
static SPIPlanPtr aw_plan_fail_orphans = NULL;

/* the version of the tables the worker works on: 3, or 2 until the update */
static int	aw_schema = 0;


/*
 * The extension's OID in this database (as of this transaction), or
 * InvalidOid with *state saying why: not installed, still 0.1.0's tables
 * (the library was upgraded, ALTER EXTENSION ... UPDATE not run yet), or
 * not visible yet.  0.2.0's tables are served as they are (the queue, and
 * no stream) until the update; aw_queue_schema() says which.  A commit wakes the worker before it sends the catalog
 * invalidations of what it created, so the syscache may still say the
 * schema's objects do not exist for a moment; the worker looks again soon.
 */
Oid
aw_queue_extension_oid(AwQueueState *state)
{
	Oid			ext = get_extension_oid("aloro_webhook", true);

	if (!OidIsValid(ext))
	{
		*state = AW_QUEUE_NONE;
		return InvalidOid;
	}
	aw_schema = aw_schema_version();
	switch (aw_schema)
	{
		case 3:
		case 2:
			/* 0.2.0's tables are served until the update: no stream then */
			*state = AW_QUEUE_READY;
			break;
		case 0:
			*state = AW_QUEUE_NOT_READY;
			break;
		default:
			*state = AW_QUEUE_LEGACY;
			break;
	}
	return *state == AW_QUEUE_READY ? ext : InvalidOid;
}

/* the version of the extension's tables the worker works on (aw_queue_extension_oid) */
int
aw_queue_schema(void)
{
	return aw_schema;
}

/* qsort comparator for OIDs */
static int
aw_oid_cmp(const void *a, const void *b)
{
	Oid			x = *(const Oid *) a;
	Oid			y = *(const Oid *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/*
 * aw_queue_lock_tables
 *		Takes the lock each of the worker's statements would take on the
 *		extension's tables, up front, in the order of their OIDs.  DROP
 *		EXTENSION and ALTER EXTENSION ... UPDATE lock them in the order the
 *		tables were created, so in the same order; then the worker waits for
 *		them (or they for it), and neither can hold one the other needs: a
 *		deadlock would fail the user's statement, not the worker's turn.
 *		Tables a version does not have are left out.
 */
void
aw_queue_lock_tables(void)
{
	static const char *const names[] = {"webhooks", "payloads", "delivery_log", "delivery_state",
		"queue", "delivery_attempts", "stream_cursors", "webhook_state", "webhook_stats"};
	Oid			nsp = get_namespace_oid("aloro_webhook", true);
	Oid			oids[lengthof(names)];
	int			n = 0;

	if (!OidIsValid(nsp))
		return;
	for (size_t i = 0; i < lengthof(names); i++)
	{
		Oid			rel = get_relname_relid(names[i], nsp);

		if (OidIsValid(rel))
			oids[n++] = rel;
	}
	qsort(oids, n, sizeof(Oid), aw_oid_cmp);
	for (int i = 0; i < n; i++)
		LockRelationOid(oids[i], AccessShareLock);
}

/* Drops the saved plans, for when the extension went away. */
void
aw_queue_forget_plans(void)
{
	SPIPlanPtr *plans[] = {&aw_plan_candidates, &aw_plan_claim, &aw_plan_claim_read, &aw_plan_next_due,
		&aw_plan_release, &aw_plan_any_stale, &aw_plan_orphans,
	&aw_plan_fail_orphans};

	for (size_t i = 0; i < lengthof(plans); i++)
		if (*plans[i] != NULL)
		{
			SPI_freeplan(*plans[i]);
			*plans[i] = NULL;
		}
}

/*
 * aw_queue_release_claims
 *		Makes every delivery held by a worker that no longer runs (its token
 *		is not in live[]) due again at once, through _release_claims() in
 *		the install script, which also records the cut-off attempt.  Returns
 *		how many.
 *
 *		It looks first, and calls _release_claims() only when there is a claim
 *		to release: that function writes the history, so merely running it
 *		waits for a lock on delivery_attempts even when it writes nothing, and
 *		a worker that attaches while someone holds that lock would fail every
 *		turn, sending nothing, until the lock goes.
 */
uint64
aw_queue_release_claims(const int64 *live, int nlive)
{
	Datum		args[1];
	bool		isnull;

	aw_prepare_once(&aw_plan_any_stale,
					"SELECT EXISTS (SELECT FROM aloro_webhook.queue q"
					" WHERE q.claimed_by IS NOT NULL AND q.claimed_by <> ALL ($1))",
					1, (Oid[]) {INT8ARRAYOID});
	args[0] = aw_int8_array(live, nlive);
	if (SPI_execute_plan(aw_plan_any_stale, args, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not look for claimed deliveries");
	if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		return 0;

	aw_prepare_once(&aw_plan_release, "SELECT aloro_webhook._release_claims($1)",
					1, (Oid[]) {INT8ARRAYOID});
	if (SPI_execute_plan(aw_plan_release, args, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not release claimed deliveries");
	return (uint64) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/* the cursors as the three array parameters $n, $n+1, $n+2 */
static void
aw_cursor_datums(const AwCursorArgs *cur, Datum *args)
{
	Datum	   *due = palloc(sizeof(Datum) * Max(cur->n, 1));

	for (int i = 0; i < cur->n; i++)
		due[i] = TimestampTzGetDatum(cur->due_at[i]);
	args[0] = aw_int8_array(cur->webhook_ids, cur->n);
	args[1] = PointerGetDatum(construct_array(due, cur->n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[2] = aw_int8_array(cur->delivery_ids, cur->n);
}

/* a tid[] datum */
static Datum
aw_tid_array(const ItemPointerData *tids, int n)
{
	Datum	   *d = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		d[i] = PointerGetDatum(&tids[i]);
	return PointerGetDatum(construct_array(d, n, TIDOID, sizeof(ItemPointerData), false, TYPALIGN_SHORT));
}

/*
 * aw_queue_candidates
 *		Up to limit due deliveries, earliest first, of enabled webhooks but
 *		those in exclude (at their in-flight cap), each webhook's scanned
 *		from after its cursor (cursor.c) -- with several workers running,
 *		only this worker's share (aw_worker_share), so that workers never
 *		reach for the same rows: their queue row versions, webhooks,
 *		body sizes and keys, into out[].  The rows are locked (SKIP LOCKED:
 *		one someone else is changing waits for a later turn), so
 *		aw_queue_claim can address them by ctid.  Deliveries of a disabled
 *		webhook are held, not dropped.
 *
 * It probes the due index once per webhook, so a long backlog behind a
 * saturated webhook is never scanned.  The worker's statements address rows
 * by ctid or by webhook, never by a list of ids, so that no plan depends on
 * statistics that a bulk enqueue has made stale.  Like every statement here
 * it runs read-write (read_only = false): it takes a fresh snapshot and sees
 * what this transaction recorded before.
 */
int
aw_queue_candidates(int limit, const int64 *exclude, int nexclude, const AwCursorArgs *cur,
					AwCandidate *out)
{
	Datum		args[7];
	int			share_count;
	int			share_index;

	if (aw_plan_candidates == NULL)
	{
		Oid			types[7] = {INT4OID, INT8ARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID,
		INT8OID, INT8OID};

		/*
		 * The inner query picks, without locking, the earliest due rows of
		 * each enabled webhook with room, after its cursor; the outer one
		 * locks just those row versions.  A row changed since the inner
		 * query looked has a new ctid, fails the recheck and is skipped, as
		 * is one locked by someone else.
		 */
		aw_plan_candidates = aw_prepare(
										"SELECT q.ctid, q.webhook_id, q.bytes, q.due_at, q.delivery_id "
										"  FROM aloro_webhook.queue q "
										" WHERE q.ctid = ANY (ARRAY("
										"   SELECT c.ctid "
										"     FROM aloro_webhook.webhooks w "
										"     LEFT JOIN ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4), "
										"                          pg_catalog.unnest($5)) AS k(webhook_id, due_at, delivery_id) "
										"       ON k.webhook_id = w.id "
										"    CROSS JOIN LATERAL ("
										"      SELECT q2.ctid, q2.due_at, q2.delivery_id "
										"        FROM aloro_webhook.queue q2 "
										"       WHERE q2.webhook_id = w.id AND q2.due_at <= pg_catalog.now() "
										"         AND (q2.due_at, q2.delivery_id) > "
										"             (COALESCE(k.due_at, '-infinity'), COALESCE(k.delivery_id, 0)) "
										"         AND q2.claimed_by IS NULL "
										/* with several workers, each claims its own share of every webhook */
										"         AND q2.delivery_id % $6 = $7 "
										"       ORDER BY q2.due_at, q2.delivery_id LIMIT $1) c "
										"    WHERE w.enabled AND w.id <> ALL ($2) "
										"    ORDER BY c.due_at, c.delivery_id "
										"    LIMIT $1)) "
										"   AND q.claimed_by IS NULL "
										" ORDER BY q.due_at, q.delivery_id "
										"   FOR UPDATE OF q SKIP LOCKED",
										7, types);
	}
	aw_rate_limits_refresh();
	args[0] = Int32GetDatum(limit);
	args[1] = aw_int8_array(exclude, nexclude);
	aw_cursor_datums(cur, &args[2]);
	aw_worker_share(&share_count, &share_index);
	args[5] = Int64GetDatum(share_count);
	args[6] = Int64GetDatum(share_index);
	if (SPI_execute_plan(aw_plan_candidates, args, NULL, false, limit) != SPI_OK_SELECT)
		elog(ERROR, "could not look for due deliveries");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(t, desc, 1, &isnull)), &out[i].tid);
		out[i].webhook_id = DatumGetInt64(SPI_getbinval(t, desc, 2, &isnull));
		out[i].bytes = DatumGetInt32(SPI_getbinval(t, desc, 3, &isnull));
		out[i].due_at = DatumGetTimestampTz(SPI_getbinval(t, desc, 4, &isnull));
		out[i].delivery_id = DatumGetInt64(SPI_getbinval(t, desc, 5, &isnull));
		out[i].rate_limit = aw_rate_limit_of(out[i].webhook_id);
	}
	return (int) SPI_processed;
}

/* webhooks.headers (checked when written: an object of strings) as d's header lines */
static void
aw_claim_headers(AwDelivery *d, Datum headers, bool isnull)
{
	Jsonb	   *jb;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	const char *name = NULL;
	int			nname = 0;
	int			n = 0;

	d->extra_headers = NULL;
	d->nextra_headers = 0;
	if (isnull)
		return;
	jb = DatumGetJsonbP(headers);
	if (!JB_ROOT_IS_OBJECT(jb) || JB_ROOT_COUNT(jb) == 0)
		return;
	d->extra_headers = MemoryContextAlloc(d->cxt, sizeof(char *) * JB_ROOT_COUNT(jb));
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			name = v.val.string.val;
			nname = v.val.string.len;
		}
		else if (tok == WJB_VALUE && v.type == jbvString && name != NULL && n < (int) JB_ROOT_COUNT(jb))
		{
			MemoryContext old = MemoryContextSwitchTo(d->cxt);

			d->extra_headers[n++] = psprintf("%.*s: %.*s", nname, name, v.val.string.len, v.val.string.val);
			MemoryContextSwitchTo(old);
		}
	}
	d->nextra_headers = n;
}

/*
 * aw_queue_fill
 *		Fills into[0..n) -- deliveries whose id is set -- with what their
 *		requests need: their bodies and attempts so far, and their webhook's
 *		URL, signature scheme, secrets (the previous one during a rotation's
 *		overlap) and headers.  Returns how many it found; one whose row is
 *		gone, or whose webhook is, is left without a URL (request.c fails
 *		it unsent).
 */
int
aw_queue_fill(AwDelivery **into, int n)
{
	Datum		args[1];
	int64	   *ids = palloc(sizeof(int64) * Max(n, 1));
	uint64		got;

	if (aw_plan_claim_read == NULL)
		aw_plan_claim_read =
			aw_prepare(psprintf("SELECT d.id, %s, "
								"       w.url, w.url_password, w.secret, w.signature_scheme = 'standard', "
								"       CASE WHEN w.previous_secret_until > pg_catalog.now() THEN w.previous_secret END, "
								"       w.headers "
								"  FROM ROWS FROM (pg_catalog.unnest($1)) WITH ORDINALITY AS k(id, i) "
								"  JOIN aloro_webhook.delivery_log d ON d.id = k.id "
								"  LEFT JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id "
								"  LEFT JOIN aloro_webhook.payloads p ON p.id = d.payload_id %s"
								" ORDER BY k.i",
								aw_schema == 2 ? "p.body, d.attempts, d.budget_start" :
								"COALESCE(d.body, p.body), COALESCE(s.attempts, 0), COALESCE(s.budget_start, 0)",
								aw_schema == 2 ? "" :
								"  LEFT JOIN aloro_webhook.delivery_state s ON s.delivery_id = d.id "),
					   1, (Oid[]) {INT8ARRAYOID});
	for (int i = 0; i < n; i++)
		ids[i] = into[i]->id;
	args[0] = aw_int8_array(ids, n);
	if (SPI_execute_plan(aw_plan_claim_read, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the claimed deliveries");
	got = 0;
	for (int j = 0; j < n; j++)
	{
		HeapTuple	t;
		TupleDesc	desc = SPI_tuptable->tupdesc;
		AwDelivery *d = into[j];
		bool		isnull;
		char	   *password;

		/* the rows come in ids' order, without those not found */
		d->url = NULL;
		d->body = NULL;
		if (got >= SPI_processed)
			continue;
		t = SPI_tuptable->vals[got];
		if (DatumGetInt64(SPI_getbinval(t, desc, 1, &isnull)) != d->id)
			continue;
		got++;
		d->body = aw_spi_text(t, desc, 2, d->cxt);
		d->body_len = d->body ? strlen(d->body) : 0;
		d->attempts = DatumGetInt32(SPI_getbinval(t, desc, 3, &isnull));
		d->budget_start = DatumGetInt32(SPI_getbinval(t, desc, 4, &isnull));
		d->url = aw_spi_text(t, desc, 5, d->cxt);
		password = aw_spi_text(t, desc, 6, d->cxt);
		if (password != NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(d->cxt);

			d->url = aw_url_with_password(d->url, password);
			MemoryContextSwitchTo(old);
		}
		d->secret = aw_spi_text(t, desc, 7, d->cxt);
		d->standard = DatumGetBool(SPI_getbinval(t, desc, 8, &isnull));
		d->previous_secret = aw_spi_text(t, desc, 9, d->cxt);
		aw_claim_headers(d, SPI_getbinval(t, desc, 10, &isnull), isnull);
	}
	return (int) got;
}

/*
 * aw_queue_claim
 *		Marks the given queue row versions in flight, held by this worker's
 *		token, and fills into[0..k) -- deliveries the worker made, each with
 *		its memory context -- with them (aw_queue_fill).  Returns k; a row
 *		whose webhook is gone is left alone (the sweep fails it).  They were
 *		locked by aw_queue_candidates in this same transaction, so they are
 *		still pending and unclaimed.
 *
 * The claim names queue rows by ctid and joins nothing, so that its plan
 * cannot depend on the queue's statistics (a join on delivery_id would let
 * the planner walk the whole primary key instead when the queue was last
 * analyzed empty and then filled in bulk); the read of what the requests
 * need starts from the claimed ids.
 */
int
aw_queue_claim(const ItemPointerData *tids, int n, int64 token, AwDelivery **into)
{
	Datum		args[2];
	uint64		got;

	aw_prepare_once(&aw_plan_claim,
					"UPDATE aloro_webhook.queue q "
					"   SET claimed_by = $2, claimed_at = pg_catalog.now() "
					" WHERE q.ctid = ANY ($1) "
					/* a scalar subquery, not a join: the webhook must still exist */
					"   AND (SELECT true FROM aloro_webhook.webhooks w WHERE w.id = q.webhook_id) "
					"RETURNING q.delivery_id, q.webhook_id, q.ctid",
					2, (Oid[]) {TIDARRAYOID, INT8OID});
	args[0] = aw_tid_array(tids, n);
	args[1] = Int64GetDatum(token);
	if (SPI_execute_plan(aw_plan_claim, args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not claim deliveries");
	got = Min(SPI_processed, (uint64) n);
	for (uint64 i = 0; i < got; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		AwDelivery *d = into[i];
		bool		isnull;

		d->id = DatumGetInt64(SPI_getbinval(t, desc, 1, &isnull));
		d->webhook_id = DatumGetInt64(SPI_getbinval(t, desc, 2, &isnull));
		ItemPointerCopy((ItemPointer) DatumGetPointer(SPI_getbinval(t, desc, 3, &isnull)), &d->ctid);
	}
	if (got == 0)
		return 0;
	(void) aw_queue_fill(into, (int) got);
	return (int) got;
}

/*
 * aw_queue_orphans
 *		Waiting deliveries whose webhook is gone (up to max, into ids).
 *		Deleting a webhook fails its deliveries in a trigger; these are the
 *		ones a race let through (a call that ended while the webhook was
 *		being deleted).  While a restore is loading the extension's tables
 *		the queue may come before the webhooks: with no webhook at all, none
 *		counts as an orphan.
 */
int
aw_queue_orphans(int64 *ids, int max)
{
	Datum		args[1];

	aw_prepare_once(&aw_plan_orphans,
					/* the webhooks the queue holds: one index probe each, not a scan of the queue */
					"WITH RECURSIVE hooks(id) AS ("
					"  (SELECT q.webhook_id FROM aloro_webhook.queue q ORDER BY q.webhook_id LIMIT 1) "
					"  UNION ALL "
					"  SELECT (SELECT q.webhook_id FROM aloro_webhook.queue q "
					"           WHERE q.webhook_id > h.id ORDER BY q.webhook_id LIMIT 1) "
					"    FROM hooks h WHERE h.id IS NOT NULL) "
					"SELECT o.delivery_id FROM hooks h "
					" CROSS JOIN LATERAL (SELECT q.delivery_id FROM aloro_webhook.queue q "
					"                      WHERE q.webhook_id = h.id AND q.claimed_by IS NULL LIMIT $1) o "
					" WHERE h.id IS NOT NULL "
					"   AND NOT EXISTS (SELECT 1 FROM aloro_webhook.webhooks w WHERE w.id = h.id) "
					"   AND EXISTS (SELECT 1 FROM aloro_webhook.webhooks) "
					" LIMIT $1",
					1, (Oid[]) {INT4OID});
	args[0] = Int32GetDatum(max);
	if (SPI_execute_plan(aw_plan_orphans, args, NULL, true, max) != SPI_OK_SELECT)
		elog(ERROR, "could not look for deliveries of deleted webhooks");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		ids[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	return (int) SPI_processed;
}

/*
 * aw_queue_fail_orphans
 *		Fails those of ids[0..n) that are still waiting, with "webhook N was
 *		deleted" (_fail_waiting()).  The caller passes only deliveries seen
 *		orphaned in this transaction.  Returns how many.  A database still at
 *		0.2.0, from before that helper existed, is swept once it is updated.
 */
uint64
aw_queue_fail_orphans(const int64 *ids, int n)
{
	Datum		args[1];
	Datum		failed;
	bool		isnull;
	Oid			argtypes[2] = {INT8ARRAYOID, TEXTOID};
	List	   *name = list_make2(makeString("aloro_webhook"), makeString("_fail_waiting"));

	if (!OidIsValid(LookupFuncName(name, 2, argtypes, true)))
		return 0;
	aw_prepare_once(&aw_plan_fail_orphans,
					"SELECT aloro_webhook._fail_waiting($1, NULL)",
					1, (Oid[]) {INT8ARRAYOID});
	args[0] = aw_int8_array(ids, n);
	if (SPI_execute_plan(aw_plan_fail_orphans, args, NULL, false, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not fail deliveries of deleted webhooks");
	failed = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : (uint64) DatumGetInt64(failed);
}

/*
 * aw_queue_next_due
 *		When the earliest pending delivery not in flight is due, leaving out
 *		the webhooks in exclude, each webhook's looked for after its cursor;
 *		false when there is none.
 */
bool
aw_queue_next_due(const int64 *exclude, int nexclude, const AwCursorArgs *cur, TimestampTz *due)
{
	Datum		args[6];
	bool		isnull;
	int			share_count;
	int			share_index;

	if (aw_plan_next_due == NULL)
	{
		Oid			types[6] = {INT8ARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID, INT8ARRAYOID,
		INT8OID, INT8OID};

		aw_plan_next_due = aw_prepare(
									  "SELECT pg_catalog.min(c.due_at) "
									  "  FROM aloro_webhook.webhooks w "
									  "  LEFT JOIN ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), "
									  "                       pg_catalog.unnest($4)) AS k(webhook_id, due_at, delivery_id) "
									  "    ON k.webhook_id = w.id "
									  " CROSS JOIN LATERAL ("
									  "   SELECT q.due_at FROM aloro_webhook.queue q "
									  "    WHERE q.webhook_id = w.id AND q.claimed_by IS NULL "
									  "      AND q.delivery_id % $5 = $6 "
									  "      AND (q.due_at, q.delivery_id) > "
									  "          (COALESCE(k.due_at, '-infinity'), COALESCE(k.delivery_id, 0)) "
									  "    ORDER BY q.due_at, q.delivery_id LIMIT 1) c "
									  " WHERE w.enabled AND w.id <> ALL ($1)",
									  6, types);
	}
	args[0] = aw_int8_array(exclude, nexclude);
	aw_cursor_datums(cur, &args[1]);
	aw_worker_share(&share_count, &share_index);
	args[4] = Int64GetDatum(share_count);
	args[5] = Int64GetDatum(share_index);
	if (SPI_execute_plan(aw_plan_next_due, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look for the next due delivery");
	if (SPI_processed == 0)
		return false;
	*due = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	return !isnull;
}
