/*-------------------------------------------------------------------------
 * stream_row.c
 *		Where the worker is in the stream of deliveries (stream.c): its open
 *		ranges, and its row of stream_cursors that keeps them -- read when it
 *		attaches, made again when the number of workers changed, and
 *		written at the end of each turn.
 *
 * An open range is ids the worker read past that were not visible yet; only
 * the transactions in progress then can fill it (stream.c's header says
 * why).  The row holds read_upto, the open ranges (with the rows read and
 * not yet sent, as one range more) and the ids in flight; it is written in
 * the turn's own transaction, so it says what that transaction did.  What a
 * worker had in flight when it stopped is recorded as interrupted and due
 * again, from the queue (_release_stream()).
 *
 * IDENTIFICATION
 *		src/stream_row.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "access/transam.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "postmaster/bgworker.h"
#include "utils/array.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "delivery.h"
#include "http.h"
#include "slots.h"
#include "spi_util.h"
#include "stream.h"
#include "stream_row.h"
#include "worker_state.h"

/* rows read and waiting for room, at most, in multiples of the room in flight */
#define AW_STREAM_WAITING_ROOMS 4

/* open ranges kept, at most (more are merged) */
#define AW_STREAM_MAX_OPEN 64
/* transactions past a snapshot's xmax a range keeps by id, at most (more: by a horizon) */
#define AW_STREAM_MAX_PAST 256

/* ---------------------------------------------------------------------------
 * Open ranges
 * ---------------------------------------------------------------------------
 */

/* the transaction id after x */
static TransactionId
aw_xid_after(TransactionId x)
{
	TransactionIdAdvance(x);
	return x;
}

/*
 * The transactions that may have been in progress when snap was taken (top
 * level), copied into cxt: those snap lists, and those with an id from its
 * xmax to next, the first id not assigned yet after it was taken (a
 * snapshot does not list the transactions past the last one that ended,
 * but counts them as in progress).  When those are many, *horizon is next
 * instead: every transaction before it must have ended.
 */
static TransactionId *
aw_in_progress(Snapshot snap, TransactionId next, MemoryContext cxt, int *n,
			   TransactionId *horizon)
{
	TransactionId *xids;
	int			past = 0;

	*horizon = InvalidTransactionId;
	for (TransactionId x = snap->xmax; TransactionIdPrecedes(x, next); x = aw_xid_after(x))
		if (++past > AW_STREAM_MAX_PAST)
		{
			*horizon = next;
			past = 0;
			break;
		}
	*n = snap->xcnt + past;
	if (*n == 0)
		return NULL;
	xids = MemoryContextAlloc(cxt, sizeof(TransactionId) * *n);
	memcpy(xids, snap->xip, sizeof(TransactionId) * snap->xcnt);
	if (past > 0)
	{
		int			i = snap->xcnt;

		for (TransactionId x = snap->xmax; TransactionIdPrecedes(x, next); x = aw_xid_after(x))
			xids[i++] = x;
	}
	return xids;
}

/* merges the two closest neighbours until at most max ranges are left */
static void
aw_open_merge(AwStream *s, int max)
{
	while (s->nopen > max)
	{
		int			best = 0;
		int64		best_gap = PG_INT64_MAX;
		AwOpenRange *a;
		AwOpenRange *b;
		TransactionId *xids;

		for (int i = 0; i + 1 < s->nopen; i++)
			if (s->open[i + 1].lo - s->open[i].hi < best_gap)
			{
				best_gap = s->open[i + 1].lo - s->open[i].hi;
				best = i;
			}
		a = &s->open[best];
		b = &s->open[best + 1];
		xids = MemoryContextAlloc(s->cxt, sizeof(TransactionId) * Max(a->nxids + b->nxids, 1));
		if (a->nxids > 0)
			memcpy(xids, a->xids, sizeof(TransactionId) * a->nxids);
		if (b->nxids > 0)
			memcpy(xids + a->nxids, b->xids, sizeof(TransactionId) * b->nxids);
		a->hi = b->hi;
		if (TransactionIdIsValid(b->horizon) &&
			(!TransactionIdIsValid(a->horizon) || TransactionIdPrecedes(a->horizon, b->horizon)))
			a->horizon = b->horizon;
		if (a->xids)
			pfree(a->xids);
		if (b->xids)
			pfree(b->xids);
		a->xids = xids;
		a->nxids += b->nxids;
		a->look_now = a->look_now || b->look_now;
		memmove(b, b + 1, sizeof(AwOpenRange) * (s->nopen - best - 2));
		s->nopen--;
	}
}

