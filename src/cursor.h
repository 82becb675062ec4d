/*-------------------------------------------------------------------------
 * cursor.h
 *		Where the worker's scans of each webhook's due index start
 *		(cursor.c).
 *
 * IDENTIFICATION
 *		src/cursor.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_CURSOR_H
#define ALORO_WEBHOOK_CURSOR_H

#include "postgres.h"

#include "utils/hsearch.h"
#include "utils/timestamp.h"

/* the cursors, as arrays for the worker's statements */
typedef struct AwCursorArgs
{
	int			n;
	int64	   *webhook_ids;
	TimestampTz *due_at;
	int64	   *delivery_ids;
} AwCursorArgs;

typedef struct AwCursors
{
	HTAB	   *by_webhook;
	TimestampTz last_reset;
} AwCursors;

extern void aw_cursors_init(AwCursors *c);
extern void aw_cursors_reset(AwCursors *c);
extern bool aw_cursors_before_scan(AwCursors *c);
extern void aw_cursors_advance(AwCursors *c, int64 webhook_id, TimestampTz due_at, int64 delivery_id);
extern void aw_cursors_args(AwCursors *c, AwCursorArgs *args);

#endif							/* ALORO_WEBHOOK_CURSOR_H */
