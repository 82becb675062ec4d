/*-------------------------------------------------------------------------
 * delivery.c
 *		Making and freeing deliveries (delivery.h): each lives in a memory
 *		context of its own, made by the worker before it claims and deleted
 *		when the delivery is recorded, dropped or abandoned.
 *
 * IDENTIFICATION
 *		src/delivery.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "utils/memutils.h"

#include "delivery.h"
#include "http.h"

/* A new, empty delivery, in a memory context of its own under parent. */
AwDelivery *
aw_delivery_new(MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "aloro_webhook delivery",
											  ALLOCSET_SMALL_SIZES);
	AwDelivery *d = MemoryContextAllocZero(cxt, sizeof(AwDelivery));

	d->cxt = cxt;
	return d;
}

/* The delivery is done with: everything it used goes. */
void
aw_delivery_free(AwDelivery *d)
{
	MemoryContextDelete(d->cxt);
}

/* Frees every delivery of a list, cancelling those in flight. */
void
aw_delivery_free_list(dlist_head *list)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, list)
	{
		AwDelivery *d = dlist_container(AwDelivery, node, it.cur);

		dlist_delete(&d->node);
		if (d->in_flight)
			aw_http_cancel(&d->http);
		aw_delivery_free(d);
	}
}
