/*-------------------------------------------------------------------------
 * stream_row.h
 *		Where the worker is in the stream: its open ranges and its row of
 *		stream_cursors (stream_row.c).
 *
 * IDENTIFICATION
 *		src/stream_row.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_STREAM_ROW_H
#define ALORO_WEBHOOK_STREAM_ROW_H

#include "postgres.h"

#include "utils/snapshot.h"

#include "stream.h"

struct AwWorker;

extern void aw_stream_attach(struct AwWorker *w, Snapshot snap, TransactionId next);
extern void aw_stream_row_forget(void);
extern void aw_open_add(AwStream *s, int64 lo, int64 hi, Snapshot snap, TransactionId next, bool look_now);

#endif							/* ALORO_WEBHOOK_STREAM_ROW_H */
