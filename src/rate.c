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

#include "executor/spi.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "rate.h"
#include "spi_util.h"

typedef struct AwPace
{
	int64		webhook_id;		/* hash key */
	TimestampTz next_at;		/* the next request may start then */
} AwPace;

static HTAB *aw_paces = NULL;
static TimestampTz aw_started_at = 0;

/* the limited webhooks and their rate_limit, as of webhooks version aw_limits_version */
typedef struct AwLimit
{
	int64		webhook_id;
	int			rate;
} AwLimit;

static MemoryContext aw_limits_cxt = NULL;
static AwLimit *aw_limits = NULL;
static int	aw_nlimits = 0;
static uint64 aw_limits_version = 0;
static SPIPlanPtr aw_limits_plan = NULL;

/*
 * aw_rate_limits_refresh
 *		The worker keeps the few limited webhooks in memory; this reads them
 *		again when a commit changed webhooks since.  Inside a transaction,
 *		with SPI connected; it runs a statement (SPI_tuptable changes).
 */
void
aw_rate_limits_refresh(void)
{
	uint64		version = aw_webhooks_version();

	if (version != aw_limits_version)
	{
		MemoryContext old;

		if (aw_limits_plan == NULL)
			aw_limits_plan = aw_prepare("SELECT w.id, w.rate_limit FROM aloro_webhook.webhooks w "
										" WHERE w.rate_limit IS NOT NULL ORDER BY w.id", 0, NULL);
		/* read-write: a fresh snapshot, taken after the version was read */
		if (SPI_execute_plan(aw_limits_plan, NULL, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read the webhooks' rate limits");
		if (aw_limits_cxt == NULL)
			aw_limits_cxt = AllocSetContextCreate(TopMemoryContext, "aloro_webhook rate limits",
												  ALLOCSET_SMALL_SIZES);
		MemoryContextReset(aw_limits_cxt);
		old = MemoryContextSwitchTo(aw_limits_cxt);
		aw_limits = palloc(sizeof(AwLimit) * Max(SPI_processed, 1));
		aw_nlimits = (int) SPI_processed;
		for (int i = 0; i < aw_nlimits; i++)
		{
			bool		isnull;

			aw_limits[i].webhook_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
			aw_limits[i].rate = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		}
		MemoryContextSwitchTo(old);
		aw_limits_version = version;
	}
}

/* the rate_limit of a webhook (0: none), as of the last refresh */
int
aw_rate_limit_of(int64 webhook_id)
{
	/* ordered by id: a binary search */
	for (int lo = 0, hi = aw_nlimits - 1; lo <= hi;)
	{
		int			mid = (lo + hi) / 2;

		if (aw_limits[mid].webhook_id == webhook_id)
			return aw_limits[mid].rate;
		if (aw_limits[mid].webhook_id < webhook_id)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return 0;
}

/* the extension went away: read the limits afresh when it is back */
void
aw_rate_forget(void)
{
	if (aw_limits_plan != NULL)
		SPI_freeplan(aw_limits_plan);
	aw_limits_plan = NULL;
	aw_limits_version = 0;
	aw_nlimits = 0;
}

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
		aw_paces = aw_webhook_hash("aloro_webhook rate limits", sizeof(AwPace), TopMemoryContext);
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
