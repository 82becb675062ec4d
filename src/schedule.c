/*-------------------------------------------------------------------------
 * schedule.c
 *		aloro_webhook.retry_schedule: parsing, checking and lookup.
 *
 * The setting is a comma-separated list of PostgreSQL intervals.  The check
 * hook splits it (aw_schedule_split in validate.c, which the fuzz harness
 * runs on its own), parses each entry with the server's own interval parser
 * (without raising errors, since check hooks also run in the postmaster) and
 * hands the parsed delays to the assign hook as the GUC "extra".
 *
 * IDENTIFICATION
 *		src/schedule.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "common/pg_prng.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"

#include "compat.h"
#include "delivery.h"
#include "validate.h"

#define AW_MAX_ATTEMPTS 100
/* longest delay accepted: far beyond any use, far below timestamp overflow */
#define AW_MAX_DELAY_MS ((int64) 100 * 366 * 86400 * 1000)

static const AwSchedule *aw_schedule = NULL;

/* Parses one interval; returns false if it is not one. */
static bool
aw_parse_interval_ms(char *str, int64 *ms)
{
	char		workbuf[256];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	struct pg_itm_in itm;
	int			dterr;

	memset(&itm, 0, sizeof(itm));
	dterr = ParseDateTime(str, workbuf, sizeof(workbuf), field, ftype,
						  MAXDATEFIELDS, &nf);
	if (dterr == 0)
		dterr = DecodeInterval(field, ftype, nf, INTERVAL_FULL_RANGE, &dtype, &itm);
	if (dterr == DTERR_BAD_FORMAT)
	{
		memset(&itm, 0, sizeof(itm));
		dterr = DecodeISO8601Interval(str, &dtype, &itm);
	}
	if (dterr != 0 || dtype != DTK_DELTA)
		return false;

	*ms = aw_schedule_delay_ms(itm.tm_usec, itm.tm_mday, itm.tm_mon, itm.tm_year,
							   AW_MAX_DELAY_MS);
	return true;
}

/* GUC check hook: every entry must be a non-negative interval. */
bool
aw_check_retry_schedule(char **newval, void **extra, GucSource source)
{
	char	   *copy;
	char	   *entries[AW_MAX_ATTEMPTS];
	int			n;
	int			bad;
	int64		delays[AW_MAX_ATTEMPTS];
	AwSchedule *sched;

	if (*newval == NULL)
	{
		GUC_check_errmsg("aloro_webhook.retry_schedule must not be empty");
		return false;
	}
	copy = pstrdup(*newval);
	n = aw_schedule_split(copy, entries, AW_MAX_ATTEMPTS, &bad);
	if (n == AW_SCHEDULE_EMPTY_ENTRY)
	{
		GUC_check_errmsg("invalid aloro_webhook.retry_schedule: entry %d is empty", bad);
		GUC_check_errhint("Give a comma-separated list of intervals, such as '0, 1min, 5min, 15min, 1h'.");
		pfree(copy);
		return false;
	}
	if (n == AW_SCHEDULE_TOO_MANY)
	{
		GUC_check_errmsg("invalid aloro_webhook.retry_schedule: more than %d entries", AW_MAX_ATTEMPTS);
		pfree(copy);
		return false;
	}
	for (int i = 0; i < n; i++)
	{
		int64		ms;

		if (!aw_parse_interval_ms(entries[i], &ms))
		{
			GUC_check_errmsg("invalid aloro_webhook.retry_schedule: entry %d, \"%s\", is not an interval", i + 1, entries[i]);
			GUC_check_errhint("Give a comma-separated list of intervals, such as '0, 1min, 5min, 15min, 1h'.");
			pfree(copy);
			return false;
		}
		if (ms < 0)
		{
			GUC_check_errmsg("invalid aloro_webhook.retry_schedule: entry %d, \"%s\", is negative", i + 1, entries[i]);
			pfree(copy);
			return false;
		}
		if (ms > AW_MAX_DELAY_MS)
		{
			GUC_check_errmsg("invalid aloro_webhook.retry_schedule: entry %d, \"%s\", is longer than 100 years", i + 1, entries[i]);
			pfree(copy);
			return false;
		}
		delays[i] = ms;
	}
	pfree(copy);

	/* GUC releases its "extra" data itself (compat.h) */
	sched = (AwSchedule *) aw_guc_malloc(offsetof(AwSchedule, delay_ms) + n * sizeof(int64));
	if (sched == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return false;
	}
	sched->nentries = n;
	memcpy(sched->delay_ms, delays, n * sizeof(int64));
	*extra = sched;
	return true;
}

void
aw_assign_retry_schedule(const char *newval, void *extra)
{
	aw_schedule = (const AwSchedule *) extra;
}

const AwSchedule *
aw_current_schedule(void)
{
	return aw_schedule;
}

/*
 * aw_schedule_next
 *		The next state of a delivery after an attempt: succeeded, pending
 *		(with when its next attempt is due) or failed.  Entry k of the
 *		schedule is the delay before attempt k of the current round; a round
 *		began after budget_start attempts (redeliver() and replay() begin a
 *		new one, and an attempt cut off by a worker stop is not counted: see
 *		_requeue() and _release_claims() in the install script).  The delay
 *		is spread by aloro_webhook.retry_jitter, and is at least what a 429's
 *		or 503's Retry-After asked for, up to aloro_webhook.max_retry_after.
 */
void
aw_schedule_next(AwOutcome *o, int budget_start)
{
	const AwSchedule *sched = aw_current_schedule();
	/* attempts made in this round, this one included (never below 1) */
	int64		made = Max((int64) o->attempt - (int64) budget_start, 1);

	if (o->error == NULL)
	{
		o->new_status = "succeeded";
		o->next_attempt_at = 0;
	}
	else if (o->final || sched == NULL || made >= sched->nentries)
	{
		o->new_status = "failed";
		o->next_attempt_at = 0;
	}
	else
	{
		int64		delay_ms = sched->delay_ms[made];

		/* jitter: anywhere within +-retry_jitter of the delay */
		if (aw_retry_jitter > 0 && delay_ms > 0)
			delay_ms = (int64) ((double) delay_ms *
								(1.0 + aw_retry_jitter * (2.0 * pg_prng_double(&pg_global_prng_state) - 1.0)));
		/* a receiver that said how long to wait is waited for, within reason */
		if (o->retry_after_ms > 0)
			delay_ms = Max(delay_ms, Min(o->retry_after_ms, (int64) aw_max_retry_after_s * 1000));
		o->new_status = "pending";
		o->next_attempt_at = GetCurrentTimestamp() + Max(delay_ms, 0) * 1000;
	}
}

PG_FUNCTION_INFO_V1(aloro_webhook_retry_delay);

/* _retry_delay(attempt): delay before that attempt, NULL past the last one. */
Datum
aloro_webhook_retry_delay(PG_FUNCTION_ARGS)
{
	int32		attempt = PG_GETARG_INT32(0);
	const AwSchedule *s = aw_current_schedule();
	Interval   *result;

	if (s == NULL || attempt < 1 || attempt > s->nentries)
		PG_RETURN_NULL();
	result = (Interval *) palloc0(sizeof(Interval));
	result->time = s->delay_ms[attempt - 1] * 1000;
	PG_RETURN_INTERVAL_P(result);
}
