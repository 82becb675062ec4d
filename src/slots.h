/*-------------------------------------------------------------------------
 * slots.h
 *		Room for requests in flight (slots.c): the global cap, the cap per
 *		webhook, and the bytes in flight, counted in one place.
 *
 * IDENTIFICATION
 *		src/slots.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_SLOTS_H
#define ALORO_WEBHOOK_SLOTS_H

#include "postgres.h"

#include "lib/ilist.h"
#include "utils/hsearch.h"

/* bodies up to this size do not count against aloro_webhook.max_in_flight_bytes */
#define AW_SMALL_BODY (64 * 1024)

typedef struct AwSlots
{
	HTAB	   *per_webhook;	/* webhook id -> requests */
	int			total;			/* requests */
	int64		bytes;			/* bytes of the big bodies (over AW_SMALL_BODY) */
	int			cap;			/* requests at most */
	int64		byte_cap;		/* body bytes at most (a larger body goes alone) */
	int			webhook_cap;	/* requests to one webhook at most */
} AwSlots;

extern int	aw_slots_cap(void);
extern void aw_slots_count(AwSlots *slots, MemoryContext cxt, dlist_head **lists, int nlists);
extern bool aw_slots_take(AwSlots *slots, int64 webhook_id, int64 bytes, bool *bytes_full);
extern int	aw_slots_full_webhooks(AwSlots *slots, int64 **out);

#endif							/* ALORO_WEBHOOK_SLOTS_H */
