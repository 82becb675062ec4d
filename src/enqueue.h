/*-------------------------------------------------------------------------
 * enqueue.h
 *		What the call-ended trigger (enqueue.c) hands to the statements that
 *		write a call's end (enqueue_write.c).
 *
 * IDENTIFICATION
 *		src/enqueue.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_ENQUEUE_H
#define ALORO_WEBHOOK_ENQUEUE_H

#include "aloro_webhook.h"

#include "datatype/timestamp.h"

#include "webhook_cache.h"

/* one body variant of a call: built once, stored once */
typedef struct AwVariant
{
	int			wanted;			/* by how many deliveries */
	char	   *body;			/* NULL when it could not be built */
	char	   *error;			/* why not, or why it is not sent */
} AwVariant;

extern void aw_end_call_one(const char *call_id, Oid source, const AwMatch *match, const AwVariant *v,
							Interval *first_delay);
extern void aw_end_call_many(int schema, const char *call_id, Oid source, AwMatch *matches, int nmatch,
							 AwVariant *variants, Interval *first_delay);
extern bool aw_mark_ended(const char *call_id, Oid source);
extern void aw_queue_legacy(int64 webhook_id, const char *call_id, const char *body, Interval *first_delay);

#endif							/* ALORO_WEBHOOK_ENQUEUE_H */
