/*-------------------------------------------------------------------------
 * stream.c
 *		The stream of new deliveries: the worker reads delivery_log in id
 *		order from where its cursor (stream_cursors) says, and sends what it
 *		reads without claiming it row by row.
 *
 * The call-ended trigger appends one delivery_log row per delivery, with a
 * due_at: that is all a call end writes.  The worker reads the rows after
 * read_upto, sends them, and records each attempt; nothing else is written
 * for a delivery whose first attempt succeeds.  Those that cannot go now
 * leave the stream for the queue (queue.c), where waiting is cheap to look
 * at: a disabled webhook's (held), one whose webhook is at its limit for
 * longer than AW_STREAM_WAIT_MS, a paced one (rate_limit); a deleted
 * webhook's fail.
 *
 * Ids are drawn before their transactions commit, so rows become visible
 * out of id order: reading past an id that is not visible yet leaves an open
 * range.  The trigger draws its ids after its transaction has an id
 * (enqueue.c), so only the transactions in progress when the worker read
 * past the range can fill it; the range is looked at again whenever one of
 * them has ended, and closed when all have.  A restart does not know which
 * of the ranges' rows it had sent, so looking at a range also asks the
 * tables: a row with an attempt, a state or a queue row is done.
 *
 * The worker's row of stream_cursors keeps, in the same transaction as the
 * turn's claims and records: read_upto, the open ranges (with the rows read
 * and not yet sent), and the ids in flight.  After a crash, the ids that
 * were in flight are recorded as interrupted and sent again
 * (_release_stream()); the open ranges are looked at at once.  With
 * aloro_webhook.workers = N, worker k reads every row and takes those whose
 * id is k modulo N; a change of N merges the rows at the next start.  The
 * open ranges and the cursor row are kept by stream_row.c.
 *
 * IDENTIFICATION
 *		src/stream.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "postmaster/bgworker.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "delivery.h"
#include "queue.h"
#include "rate.h"
#include "slots.h"
#include "spi_util.h"
#include "stream.h"
#include "stream_row.h"
#include "worker_state.h"

/* a row that found no room this long leaves the stream for the queue */
#define AW_STREAM_WAIT_MS 250
/* a paced webhook's row that may not go for longer than this leaves the stream */
#define AW_STREAM_PACE_MS 50

/* the stream's statements, prepared on first use */
static struct
{
	SPIPlanPtr	read;			/* rows after read_upto */
	SPIPlanPtr	look;			/* an open range's rows not done yet */
	SPIPlanPtr	leave;			/* rows to the queue, or failed */
}			aw_plans;

/* the columns both reads return */
#define AW_STREAM_COLUMNS \
	"SELECT d.id, d.webhook_id, d.bytes, d.due_at, w.enabled, COALESCE(w.rate_limit, 0) " \
	"  FROM aloro_webhook.delivery_log d " \
	"  LEFT JOIN aloro_webhook.webhooks w ON w.id = d.webhook_id "

/* a row as the reads return it */
typedef struct AwReadRow
{
	int64		id;
	int64		webhook_id;
	int			bytes;
	bool		on_stream;		/* it has a due_at */
	TimestampTz due_at;
	int			webhook;		/* 1 enabled, 0 disabled, -1 deleted */
	int			rate_limit;
} AwReadRow;

/* what leaves the stream this turn: to the queue, or failed (webhook deleted) */
typedef struct AwLeaving
{
	int64	   *ids;
	int64	   *webhooks;
	TimestampTz *due;
	int32	   *bytes;
	int			n;
	int			max;
	int64	   *gone_ids;
	int64	   *gone_webhooks;
	int			ngone;
	int			gone_max;
} AwLeaving;

