/*-------------------------------------------------------------------------
 * worker_state.h
 *		The delivery worker's state, with its invariants: worker.c owns the
 *		one instance, and hands it to the turns (turn.c) and the upkeep
 *		(upkeep.c), which work on it.
 *
 * IDENTIFICATION
 *		src/worker_state.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_WORKER_STATE_H
#define ALORO_WEBHOOK_WORKER_STATE_H

#include "postgres.h"

#include "lib/ilist.h"
#include "utils/palloc.h"
#include "utils/timestamp.h"

#include "cursor.h"
#include "delivery.h"
#include "stream.h"

/* finished deliveries held at most, waiting to be recorded */
#define AW_MAX_FINISHED 5000
/* waiting deliveries of deleted webhooks remembered from one sweep to the next */
#define AW_MAX_ORPHANS 1000

/* what the worker is doing, for the error handler */
typedef enum AwPhase
{
	AW_PHASE_IDLE,				/* waiting, or driving the transport */
	AW_PHASE_TURN,				/* in a turn's transaction: an error rolls it back */
	AW_PHASE_SWEEP,				/* in the sweep's transaction: an error is only logged */
	AW_PHASE_UPKEEP,			/* in an upkeep transaction (upkeep.c): likewise */
	AW_PHASE_STARTING			/* putting committed claims in flight */
} AwPhase;

/*
 * When the next turn is due: kept apart from the turns themselves, which
 * only tell it what they learned.
 */
typedef struct AwClock
{
	bool		have_due;		/* due is set */
	TimestampTz due;			/* the earliest due delivery (or a recheck) */
	TimestampTz retry_at;		/* after a failed turn, no turn before */
	TimestampTz last_turn;
	TimestampTz last_sweep;
	bool		woken;			/* a commit queued work since the last turn */
} AwClock;

/*
 * The worker's state.  Invariants:
 *
 *	- every delivery the worker holds is in exactly one of claimed,
 *	  in_flight and finished, and its memory context is deleted when it
 *	  leaves the last of them (recorded, dropped or abandoned);
 *	- claimed holds only what the open turn's transaction claimed: after a
 *	  commit it is put in flight (or finished, when it cannot be sent), after
 *	  an abort it is dropped, so it is empty outside a turn;
 *	- in_flight is exactly the deliveries whose HTTP request the transport
 *	  holds, so the room in flight (slots.c) is counted from claimed and
 *	  in_flight alone;
 *	- finished holds at most AW_MAX_FINISHED; it is emptied only by a turn
 *	  that commits their record;
 *	- extension_oid is valid only while the queue of that extension is the
 *	  one worked on; when it changes, everything held is abandoned;
 *	- the deliveries read from the stream that it holds (streamed) are, at
 *	  every commit, the in_flight of its stream_cursors row (stream.c).
 */
/* what the upkeep (upkeep.c) is due to do next */
typedef struct AwUpkeep
{
	TimestampTz prune_at;		/* the next pruning batch */
	int64		prune_after;	/* where the pass goes on: the last id looked at */
	int64		pruned_last;	/* deleted by the last batch */
	TimestampTz tidy_at;		/* the next tidy-up */
} AwUpkeep;

typedef struct AwWorker
{
	Oid			extension_oid;	/* the extension whose queue we work on */
	int			schema;			/* the version of its tables (aw_queue_schema) */
	int64		token;			/* what our claims carry (queue.claimed_by) */
	int			said_waiting;	/* the AwQueueState last logged as waited for */
	AwPhase		phase;

	dlist_head	claimed;
	dlist_head	in_flight;
	dlist_head	finished;
	int			nclaimed;
	int			nfinished;
	TimestampTz finished_since; /* when the oldest of finished came back */

	MemoryContext deliveries_cxt;	/* parent of every delivery's context */
	MemoryContext turn_cxt;		/* reset every loop */

	AwClock		clock;
	AwCursors	cursors;		/* where each webhook's scans of the queue start (cursor.c) */
	TimestampTz queue_due;		/* nothing in the queue is due before; 0: unknown, look */
	bool		behind;			/* deliveries wait for room (as the last turn saw) */
	AwStream	stream;			/* where it is in the stream of new deliveries (stream.c) */
	AwUpkeep	upkeep;

	/* waiting deliveries of deleted webhooks seen at the last sweep */
	int64		orphans[AW_MAX_ORPHANS];
	int			norphans;

	bool		trim_pending;	/* requests went out since the heap was last trimmed */
	char		policy[2 * MAXPGPATH + 8192 + 1024];	/* what kept-alive connections were checked against */
} AwWorker;


/* d's outcome is known: it waits to be recorded */
static inline void
aw_worker_add_finished(AwWorker *w, AwDelivery *d)
{
	d->in_flight = false;
	dlist_push_tail(&w->finished, &d->node);
	if (w->nfinished++ == 0)
		w->finished_since = GetCurrentTimestamp();
}

#endif							/* ALORO_WEBHOOK_WORKER_STATE_H */
