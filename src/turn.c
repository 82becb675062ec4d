/*-------------------------------------------------------------------------
 * turn.c
 *		The transaction work of the delivery worker's turns: record the
 *		finished attempts, claim due deliveries from the queue and read new
 *		ones from the stream (stream.c) for the free room, learn when the
 *		next one is due -- in one short transaction -- and, once it has
 *		committed, put the claimed ones in flight; the sweep; the release of
 *		claims at shutdown.
 *
 * worker.c decides when a turn runs; this file only does it, on the
 * worker's state (AwWorker, worker_state.h) it is handed.
 *
 * IDENTIFICATION
 *		src/turn.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "delivery.h"
#include "health.h"
#include "http.h"
#include "queue.h"
#include "rate.h"
#include "request.h"
#include "slots.h"
#include "spi_util.h"
#include "stream.h"
#include "turn.h"
#include "upkeep.h"
#include "worker_state.h"

/* when due work could not be claimed (locked by someone), look again after */
#define AW_RECHECK_MS 250
/* pause after a turn that failed */
#define AW_RETRY_MS 1000
/* claim rounds in one transaction */
#define AW_MAX_CLAIM_ROUNDS 16

/* the webhooks held back this turn by their rate limit, and when the first may go */
typedef struct AwPaced
{
	int64	   *ids;
	int			n;
	TimestampTz earliest;
} AwPaced;

static void
aw_paced_add(AwPaced *p, int64 webhook_id, TimestampTz next_at)
{
	for (int i = 0; i < p->n; i++)
		if (p->ids[i] == webhook_id)
			return;
	p->ids = p->ids ? repalloc(p->ids, sizeof(int64) * (p->n + 1)) : palloc(sizeof(int64));
	p->ids[p->n++] = webhook_id;
	if (p->n == 1 || next_at < p->earliest)
		p->earliest = next_at;
}

/*
 * the webhooks a scan leaves out: those at their in-flight cap, the paced
 * ones, and those whose next body does not fit in the bytes left
 */
static int
aw_exclusions(AwSlots *slots, AwPaced *paced, AwPaced *big, int64 **out)
{
	int64	   *full;
	int			nfull = aw_slots_full_webhooks(slots, &full);
	int64	   *all;

	if (paced->n == 0 && big->n == 0)
	{
		*out = full;
		return nfull;
	}
	all = palloc(sizeof(int64) * (nfull + paced->n + big->n));
	memcpy(all, full, sizeof(int64) * nfull);
	if (paced->n > 0)
		memcpy(all + nfull, paced->ids, sizeof(int64) * paced->n);
	if (big->n > 0)
		memcpy(all + nfull + paced->n, big->ids, sizeof(int64) * big->n);
	*out = all;
	return nfull + paced->n + big->n;
}

/*
 * aw_claim_queue
 *		Fills the free room with due deliveries from the queue, and learns
 *		when the next one there is due (w->queue_due).
 */
