/*-------------------------------------------------------------------------
 * worker.c
 *		The delivery worker: the loop that claims due deliveries, keeps them
 *		in flight, and records each attempt.
 *
 * One loop turn:
 *
 *	wait on { latch, postmaster death, the HTTP transport's epoll set } until
 *	the clock says the next turn is due (libcurl's timer, the next due
 *	delivery, the pause after a failed turn, the idle check)
 *	-> let the transport act on ready sockets; finished requests get their
 *	   outcome (request.c)
 *	-> one short transaction (aw_turn, in turn.c): record the finished
 *	   attempts, claim due deliveries for the free room, learn when the next
 *	   one is due
 *	-> after commit: put the claimed ones in flight
 *
 * This file holds the loop, the clock that says when the next turn is due,
 * and the error handler; the worker's state is one struct (AwWorker, with
 * its invariants, in worker_state.h), of which this file holds the one
 * instance.
 *
 * HTTP never happens inside a transaction, and a transaction never waits on
 * the network.  A commit that queues work sets our latch (wakeup.c),
 * so a call that ends is sent at once; an idle worker runs no queries until
 * something is due.
 *
 * Errors: a turn whose transaction fails (a lock held too long by someone
 * else, a cancel, a full disk) is rolled back and retried after a pause;
 * the finished attempts it was recording stay finished until they are
 * written, and what it had claimed is simply not sent.  Requests in flight
 * carry on meanwhile.  A cancel outside a turn has nothing to cancel and is
 * ignored.  An error anywhere else ends the worker, which the postmaster
 * restarts; start-up then makes whatever was in flight due again.
 *
 * IDENTIFICATION
 *		src/worker.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include <setjmp.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "delivery.h"
#include "http.h"
#include "request.h"
#include "slots.h"
#include "turn.h"
#include "upkeep.h"
#include "worker_start.h"
#include "worker_state.h"

static AwWorker W;

/* the longest an attempt that came back waits for others to be recorded with, while deliveries wait for room */
#define AW_GATHER_MS 1
/* the same once the worker has caught up: it waits for the next commit's turn, or this long */
#define AW_RECORD_WAIT_MS 10
/* the shortest time between turns started by commits (which wait for each other) */
#define AW_WAKE_GATHER_MS 2

/* the settings that decide whether a connection may be used */
static void
aw_current_policy(char *buf, size_t len)
{
	snprintf(buf, len, "%s\n%s\n%s", aw_allowed_networks ? aw_allowed_networks : "",
			 aw_ca_file ? aw_ca_file : "", aw_proxy ? aw_proxy : "");
}

/* milliseconds from now until t, rounded up; 0 when t has come */
static long
aw_ms_until(TimestampTz t, TimestampTz now)
{
	return t <= now ? 0 : (long) ((t - now + 999) / 1000);
}

/* how long to sleep: until libcurl, the next due delivery, a retry or the idle check */
static long
aw_clock_sleep_ms(const AwClock *clock, TimestampTz now, bool work_waiting)
{
	long		timeout = aw_idle_check_ms;
	long		curl_ms = aw_http_timeout_ms();

	if (curl_ms >= 0)
		timeout = Min(timeout, curl_ms);
	if (clock->retry_at > now)
		timeout = Min(timeout, aw_ms_until(clock->retry_at, now));
	else if (work_waiting)
		timeout = 0;
	if (clock->have_due)
		timeout = Min(timeout, aw_ms_until(clock->due, now));
	if (clock->woken && clock->retry_at <= now)
		timeout = Min(timeout, aw_ms_until(clock->last_turn + AW_WAKE_GATHER_MS * 1000, now));
	return Max(timeout, 0);
}

/*
 * Have enough attempts come back for a turn to record them?  A turn costs
 * about the same for one as for dozens (its transaction, its statements'
 * start-up).  While deliveries wait for room (behind), the turn that records
 * is also the one that starts the next: the ones back wait for each other
 * until they are as many as those still out, or the oldest has waited
 * AW_GATHER_MS.  Once caught up, recording is not in a hurry: the next
 * commit's turn records them, or a turn after AW_RECORD_WAIT_MS.
 */
static bool
aw_record_ready(TimestampTz now)
{
	if (W.nfinished == 0)
		return false;
	if (W.nfinished >= aw_batch_size)
		return true;
	/* caught up: the attempts wait for the next commit's turn, or a while */
	if (!W.behind)
		return TimestampDifferenceExceeds(W.finished_since, now, AW_RECORD_WAIT_MS);
	return W.nfinished >= aw_http_in_flight() ||
		TimestampDifferenceExceeds(W.finished_since, now, AW_GATHER_MS);
}

