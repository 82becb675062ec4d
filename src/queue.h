/*-------------------------------------------------------------------------
 * queue.h
 *		The worker's SQL (queue.c).
 *
 * IDENTIFICATION
 *		src/queue.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_QUEUE_H
#define ALORO_WEBHOOK_QUEUE_H

#include "aloro_webhook.h"

#include "storage/itemptr.h"

#include "cursor.h"
#include "delivery.h"

/* a due delivery the worker may claim */
typedef struct AwCandidate
{
	ItemPointerData tid;		/* its queue row version */
	int64		webhook_id;
	int			bytes;			/* of its body */
	TimestampTz due_at;			/* its key in the due index */
	int64		delivery_id;
	int			rate_limit;		/* of its webhook; 0: none */
} AwCandidate;

/* what aw_queue_extension_oid found */
typedef enum AwQueueState
{
	AW_QUEUE_NONE,				/* no extension in this database */
	AW_QUEUE_LEGACY,			/* installed, but its tables are an earlier version's */
	AW_QUEUE_NOT_READY,			/* installed, its objects not visible yet */
	AW_QUEUE_READY
} AwQueueState;

extern Oid	aw_queue_extension_oid(AwQueueState *state);
extern int	aw_queue_schema(void);
extern void aw_queue_lock_tables(void);
extern void aw_queue_forget_plans(void);
extern uint64 aw_queue_release_claims(const int64 *live, int nlive);
extern int	aw_queue_candidates(int limit, const int64 *exclude, int nexclude,
								const AwCursorArgs *cur, AwCandidate *out);
extern int	aw_queue_fill(AwDelivery **into, int n);
extern int	aw_queue_claim(const ItemPointerData *tids, int n, int64 token, AwDelivery **into);
extern int	aw_queue_orphans(int64 *ids, int max);
extern uint64 aw_queue_fail_orphans(const int64 *ids, int n);
extern bool aw_queue_next_due(const int64 *exclude, int nexclude, const AwCursorArgs *cur,
							  TimestampTz *due);
extern void aw_queue_record(AwDelivery **ds, int n, int64 token);
extern void aw_record_forget_plans(void);

#endif							/* ALORO_WEBHOOK_QUEUE_H */
