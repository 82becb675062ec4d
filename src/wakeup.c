/*-------------------------------------------------------------------------
 * wakeup.c
 *		What a commit tells the others: the delivery workers that there is
 *		work (and from which due time), the backends that their copies of
 *		the webhooks are stale.
 *
 * The worker sleeps on its latch.  A transaction that queues deliveries
 * marks itself (aw_wake_worker_at_commit); when it commits, a transaction
 * callback sets the latch whose address the worker published in shared
 * memory (shmem.c).  A rollback sets nothing.  Likewise a transaction that
 * changed webhooks bumps the shared version of the table at commit.
 *
 * IDENTIFICATION
 *		src/wakeup.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"

/* set when this transaction queued work; consumed at commit or abort */
static bool aw_wake_pending = false;
/* the earliest due time this transaction gave a queue row (DT_NOEND: none) */
static TimestampTz aw_due_min = DT_NOEND;
/* did this transaction change webhooks?  (webhook_cache.c) */
static bool aw_webhooks_changed_in_xact = false;
/*
 * the webhooks' version (shmem.c) before this transaction first queued
 * deliveries held for a disabled webhook, without waking the worker; 0: none
 */
static uint64 aw_held_seen = 0;
/* is this process a delivery worker?  (its own queue changes publish nothing) */
static bool aw_am_worker = false;

/* Has the current transaction changed webhooks? */
bool
aw_webhooks_changed_here(void)
{
	return aw_webhooks_changed_in_xact;
}

PG_FUNCTION_INFO_V1(aloro_webhook_webhooks_changed);

/*
 * Statement trigger on webhooks: at commit every backend's copy is stale, and
 * the workers look again from the start (a webhook enabled again has held
 * deliveries that are due now; 0.2.0 had a trigger of its own for that).
 */
Datum
aloro_webhook_webhooks_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("aloro_webhook._webhooks_changed() must be called as a trigger")));
	aw_webhooks_changed_in_xact = true;
	aw_wake_worker_for(DT_NOBEGIN);
	return PointerGetDatum(NULL);
}

/*
 * After COMMIT PREPARED: a prepared transaction may have queued deliveries
 * or changed webhooks, and its commit ran none of the callbacks below.
 * Wake the workers, have them look from the start, and make every copy of
 * the webhooks stale.
 */
void
aw_after_commit_prepared(void)
{
	if (!aw_shmem_attached())
		return;
	aw_bump_webhooks_version();
	aw_publish_due(DT_NOBEGIN);
	aw_wake_workers();
}

/* This process is a delivery worker. */
void
aw_set_am_worker(void)
{
	aw_am_worker = true;
}

/* Ask for the worker to be woken when the current transaction commits. */
void
aw_wake_worker_at_commit(void)
{
	aw_wake_pending = true;
}

/*
 * Ask for the worker to be woken at commit, and note that this transaction
 * gave a queue row the due time due (DT_NOBEGIN: look from the start), for
 * the workers' cursors (cursor.c).  A worker's own rows are behind no
 * cursor: it only wakes the others.
 */
void
aw_wake_worker_for(TimestampTz due)
{
	aw_wake_pending = true;
	if (!aw_am_worker && due < aw_due_min)
		aw_due_min = due;
}

/*
 * This transaction queued deliveries only for webhooks that were disabled
 * when it looked (as of webhooks version seen), so it wakes no one -- unless
 * the webhooks change before it commits: one of them may have been enabled
 * again meanwhile, and that commit's wake-up came before these rows were
 * visible.
 */
void
aw_wake_if_webhooks_change(uint64 seen)
{
	if (aw_held_seen == 0)
		aw_held_seen = seen;
}

PG_FUNCTION_INFO_V1(aloro_webhook_wake);

/*
 * aloro_webhook._wake(due): what every SQL statement that puts a delivery in
 * line calls (0.3.0; before, statement triggers on the queue did it).  NULL:
 * look from the start.  Always true, so that a statement can call it in a
 * WHERE clause for each row it queued.
 */
Datum
aloro_webhook_wake(PG_FUNCTION_ARGS)
{
	aw_wake_worker_for(PG_ARGISNULL(0) ? DT_NOBEGIN : PG_GETARG_TIMESTAMPTZ(0));
	PG_RETURN_BOOL(true);
}

/* at commit: tell the workers and the copies; at abort or prepare: forget */
static void
aw_xact_callback(XactEvent event, void *arg)
{

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (aw_webhooks_changed_in_xact)
				aw_bump_webhooks_version();
			aw_webhooks_changed_in_xact = false;
			if (aw_held_seen != 0 && aw_shmem_attached() && aw_webhooks_version() != aw_held_seen)
				aw_wake_worker_for(DT_NOBEGIN);
			aw_held_seen = 0;
			if (!aw_wake_pending || !aw_shmem_attached())
				break;
			aw_wake_pending = false;
			if (aw_due_min != DT_NOEND)
				aw_publish_due(aw_due_min);
			aw_due_min = DT_NOEND;
			aw_wake_workers();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			aw_held_seen = 0;
			aw_wake_pending = false;
			aw_due_min = DT_NOEND;
			aw_webhooks_changed_in_xact = false;
			break;
		case XACT_EVENT_PREPARE:
			/* COMMIT PREPARED tells the workers and the copies (utility.c) */
			aw_held_seen = 0;
			aw_wake_pending = false;
			aw_due_min = DT_NOEND;
			aw_webhooks_changed_in_xact = false;
			break;
		default:
			break;
	}
}

/* Registers the transaction callback (from _PG_init). */
void
aw_install_xact_callback(void)
{
	RegisterXactCallback(aw_xact_callback, NULL);
}

PG_FUNCTION_INFO_V1(aloro_webhook_wake_at_commit);

/*
 * 0.2.0's statement trigger: wake the worker at commit.  On webhooks (one
 * enabled again) it asks the workers to look from the start; on the queue,
 * with the rows the statement inserted or updated as its transition table,
 * it notes their earliest due time.  0.3.0 installs neither trigger (the
 * webhooks' own, above, wakes the worker); a library serving a 0.2.0
 * database still runs them.
 */
Datum
aloro_webhook_wake_at_commit(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	int			attnum;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("aloro_webhook._wake_at_commit() must be called as a trigger")));
	/* a statement that changed no row wakes the worker too (0.2.0's install does that) */
	aw_wake_worker_at_commit();
	attnum = td->tg_newtable ? SPI_fnumber(RelationGetDescr(td->tg_relation), "due_at") : 0;
	if (attnum <= 0)
		aw_wake_worker_for(DT_NOBEGIN);
	else
	{
		TupleDesc	desc = RelationGetDescr(td->tg_relation);
		Tuplestorestate *rows = td->tg_newtable;
		TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
		/*
		 * A read pointer of our own, so as not to move another reader's; it
		 * starts where pointer 0 is, at the first row: no one else reads
		 * this trigger's transition table.
		 */
		int			ptr = tuplestore_alloc_read_pointer(rows, 0);

		tuplestore_select_read_pointer(rows, ptr);
		while (tuplestore_gettupleslot(rows, true, false, slot))
		{
			bool		isnull;
			Datum		due = slot_getattr(slot, attnum, &isnull);

			if (!isnull)
				aw_wake_worker_for(DatumGetTimestampTz(due));
		}
		tuplestore_select_read_pointer(rows, 0);
		ExecDropSingleTupleTableSlot(slot);
	}
	return PointerGetDatum(NULL);
}