static void
aw_claim_queue(AwWorker *w, AwSlots *slots_p, TimestampTz now)
{
	AwSlots		slots = *slots_p;
	dlist_head *held[2] = {&w->claimed, &w->in_flight};
	bool		more_due = true;
	bool		bytes_full = false;
	AwPaced		big = {NULL, 0, 0};	/* webhooks whose next body is too big for the room */
	int			claimed = 0;
	AwPaced		paced = {NULL, 0, 0};
	int			nexcluded = 0;

	for (int round = 0; round < AW_MAX_CLAIM_ROUNDS && slots.total < slots.cap && more_due; round++)
	{
		int64	   *exclude;
		int			nexclude = aw_exclusions(&slots, &paced, &big, &exclude);
		int			limit = Min(slots.cap - slots.total, Min(aw_batch_size, slots.webhook_cap));
		AwCandidate *cands = palloc(sizeof(AwCandidate) * limit);
		AwCandidate **taken = palloc(sizeof(AwCandidate *) * limit);
		ItemPointerData *take = palloc(sizeof(ItemPointerData) * limit);
		AwDelivery **into = palloc(sizeof(AwDelivery *) * limit);
		AwCursorArgs cur;
		int			n;
		int			ntake = 0;
		int			got;

		aw_cursors_args(&w->cursors, &cur);
		n = aw_queue_candidates(limit, exclude, nexclude, &cur, cands);
		more_due = (n == limit);
		/* take each candidate while there is room for it */
		for (int i = 0; i < n; i++)
		{
			TimestampTz next_at;

			/* a webhook at its rate limit waits: for the rest of the turn, not claimed */
			if (!aw_rate_ready(cands[i].webhook_id, cands[i].rate_limit, now, &next_at))
			{
				aw_paced_add(&paced, cands[i].webhook_id, next_at);
				continue;
			}
			if (aw_slots_take(&slots, cands[i].webhook_id, cands[i].bytes, &bytes_full))
			{
				aw_rate_take(cands[i].webhook_id, cands[i].rate_limit, now);
				taken[ntake] = &cands[i];
				take[ntake++] = cands[i].tid;
			}
			else if (bytes_full)
			{
				/*
				 * No room for a big body: its webhook waits for the rest of
				 * the turn, the others' small bodies go on.
				 */
				aw_paced_add(&big, cands[i].webhook_id, now);
			}
		}
		if (ntake == 0)
			continue;

		for (int i = 0; i < ntake; i++)
			into[i] = aw_delivery_new(w->deliveries_cxt);
		got = aw_queue_claim(take, ntake, w->token, into);
		for (int i = 0; i < ntake; i++)
		{
			if (i < got)
			{
				dlist_push_tail(&w->claimed, &into[i]->node);
				w->nclaimed++;
			}
			else
				aw_delivery_free(into[i]);
		}
		/*
		 * The next scans of each webhook start after what was taken of it
		 * (a candidate left for want of room stays before the cursor, and
		 * one not claimable after all is for the sweep).
		 */
		for (int i = 0; i < ntake; i++)
			aw_cursors_advance(&w->cursors, taken[i]->webhook_id, taken[i]->due_at, taken[i]->delivery_id);
		claimed += got;
		if (got < ntake)
		{
			/* some were not claimable after all: count again from what is held */
			aw_slots_count(&slots, w->turn_cxt, held, lengthof(held));
		}
	}

	/* when is the next one due, among webhooks with room? */
	w->clock.have_due = false;
	if (slots.total < slots.cap && !more_due)
	{
		int64	   *exclude;
		int			nexclude = aw_exclusions(&slots, &paced, &big, &exclude);
		AwCursorArgs cur;

		aw_cursors_args(&w->cursors, &cur);
		nexcluded = nexclude;
		w->clock.have_due = aw_queue_next_due(exclude, nexclude, &cur, &w->clock.due);
		if (w->clock.have_due && claimed == 0 && w->clock.due <= GetCurrentTransactionStartTimestamp())
		{
			/* due but not claimable (locked by someone): look again shortly */
			w->clock.due = GetCurrentTimestamp() + AW_RECHECK_MS * 1000;
		}
	}
	/*
	 * What the next turns need not ask the queue again: nothing is due there
	 * before w->queue_due -- unless rows were left for want of room, or some
	 * webhooks were left out of the look, or someone queues something
	 * (aw_claim_due).
	 */
	if (more_due || nexcluded > 0 || paced.n > 0 || big.n > 0 || slots.total >= slots.cap)
		w->queue_due = 0;
	else
		w->queue_due = w->clock.have_due ? w->clock.due : DT_NOEND;
	/* a paced webhook with due deliveries: a turn when its next request may start */
	if (paced.n > 0 && (!w->clock.have_due || paced.earliest < w->clock.due))
	{
		w->clock.have_due = true;
		w->clock.due = paced.earliest;
	}
	*slots_p = slots;
}

/*
 * aw_claim_due
 *		Fills the free room with due deliveries: from the queue (when it may
 *		have any due), then new ones from the stream.  Runs inside the turn's
 *		transaction; the claimed ones are started after it commits.
 */
static void
aw_claim_due(AwWorker *w)
{
	AwSlots		slots;
	dlist_head *held[2] = {&w->claimed, &w->in_flight};
	TimestampTz now = GetCurrentTimestamp();

	aw_slots_count(&slots, w->turn_cxt, held, lengthof(held));
	/* after a policy change, nothing new starts on the old connections */
	if (!aw_http_ready_for_new())
		slots.cap = 0;

	/* someone queued something since: what the worker knew of the queue is old */
	if (aw_cursors_before_scan(&w->cursors))
		w->queue_due = 0;
	if (w->queue_due == 0 || w->queue_due <= now)
		aw_claim_queue(w, &slots, now);
	else
	{
		w->clock.have_due = w->queue_due != DT_NOEND;
		w->clock.due = w->queue_due;
	}

	/* then the new deliveries, from the stream, for the room left (0.3.0's tables) */
	if (aw_queue_schema() >= 3)
	{
		TimestampTz stream_due;

		(void) aw_stream_claim(w, &slots, &stream_due);
		if (stream_due != 0 && (!w->clock.have_due || stream_due < w->clock.due))
		{
			w->clock.have_due = true;
			w->clock.due = stream_due;
		}
	}
	/* deliveries wait for room: the next turn comes as soon as there is some */
	w->behind = w->queue_due == 0 || (w->queue_due != DT_NOEND && w->queue_due <= now) ||
		(aw_queue_schema() >= 3 && aw_stream_behind(&w->stream));
}