/* r leaves the stream for the queue, due at due */
static void
aw_leaving_queue(AwLeaving *l, int64 id, int64 webhook_id, TimestampTz due, int bytes)
{
	if (l->n == l->max)
	{
		l->max = Max(l->max * 2, 64);
		l->ids = l->ids ? repalloc(l->ids, sizeof(int64) * l->max) : palloc(sizeof(int64) * l->max);
		l->webhooks = l->webhooks ? repalloc(l->webhooks, sizeof(int64) * l->max) : palloc(sizeof(int64) * l->max);
		l->due = l->due ? repalloc(l->due, sizeof(TimestampTz) * l->max) : palloc(sizeof(TimestampTz) * l->max);
		l->bytes = l->bytes ? repalloc(l->bytes, sizeof(int32) * l->max) : palloc(sizeof(int32) * l->max);
	}
	l->ids[l->n] = id;
	l->webhooks[l->n] = webhook_id;
	l->due[l->n] = due;
	l->bytes[l->n++] = bytes;
}

/* r fails: its webhook is gone */
static void
aw_leaving_gone(AwLeaving *l, int64 id, int64 webhook_id)
{
	if (l->ngone == l->gone_max)
	{
		l->gone_max = Max(l->gone_max * 2, 16);
		l->gone_ids = l->gone_ids ? repalloc(l->gone_ids, sizeof(int64) * l->gone_max) :
			palloc(sizeof(int64) * l->gone_max);
		l->gone_webhooks = l->gone_webhooks ? repalloc(l->gone_webhooks, sizeof(int64) * l->gone_max) :
			palloc(sizeof(int64) * l->gone_max);
	}
	l->gone_ids[l->ngone] = id;
	l->gone_webhooks[l->ngone++] = webhook_id;
}

/* do rows of the stream wait for room (read and not sent, or not read yet)? */
bool
aw_stream_behind(const AwStream *s)
{
	if (s->nwaiting > 0 || s->read_full)
		return true;
	for (int i = 0; i < s->nopen; i++)
		if (s->open[i].look_now)
			return true;
	return false;
}

void
aw_stream_init(AwStream *s)
{
	memset(s, 0, sizeof(*s));
	s->cxt = AllocSetContextCreate(TopMemoryContext, "aloro_webhook stream",
								   ALLOCSET_SMALL_SIZES);
}

/* The stream we read is gone (the extension dropped, or re-created). */
void
aw_stream_forget(AwStream *s)
{
	MemoryContext cxt = s->cxt;
	SPIPlanPtr *plans = (SPIPlanPtr *) &aw_plans;

	for (size_t i = 0; i < sizeof(aw_plans) / sizeof(SPIPlanPtr); i++)
		if (plans[i] != NULL)
			SPI_freeplan(plans[i]);
	memset(&aw_plans, 0, sizeof(aw_plans));
	aw_stream_row_forget();
	MemoryContextReset(cxt);
	memset(s, 0, sizeof(*s));
	s->cxt = cxt;
}

/*
 * After a turn that was rolled back: what it read and took is forgotten
 * with it.  The next turn reads the row again -- where the last commit left
 * the stream -- but the deliveries in flight are still this worker's.
 */
void
aw_stream_turn_failed(AwStream *s)
{
	s->queued_due = 0;
	if (s->attached)
	{
		s->attached = false;
		s->keep_in_flight = true;
	}
}

/* ---------------------------------------------------------------------------
 * Reading
 * ---------------------------------------------------------------------------
 */

/* the rows the last read returned, into out[] */
static int
aw_read_rows(AwReadRow *out)
{
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Datum		enabled;

		out[i].id = DatumGetInt64(aw_spi_datum(i, 1, &isnull));
		out[i].webhook_id = DatumGetInt64(aw_spi_datum(i, 2, &isnull));
		out[i].bytes = DatumGetInt32(aw_spi_datum(i, 3, &isnull));
		out[i].due_at = DatumGetTimestampTz(aw_spi_datum(i, 4, &isnull));
		out[i].on_stream = !isnull;
		enabled = aw_spi_datum(i, 5, &isnull);
		out[i].webhook = isnull ? -1 : (DatumGetBool(enabled) ? 1 : 0);
		out[i].rate_limit = DatumGetInt32(aw_spi_datum(i, 6, &isnull));
	}
	return (int) SPI_processed;
}

