/*-------------------------------------------------------------------------
 * cursor.c
 *		Where the worker's scans of each webhook's due index start.
 *
 * Every claim and every finished delivery leaves a dead entry at the head
 * of the due index (queue_due: webhook, due_at, delivery id).  While some
 * other session holds a snapshot open (a long report, pg_dump), vacuum
 * cannot remove them and scans cannot even mark them dead, so a scan from
 * the head would walk all of them, again and again.  So for each webhook
 * the worker remembers the key of the last row it claimed, and its scans
 * start after it: everything before it has been claimed already.
 *
 * Rows can still become due before a cursor: a transaction that queues
 * rows (or redelivers, or releases claims) and commits after the worker
 * passed their keys -- their due time is the transaction's start.  Each
 * such commit publishes the earliest due time it made (wakeup.c),
 * and before each scan the cursors are moved back to it.  As a last guard,
 * the cursors are forgotten once a second, and the next scan starts at the
 * head.
 *
 * IDENTIFICATION
 *		src/cursor.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "utils/memutils.h"

#include "cursor.h"
#include "spi_util.h"

/* the longest the cursors are trusted before a scan from the head */
#define AW_CURSOR_RESET_MS 1000

typedef struct AwCursor
{
	int64		webhook_id;		/* hash key */
	TimestampTz due_at;
	int64		delivery_id;
} AwCursor;

static void
aw_cursors_make(AwCursors *c)
{
	c->by_webhook = aw_webhook_hash("aloro_webhook cursors", sizeof(AwCursor), TopMemoryContext);
	c->last_reset = GetCurrentTimestamp();
}

void
aw_cursors_init(AwCursors *c)
{
	aw_cursors_make(c);
}

/* Forgets every cursor: the next scans start at the head. */
void
aw_cursors_reset(AwCursors *c)
{
	hash_destroy(c->by_webhook);
	aw_cursors_make(c);
}

/*
 * aw_cursors_before_scan
 *		Brings the cursors up to date before a scan of the queue: back to
 *		the earliest due time committed since the last scan, or all
 *		forgotten once a second.  The hint is taken before the scan's
 *		snapshot, so a commit it missed publishes for the next scan.
 *		Returns whether anything was published since, or the cursors were
 *		forgotten: then the queue has to be looked at whatever the worker
 *		knew of it.
 */
bool
aw_cursors_before_scan(AwCursors *c)
{
	TimestampTz rewind = aw_take_rewind();
	HASH_SEQ_STATUS seq;
	AwCursor   *cur;

	if (TimestampDifferenceExceeds(c->last_reset, GetCurrentTimestamp(), AW_CURSOR_RESET_MS))
	{
		aw_cursors_reset(c);
		return true;
	}
	if (rewind == DT_NOEND)
		return false;
	hash_seq_init(&seq, c->by_webhook);
	while ((cur = hash_seq_search(&seq)) != NULL)
		if (rewind <= cur->due_at)
		{
			/* from the first row due at that time */
			cur->due_at = rewind;
			cur->delivery_id = PG_INT64_MIN;
		}
	return true;
}

/* The worker claimed this row of webhook_id: its scans start after it. */
void
aw_cursors_advance(AwCursors *c, int64 webhook_id, TimestampTz due_at, int64 delivery_id)
{
	bool		found;
	AwCursor   *cur = hash_search(c->by_webhook, &webhook_id, HASH_ENTER, &found);

	if (!found || due_at > cur->due_at ||
		(due_at == cur->due_at && delivery_id > cur->delivery_id))
	{
		cur->due_at = due_at;
		cur->delivery_id = delivery_id;
	}
}

/* The cursors as arrays (allocated in the current memory context). */
void
aw_cursors_args(AwCursors *c, AwCursorArgs *args)
{
	HASH_SEQ_STATUS seq;
	AwCursor   *cur;
	int			n = hash_get_num_entries(c->by_webhook);

	args->n = 0;
	args->webhook_ids = palloc(sizeof(int64) * Max(n, 1));
	args->due_at = palloc(sizeof(TimestampTz) * Max(n, 1));
	args->delivery_ids = palloc(sizeof(int64) * Max(n, 1));
	hash_seq_init(&seq, c->by_webhook);
	while ((cur = hash_seq_search(&seq)) != NULL)
	{
		args->webhook_ids[args->n] = cur->webhook_id;
		args->due_at[args->n] = cur->due_at;
		args->delivery_ids[args->n] = cur->delivery_id;
		args->n++;
	}
}
