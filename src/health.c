/*-------------------------------------------------------------------------
 * health.c
 *		What finished, per webhook: the statistics webhook_health reads, the
 *		circuit breaker that disables a dead endpoint, and the operator
 *		events (NOTIFY aloro_webhook_events) of deliveries that finally fail.
 *
 * The worker tallies each recorded outcome by webhook.  Successes are only
 * counted in memory and written about once a second (webhook_stats gets one
 * row per webhook and minute, webhook_state one per webhook), so that the
 * hot path writes a couple of rows per second, not per delivery.  A final
 * failure or a 410 is written in the very turn that records it, before that
 * turn claims anything more: a webhook it disables gets no further request.
 *
 * A tally written in a turn that then rolls back is written again by the
 * next one: the written part is forgotten only after its commit
 * (aw_health_committed).  A crash loses at most a second of statistics,
 * never a delivery.
 *
 * IDENTIFICATION
 *		src/health.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "commands/async.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "health.h"
#include "spi_util.h"

/* upper bounds (ms) of the duration histogram's buckets: _duration_bounds() */
static const int aw_bounds[AW_HIST_BUCKETS] =
{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000, INT_MAX};

/* what finished for one webhook since its tally was last written */
typedef struct AwTally
{
	int64		webhook_id;
	int32		succeeded;
	int32		failed;
	int32		attempts;
	int32		failed_attempts;
	int64		duration_ms_sum;
	int32		hist[AW_HIST_BUCKETS];
	bool		had_success;	/* then failures_after counts from it */
	int32		failures_after; /* failed deliveries after the last success */
	TimestampTz last_success;
	TimestampTz last_failure;
	const char *disable_reason; /* a 410: disable at once */
} AwTally;

typedef struct AwTallies
{
	AwTally    *t;
	int			n;
	int			cap;
} AwTallies;

/* counted and committed, not yet written (in aw_health_cxt) */
static MemoryContext aw_health_cxt = NULL;
static AwTallies aw_held;

/* this turn's part (in aw_part_cxt), and whether the turn wrote it all */
static MemoryContext aw_part_cxt = NULL;
static AwTallies aw_turn_part;
static bool aw_turn_wrote = false;
static TimestampTz aw_last_write = 0;

static SPIPlanPtr aw_plan_write = NULL;
static SPIPlanPtr aw_plan_disable = NULL;

/* the tally of webhook_id in ts, made when missing, in cxt */
static AwTally *
aw_tally_of(AwTallies *ts, int64 webhook_id, MemoryContext cxt)
{
	for (int i = ts->n - 1; i >= 0; i--)
		if (ts->t[i].webhook_id == webhook_id)
			return &ts->t[i];
	if (ts->n == ts->cap)
	{
		int			cap = Max(ts->cap * 2, 8);

		ts->t = ts->t ? repalloc(ts->t, sizeof(AwTally) * cap) :
			MemoryContextAlloc(cxt, sizeof(AwTally) * cap);
		ts->cap = cap;
	}
	memset(&ts->t[ts->n], 0, sizeof(AwTally));
	ts->t[ts->n].webhook_id = webhook_id;
	return &ts->t[ts->n++];
}

/* adds the later tally b into a */
static void
aw_tally_merge(AwTally *a, const AwTally *b)
{
	a->succeeded += b->succeeded;
	a->failed += b->failed;
	a->attempts += b->attempts;
	a->failed_attempts += b->failed_attempts;
	a->duration_ms_sum += b->duration_ms_sum;
	for (int i = 0; i < AW_HIST_BUCKETS; i++)
		a->hist[i] += b->hist[i];
	if (b->had_success)
	{
		a->had_success = true;
		a->failures_after = b->failures_after;
		a->last_success = b->last_success;
	}
	else
		a->failures_after += b->failures_after;
	if (b->last_failure)
		a->last_failure = b->last_failure;
	if (b->disable_reason)
		a->disable_reason = b->disable_reason;
}

/* the JSON of an operator event; nothing secret goes in */
static void
aw_notify_event(const char *event, int64 webhook_id, int64 delivery_id, const char *reason)
{
	StringInfoData s;

	initStringInfo(&s);
	appendStringInfoString(&s, "{\"event\":");
	aw_json_cstring(&s, event);
	appendStringInfo(&s, ",\"webhook_id\":" INT64_FORMAT, webhook_id);
	if (delivery_id > 0)
		appendStringInfo(&s, ",\"delivery_id\":" INT64_FORMAT, delivery_id);
	if (reason != NULL)
	{
		/* errors are ours, but may quote a URL's host: keep them short */
		appendStringInfoString(&s, ",\"reason\":");
		aw_json_string(&s, reason, (int) Min(strlen(reason), 300));
	}
	appendStringInfoChar(&s, '}');
	Async_Notify(AW_EVENTS_CHANNEL, s.data);
	pfree(s.data);
}

