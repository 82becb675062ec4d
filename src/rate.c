/*-------------------------------------------------------------------------
 * rate.c
 *		webhooks.rate_limit: the pacing of requests to one webhook.
 *
 * Each limited webhook has a theoretical arrival time: the earliest moment
 * its next request may start.  A request admitted advances it by 1/rate; a
 * turn that comes a little late keeps the schedule (the average rate holds),
 * one that comes much later starts it afresh (no burst makes up for idle
 * time).  So any second sees at most rate + 1 requests start, evenly
 * spaced.  A webhook the worker has not paced yet may start its first
 * request 1/rate after the worker started, so a restart cannot double the
 * rate either.  Deliveries held back are simply not claimed yet: no attempt
 * is made, none is counted.
 *
 * With aloro_webhook.workers = N each worker paces at rate/N, so that the
 * workers together keep the limit.  The state is one entry per limited
 * webhook the worker has seen.
 *
 * IDENTIFICATION
 *		src/rate.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "rate.h"

typedef struct AwPace
{
	int64		webhook_id;		/* hash key */
	TimestampTz next_at;		/* the next request may start then */
} AwPace;

static HTAB *aw_paces = NULL;
static TimestampTz aw_started_at = 0;

/* the time between two requests of this worker: with N workers, each sends rate/N per second */
static TimestampTz
aw_rate_step(int rate)
{
	return (TimestampTz) ((double) USECS_PER_SEC * aw_workers / Max(rate, 1));
}

/* the pace of a webhook, made on first sight */
static AwPace *
aw_pace(int64 webhook_id, int rate)
{
	AwPace	   *p;
	bool		found;

	if (aw_paces == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(AwPace);
		aw_paces = hash_create("aloro_webhook rate limits", 64, &ctl, HASH_ELEM | HASH_BLOBS);
		aw_started_at = GetCurrentTimestamp();
	}
	p = hash_search(aw_paces, &webhook_id, HASH_ENTER, &found);
	if (!found)
		p->next_at = aw_started_at + aw_rate_step(rate);
	return p;
}

/* may a request to this webhook start now? */
bool
aw_rate_ready(int64 webhook_id, int rate, TimestampTz now, TimestampTz *next_at)
{
	AwPace	   *p;

	if (rate <= 0)
		return true;
	p = aw_pace(webhook_id, rate);
	*next_at = p->next_at;
	return now >= p->next_at;
}

/* a request to this webhook starts now */
void
aw_rate_take(int64 webhook_id, int rate, TimestampTz now)
{
	AwPace	   *p;
	TimestampTz step = aw_rate_step(rate);

	if (rate <= 0)
		return;
	p = aw_pace(webhook_id, rate);
	/* a little late: keep the schedule; much later: start it from now */
	p->next_at = (now - p->next_at < step ? p->next_at : now) + step;
}