/*
 * A new open range lo..hi, fillable only by what was in progress when snap
 * was taken (next: the first transaction id not assigned then).
 */
void
aw_open_add(AwStream *s, int64 lo, int64 hi, Snapshot snap, TransactionId next, bool look_now)
{
	AwOpenRange *r;
	TransactionId horizon;
	int			nxids;
	TransactionId *xids;

	if (lo > hi)
		return;
	xids = aw_in_progress(snap, next, s->cxt, &nxids, &horizon);
	/* nothing in progress: nothing can fill it */
	if (nxids == 0 && !TransactionIdIsValid(horizon) && !look_now)
		return;
	if (s->open == NULL)
		s->open = MemoryContextAlloc(s->cxt, sizeof(AwOpenRange) * (AW_STREAM_MAX_OPEN + 1));
	r = &s->open[s->nopen++];
	r->lo = lo;
	r->hi = hi;
	r->xids = xids;
	r->nxids = nxids;
	r->horizon = horizon;
	r->look_now = look_now;
	/* ranges come in id order: only the last two can need merging */
	aw_open_merge(s, AW_STREAM_MAX_OPEN);
}

/* ---------------------------------------------------------------------------
 * The row
 * ---------------------------------------------------------------------------
 */

/* the row's statements, prepared on first use */
static struct
{
	SPIPlanPtr	save;			/* the cursor row, by its version */
	SPIPlanPtr	save_by_share;	/* the same, by its share */
	SPIPlanPtr	load;			/* every cursor row */
	SPIPlanPtr	release;		/* _release_stream() */
	SPIPlanPtr	rebuild;		/* the cursor rows for another number of workers */
}			aw_row_plans;

/* Drops the row's statements (the extension went away, or was updated). */
void
aw_stream_row_forget(void)
{
	SPIPlanPtr *plans = (SPIPlanPtr *) &aw_row_plans;

	for (size_t i = 0; i < sizeof(aw_row_plans) / sizeof(SPIPlanPtr); i++)
		if (plans[i] != NULL)
			SPI_freeplan(plans[i]);
	memset(&aw_row_plans, 0, sizeof(aw_row_plans));
}