/* how long the attempts that came back may still wait, in ms */
static long
aw_record_wait_ms(TimestampTz now)
{
	return aw_ms_until(W.finished_since + (W.behind ? AW_GATHER_MS : AW_RECORD_WAIT_MS) * 1000, now);
}

/*
 * how long to sleep: the clock's answer, or less when the attempts that came
 * back have waited long enough, or upkeep comes first
 */
static long
aw_sleep_ms(TimestampTz now)
{
	bool		record_ready = aw_record_ready(now);
	bool		work_waiting = record_ready ||
		(aw_http_results_waiting() && W.nfinished < AW_MAX_FINISHED);
	long		timeout = aw_clock_sleep_ms(&W.clock, now, work_waiting);

	if (W.nfinished > 0 && !record_ready)
		timeout = Min(timeout, aw_record_wait_ms(now));
	if (OidIsValid(W.extension_oid))
		timeout = Min(timeout, aw_ms_until(aw_upkeep_next(&W.upkeep), now));
	return timeout;
}

/*
 * Is a turn due now?  A commit that queues work wakes the worker; commits
 * that come within AW_WAKE_GATHER_MS of the last turn wait for each other
 * (a turn costs about the same for one delivery as for several).  At a
 * call a second apart, every commit still starts a turn at once.
 */
static bool
aw_clock_turn_due(AwClock *clock, TimestampTz now, bool finished)
{
	bool		woken = clock->woken;

	if (woken && clock->retry_at > now)
	{
		/* woken during the pause after a failed turn: come back after it */
		clock->have_due = true;
		clock->due = clock->retry_at;
	}
	if (woken && !TimestampDifferenceExceeds(clock->last_turn, now, AW_WAKE_GATHER_MS))
		woken = false;			/* still pending: aw_clock_sleep_ms wakes us for it */
	return now >= clock->retry_at &&
		(woken || finished || (clock->have_due && clock->due <= now) ||
		 TimestampDifferenceExceeds(clock->last_turn, now, aw_idle_check_ms));
}

/*
 * The worker's error handler: report, roll back, and go on where that is
 * safe (see the file header); otherwise exit and be restarted.
 */
static void
aw_recover(void)
{
	bool		canceled;

	/* what PostgresMain's handler resets: the context stack, the timeouts */
	error_context_stack = NULL;
	HOLD_INTERRUPTS();
	disable_all_timeouts(false);
	QueryCancelPending = false;
	canceled = geterrcode() == ERRCODE_QUERY_CANCELED;
	EmitErrorReport();
	/* every level: the error may come from inside a subtransaction */
	AbortOutOfAnyTransaction();
	MemoryContextSwitchTo(TopMemoryContext);
	FlushErrorState();
	switch (W.phase)
	{
		case AW_PHASE_TURN:
			aw_turn_failed(&W);
			break;
		case AW_PHASE_SWEEP:
			W.clock.last_sweep = GetCurrentTimestamp();	/* try again next interval */
			break;
		case AW_PHASE_UPKEEP:
			aw_upkeep_failed(&W);
			break;
		case AW_PHASE_IDLE:
			if (canceled)
				break;			/* nothing was running */
			proc_exit(1);
			break;
		case AW_PHASE_STARTING:
			/* committed claims half started: a restart makes them due again */
			proc_exit(1);
			break;
	}
	W.phase = AW_PHASE_IDLE;
	pgstat_report_activity(STATE_IDLE, NULL);
	RESUME_INTERRUPTS();
}

/* lets the transport move; finished requests get their outcome */
static void
aw_drive(void)
{
	int			max = Min(aw_batch_size, AW_MAX_FINISHED - W.nfinished);
	AwHttpRequest **done;
	int			n;

	if (max <= 0)
		return;
	done = palloc(sizeof(AwHttpRequest *) * max);
	n = aw_http_drive(done, max);
	for (int i = 0; i < n; i++)
	{
		AwDelivery *d = aw_delivery_of(done[i]);

		dlist_delete(&d->node);
		aw_request_outcome(d);
		aw_worker_add_finished(&W, d);
	}
}

