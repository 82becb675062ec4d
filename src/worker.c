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
 *	-> one short transaction (aw_turn): record the finished attempts, claim
 *	   due deliveries for the free room, learn when the next one is due
 *	-> after commit: put the claimed ones in flight
 *
 * HTTP never happens inside a transaction, and a transaction never waits on
 * the network.  A commit that queues work sets our latch (aloro_webhook.c),
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

#include "delivery.h"
#include "http.h"
#include "queue.h"
#include "request.h"
#include "slots.h"
#include "worker.h"

/* when due work could not be claimed (locked by someone), look again after */
#define AW_RECHECK_MS 250
/* pause after a turn that failed */
#define AW_RETRY_MS 1000
/* claim rounds in one transaction */
#define AW_MAX_CLAIM_ROUNDS 16
/* finished deliveries held at most, waiting to be recorded */
#define AW_MAX_FINISHED 5000
/* waiting deliveries of deleted webhooks remembered from one sweep to the next */
#define AW_MAX_ORPHANS 1000

/* what the worker is doing, for the error handler */
typedef enum AwPhase
{
	AW_PHASE_IDLE,				/* waiting, or driving the transport */
	AW_PHASE_TURN,				/* in a turn's transaction: an error rolls it back */
	AW_PHASE_SWEEP,				/* in the sweep's transaction: an error is only logged */
	AW_PHASE_STARTING			/* putting committed claims in flight */
} AwPhase;

/*
 * When the next turn is due: kept apart from the turns themselves, which
 * only tell it what they learned.
 */
typedef struct AwClock
{
	bool		have_due;		/* due is set */
	TimestampTz due;			/* the earliest due delivery (or a recheck) */
	TimestampTz retry_at;		/* after a failed turn, no turn before */
	TimestampTz last_turn;
	TimestampTz last_sweep;
} AwClock;

/*
 * The worker's state.  Invariants:
 *
 *	- every delivery the worker holds is in exactly one of claimed,
 *	  in_flight and finished, and its memory context is deleted when it
 *	  leaves the last of them (recorded, dropped or abandoned);
 *	- claimed holds only what the open turn's transaction claimed: after a
 *	  commit it is put in flight (or finished, when it cannot be sent), after
 *	  an abort it is dropped, so it is empty outside a turn;
 *	- in_flight is exactly the deliveries whose HTTP request the transport
 *	  holds, so the room in flight (slots.c) is counted from claimed and
 *	  in_flight alone;
 *	- finished holds at most AW_MAX_FINISHED; it is emptied only by a turn
 *	  that commits their record;
 *	- extension_oid is valid only while the queue of that extension is the
 *	  one worked on; when it changes, everything held is abandoned.
 */
typedef struct AwWorker
{
	Oid			extension_oid;	/* the extension whose queue we work on */
	int64		token;			/* what our claims carry (queue.claimed_by) */
	int			said_waiting;	/* the AwQueueState last logged as waited for */
	AwPhase		phase;

	dlist_head	claimed;
	dlist_head	in_flight;
	dlist_head	finished;
	int			nclaimed;
	int			nfinished;

	MemoryContext deliveries_cxt;	/* parent of every delivery's context */
	MemoryContext turn_cxt;		/* reset every loop */

	AwClock		clock;

	/* waiting deliveries of deleted webhooks seen at the last sweep */
	int64		orphans[AW_MAX_ORPHANS];
	int			norphans;

	bool		trim_pending;	/* requests went out since the heap was last trimmed */
	char		policy[2 * MAXPGPATH + 8192];	/* what kept-alive connections were checked against */
} AwWorker;

static AwWorker W;
static volatile sig_atomic_t aw_got_sigterm = false;

static void
aw_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	aw_got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/* Has the worker been asked to stop? */
bool
aw_worker_stopping(void)
{
	return aw_got_sigterm;
}

/* the settings that decide whether a connection may be used */
static void
aw_current_policy(char *buf, size_t len)
{
	snprintf(buf, len, "%s\n%s", aw_allowed_networks ? aw_allowed_networks : "",
			 aw_ca_file ? aw_ca_file : "");
}

/* a new delivery, in a memory context of its own */
static AwDelivery *
aw_delivery_new(void)
{
	MemoryContext cxt = AllocSetContextCreate(W.deliveries_cxt, "aloro_webhook delivery",
											  ALLOCSET_SMALL_SIZES);
	AwDelivery *d = MemoryContextAllocZero(cxt, sizeof(AwDelivery));

	d->cxt = cxt;
	return d;
}