/* is id one this worker holds already (waiting, or in one of its lists)? */
static bool
aw_stream_holds(AwWorker *w, HTAB *held, int64 id)
{
	bool		found;

	(void) hash_search(held, &id, HASH_FIND, &found);
	return found;
}

/* the ids this worker holds from the stream, as a set */
static HTAB *
aw_stream_held_set(AwWorker *w)
{
	HTAB	   *set = aw_webhook_hash("aloro_webhook stream ids held", sizeof(int64), w->turn_cxt);
	dlist_head *lists[3] = {&w->claimed, &w->in_flight, &w->finished};

	for (int l = 0; l < 3; l++)
	{
		dlist_iter	it;

		dlist_foreach(it, lists[l])
		{
			AwDelivery *d = dlist_container(AwDelivery, node, it.cur);

			if (d->streamed)
				(void) hash_search(set, &d->id, HASH_ENTER, NULL);
		}
	}
	for (int i = 0; i < w->stream.nwaiting; i++)
		(void) hash_search(set, &w->stream.waiting[i].id, HASH_ENTER, NULL);
	return set;
}

/* a row read from the stream: it waits for room, leaves, or fails */
static void
aw_stream_take_in(AwWorker *w, const AwReadRow *r, TimestampTz now, AwLeaving *leaving)
{
	AwStream   *s = &w->stream;

	if (r->webhook < 0)
		aw_leaving_gone(leaving, r->id, r->webhook_id);
	else if (r->webhook == 0)
	{
		/* held: its webhook is disabled; it waits in the queue */
		aw_leaving_queue(leaving, r->id, r->webhook_id, r->due_at, r->bytes);
	}
	else
	{
		AwStreamRow *row = &s->waiting[s->nwaiting++];

		row->id = r->id;
		row->webhook_id = r->webhook_id;
		row->bytes = r->bytes;
		row->rate_limit = r->rate_limit;
		row->waiting_since = now;
	}
}

