/*-------------------------------------------------------------------------
 * upkeep.c
 *		The worker's housekeeping, each step in a short transaction of its
 *		own between turns: writing the tallied statistics (health.c),
 *		pruning the history past aloro_webhook.retention and
 *		failed_retention, forgetting rotated-out secrets once their overlap
 *		ends, and trimming old statistics.
 *
 * Pruning walks delivery_log in id order, a batch of AW_PRUNE_BATCH at a
 * time (see _prune() in the install script), one batch per transaction, a
 * short pause between batches while there is more, and a longer one after a
 * pass reached deliveries too young to be pruned (a minute, or
 * aloro_webhook.idle_check_interval when shorter; a reload starts a pass at
 * once, so a new retention applies without waiting).  No lock is held between
 * batches and none is taken but the row locks of what is deleted.
 *
 * IDENTIFICATION
 *		src/upkeep.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "executor/spi.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "pgstat.h"
#include "utils/timestamp.h"

#include "health.h"
#include "spi_util.h"
#include "queue.h"
#include "upkeep.h"
#include "worker_state.h"

/* deliveries looked at per pruning transaction */
#define AW_PRUNE_BATCH 2000
/* between batches while a pass goes on, and between passes */
#define AW_PRUNE_NEXT_MS 50
#define AW_PRUNE_PASS_MS 60000
/* between tidy-ups of secrets and statistics */
#define AW_TIDY_MS 10000
/* statistics older than this are trimmed */
#define AW_STATS_KEPT "2 days"

static SPIPlanPtr aw_plan_prune = NULL;

/* the cut-off for a retention in seconds; 0 keeps everything */
static TimestampTz
aw_cutoff(TimestampTz now, int retention_s)
{
	TimestampTz t;

	if (retention_s <= 0)
	{
		TIMESTAMP_NOBEGIN(t);
		return t;
	}
	return now - (TimestampTz) retention_s * USECS_PER_SEC;
}