/* re-reads the settings; connections made under another policy are retired */
static void
aw_reload(void)
{
	char		policy[sizeof(W.policy)];

	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	/* a new retention applies at once */
	W.upkeep.prune_at = 0;
	aw_current_policy(policy, sizeof(policy));
	if (strcmp(policy, W.policy) != 0)
	{
		aw_http_policy_changed();
		strlcpy(W.policy, policy, sizeof(W.policy));
	}
}

/*
 * aw_worker_main
 *		Entry point of the background worker.
 */
void
aw_worker_main(Datum main_arg)
{
	WaitEventSet *wes;
	sigjmp_buf	local_sigjmp_buf;

	aw_worker_catch_signals();

	aw_worker_connect();
	pgstat_report_appname(AW_WORKER_NAME);
	aw_worker_pin_settings();
#ifdef __GLIBC__

	/*
	 * Big bodies in their own mappings, returned to the system when freed;
	 * by default glibc raises this threshold after the first big free, and a
	 * burst of large bodies would stay in the heap for good.
	 */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
#endif

	memset(&W, 0, sizeof(W));
	W.said_waiting = -1;
	dlist_init(&W.claimed);
	dlist_init(&W.in_flight);
	dlist_init(&W.finished);
	W.deliveries_cxt = AllocSetContextCreate(TopMemoryContext, "aloro_webhook deliveries",
											 ALLOCSET_DEFAULT_SIZES);
	W.turn_cxt = AllocSetContextCreate(TopMemoryContext, "aloro_webhook turn",
									   ALLOCSET_DEFAULT_SIZES);
	aw_http_init();
	aw_cursors_init(&W.cursors);
	aw_stream_init(&W.stream);
	aw_set_am_worker();
	aw_current_policy(W.policy, sizeof(W.policy));

	wes = aw_CreateWaitEventSet(3);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wes, WL_SOCKET_READABLE, aw_http_epoll_fd(), NULL, NULL);

	if (!pg_strong_random(&W.token, sizeof(W.token)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate the worker's token")));
	aw_worker_register(W.token);
	ereport(LOG,
			(errmsg("aloro_webhook worker started"),
			 errdetail("It works in database \"%s\" and keeps up to %d requests in flight.",
					   aw_database_name, aw_slots_cap())));

	/* errors come back here (see aw_recover) */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
		aw_recover();
	PG_exception_stack = &local_sigjmp_buf;

	/* the first turn looks for the extension and for work left from before */
	SetLatch(MyLatch);

	while (!aw_worker_stopping())
	{
		WaitEvent	events[3];
		int			nevents;
		TimestampTz now = GetCurrentTimestamp();

		nevents = WaitEventSetWait(wes, aw_sleep_ms(now), events, lengthof(events), PG_WAIT_EXTENSION);
		for (int i = 0; i < nevents; i++)
			if (events[i].events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				W.clock.woken = true;
			}
		/* no statement runs here: a cancel has nothing to cancel */
		QueryCancelPending = false;
		CHECK_FOR_INTERRUPTS();
		if (aw_worker_stopping())
			break;
		if (ConfigReloadPending)
			aw_reload();

#ifdef __GLIBC__
		/* after a burst, give back what the heap kept */
		if (W.trim_pending && dlist_is_empty(&W.in_flight) && W.nfinished == 0)
		{
			malloc_trim(0);
			W.trim_pending = false;
		}
#endif
		MemoryContextReset(W.turn_cxt);
		MemoryContextSwitchTo(W.turn_cxt);

		aw_drive();

		now = GetCurrentTimestamp();
		if (aw_clock_turn_due(&W.clock, now, aw_record_ready(now)))
		{
			W.clock.last_turn = now;
			W.clock.woken = false;
			aw_turn(&W);
		}
		if (OidIsValid(W.extension_oid) && W.phase == AW_PHASE_IDLE &&
			TimestampDifferenceExceeds(W.clock.last_sweep, now, aw_idle_check_ms))
			aw_sweep(&W);
		if (OidIsValid(W.extension_oid) && W.phase == AW_PHASE_IDLE &&
			aw_upkeep_due(&W.upkeep, GetCurrentTimestamp()))
			aw_upkeep(&W);
		MemoryContextSwitchTo(TopMemoryContext);
	}

	ereport(LOG,
			(errmsg("aloro_webhook worker stopping"),
			 aw_http_in_flight() > 0 ?
			 errdetail("%d requests in flight were cut off and are due again.", aw_http_in_flight()) : 0));
	aw_release_on_exit(&W);
	proc_exit(1);
}