/* the delivery is done with: everything it used goes */
static void
aw_delivery_free(AwDelivery *d)
{
	MemoryContextDelete(d->cxt);
}

/* frees every delivery of a list */
static void
aw_free_list(dlist_head *list)
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

/* d's outcome is known: it waits to be recorded */
static void
aw_finish(AwDelivery *d)
{
	d->in_flight = false;
	dlist_push_tail(&W.finished, &d->node);
	W.nfinished++;
}

/*
 * aw_claim_due
 *		Fills the free room with due deliveries.  Runs inside the turn's
 *		transaction; the claimed ones are started after it commits.
 */
static void
aw_claim_due(void)
{
	AwSlots		slots;
	dlist_head *held[2] = {&W.claimed, &W.in_flight};
	bool		more_due = true;
	bool		bytes_full = false;
	int			claimed = 0;

	aw_slots_count(&slots, W.turn_cxt, held, lengthof(held));
	/* after a policy change, nothing new starts on the old connections */
	if (!aw_http_ready_for_new())
		slots.cap = 0;

	for (int round = 0; round < AW_MAX_CLAIM_ROUNDS && slots.total < slots.cap && more_due && !bytes_full; round++)
	{
		int64	   *exclude;
		int			nexclude = aw_slots_full_webhooks(&slots, &exclude);
		int			limit = Min(slots.cap - slots.total, Min(aw_batch_size, aw_max_in_flight_per_webhook));
		ItemPointerData *tids = palloc(sizeof(ItemPointerData) * limit);
		int64	   *hooks = palloc(sizeof(int64) * limit);
		int		   *sizes = palloc(sizeof(int) * limit);
		ItemPointerData *take = palloc(sizeof(ItemPointerData) * limit);
		AwDelivery **into = palloc(sizeof(AwDelivery *) * limit);
		int			n;
		int			ntake = 0;
		int			got;

		n = aw_queue_candidates(limit, exclude, nexclude, tids, hooks, sizes);
		more_due = (n == limit);
		/* take each candidate while there is room for it */
		for (int i = 0; i < n && !bytes_full; i++)
			if (aw_slots_take(&slots, hooks[i], sizes[i], &bytes_full))
				take[ntake++] = tids[i];
		if (ntake == 0)
			continue;

		for (int i = 0; i < ntake; i++)
			into[i] = aw_delivery_new();
		got = aw_queue_claim(take, ntake, W.token, into);
		for (int i = 0; i < ntake; i++)
		{
			if (i < got)
			{
				dlist_push_tail(&W.claimed, &into[i]->node);
				W.nclaimed++;
			}
			else
				aw_delivery_free(into[i]);
		}
		claimed += got;
		if (got < ntake)
		{
			/* some were not claimable after all: count again from what is held */
			aw_slots_count(&slots, W.turn_cxt, held, lengthof(held));
		}
	}

	/* when is the next one due, among webhooks with room? */
	W.clock.have_due = false;
	if (slots.total < slots.cap && !more_due && !bytes_full)
	{
		int64	   *exclude;
		int			nexclude = aw_slots_full_webhooks(&slots, &exclude);

		W.clock.have_due = aw_queue_next_due(exclude, nexclude, &W.clock.due);
		if (W.clock.have_due && claimed == 0 && W.clock.due <= GetCurrentTransactionStartTimestamp())
		{
			/* due but not claimable (locked by someone): look again shortly */
			W.clock.due = GetCurrentTimestamp() + AW_RECHECK_MS * 1000;
		}
	}
}

/* the queue we worked on is gone (extension dropped, or dropped and re-created) */
static void
aw_detach_queue(void)
{
	aw_free_list(&W.in_flight);
	aw_free_list(&W.finished);
	W.nfinished = 0;
	aw_queue_forget_plans();
	W.clock.have_due = false;
	W.extension_oid = InvalidOid;
}

/* opens a turn's transaction, with SPI and a snapshot */
static void
aw_begin(const char *activity)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