/* looks at the open ranges that one of their transactions has ended since */
static void
aw_stream_look(AwWorker *w, Snapshot snap, TimestampTz now, AwLeaving *leaving, int room)
{
	AwStream   *s = &w->stream;
	HTAB	   *held = NULL;
	int			kept = 0;

	for (int i = 0; i < s->nopen; i++)
	{
		AwOpenRange *r = &s->open[i];
		bool		ended = false;
		int			still = 0;

		for (int j = 0; j < r->nxids; j++)
		{
			if (XidInMVCCSnapshot(r->xids[j], snap))
				r->xids[still++] = r->xids[j];
			else
				ended = true;
		}
		r->nxids = still;
		/* by a horizon: looked at every turn until every transaction before it has ended */
		if (TransactionIdIsValid(r->horizon))
		{
			ended = true;
			if (!TransactionIdPrecedes(snap->xmin, r->horizon))
				r->horizon = InvalidTransactionId;
		}
		/* no room to take what it may have now: looked at later */
		if (ended && room <= s->nwaiting)
			r->look_now = true;
		if ((ended || r->look_now) && room > s->nwaiting)
		{
			Datum		args[5];
			AwReadRow  *rows;
			int			n;
			int			limit = room - s->nwaiting;

			if (held == NULL)
				held = aw_stream_held_set(w);
			aw_prepare_once(&aw_plans.look,
							AW_STREAM_COLUMNS
							" WHERE d.id >= $1 AND d.id <= $2 AND d.due_at IS NOT NULL "
							"   AND d.id % $4 = $5 "
							"   AND NOT EXISTS (SELECT FROM aloro_webhook.delivery_attempts a "
							"                    WHERE a.delivery_id = d.id) "
							"   AND NOT EXISTS (SELECT FROM aloro_webhook.delivery_state s "
							"                    WHERE s.delivery_id = d.id) "
							"   AND NOT EXISTS (SELECT FROM aloro_webhook.queue q WHERE q.delivery_id = d.id) "
							" ORDER BY d.id LIMIT $3",
							5, (Oid[]) {INT8OID, INT8OID, INT4OID, INT8OID, INT8OID});
			args[0] = Int64GetDatum(r->lo);
			args[1] = Int64GetDatum(r->hi);
			/* rows held already come back too: ask for that many more */
			args[2] = Int32GetDatum(limit + (int) hash_get_num_entries(held));
			args[3] = Int64GetDatum(s->shares);
			args[4] = Int64GetDatum(s->share);
			if (SPI_execute_snapshot(aw_plans.look, args, NULL, snap, InvalidSnapshot,
									 false, false, 0) != SPI_OK_SELECT)
				elog(ERROR, "could not look at the stream's open ranges");
			rows = palloc(sizeof(AwReadRow) * Max(SPI_processed, 1));
			n = aw_read_rows(rows);
			r->look_now = false;
			for (int k = 0; k < n; k++)
			{
				if (aw_stream_holds(w, held, rows[k].id))
					continue;
				if (s->nwaiting >= room)
				{
					/* no room to read more now: look again next turn */
					r->look_now = true;
					break;
				}
				aw_stream_take_in(w, &rows[k], now, leaving);
				(void) hash_search(held, &rows[k].id, HASH_ENTER, NULL);
			}
		}
		/* closed once no transaction that could fill it is left */
		if (r->nxids > 0 || TransactionIdIsValid(r->horizon) || r->look_now)
			s->open[kept++] = *r;
		else if (r->xids)
			pfree(r->xids);
	}
	s->nopen = kept;
}

/*
 * Reads the rows after read_upto, up to limit of them: those of this
 * worker's share that are due wait for room (or leave); ids not visible yet
 * leave open ranges.  Stops before a row not due yet.
 */
static void
aw_stream_read(AwWorker *w, Snapshot snap, TransactionId next, TimestampTz now, int limit,
			   AwLeaving *leaving)
{
	AwStream   *s = &w->stream;
	Datum		args[2];
	AwReadRow  *rows;
	int			n;

	aw_prepare_once(&aw_plans.read,
					AW_STREAM_COLUMNS " WHERE d.id > $1 ORDER BY d.id LIMIT $2",
					2, (Oid[]) {INT8OID, INT4OID});
	args[0] = Int64GetDatum(s->read_upto);
	args[1] = Int32GetDatum(limit);
	if (SPI_execute_snapshot(aw_plans.read, args, NULL, snap, InvalidSnapshot,
							 false, false, limit) != SPI_OK_SELECT)
		elog(ERROR, "could not read the stream of deliveries");
	rows = palloc(sizeof(AwReadRow) * Max(SPI_processed, 1));
	n = aw_read_rows(rows);
	s->read_full = n >= limit;
	for (int i = 0; i < n; i++)
	{
		AwReadRow  *r = &rows[i];
		bool		mine = r->on_stream && r->id % s->shares == s->share;

		/* not due yet: the stream waits for it (the rest are due no sooner) */
		if (mine && r->due_at > now)
		{
			s->not_before = r->due_at;
			return;
		}
		/* ids skipped over may still be committed by someone */
		if (r->id > s->read_upto + 1)
			aw_open_add(s, s->read_upto + 1, r->id - 1, snap, next, false);
		s->read_upto = r->id;
		if (mine)
			aw_stream_take_in(w, r, now, leaving);
	}
}

