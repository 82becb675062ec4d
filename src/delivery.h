/*-------------------------------------------------------------------------
 * delivery.h
 *		A delivery in flight: the one object the worker owns from the claim
 *		to the record of its attempt.
 *
 * The worker creates each AwDelivery, in a memory context of its own, before
 * it claims; queue.c fills the claim part from the database; request.c
 * turns it into an HTTP request (http) and the response into the outcome;
 * the worker decides the next state (schedule.c) and hands the delivery to
 * queue.c to record; then it deletes the context, and with it everything the
 * delivery used.  At any moment a delivery is in exactly one of the worker's
 * lists (see AwWorker in worker.c).
 *
 * IDENTIFICATION
 *		src/delivery.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_DELIVERY_H
#define ALORO_WEBHOOK_DELIVERY_H

#include "postgres.h"

#include "lib/ilist.h"
#include "storage/itemptr.h"
#include "utils/palloc.h"
#include "utils/timestamp.h"

#include "http.h"

/* what an attempt came to, and what follows from it */
typedef struct AwOutcome
{
	int			attempt;		/* 1-based number of this attempt */
	bool		record_attempt; /* false: resolved without an HTTP attempt */
	bool		final;			/* fails the delivery whatever the schedule says */
	TimestampTz started_at;
	int			duration_ms;
	int			http_status;	/* 0: no response */
	char	   *error;			/* NULL on success */
	char	   *response_body;	/* as stored: valid text, capped */
	int64		retry_after_ms; /* a 429 or 503 asked to wait this long; -1: no */
	const char *disable_reason; /* set: this outcome disables the webhook (410) */
	/* decided by the worker */
	const char *new_status;		/* pending, succeeded or failed */
	TimestampTz next_attempt_at;	/* 0: none */
} AwOutcome;

typedef struct AwDelivery
{
	MemoryContext cxt;			/* everything of this delivery; the worker deletes it */
	dlist_node	node;			/* in one of the worker's lists */

	/* the claim (queue.c), or the read from the stream (stream.c) */
	bool		streamed;		/* read from the stream: it has no queue row */
	ItemPointerData ctid;		/* the queue row version claimed */
	int64		id;
	int64		webhook_id;
	char	   *body;			/* NULL when erased */
	size_t		body_len;
	int			attempts;		/* made before this one */
	int			budget_start;	/* attempts made before the current round */
	char	   *url;			/* with its password, as connected to */
	char	   *secret;			/* NULL: unsigned */
	char	   *previous_secret;	/* also signed with, during a rotation's overlap */
	bool		standard;		/* signature_scheme 'standard' (Standard Webhooks) */
	char	  **extra_headers;	/* webhooks.headers as "Name: value" lines */
	int			nextra_headers;

	/* the attempt (request.c, http.c) */
	AwHttpRequest http;
	bool		in_flight;

	/* its outcome */
	AwOutcome	outcome;
} AwDelivery;

extern AwDelivery *aw_delivery_new(MemoryContext parent);
extern void aw_delivery_free(AwDelivery *d);
extern void aw_delivery_free_list(dlist_head *list);

/* the delivery whose HTTP request this is */
#define aw_delivery_of(req) ((AwDelivery *) ((char *) (req) - offsetof(AwDelivery, http)))

#endif							/* ALORO_WEBHOOK_DELIVERY_H */