/* commits what aw_begin opened */
static void
aw_commit(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/* releases the claims of workers that no longer run; returns how many */
static uint64
aw_release_stale_claims(void)
{
	int64		live[AW_MAX_WORKERS];
	int			nlive = aw_live_worker_tokens(live, true);

	return aw_queue_release_claims(live, nlive);
}

/* decides and records the finished deliveries; returns how many */
static int
aw_record_finished(void)
{
	AwDelivery **ds = palloc(sizeof(AwDelivery *) * Max(W.nfinished, 1));
	int			n = 0;
	dlist_iter	it;

	dlist_foreach(it, &W.finished)
	{
		AwDelivery *d = dlist_container(AwDelivery, node, it.cur);

		aw_schedule_next(&d->outcome, d->budget_start);
		ds[n++] = d;
	}
	aw_queue_record(ds, n, W.token);
	return n;
}

/* says once what the worker waits for, and when to look again */
static void
aw_not_attached(AwQueueState state)
{
	if (state != AW_QUEUE_NOT_READY && W.said_waiting != (int) state)
	{
		if (state == AW_QUEUE_LEGACY)
			ereport(LOG,
					(errmsg("aloro_webhook worker is waiting for ALTER EXTENSION aloro_webhook UPDATE in database \"%s\"",
							aw_database_name),
					 errdetail("The library is version %s; the extension's tables there are still version 0.1.0's.",
							   AW_VERSION),
					 errhint("Run ALTER EXTENSION aloro_webhook UPDATE; deliveries queued meanwhile are kept and sent afterwards.")));
		else
			ereport(LOG,
					(errmsg("aloro_webhook worker is waiting for CREATE EXTENSION aloro_webhook in database \"%s\"",
							aw_database_name)));
		W.said_waiting = (int) state;
	}
	/* installed but not usable yet: look again shortly */
	W.clock.have_due = state != AW_QUEUE_NONE;
	if (W.clock.have_due)
		W.clock.due = GetCurrentTimestamp() +
			(state == AW_QUEUE_LEGACY ? AW_RETRY_MS : AW_RECHECK_MS) * 1000;
}

/* after a commit: the claimed deliveries go out, or are failed unsent */
static void
aw_start_claimed(void)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &W.claimed)
	{
		AwDelivery *d = dlist_container(AwDelivery, node, it.cur);
		const char *unsendable = aw_request_unsendable(d);

		dlist_delete(&d->node);
		W.nclaimed--;
		if (unsendable != NULL && W.nfinished < AW_MAX_FINISHED)
		{
			aw_request_unsent(d, unsendable);
			aw_finish(d);
		}
		else if (unsendable != NULL)
			aw_delivery_free(d);	/* released when the worker restarts */
		else
		{
			aw_request_prepare(d);
			aw_http_start(&d->http);
			d->in_flight = true;
			dlist_push_tail(&W.in_flight, &d->node);
			W.trim_pending = true;
		}
	}
}

/*
 * aw_turn
 *		One short transaction: record finished attempts, claim due work.
 *		What the turn recorded is forgotten, and what it claimed is started,
 *		only after it commits.
 */
