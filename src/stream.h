/*-------------------------------------------------------------------------
 * stream.h
 *		The worker's reading of the stream of new deliveries (stream.c).
 *
 * IDENTIFICATION
 *		src/stream.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_STREAM_H
#define ALORO_WEBHOOK_STREAM_H

#include "postgres.h"

#include "access/transam.h"
#include "lib/ilist.h"
#include "storage/itemptr.h"
#include "utils/timestamp.h"

/* a delivery read from the stream and not sent yet: it waits for room */
typedef struct AwStreamRow
{
	int64		id;
	int64		webhook_id;
	int			bytes;
	int			rate_limit;		/* of its webhook; 0: none */
	TimestampTz waiting_since;	/* when it was first read */
} AwStreamRow;

/*
 * A range of ids that may still get rows of the stream: ids a transaction
 * had drawn and not committed when the worker read past them, or rows the
 * worker read and did not send (after a restart).  Only the transactions in
 * xids -- those in progress when the range was seen -- can fill it; it is
 * looked at again when one of them has ended, and closed when all have.
 */
typedef struct AwOpenRange
{
	int64		lo;				/* inclusive */
	int64		hi;				/* inclusive */
	TransactionId *xids;
	int			nxids;
	TransactionId horizon;		/* valid: every transaction before it must end too */
	bool		look_now;		/* look at once (after a restart, or for want of room) */
} AwOpenRange;

/* where the worker is in the stream; see stream.c */
typedef struct AwStream
{
	bool		attached;		/* its stream_cursors row is read and its own */
	bool		keep_in_flight; /* read it again, keeping what is in flight (after a failed turn) */
	int			share;			/* this worker's share: ids = share (mod shares) */
	int			shares;
	ItemPointerData row;		/* the version of its stream_cursors row it wrote last */
	int64		read_upto;		/* every id up to here was read, but the open ranges */
	AwOpenRange *open;			/* in id order, at most AW_STREAM_MAX_OPEN */
	int			nopen;
	AwStreamRow *waiting;		/* in id order */
	int			nwaiting;
	int			max_waiting;	/* read ahead at most (the room in flight, times a few) */
	TimestampTz not_before;		/* the next row is not due before (0: none) */
	TimestampTz queued_due;		/* rows left for the queue this turn, the first due then (0: none) */
	bool		read_full;		/* the last read stopped at its limit: more rows may wait */
	/* what the row says, to write it only when it changes */
	int64		saved_read_upto;
	uint64		saved_sig;
	MemoryContext cxt;			/* open ranges and waiting rows live here */
} AwStream;

struct AwWorker;
struct AwSlots;

extern void aw_stream_init(AwStream *s);
extern void aw_stream_forget(AwStream *s);
extern void aw_stream_turn_failed(AwStream *s);
extern void aw_stream_committed(AwStream *s);
extern int	aw_stream_claim(struct AwWorker *w, struct AwSlots *slots, TimestampTz *due);
extern void aw_stream_save(struct AwWorker *w);
extern bool aw_stream_behind(const AwStream *s);

#endif							/* ALORO_WEBHOOK_STREAM_H */