/* the statements prepared for the extension's tables, and what the stream read through them */
static void
aw_forget_statements(AwWorker *w)
{
	aw_queue_forget_plans();
	aw_record_forget_plans();
	aw_stream_forget(&w->stream);
}

/* the queue we worked on is gone (extension dropped, or dropped and re-created) */
static void
aw_detach_queue(AwWorker *w)
{
	aw_delivery_free_list(&w->in_flight);
	aw_delivery_free_list(&w->finished);
	w->nfinished = 0;
	aw_cursors_reset(&w->cursors);
	aw_forget_statements(w);
	aw_health_forget();
	aw_rate_forget();
	aw_upkeep_forget(&w->upkeep);
	w->clock.have_due = false;
	w->queue_due = 0;
	w->extension_oid = InvalidOid;
}

/* releases the claims of workers that no longer run; returns how many */
static uint64
aw_release_stale_claims(AwWorker *w)
{
	int64		live[AW_MAX_WORKERS];
	int			nlive = aw_live_worker_tokens(live, true);

	return aw_queue_release_claims(live, nlive);
}

/* decides and records the finished deliveries; returns how many */
static int
aw_record_finished(AwWorker *w)
{
	AwDelivery **ds = palloc(sizeof(AwDelivery *) * Max(w->nfinished, 1));
	int			n = 0;
	dlist_iter	it;

	dlist_foreach(it, &w->finished)
	{
		AwDelivery *d = dlist_container(AwDelivery, node, it.cur);

		aw_schedule_next(&d->outcome, d->budget_start);
		ds[n++] = d;
		/* a retry (or a queue row gone) changes what the queue holds */
		if (!d->streamed || strcmp(d->outcome.new_status, "succeeded") != 0)
			w->queue_due = 0;
	}
	aw_queue_record(ds, n, w->token);
	aw_health_turn(ds, n);
	return n;
}

/* says once what the worker waits for, and when to look again */
static void
aw_not_attached(AwWorker *w, AwQueueState state)
{
	if (state != AW_QUEUE_NOT_READY && w->said_waiting != (int) state)
	{
		if (state == AW_QUEUE_LEGACY)
			ereport(LOG,
					(errmsg("aloro_webhook worker is waiting for ALTER EXTENSION aloro_webhook UPDATE in database \"%s\"",
							aw_database_name),
					 errdetail("The library is version %s; the extension's tables there are still version %s's.",
							   AW_VERSION, aw_schema_version() == 1 ? "0.1.0" : "0.2.0"),
					 errhint("Run ALTER EXTENSION aloro_webhook UPDATE; deliveries queued meanwhile are kept and sent afterwards.")));
		else
			ereport(LOG,
					(errmsg("aloro_webhook worker is waiting for CREATE EXTENSION aloro_webhook in database \"%s\"",
							aw_database_name)));
		w->said_waiting = (int) state;
	}
	/* installed but not usable yet: look again shortly */
	w->clock.have_due = state != AW_QUEUE_NONE;
	if (w->clock.have_due)
		w->clock.due = GetCurrentTimestamp() +
			(state == AW_QUEUE_LEGACY ? AW_RETRY_MS : AW_RECHECK_MS) * 1000;
}

/* after a commit: the claimed deliveries go out, or are failed unsent */
static void
aw_start_claimed(AwWorker *w)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &w->claimed)
	{
		AwDelivery *d = dlist_container(AwDelivery, node, it.cur);
		const char *unsendable = aw_request_unsendable(d);

		dlist_delete(&d->node);
		w->nclaimed--;
		if (unsendable != NULL && w->nfinished < AW_MAX_FINISHED)
		{
			aw_request_unsent(d, unsendable);
			aw_worker_add_finished(w, d);
		}
		else if (unsendable != NULL)
			aw_delivery_free(d);	/* released when the worker restarts */
		else
		{
			aw_request_prepare(d);
			aw_http_start(&d->http);
			d->in_flight = true;
			dlist_push_tail(&w->in_flight, &d->node);
			w->trim_pending = true;
		}
	}
}

/*
 * aw_turn
 *		One short transaction: record finished attempts, claim due work.
 *		What the turn recorded is forgotten, and what it claimed is started,
 *		only after it commits.
 */
