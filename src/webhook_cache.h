/*-------------------------------------------------------------------------
 * webhook_cache.h
 *		Which webhooks a call that ends matches (webhook_cache.c).
 *
 * IDENTIFICATION
 *		src/webhook_cache.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_WEBHOOK_CACHE_H
#define ALORO_WEBHOOK_WEBHOOK_CACHE_H

#include "postgres.h"

typedef struct AwMatch
{
	int64		id;
	bool		include_recording;
	Datum		filter;			/* webhooks.filter (jsonpath), or 0 */
	bool		enabled;		/* false: held (disabled by the extension), not sent yet */
} AwMatch;

extern int	aw_matching_webhooks(const char *assistant_id, const char *campaign_id, bool completed,
								 AwMatch **out);

#endif							/* ALORO_WEBHOOK_WEBHOOK_CACHE_H */