/* reads an int8[] column of the last SPI result into a palloc'd array */
static int64 *
aw_int8_column(uint64 row, int col, int *n)
{
	bool		isnull;
	Datum		d = aw_spi_datum(row, col, &isnull);
	ArrayType  *a;
	Datum	   *elems;
	int64	   *out;

	*n = 0;
	if (isnull)
		return NULL;
	a = DatumGetArrayTypeP(d);
	deconstruct_array(a, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, NULL, n);
	out = palloc(sizeof(int64) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		out[i] = DatumGetInt64(elems[i]);
	return out;
}

/* the ids of the deliveries from the stream this worker holds (claimed or in flight) */
static int
aw_stream_held(AwWorker *w, int64 **out)
{
	dlist_head *lists[2] = {&w->claimed, &w->in_flight};
	int			n = 0;
	int			max = w->nclaimed + aw_http_in_flight() + 1;
	int64	   *ids = palloc(sizeof(int64) * max);

	for (int l = 0; l < 2; l++)
	{
		dlist_iter	it;

		dlist_foreach(it, lists[l])
		{
			AwDelivery *d = dlist_container(AwDelivery, node, it.cur);

			if (!d->streamed)
				continue;
			if (n == max)
			{
				max *= 2;
				ids = repalloc(ids, sizeof(int64) * max);
			}
			ids[n++] = d->id;
		}
	}
	*out = ids;
	return n;
}

/*
 * The deliveries a worker had in flight when it stopped: those without an
 * outcome are recorded as interrupted and wait in the queue, due now.
 */
static void
aw_stream_release(AwStream *s, const int64 *ids, int n)
{
	Datum		args[1];

	if (n == 0)
		return;
	aw_prepare_once(&aw_row_plans.release, "SELECT aloro_webhook._release_stream($1)",
					1, (Oid[]) {INT8ARRAYOID});
	args[0] = aw_int8_array(ids, n);
	if (SPI_execute_plan(aw_row_plans.release, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not release the deliveries that were in flight");
	s->queued_due = GetCurrentTimestamp();
}

/* a row of stream_cursors, as read */
typedef struct AwCursorRow
{
	int			share;
	int			shares;
	int64		read_upto;
	int64	   *lo;
	int64	   *hi;
	int			nranges;
	int64	   *in_flight;
	int			nin_flight;
	ItemPointerData ctid;
} AwCursorRow;

/* every row of stream_cursors, in share order (the start, -1, first) */
static AwCursorRow *
aw_cursor_rows(int *n)
{
	AwCursorRow *rows;

	aw_prepare_once(&aw_row_plans.load,
					"SELECT c.share, c.shares, c.read_upto, c.open_lo, c.open_hi, c.in_flight, c.ctid "
					"  FROM aloro_webhook.stream_cursors c ORDER BY c.share",
					0, NULL);
	if (SPI_execute_plan(aw_row_plans.load, NULL, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read aloro_webhook.stream_cursors");
	*n = (int) SPI_processed;
	rows = palloc0(sizeof(AwCursorRow) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		bool		isnull;
		int			nh;

		rows[i].share = DatumGetInt32(aw_spi_datum(i, 1, &isnull));
		rows[i].shares = DatumGetInt32(aw_spi_datum(i, 2, &isnull));
		rows[i].read_upto = DatumGetInt64(aw_spi_datum(i, 3, &isnull));
		rows[i].lo = aw_int8_column(i, 4, &rows[i].nranges);
		rows[i].hi = aw_int8_column(i, 5, &nh);
		rows[i].nranges = Min(rows[i].nranges, nh);
		rows[i].in_flight = aw_int8_column(i, 6, &rows[i].nin_flight);
		ItemPointerCopy((ItemPointer) DatumGetPointer(aw_spi_datum(i, 7, &isnull)), &rows[i].ctid);
	}
	return rows;
}

/*
 * Makes the rows again for this many workers (aloro_webhook.workers
 * changed): every row starts from the furthest any of them had read, with
 * their open ranges and what lies between their read_upto open too; what any
 * had in flight is released.  From the start row (-1) when there is none.
 */
static void
aw_cursor_rows_remake(AwStream *s, AwCursorRow *rows, int nrows, int shares)
{
	int64		upto_max = 0;
	int64		upto_min = PG_INT64_MAX;
	int64	   *lo = palloc(sizeof(int64) * 1);
	int64	   *hi = palloc(sizeof(int64) * 1);
	int			nranges = 0;
	int64	   *flying = palloc(sizeof(int64) * 1);
	int			nflying = 0;
	int			nbase = 0;
	Datum		args[4];

	for (int pass = 0; pass < 2 && nbase == 0; pass++)
		for (int i = 0; i < nrows; i++)
		{
			AwCursorRow *r = &rows[i];

			/* the workers' rows; without any, the start */
			if ((pass == 0) != (r->share >= 0))
				continue;
			nbase++;
			upto_max = Max(upto_max, r->read_upto);
			upto_min = Min(upto_min, r->read_upto);
			lo = repalloc(lo, sizeof(int64) * (nranges + r->nranges + 2));
			hi = repalloc(hi, sizeof(int64) * (nranges + r->nranges + 2));
			memcpy(lo + nranges, r->lo, sizeof(int64) * r->nranges);
			memcpy(hi + nranges, r->hi, sizeof(int64) * r->nranges);
			nranges += r->nranges;
			flying = repalloc(flying, sizeof(int64) * (nflying + r->nin_flight + 1));
			memcpy(flying + nflying, r->in_flight, sizeof(int64) * r->nin_flight);
			nflying += r->nin_flight;
		}
	if (nbase > 1 && upto_min < upto_max)
	{
		lo[nranges] = upto_min + 1;
		hi[nranges++] = upto_max;
	}
	aw_stream_release(s, flying, nflying);
	/* (two statements: the parts of one would not see each other's rows) */
	if (SPI_execute("DELETE FROM aloro_webhook.stream_cursors c WHERE c.share >= 0", false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not write aloro_webhook.stream_cursors");
	aw_prepare_once(&aw_row_plans.rebuild,
					"INSERT INTO aloro_webhook.stream_cursors (share, shares, read_upto, open_lo, open_hi) "
					"SELECT g, $1, $2, $3, $4 FROM pg_catalog.generate_series(0, $1 - 1) g",
					4, (Oid[]) {INT4OID, INT8OID, INT8ARRAYOID, INT8ARRAYOID});
	args[0] = Int32GetDatum(shares);
	args[1] = Int64GetDatum(upto_max);
	args[2] = aw_int8_array(lo, nranges);
	args[3] = aw_int8_array(hi, nranges);
	if (SPI_execute_plan(aw_row_plans.rebuild, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not write aloro_webhook.stream_cursors");
}

/*
 * Reads (or, when aloro_webhook.workers changed, makes) this worker's row:
 * where it is in the stream, and what it had in flight when it stopped --
 * recorded as interrupted and due again, from the queue.  After a failed
 * turn (keep_in_flight) what is in flight is still this worker's.
 */
void
aw_stream_attach(AwWorker *w, Snapshot snap, TransactionId next)
{
	AwStream   *s = &w->stream;
	int			share = DatumGetInt32(MyBgworkerEntry->bgw_main_arg);
	int			shares = Max(aw_workers, 1);
	AwCursorRow *rows;
	AwCursorRow *mine = NULL;
	int			nrows;
	int			nworkers = 0;
	bool		fits = true;

	/* one worker at a time: the rows may have to be made again */
	if (SPI_execute("LOCK TABLE aloro_webhook.stream_cursors IN SHARE ROW EXCLUSIVE MODE",
					false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not lock aloro_webhook.stream_cursors");
	rows = aw_cursor_rows(&nrows);
	for (int i = 0; i < nrows; i++)
	{
		if (rows[i].share < 0)
			continue;
		nworkers++;
		if (rows[i].shares != shares || rows[i].share >= shares)
			fits = false;
	}
	if (!fits || nworkers != shares)
	{
		aw_cursor_rows_remake(s, rows, nrows, shares);
		rows = aw_cursor_rows(&nrows);
	}
	for (int i = 0; i < nrows; i++)
		if (rows[i].share == share)
			mine = &rows[i];
	if (mine == NULL)
		elog(ERROR, "aloro_webhook.stream_cursors has no row for share %d", share);

	MemoryContextReset(s->cxt);
	s->open = NULL;
	s->nopen = 0;
	s->share = share;
	s->shares = shares;
	s->read_upto = mine->read_upto;
	ItemPointerCopy(&mine->ctid, &s->row);
	for (int j = 0; j < mine->nranges; j++)
		aw_open_add(s, mine->lo[j], mine->hi[j], snap, next, true);
	if (!s->keep_in_flight)
		aw_stream_release(s, mine->in_flight, mine->nin_flight);
	/* written at the end of the turn, its in_flight as the worker holds them then */
	s->saved_read_upto = -1;
	s->keep_in_flight = false;
	s->max_waiting = AW_STREAM_WAITING_ROOMS * aw_slots_cap();
	s->waiting = MemoryContextAlloc(s->cxt, sizeof(AwStreamRow) * s->max_waiting);
	s->nwaiting = 0;
	s->attached = true;
}

/* a signature of what the row holds, to write it only when it changes */
static uint64
aw_stream_sig(AwStream *s, const int64 *flying, int nflying)
{
	uint64		h = (uint64) s->nopen * 0x9E3779B97F4A7C15 + (uint64) s->nwaiting;

	for (int i = 0; i < s->nopen; i++)
		h = (h ^ (uint64) s->open[i].lo) * 0x100000001B3 + (uint64) s->open[i].hi;
	if (s->nwaiting > 0)
		h = (h ^ (uint64) s->waiting[0].id) * 0x100000001B3;
	for (int i = 0; i < nflying; i++)
		h = (h ^ (uint64) flying[i]) * 0x100000001B3;
	return h ^ (uint64) nflying;
}

/*
 * aw_stream_save
 *		Writes this worker's stream_cursors row, when it changed: inside the
 *		turn's transaction, after its records and claims, so that what it
 *		says is what that transaction did.  The rows read and waiting for
 *		room are one open range more, from the first of them to read_upto.
 */
void
aw_stream_save(AwWorker *w)
{
	AwStream   *s = &w->stream;
	int64	   *flying;
	int			nflying;
	uint64		sig;
	int64	   *lo;
	int64	   *hi;
	int			n = 0;
	Datum		args[6];

	if (!s->attached)
		return;
	nflying = aw_stream_held(w, &flying);
	sig = aw_stream_sig(s, flying, nflying);
	if (sig == s->saved_sig && s->read_upto == s->saved_read_upto)
		return;
	lo = palloc(sizeof(int64) * (s->nopen + 1));
	hi = palloc(sizeof(int64) * (s->nopen + 1));
	for (int i = 0; i < s->nopen; i++)
	{
		lo[n] = s->open[i].lo;
		hi[n++] = s->open[i].hi;
	}
	if (s->nwaiting > 0)
	{
		lo[n] = s->waiting[0].id;
		hi[n++] = s->read_upto;
	}
	aw_prepare_once(&aw_row_plans.save,
					"UPDATE aloro_webhook.stream_cursors c "
					"   SET read_upto = $2, open_lo = $3, open_hi = $4, in_flight = $5, "
					"       updated_at = pg_catalog.now() "
					" WHERE c.ctid = $1 AND c.share = $6 "
					"RETURNING c.ctid",
					6, (Oid[]) {TIDOID, INT8OID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT4OID});
	args[0] = PointerGetDatum(&s->row);
	args[1] = Int64GetDatum(s->read_upto);
	args[2] = aw_int8_array(lo, n);
	args[3] = aw_int8_array(hi, n);
	args[4] = aw_int8_array(flying, nflying);
	args[5] = Int32GetDatum(s->share);
	if (SPI_execute_plan(aw_row_plans.save, args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not write aloro_webhook.stream_cursors");
	if (SPI_processed == 0)
	{
		/* the row moved (a VACUUM FULL, say): find it by its share */
		aw_prepare_once(&aw_row_plans.save_by_share,
						"UPDATE aloro_webhook.stream_cursors c "
						"   SET read_upto = $2, open_lo = $3, open_hi = $4, in_flight = $5, "
						"       updated_at = pg_catalog.now() "
						" WHERE c.share = $6 AND $1 IS NOT NULL "
						"RETURNING c.ctid",
						6, (Oid[]) {TIDOID, INT8OID, INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, INT4OID});
		if (SPI_execute_plan(aw_row_plans.save_by_share, args, NULL, false, 0) != SPI_OK_UPDATE_RETURNING ||
			SPI_processed != 1)
			elog(ERROR, "aloro_webhook.stream_cursors has no row for share %d", s->share);
	}
	{
		bool		isnull;

		ItemPointerCopy((ItemPointer) DatumGetPointer(aw_spi_datum(0, 1, &isnull)), &s->row);
	}
	s->saved_sig = sig;
	s->saved_read_upto = s->read_upto;
}