void
aw_turn(AwWorker *w)
{
	AwQueueState state;
	Oid			extension_oid;
	Oid			attached = InvalidOid;
	int			recorded = 0;

	w->phase = AW_PHASE_TURN;
	aw_xact_begin("aloro_webhook: recording attempts and claiming deliveries");
	aw_queue_lock_tables();

	extension_oid = aw_queue_extension_oid(&state);
	if (extension_oid != w->extension_oid && OidIsValid(w->extension_oid))
		aw_detach_queue(w);
	else if (OidIsValid(extension_oid) && aw_queue_schema() != w->schema && w->schema != 0)
	{
		/* ALTER EXTENSION ... UPDATE ran: the statements are made anew for the new tables */
		aw_forget_statements(w);
	}
	w->schema = OidIsValid(extension_oid) ? aw_queue_schema() : 0;
	if (!OidIsValid(extension_oid))
		aw_not_attached(w, state);
	else
	{
		uint64		released = 0;

		/* a queue to work on: whatever was in flight before is due again */
		if (!OidIsValid(w->extension_oid))
		{
			released = aw_release_stale_claims(w);
			attached = extension_oid;
			w->queue_due = 0;
		}
		if (w->nfinished > 0)
			recorded = aw_record_finished(w);
		aw_claim_due(w);
		/* where it is in the stream, as this transaction leaves it */
		if (w->schema >= 3)
			aw_stream_save(w);
		if (OidIsValid(attached))
			ereport(LOG,
					(errmsg("aloro_webhook worker is delivering webhooks from database \"%s\"",
							aw_database_name),
					 released > 0 ?
					 errdetail("%llu deliveries that were in flight when the worker last stopped are due again.",
							   (unsigned long long) released) : 0));
	}

	aw_xact_commit();
	/* committed: from here on nothing may undo the turn */
	w->phase = AW_PHASE_STARTING;
	aw_health_committed();
	aw_stream_committed(&w->stream);
	if (OidIsValid(attached))
	{
		w->extension_oid = attached;
		w->said_waiting = -1;
	}
	if (recorded > 0)
	{
		aw_delivery_free_list(&w->finished);
		w->nfinished = 0;
	}
	/* only now, outside any transaction, does the network come in */
	aw_start_claimed(w);
	w->phase = AW_PHASE_IDLE;
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * aw_turn_failed
 *		After an error in a turn's transaction, which the caller rolled back:
 *		what it claimed was not claimed after all; what it was recording is
 *		still to be recorded, at the next turn, after a pause.
 */
void
aw_turn_failed(AwWorker *w)
{
	aw_delivery_free_list(&w->claimed);
	w->nclaimed = 0;
	aw_stream_turn_failed(&w->stream);
	w->queue_due = 0;
	aw_health_aborted();
	w->clock.retry_at = GetCurrentTimestamp() + AW_RETRY_MS * 1000;
	w->clock.have_due = true;
	w->clock.due = w->clock.retry_at;
}

/*
 * aw_sweep
 *		Now and then, in a transaction of its own: release claims of workers
 *		that no longer run (a restore brings such claims along), and fail
 *		waiting deliveries of deleted webhooks that a race let through --
 *		those seen orphaned at two sweeps in a row, so that a restore that
 *		loads the queue before the webhooks fails none of them.
 */
void
aw_sweep(AwWorker *w)
{
	int64		seen[AW_MAX_ORPHANS];
	int64		twice[AW_MAX_ORPHANS];
	int			nseen;
	int			ntwice = 0;

	w->phase = AW_PHASE_SWEEP;
	aw_xact_begin("aloro_webhook: releasing stale claims, failing deliveries of deleted webhooks");
	aw_queue_lock_tables();
	aw_release_stale_claims(w);
	nseen = aw_queue_orphans(seen, AW_MAX_ORPHANS);
	/* failed: those orphaned at the last sweep and still now */
	for (int i = 0; i < nseen; i++)
		for (int j = 0; j < w->norphans; j++)
			if (w->orphans[j] == seen[i])
				twice[ntwice++] = seen[i];
	if (ntwice > 0)
		aw_queue_fail_orphans(twice, ntwice);
	aw_xact_commit();
	memcpy(w->orphans, seen, sizeof(int64) * nseen);
	w->norphans = nseen;
	w->queue_due = 0;			/* it may have released or failed some */
	w->clock.last_sweep = GetCurrentTimestamp();
	w->phase = AW_PHASE_IDLE;
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * On shutdown: record what finished, then make what is still in flight due
 * again, at once.  Best effort: start-up releases whatever this leaves.
 */
void
aw_release_on_exit(AwWorker *w)
{
	AwQueueState state;

	if (!OidIsValid(w->extension_oid))
		return;
	aw_delivery_free_list(&w->in_flight);
	aw_xact_begin("aloro_webhook: stopping");
	aw_queue_lock_tables();
	if (aw_queue_extension_oid(&state) == w->extension_oid)
	{
		int64		others[AW_MAX_WORKERS];
		int			nothers = aw_live_worker_tokens(others, false);

		if (w->nfinished > 0)
			aw_record_finished(w);
		aw_health_write();
		/* ours are released: every claim but those of the workers still running */
		aw_queue_release_claims(others, nothers);
	}
	aw_xact_commit();
}

