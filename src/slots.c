/*-------------------------------------------------------------------------
 * slots.c
 *		Room for requests in flight: at most max_in_flight at once (and no
 *		more than the open-file limit allows), at most
 *		max_in_flight_per_webhook to one webhook, so that a slow or hanging
 *		endpoint holds only its own slots, and at most max_in_flight_bytes of
 *		bodies, so that memory stays bounded and each request has the time
 *		to be sent.
 *
 * The counts are derived, each time the worker claims, from the deliveries
 * it holds (claimed and not yet started, or in flight): no failed turn can
 * leave a count behind, and nothing else keeps one.
 *
 * IDENTIFICATION
 *		src/slots.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "delivery.h"
#include "http.h"
#include "slots.h"
#include "spi_util.h"

typedef struct AwWebhookUse
{
	int64		webhook_id;		/* hash key */
	int			n;
} AwWebhookUse;

/* one worker's share of a total: with aloro_webhook.workers = N, a ceiling of total/N */
static int
aw_share(int total)
{
	return Max(1, (total + aw_workers - 1) / aw_workers);
}

/* the cap on requests in flight, as settings and the open-file limit allow */
int
aw_slots_cap(void)
{
	/* with several workers, each has its share: the total stays the setting */
	return Max(1, Min(aw_share(aw_max_in_flight), aw_http_fd_cap()));
}

/* adds one request of bytes to webhook_id */
static void
aw_slots_add(AwSlots *slots, int64 webhook_id, int64 bytes)
{
	bool		found;
	AwWebhookUse *u = hash_search(slots->per_webhook, &webhook_id, HASH_ENTER, &found);

	u->n = (found ? u->n : 0) + 1;
	slots->total++;
	if (bytes > AW_SMALL_BODY)
		slots->bytes += bytes;
}

/*
 * aw_slots_count
 *		The room taken by the deliveries in lists[0..nlists), with the
 *		current settings; allocated in cxt.
 */
void
aw_slots_count(AwSlots *slots, MemoryContext cxt, dlist_head **lists, int nlists)
{
	slots->per_webhook = aw_webhook_hash("aloro_webhook requests per webhook",
										 sizeof(AwWebhookUse), cxt);
	slots->total = 0;
	slots->bytes = 0;
	slots->cap = aw_slots_cap();
	slots->byte_cap = Max(aw_max_in_flight_bytes / aw_workers, 1);
	slots->webhook_cap = aw_share(aw_max_in_flight_per_webhook);
	for (int i = 0; i < nlists; i++)
	{
		dlist_iter	it;

		dlist_foreach(it, lists[i])
		{
			AwDelivery *d = dlist_container(AwDelivery, node, it.cur);

			aw_slots_add(slots, d->webhook_id, (int64) d->body_len);
		}
	}
}

/*
 * aw_slots_take
 *		Takes room for one more request of bytes to webhook_id, if there is
 *		any; *bytes_full says when it was the bytes that were short.
 */
bool
aw_slots_take(AwSlots *slots, int64 webhook_id, int64 bytes, bool *bytes_full)
{
	AwWebhookUse *u = hash_search(slots->per_webhook, &webhook_id, HASH_FIND, NULL);

	*bytes_full = false;
	if (slots->total >= slots->cap)
		return false;
	if (u != NULL && u->n >= slots->webhook_cap)
		return false;
	/*
	 * Big bodies share the byte cap (one larger than it goes alone); small
	 * ones are bounded by the request cap, so that big bodies stuck on a
	 * dead endpoint cannot hold up everyone else's.
	 */
	if (bytes > AW_SMALL_BODY && slots->bytes + bytes > slots->byte_cap && slots->bytes > 0)
	{
		*bytes_full = true;
		return false;
	}
	aw_slots_add(slots, webhook_id, bytes);
	return true;
}

/* the webhooks at their cap, into *out (allocated); returns how many */
int
aw_slots_full_webhooks(AwSlots *slots, int64 **out)
{
	HASH_SEQ_STATUS seq;
	AwWebhookUse *u;
	int			n = 0;

	*out = palloc(sizeof(int64) * Max(hash_get_num_entries(slots->per_webhook), 1));
	hash_seq_init(&seq, slots->per_webhook);
	while ((u = hash_seq_search(&seq)) != NULL)
		if (u->n >= slots->webhook_cap)
			(*out)[n++] = u->webhook_id;
	return n;
}