/* one batch of pruning; learns where the next starts and when */
static void
aw_prune_batch(AwUpkeep *u, TimestampTz now)
{
	Datum		args[4];
	bool		isnull;
	bool		done;

	if (aw_retention_s <= 0 && aw_failed_retention_s <= 0)
	{
		u->prune_at = now + (TimestampTz) Min(AW_PRUNE_PASS_MS, aw_idle_check_ms) * 1000;
		return;
	}
	if (aw_plan_prune == NULL)
	{
		Oid			types[4] = {INT8OID, INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID};

		aw_plan_prune = aw_prepare("SELECT p.last_id, p.pruned, p.pass_done "
								   "  FROM aloro_webhook._prune($1, $2, $3, $4) p",
								   4, types);
	}
	args[0] = Int64GetDatum(u->prune_after);
	args[1] = Int32GetDatum(AW_PRUNE_BATCH);
	args[2] = TimestampTzGetDatum(aw_cutoff(now, aw_retention_s));
	args[3] = TimestampTzGetDatum(aw_cutoff(now, aw_failed_retention_s));
	if (SPI_execute_plan(aw_plan_prune, args, NULL, false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not prune the delivery history");
	u->pruned_last = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	done = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	if (done)
	{
		u->prune_after = 0;
		u->prune_at = now + (TimestampTz) Min(AW_PRUNE_PASS_MS, aw_idle_check_ms) * 1000;
	}
	else
	{
		u->prune_after = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		u->prune_at = now + AW_PRUNE_NEXT_MS * 1000;
	}
}

/*
 * Rotated-out secrets past their overlap, statistics past two days, state of
 * deleted webhooks; on Citus, this node's range of delivery ids.
 */
static void
aw_tidy(void)
{
	bool		isnull;
	bool		expired;

	/*
	 * Only when there is a secret to forget: an UPDATE, even of no row, fires
	 * the statement trigger that makes every backend re-read webhooks.
	 */
	if (SPI_execute("SELECT EXISTS (SELECT 1 FROM aloro_webhook.webhooks "
					" WHERE previous_secret_until <= pg_catalog.now() OR "
					"       (previous_secret IS NOT NULL AND previous_secret_until IS NULL))",
					false, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not look for rotated-out secrets");
	expired = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if ((expired &&
		 SPI_execute("UPDATE aloro_webhook.webhooks "
					 "   SET previous_secret = NULL, previous_secret_until = NULL "
					 " WHERE previous_secret_until <= pg_catalog.now() OR "
					 "       (previous_secret IS NOT NULL AND previous_secret_until IS NULL)",
					 false, 0) != SPI_OK_UPDATE) ||
		SPI_execute("DELETE FROM aloro_webhook.webhook_stats "
					" WHERE minute < pg_catalog.now() - interval '" AW_STATS_KEPT "'",
					false, 0) != SPI_OK_DELETE ||
		SPI_execute("DELETE FROM aloro_webhook.webhook_state s "
					" WHERE NOT EXISTS (SELECT 1 FROM aloro_webhook.webhooks w WHERE w.id = s.webhook_id)",
					false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not tidy up the extension's tables");

	/* on a Citus node, its own range of delivery ids (a node added later too) */
	if (OidIsValid(LookupFuncName(list_make2(makeString("aloro_webhook"),
											 makeString("_citus_node_setup")),
								  0, NULL, true)) &&
		SPI_execute("SELECT aloro_webhook._citus_node_setup()", false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not set up this node's delivery ids");
}

/* is a step of upkeep due? */
bool
aw_upkeep_due(AwUpkeep *u, TimestampTz now)
{
	return aw_health_write_due(now) || now >= u->prune_at || now >= u->tidy_at;
}

/* when the next step is due */
TimestampTz
aw_upkeep_next(AwUpkeep *u)
{
	TimestampTz next = Min(u->prune_at, u->tidy_at);
	TimestampTz health = aw_health_next_write();

	return health > 0 ? Min(next, health) : next;
}

/*
 * aw_upkeep
 *		Runs the steps that are due, in one short transaction.
 */
void
aw_upkeep(AwWorker *w)
{
	AwUpkeep   *u = &w->upkeep;
	TimestampTz now = GetCurrentTimestamp();
	int			count;
	int			index;

	w->phase = AW_PHASE_UPKEEP;
	aw_xact_begin("aloro_webhook: writing statistics, pruning the history");
	aw_queue_lock_tables();
	if (aw_health_write_due(now))
		aw_health_write();
	/* with several workers, the first of those running prunes and tidies for all */
	aw_worker_share(&count, &index);
	if (now >= u->prune_at && index == 0)
		aw_prune_batch(u, now);
	else if (now >= u->prune_at)
		u->prune_at = now + (TimestampTz) Min(AW_PRUNE_PASS_MS, aw_idle_check_ms) * 1000;
	if (now >= u->tidy_at)
	{
		if (index == 0)
			aw_tidy();
		u->tidy_at = now + AW_TIDY_MS * 1000;
	}
	aw_xact_commit();
	aw_health_committed();
	w->phase = AW_PHASE_IDLE;
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* after an error in the upkeep's transaction (rolled back): later, again */
void
aw_upkeep_failed(AwWorker *w)
{
	TimestampTz now = GetCurrentTimestamp();

	aw_health_aborted();
	w->upkeep.prune_at = Max(w->upkeep.prune_at, now + AW_PRUNE_PASS_MS * 1000);
	w->upkeep.tidy_at = Max(w->upkeep.tidy_at, now + AW_TIDY_MS * 1000);
}

/* the extension went away: forget the plan and start afresh */
void
aw_upkeep_forget(AwUpkeep *u)
{
	if (aw_plan_prune != NULL)
		SPI_freeplan(aw_plan_prune);
	aw_plan_prune = NULL;
	u->prune_after = 0;
}