/* leaves the stream: the queue takes them (or they fail: webhook deleted) */
static void
aw_stream_leave(AwStream *s, AwLeaving *leaving)
{
	Datum		args[6];
	Datum	   *due;

	if (leaving->n == 0 && leaving->ngone == 0)
		return;
	aw_prepare_once(&aw_plans.leave,
					"WITH q AS ("
					"  INSERT INTO aloro_webhook.queue (delivery_id, webhook_id, due_at, bytes) "
					"  SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), "
					"                           pg_catalog.unnest($3), pg_catalog.unnest($4)) "
					"  ON CONFLICT (delivery_id) DO NOTHING) "
					"INSERT INTO aloro_webhook.delivery_state (delivery_id, status, last_error, finished_at) "
					"SELECT x.id, 'failed', aloro_webhook._webhook_deleted_message(x.w, NULL), pg_catalog.now() "
					"  FROM ROWS FROM (pg_catalog.unnest($5), pg_catalog.unnest($6)) AS x(id, w) "
					"ON CONFLICT (delivery_id) DO NOTHING",
					6, (Oid[]) {INT8ARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID, INT4ARRAYOID,
					INT8ARRAYOID, INT8ARRAYOID});
	due = palloc(sizeof(Datum) * Max(leaving->n, 1));
	for (int i = 0; i < leaving->n; i++)
		due[i] = TimestampTzGetDatum(leaving->due[i]);
	{
		Datum	   *bytes = palloc(sizeof(Datum) * Max(leaving->n, 1));

		for (int i = 0; i < leaving->n; i++)
			bytes[i] = Int32GetDatum(leaving->bytes[i]);
		args[0] = aw_int8_array(leaving->ids, leaving->n);
		args[1] = aw_int8_array(leaving->webhooks, leaving->n);
		args[2] = PointerGetDatum(construct_array(due, leaving->n, TIMESTAMPTZOID, 8,
												  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[3] = PointerGetDatum(construct_array(bytes, leaving->n, INT4OID, 4, true, TYPALIGN_INT));
	}
	args[4] = aw_int8_array(leaving->gone_ids, leaving->ngone);
	args[5] = aw_int8_array(leaving->gone_webhooks, leaving->ngone);
	if (SPI_execute_plan(aw_plans.leave, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not move deliveries from the stream to the queue");
	/* the queue's scans start where these are due (cursor.c): said after the commit */
	for (int i = 0; i < leaving->n; i++)
		if (s->queued_due == 0 || leaving->due[i] < s->queued_due)
			s->queued_due = leaving->due[i];
}

/*
 * After the turn's commit: the queue holds what left the stream in it, and
 * with several workers, the one whose share of the queue a row is may be
 * another -- wake them all.
 */
void
aw_stream_committed(AwStream *s)
{
	if (s->queued_due == 0)
		return;
	aw_publish_due(s->queued_due);
	if (aw_workers > 1)
		aw_wake_workers();
	s->queued_due = 0;
}

/*
 * aw_stream_claim
 *		Inside the turn's transaction, after the queue's claims: reads what
 *		the stream has, and puts what there is room for in slots on
 *		w->claimed (filled, started after the commit).  Rows with no room
 *		wait in memory, read ahead up to AW_STREAM_WAITING_ROOMS (stream_row.c) times the
 *		room in flight, while their webhook keeps sending; a webhook that
 *		sent nothing for AW_STREAM_WAIT_MS leaves its rows to the queue.
 *		Returns how many it claimed; *due says when the stream wants a turn
 *		again (0: when woken, or when a request finishes).
 */
int
aw_stream_claim(AwWorker *w, AwSlots *slots, TimestampTz *due)
{
	AwStream   *s = &w->stream;
	Snapshot	snap;
	TransactionId next;
	TimestampTz now;
	AwLeaving	leaving;
	int			kept = 0;
	int			ntake = 0;
	AwDelivery **into;
	HTAB	   *moving;
	int			free_room;

	*due = 0;
	/* a snapshot of our own, to know which transactions it saw in progress */
	CommandCounterIncrement();
	snap = RegisterSnapshot(GetLatestSnapshot());
	next = XidFromFullTransactionId(ReadNextFullTransactionId());
	/* after the snapshot: every row it sees that is due by now is seen as due */
	now = GetCurrentTimestamp();
	if (!s->attached)
		aw_stream_attach(w, snap, next);
	memset(&leaving, 0, sizeof(leaving));

	/* rows the open ranges got since, then new rows: no more than the room, and the read-ahead */
	aw_stream_look(w, snap, now, &leaving, s->max_waiting);
	s->not_before = 0;
	free_room = Max(slots->cap - slots->total, 0);
	/* no room to read into: rows may wait unread */
	s->read_full = free_room == 0 || s->nwaiting >= s->max_waiting;
	if (free_room > 0 && s->nwaiting < s->max_waiting)
		aw_stream_read(w, snap, next, now, Min(free_room, s->max_waiting - s->nwaiting), &leaving);

	/* take the waiting rows there is room for, in id order */
	into = palloc(sizeof(AwDelivery *) * Max(s->nwaiting, 1));
	moving = aw_webhook_hash("aloro_webhook webhooks sending", sizeof(int64), w->turn_cxt);
	for (int i = 0; i < s->nwaiting; i++)
	{
		AwStreamRow *r = &s->waiting[i];
		TimestampTz next_at;
		bool		bytes_full;

		if (!aw_rate_ready(r->webhook_id, r->rate_limit, now, &next_at))
		{
			/* paced: it waits here a moment, or in the queue until it may go */
			if (next_at - now > AW_STREAM_PACE_MS * 1000)
			{
				aw_leaving_queue(&leaving, r->id, r->webhook_id, next_at, r->bytes);
				r->id = 0;
			}
			else if (*due == 0 || next_at < *due)
				*due = next_at;
		}
		else if (aw_slots_take(slots, r->webhook_id, r->bytes, &bytes_full))
		{
			AwDelivery *d = aw_delivery_new(w->deliveries_cxt);

			aw_rate_take(r->webhook_id, r->rate_limit, now);
			d->streamed = true;
			d->id = r->id;
			d->webhook_id = r->webhook_id;
			into[ntake++] = d;
			(void) hash_search(moving, &r->webhook_id, HASH_ENTER, NULL);
			r->id = 0;
		}
	}
	/* those left: their webhook's turn comes, or, when it sent nothing this long, the queue's */
	for (int i = 0; i < s->nwaiting; i++)
	{
		AwStreamRow *r = &s->waiting[i];
		bool		found;

		if (r->id == 0)
			continue;
		(void) hash_search(moving, &r->webhook_id, HASH_FIND, &found);
		if (found)
			r->waiting_since = now;
		else if (now - r->waiting_since >= AW_STREAM_WAIT_MS * 1000)
		{
			aw_leaving_queue(&leaving, r->id, r->webhook_id, now, r->bytes);
			continue;
		}
		if (*due == 0 || r->waiting_since + AW_STREAM_WAIT_MS * 1000 < *due)
			*due = r->waiting_since + AW_STREAM_WAIT_MS * 1000;
		s->waiting[kept++] = *r;
	}
	s->nwaiting = kept;

	aw_stream_leave(s, &leaving);
	if (ntake > 0)
	{
		/* what the requests need; one whose webhook is gone is failed unsent (request.c) */
		(void) aw_queue_fill(into, ntake);
		for (int i = 0; i < ntake; i++)
		{
			dlist_push_tail(&w->claimed, &into[i]->node);
			w->nclaimed++;
		}
	}
	if (s->not_before != 0 && (*due == 0 || s->not_before < *due))
		*due = s->not_before;
	if (leaving.n > 0 && (*due == 0 || now < *due))
		*due = now;				/* the queue has them now */
	UnregisterSnapshot(snap);
	return ntake;
}
