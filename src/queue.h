/*-------------------------------------------------------------------------
 * queue.h
 *		What the worker, the HTTP client and the queue's SQL pass around.
 *
 * IDENTIFICATION
 *		src/queue.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_QUEUE_H
#define ALORO_WEBHOOK_QUEUE_H

#include "aloro_webhook.h"

#include "storage/itemptr.h"
#include "utils/memutils.h"

/* a claimed delivery, with what sending it needs; lives in its own context */
typedef struct AwClaim
{
	MemoryContext cxt;			/* everything of this request; deleted when done */
	ItemPointerData ctid;		/* the row version we claimed */
	int64		id;
	int64		webhook_id;
	char	   *body;
	int			attempts;		/* made before this one */
	int			budget_start;	/* attempts made before the current round */
	char	   *url;
	char	   *secret;
} AwClaim;

/* the outcome of one attempt (or of a delivery resolved without one) */
typedef struct AwResult
{
	int64		id;
	int64		webhook_id;
	ItemPointerData ctid;		/* the claimed row version, to update it without a search */
	int			attempt;		/* 1-based number of this attempt */
	bool		record_attempt; /* false: resolved without an HTTP attempt */
	bool		final;			/* fails the delivery whatever the schedule says */
	TimestampTz started_at;
	int			duration_ms;
	int			http_status;	/* 0: no response */
	char	   *error;			/* NULL on success */
	char	   *response_body;
	const char *new_status;		/* pending, succeeded or failed */
	TimestampTz next_attempt_at;	/* 0: none */
} AwResult;

/* what aw_queue_extension_oid found */
typedef enum AwQueueState
{
	AW_QUEUE_NONE,				/* no extension in this database */
	AW_QUEUE_LEGACY,			/* installed, but its schema is 0.1.0's */
	AW_QUEUE_NOT_READY,			/* installed, its objects not visible yet */
	AW_QUEUE_READY
} AwQueueState;

extern Oid	aw_queue_extension_oid(AwQueueState *state);
extern void aw_queue_forget_plans(void);
extern uint64 aw_queue_release_claims(const int64 *live, int nlive);
extern int	aw_queue_candidates(int limit, const int64 *exclude, int nexclude,
								ItemPointerData *tids, int64 *webhooks, int *bytes);
extern int	aw_queue_claim(const ItemPointerData *tids, int n, int64 token, MemoryContext cxt,
						   AwClaim **claims);
extern int	aw_queue_orphans(int64 *ids, int max);
extern uint64 aw_queue_fail_orphans(const int64 *ids, int n);
extern bool aw_queue_next_due(const int64 *exclude, int nexclude, TimestampTz *due);
extern void aw_queue_record(AwResult **results, int n, int64 token);

#endif							/* ALORO_WEBHOOK_QUEUE_H */