static void
aw_turn(void)
{
	AwQueueState state;
	Oid			extension_oid;
	Oid			attached = InvalidOid;
	int			recorded = 0;

	W.phase = AW_PHASE_TURN;
	aw_begin("aloro_webhook: recording attempts and claiming deliveries");

	extension_oid = aw_queue_extension_oid(&state);
	if (extension_oid != W.extension_oid && OidIsValid(W.extension_oid))
		aw_detach_queue();
	if (!OidIsValid(extension_oid))
		aw_not_attached(state);
	else
	{
		uint64		released = 0;

		/* a queue to work on: whatever was in flight before is due again */
		if (!OidIsValid(W.extension_oid))
		{
			released = aw_release_stale_claims();
			attached = extension_oid;
		}
		if (W.nfinished > 0)
			recorded = aw_record_finished();
		aw_claim_due();
		if (OidIsValid(attached))
			ereport(LOG,
					(errmsg("aloro_webhook worker is delivering webhooks from database \"%s\"",
							aw_database_name),
					 released > 0 ?
					 errdetail("%llu deliveries that were in flight when the worker last stopped are due again.",
							   (unsigned long long) released) : 0));
	}

	aw_commit();
	/* committed: from here on nothing may undo the turn */
	W.phase = AW_PHASE_STARTING;
	if (OidIsValid(attached))
	{
		W.extension_oid = attached;
		W.said_waiting = -1;
	}
	if (recorded > 0)
	{
		aw_free_list(&W.finished);
		W.nfinished = 0;
	}
	/* only now, outside any transaction, does the network come in */
	aw_start_claimed();
	W.phase = AW_PHASE_IDLE;
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * aw_turn_failed
 *		After an error in a turn's transaction, which the caller rolled back:
 *		what it claimed was not claimed after all; what it was recording is
 *		still to be recorded, at the next turn, after a pause.
 */
static void
aw_turn_failed(void)
{
	aw_free_list(&W.claimed);
	W.nclaimed = 0;
	W.clock.retry_at = GetCurrentTimestamp() + AW_RETRY_MS * 1000;
	W.clock.have_due = true;
	W.clock.due = W.clock.retry_at;
}

/*
 * aw_sweep
 *		Now and then, in a transaction of its own: release claims of workers
 *		that no longer run (a restore brings such claims along), and fail
 *		waiting deliveries of deleted webhooks that a race let through --
 *		those seen orphaned at two sweeps in a row, so that a restore that
 *		loads the queue before the webhooks fails none of them.
 */
static void
aw_sweep(void)
{
	int64		seen[AW_MAX_ORPHANS];
	int			nseen;

	W.phase = AW_PHASE_SWEEP;
	aw_begin("aloro_webhook: releasing stale claims, failing deliveries of deleted webhooks");
	aw_release_stale_claims();
	nseen = aw_queue_orphans(seen, AW_MAX_ORPHANS);
	if (W.norphans > 0 && nseen > 0)
		aw_queue_fail_orphans(W.orphans, W.norphans);
	aw_commit();
	memcpy(W.orphans, seen, sizeof(int64) * nseen);
	W.norphans = nseen;
	W.clock.last_sweep = GetCurrentTimestamp();
	W.phase = AW_PHASE_IDLE;
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * On shutdown: record what finished, then make what is still in flight due
 * again, at once.  Best effort: start-up releases whatever this leaves.
 */
static void
aw_release_on_exit(void)
{
	AwQueueState state;

	if (!OidIsValid(W.extension_oid))
		return;
	aw_free_list(&W.in_flight);
	aw_begin("aloro_webhook: stopping");
	if (aw_queue_extension_oid(&state) == W.extension_oid)
	{
		int64		others[AW_MAX_WORKERS];
		int			nothers = aw_live_worker_tokens(others, false);

		if (W.nfinished > 0)
			aw_record_finished();
		/* ours are released: every claim but those of the workers still running */
		aw_queue_release_claims(others, nothers);
	}
	aw_commit();
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
		timeout = Min(timeout, (long) ((clock->retry_at - now + 999) / 1000));
	else if (work_waiting)
		timeout = 0;
	if (clock->have_due)
		timeout = Min(timeout, clock->due <= now ? 0 : (long) ((clock->due - now + 999) / 1000));
	return Max(timeout, 0);
}

/* is a turn due now? */
static bool
aw_clock_turn_due(AwClock *clock, TimestampTz now, bool woken, bool finished)
{
	if (woken && clock->retry_at > now)
	{
		/* woken during the pause after a failed turn: come back after it */
		clock->have_due = true;
		clock->due = clock->retry_at;
	}
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
			aw_turn_failed();
			break;
		case AW_PHASE_SWEEP:
			W.clock.last_sweep = GetCurrentTimestamp();	/* try again next interval */
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
		aw_finish(d);
	}
}

/* re-reads the settings; connections made under another policy are retired */
static void
aw_reload(void)
{
	char		policy[sizeof(W.policy)];

	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
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

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, aw_sigterm);
	BackgroundWorkerUnblockSignals();

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
	aw_current_policy(W.policy, sizeof(W.policy));

	wes = CreateWaitEventSet(TopMemoryContext, 3);
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

	while (!aw_got_sigterm)
	{
		WaitEvent	events[3];
		int			nevents;
		bool		woken = false;
		TimestampTz now = GetCurrentTimestamp();
		bool		work_waiting = W.nfinished > 0 ||
			(aw_http_results_waiting() && W.nfinished < AW_MAX_FINISHED);

		nevents = WaitEventSetWait(wes, aw_clock_sleep_ms(&W.clock, now, work_waiting),
								   events, lengthof(events), PG_WAIT_EXTENSION);
		for (int i = 0; i < nevents; i++)
			if (events[i].events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				woken = true;
			}
		/* no statement runs here: a cancel has nothing to cancel */
		QueryCancelPending = false;
		CHECK_FOR_INTERRUPTS();
		if (aw_got_sigterm)
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
		if (aw_clock_turn_due(&W.clock, now, woken, W.nfinished > 0))
		{
			W.clock.last_turn = now;
			aw_turn();
		}
		if (OidIsValid(W.extension_oid) && W.phase == AW_PHASE_IDLE &&
			TimestampDifferenceExceeds(W.clock.last_sweep, now, aw_idle_check_ms))
			aw_sweep();
		MemoryContextSwitchTo(TopMemoryContext);
	}

	ereport(LOG,
			(errmsg("aloro_webhook worker stopping"),
			 aw_http_in_flight() > 0 ?
			 errdetail("%d requests in flight were cut off and are due again.", aw_http_in_flight()) : 0));
	aw_release_on_exit();
	proc_exit(1);
}