/*
 * Sends the operator event of a webhook being disabled or enabled.  Not on a
 * Citus node applying the coordinator's change: the event goes out there,
 * once, and a transaction that Citus prepares cannot NOTIFY.
 */
void
aw_health_notify_webhook(bool enabled, int64 webhook_id, const char *reason)
{
	if (aw_citus_carries_dml())
		return;
	aw_notify_event(enabled ? "webhook.enabled" : "webhook.disabled", webhook_id, 0, reason);
}

/*
 * Writes the tallies ts[0..n): statistics, consecutive failures; disables
 * the webhooks that a 410 or aloro_webhook.disable_after_failures says to.
 */
static void
aw_tally_write(AwTallies *ts)
{
	int			n = ts->n;
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum	   *cnt[5];
	Datum	   *sum = palloc(sizeof(Datum) * n);
	Datum	   *hist = palloc(sizeof(Datum) * n * AW_HIST_BUCKETS);
	Datum	   *succ_at = palloc(sizeof(Datum) * n);
	bool	   *succ_null = palloc(sizeof(bool) * n);
	Datum	   *fail_at = palloc(sizeof(Datum) * n);
	bool	   *fail_null = palloc(sizeof(bool) * n);
	Datum		args[11];
	int			dims[2] = {n, AW_HIST_BUCKETS};
	int			lbs[2] = {1, 1};
	int64	   *disable = palloc(sizeof(int64) * n);
	Datum	   *reasons = palloc(sizeof(Datum) * n);
	int			ndisable = 0;

	if (n == 0)
		return;
	for (int k = 0; k < 5; k++)
		cnt[k] = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		AwTally    *t = &ts->t[i];

		ids[i] = Int64GetDatum(t->webhook_id);
		cnt[0][i] = Int32GetDatum(t->succeeded);
		cnt[1][i] = Int32GetDatum(t->failed);
		cnt[2][i] = Int32GetDatum(t->attempts);
		cnt[3][i] = Int32GetDatum(t->failed_attempts);
		cnt[4][i] = Int32GetDatum(t->failures_after);
		sum[i] = Int64GetDatum(t->duration_ms_sum);
		for (int b = 0; b < AW_HIST_BUCKETS; b++)
			hist[i * AW_HIST_BUCKETS + b] = Int32GetDatum(t->hist[b]);
		succ_at[i] = TimestampTzGetDatum(t->last_success);
		succ_null[i] = !t->had_success;
		fail_at[i] = TimestampTzGetDatum(t->last_failure);
		fail_null[i] = t->last_failure == 0;
	}

	if (aw_plan_write == NULL)
	{
		Oid			types[11] = {INT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID, INT4ARRAYOID,
			INT4ARRAYOID, INT8ARRAYOID, INT4ARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID,
		TIMESTAMPTZARRAYOID, INT4OID};

		/*
		 * A webhook's row of the minute is added to; its state is set from
		 * a success (failures counted after it) or added to.  Deleted
		 * webhooks are left out.  Returns each webhook's consecutive
		 * failures when the breaker is on ($11 > 0).
		 */
		aw_plan_write = aw_prepare(
								   "WITH v AS ("
								   "  SELECT v.*, $8[v.i:v.i][1:16] AS hist2 "
								   "    FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), "
								   "                    pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), "
								   "                    pg_catalog.unnest($9), pg_catalog.unnest($10)) WITH ORDINALITY "
								   "      AS v(webhook_id, succeeded, failed, attempts, failed_attempts, duration_ms_sum, "
								   "           last_success_at, last_failure_at, i) "
								   "   WHERE EXISTS (SELECT 1 FROM aloro_webhook.webhooks w WHERE w.id = v.webhook_id)), "
								   "st AS ("
								   "  INSERT INTO aloro_webhook.webhook_stats AS s "
								   "         (webhook_id, minute, succeeded, failed, attempts, failed_attempts, "
								   "          duration_ms_sum, duration_hist) "
								   "  SELECT v.webhook_id, pg_catalog.date_trunc('minute', pg_catalog.now()), v.succeeded, "
								   "         v.failed, v.attempts, v.failed_attempts, v.duration_ms_sum, "
								   "         ARRAY(SELECT pg_catalog.unnest(v.hist2)) "
								   "    FROM v "
								   "  ON CONFLICT (webhook_id, minute) DO UPDATE "
								   "     SET succeeded = s.succeeded + excluded.succeeded, "
								   "         failed = s.failed + excluded.failed, "
								   "         attempts = s.attempts + excluded.attempts, "
								   "         failed_attempts = s.failed_attempts + excluded.failed_attempts, "
								   "         duration_ms_sum = s.duration_ms_sum + excluded.duration_ms_sum, "
								   "         duration_hist = aloro_webhook._hist_add(s.duration_hist, excluded.duration_hist)) "
								   "INSERT INTO aloro_webhook.webhook_state AS s "
								   "       (webhook_id, consecutive_failures, last_success_at, last_failure_at) "
								   "SELECT v.webhook_id, f.failures_after, v.last_success_at, v.last_failure_at "
								   "  FROM v JOIN ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($7)) "
								   "              AS f(webhook_id, failures_after) ON f.webhook_id = v.webhook_id "
								   "ON CONFLICT (webhook_id) DO UPDATE "
								   "   SET consecutive_failures = CASE WHEN excluded.last_success_at IS NOT NULL "
								   "                                   THEN excluded.consecutive_failures "
								   "                                   ELSE s.consecutive_failures + excluded.consecutive_failures END, "
								   "       last_success_at = COALESCE(excluded.last_success_at, s.last_success_at), "
								   "       last_failure_at = COALESCE(excluded.last_failure_at, s.last_failure_at) "
								   "RETURNING s.webhook_id, s.consecutive_failures",
								   11, types);
	}
	args[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	for (int k = 0; k < 4; k++)
		args[1 + k] = PointerGetDatum(construct_array(cnt[k], n, INT4OID, 4, true, TYPALIGN_INT));
	args[5] = PointerGetDatum(construct_array(sum, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[6] = PointerGetDatum(construct_array(cnt[4], n, INT4OID, 4, true, TYPALIGN_INT));
	args[7] = PointerGetDatum(construct_md_array(hist, NULL, 2, dims, lbs, INT4OID, 4, true, TYPALIGN_INT));
	args[8] = PointerGetDatum(construct_md_array(succ_at, succ_null, 1, dims, lbs, TIMESTAMPTZOID, 8,
												 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[9] = PointerGetDatum(construct_md_array(fail_at, fail_null, 1, dims, lbs, TIMESTAMPTZOID, 8,
												 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[10] = Int32GetDatum(aw_disable_after_failures);
	if (SPI_execute_plan(aw_plan_write, args, NULL, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "could not write webhook statistics");

	/* what the breaker disables: a 410, or too many failed deliveries in a row */
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 1, &isnull));
		int32		failures = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, 2, &isnull));
		const char *reason = NULL;

		for (int i = 0; i < n; i++)
			if (ts->t[i].webhook_id == id && ts->t[i].disable_reason != NULL)
				reason = ts->t[i].disable_reason;
		if (reason == NULL && aw_disable_after_failures > 0 && failures >= aw_disable_after_failures)
			reason = psprintf("%d consecutive failed deliveries (aloro_webhook.disable_after_failures)", failures);
		if (reason == NULL)
			continue;
		disable[ndisable] = id;
		reasons[ndisable++] = CStringGetTextDatum(reason);
	}
	if (ndisable == 0)
		return;

	/*
	 * Disabled, not deleted: deliveries stay queued (and calls that end
	 * keep queuing) until someone enables it again.  The breaker counts
	 * afresh from then.  The webhooks' trigger sends the event.
	 */
	aw_prepare_once(&aw_plan_disable,
					"WITH d AS ("
					"  UPDATE aloro_webhook.webhooks w "
					"     SET enabled = false, disabled_reason = r.reason, disabled_at = pg_catalog.now() "
					"    FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS r(id, reason) "
					"   WHERE w.id = r.id AND w.enabled "
					"  RETURNING w.id) "
					"UPDATE aloro_webhook.webhook_state s SET consecutive_failures = 0 "
					"  FROM d WHERE s.webhook_id = d.id",
					2, (Oid[]) {INT8ARRAYOID, TEXTARRAYOID});
	args[0] = aw_int8_array(disable, ndisable);
	args[1] = PointerGetDatum(construct_array(reasons, ndisable, TEXTOID, -1, false, TYPALIGN_INT));
	if (SPI_execute_plan(aw_plan_disable, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not disable webhooks");
}

/* the histogram bucket of a duration */
static int
aw_bucket(int ms)
{
	int			b = 0;

	while (b < AW_HIST_BUCKETS - 1 && ms > aw_bounds[b])
		b++;
	return b;
}

/*
 * aw_health_turn
 *		In a turn's transaction, after ds[0..n) were recorded: tallies them;
 *		when one finally failed or disables its webhook, writes everything
 *		tallied, sends the events and disables, all in this transaction.
 */
void
aw_health_turn(AwDelivery **ds, int n)
{
	bool		urgent = false;

	if (aw_part_cxt == NULL)
	{
		aw_health_cxt = AllocSetContextCreate(TopMemoryContext, "aloro_webhook health",
											  ALLOCSET_SMALL_SIZES);
		aw_part_cxt = AllocSetContextCreate(TopMemoryContext, "aloro_webhook health of a turn",
											ALLOCSET_SMALL_SIZES);
	}
	for (int i = 0; i < n; i++)
	{
		AwOutcome  *o = &ds[i]->outcome;
		AwTally    *t = aw_tally_of(&aw_turn_part, ds[i]->webhook_id, aw_part_cxt);
		bool		succeeded = strcmp(o->new_status, "succeeded") == 0;
		bool		failed = strcmp(o->new_status, "failed") == 0;

		if (o->record_attempt)
		{
			t->attempts++;
			t->duration_ms_sum += Max(o->duration_ms, 0);
			t->hist[aw_bucket(o->duration_ms)]++;
			if (o->error != NULL)
				t->failed_attempts++;
		}
		if (succeeded)
		{
			t->succeeded++;
			t->had_success = true;
			t->failures_after = 0;
			t->last_success = o->started_at;
		}
		else if (failed)
		{
			t->failed++;
			t->failures_after++;
			t->last_failure = GetCurrentTimestamp();
			urgent = true;
			aw_notify_event("delivery.failed", ds[i]->webhook_id, ds[i]->id, o->error);
		}
		if (o->disable_reason != NULL)
		{
			t->disable_reason = o->disable_reason;
			urgent = true;
		}
	}
	if (urgent)
		aw_health_write();
}

/* in a transaction: writes what is tallied, held and this turn's */
void
aw_health_write(void)
{
	AwTallies	all = {0};

	for (int i = 0; i < aw_held.n; i++)
		aw_tally_merge(aw_tally_of(&all, aw_held.t[i].webhook_id, CurrentMemoryContext), &aw_held.t[i]);
	for (int i = 0; i < aw_turn_part.n; i++)
		aw_tally_merge(aw_tally_of(&all, aw_turn_part.t[i].webhook_id, CurrentMemoryContext), &aw_turn_part.t[i]);
	aw_tally_write(&all);
	aw_turn_wrote = true;
}

/* is there a tally to write, and has a second gone by since the last write? */
bool
aw_health_write_due(TimestampTz now)
{
	return aw_held.n > 0 && TimestampDifferenceExceeds(aw_last_write, now, AW_HEALTH_WRITE_MS);
}

/* when the held tallies are next due to be written; 0 when there are none */
TimestampTz
aw_health_next_write(void)
{
	return aw_held.n > 0 ? aw_last_write + AW_HEALTH_WRITE_MS * 1000 : 0;
}

/* after the transaction of a turn (or of the upkeep) committed */
void
aw_health_committed(void)
{
	if (aw_health_cxt == NULL)
		return;					/* nothing was ever tallied */
	if (aw_turn_wrote)
	{
		MemoryContextReset(aw_health_cxt);
		memset(&aw_held, 0, sizeof(aw_held));
		aw_last_write = GetCurrentTimestamp();
	}
	else
		for (int i = 0; i < aw_turn_part.n; i++)
			aw_tally_merge(aw_tally_of(&aw_held, aw_turn_part.t[i].webhook_id, aw_health_cxt),
						   &aw_turn_part.t[i]);
	aw_health_aborted();
}

/* after such a transaction rolled back (or once its part is held) */
void
aw_health_aborted(void)
{
	if (aw_part_cxt != NULL)
		MemoryContextReset(aw_part_cxt);
	memset(&aw_turn_part, 0, sizeof(aw_turn_part));
	aw_turn_wrote = false;
}

/* the extension went away: what was tallied is of no use */
void
aw_health_forget(void)
{
	if (aw_health_cxt != NULL)
		MemoryContextReset(aw_health_cxt);
	memset(&aw_held, 0, sizeof(aw_held));
	aw_health_aborted();
	if (aw_plan_write != NULL)
		SPI_freeplan(aw_plan_write);
	if (aw_plan_disable != NULL)
		SPI_freeplan(aw_plan_disable);
	aw_plan_write = NULL;
	aw_plan_disable = NULL;
}
