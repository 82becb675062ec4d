/*-------------------------------------------------------------------------
 * worker.c
 *		The delivery worker: the loop that claims due deliveries, keeps them
 *		in flight through http.c, and records each attempt.
 *
 * One loop turn:
 *
 *	wait on { latch, postmaster death, the HTTP client's epoll set } with a
 *	timeout of min(libcurl's timer, the next due delivery, the idle check)
 *	-> let libcurl act on ready sockets, collect finished requests
 *	-> one short transaction: record the finished attempts, claim due
 *	   deliveries for the free slots, learn when the next one is due
 *	-> after commit: put the claimed ones in flight
 *
 * HTTP never happens inside a transaction, and a transaction never waits
 * on the network.  A commit that queues work sets our latch (see
 * aloro_webhook.c), so a call that ends is sent at once; an idle worker
 * runs no queries until something is due.
 *
 * Slots: at most max_in_flight requests (and no more than the open-file
 * limit allows), and at most max_in_flight_per_webhook to one webhook, so a
 * slow or hanging endpoint holds only its own slots.
 *
 * Errors: a turn whose transaction fails (a lock held too long by someone
 * else, a cancel, a full disk) is rolled back and retried after a pause;
 * the finished attempts it was recording are kept until they are written,
 * and what it had claimed is simply not sent.  Requests in flight carry on
 * meanwhile.  An error anywhere else ends the worker, which the postmaster
 * restarts; start-up then makes whatever was in flight due again.
 *
 * AW_WORKER_READY
 *
 * IDENTIFICATION
 *		src/worker.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include <math.h>
#include <setjmp.h>

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "http.h"
#include "queue.h"

/* when due work could not be claimed (locked by someone), look again after */
#define AW_RECHECK_MS 250
/* pause after a turn that failed */
#define AW_RETRY_MS 1000
/* claim rounds in one transaction */
#define AW_MAX_CLAIM_ROUNDS 16
/* finished requests held at most, waiting to be recorded */
#define AW_MAX_DONE 5000

typedef struct AwSlots
{
	int64		webhook_id;		/* hash key */
	int			in_flight;
} AwSlots;

/* what the worker is doing, for the error handler */
typedef enum AwPhase
{
	AW_PHASE_IDLE,				/* waiting, or driving libcurl */
	AW_PHASE_TURN,				/* in a turn's transaction: an error rolls it back */
	AW_PHASE_STARTING			/* putting claimed requests in flight */
} AwPhase;

static volatile sig_atomic_t aw_got_sigterm = false;
static AwPhase aw_phase = AW_PHASE_IDLE;

static HTAB *aw_slots = NULL;	/* webhook -> requests in flight */
static MemoryContext aw_request_cxt = NULL;
static MemoryContext aw_turn_cxt = NULL;

/* finished requests waiting to be recorded; kept until a commit has them */
static AwResult **aw_done = NULL;
static AwClaim **aw_done_claims = NULL;
static int	aw_ndone = 0;

/* claimed in the current transaction, started after it commits */
static AwClaim **aw_to_start = NULL;
static int	aw_nto_start = 0;

/* claimed deliveries resolved without a request (webhook gone), this turn */
static AwResult **aw_orphans = NULL;
static AwClaim **aw_orphan_claims = NULL;
static int	aw_norphans = 0;

static Oid	aw_extension_oid = InvalidOid;	/* the extension whose queue we work on */
static bool aw_said_waiting = false;
static bool aw_have_next_due = false;
static TimestampTz aw_next_due = 0;
static TimestampTz aw_retry_at = 0;	/* after a failed turn, no turn before */
static TimestampTz aw_last_sweep = 0;

/* what connections kept alive were checked against, to notice a change */
static char aw_policy[2 * MAXPGPATH + 8192];

/* the settings that decide whether a connection may be used */
static void
aw_current_policy(char *buf, size_t len)
{
	snprintf(buf, len, "%s\n%s", aw_allowed_networks ? aw_allowed_networks : "",
			 aw_ca_file ? aw_ca_file : "");
}

static void
aw_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	aw_got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/* the cap on requests in flight, as settings and the open-file limit allow */
static int
aw_cap(void)
{
	return Max(1, Min(aw_max_in_flight, aw_http_fd_cap()));
}

static AwSlots *
aw_slot(int64 webhook_id, bool create)
{
	bool		found;
	AwSlots    *s = hash_search(aw_slots, &webhook_id, create ? HASH_ENTER : HASH_FIND, &found);

	if (create && !found)
		s->in_flight = 0;
	return s;
}

static void
aw_slot_release(int64 webhook_id)
{
	AwSlots    *s = aw_slot(webhook_id, false);

	if (s != NULL && --s->in_flight <= 0)
		hash_search(aw_slots, &webhook_id, HASH_REMOVE, NULL);
}

/* the webhooks at their per-webhook cap, into out[]; returns how many */
static int
aw_saturated(int64 **out)
{
	HASH_SEQ_STATUS seq;
	AwSlots    *s;
	int			n = 0;

	*out = palloc(sizeof(int64) * Max(hash_get_num_entries(aw_slots), 1));
	hash_seq_init(&seq, aw_slots);
	while ((s = hash_seq_search(&seq)) != NULL)
		if (s->in_flight >= aw_max_in_flight_per_webhook)
			(*out)[n++] = s->webhook_id;
	return n;
}

/*
 * aw_decide
 *		The next state of a delivery after this attempt: entry k of the
 *		schedule is the delay before attempt k of the current round.
 */
static void
aw_decide(AwResult *r, AwClaim *c)
{
	const AwSchedule *sched = aw_current_schedule();
	/* attempts made in this round, this one included (never below 1) */
	int64		made = Max((int64) r->attempt - (int64) c->budget_start, 1);

	if (r->error == NULL)
	{
		r->new_status = "succeeded";
		r->next_attempt_at = 0;
	}
	else if (sched == NULL || made >= sched->nentries)
	{
		r->new_status = "failed";
		r->next_attempt_at = 0;
	}
	else
	{
		r->new_status = "pending";
		r->next_attempt_at = GetCurrentTimestamp() + sched->delay_ms[made] * 1000;
	}
}

/* a claimed delivery whose webhook is gone: failed, without an attempt */
static void
aw_resolve_orphan(AwClaim *c)
{
	MemoryContext old = MemoryContextSwitchTo(c->cxt);
	AwResult   *r = palloc0(sizeof(AwResult));

	r->id = c->id;
	r->webhook_id = c->webhook_id;
	r->ctid = c->ctid;
	r->attempt = c->attempts;
	r->record_attempt = false;
	r->error = psprintf("webhook " INT64_FORMAT " was deleted", c->webhook_id);
	r->new_status = "failed";
	MemoryContextSwitchTo(old);
	aw_orphans[aw_norphans] = r;
	aw_orphan_claims[aw_norphans++] = c;
}

/*
 * aw_claim_due
 *		Fills free slots with due deliveries.  Runs inside the turn's
 *		transaction; the claimed ones are started after it commits.
 */
static void
aw_claim_due(void)
{
	int			free_slots = aw_cap() - aw_http_in_flight() - aw_nto_start;
	int			claimed = 0;
	bool		more_due = true;

	/* after a policy change, nothing new starts on the old connections */
	if (!aw_http_ready_for_new())
		free_slots = 0;

	for (int round = 0; round < AW_MAX_CLAIM_ROUNDS && free_slots > 0 && more_due; round++)
	{
		int64	   *exclude;
		int			nexclude = aw_saturated(&exclude);
		int			limit = Min(free_slots, Min(aw_batch_size, aw_max_in_flight_per_webhook));
		ItemPointerData *tids = palloc(sizeof(ItemPointerData) * limit);
		int64	   *hooks = palloc(sizeof(int64) * limit);
		ItemPointerData *take = palloc(sizeof(ItemPointerData) * limit);
		int64	   *take_hooks = palloc(sizeof(int64) * limit);
		bool	   *matched = palloc0(sizeof(bool) * limit);
		AwClaim   **claims = palloc(sizeof(AwClaim *) * limit);
		int			n;
		int			ntake = 0;
		int			nclaims;

		n = aw_queue_candidates(limit, exclude, nexclude, tids, hooks);
		more_due = (n == limit);
		/* take each candidate while its webhook has a free slot */
		for (int i = 0; i < n; i++)
		{
			AwSlots    *s = aw_slot(hooks[i], true);

			if (s->in_flight >= aw_max_in_flight_per_webhook)
				continue;
			s->in_flight++;
			take[ntake] = tids[i];
			take_hooks[ntake++] = hooks[i];
		}
		if (ntake == 0)
			continue;

		nclaims = aw_queue_claim(take, ntake, aw_request_cxt, claims);
		if (nclaims < ntake)
		{
			/* give back the slots of rows that were not claimed after all */
			for (int j = 0; j < nclaims; j++)
				for (int i = 0; i < ntake; i++)
					if (!matched[i] && take_hooks[i] == claims[j]->webhook_id)
					{
						matched[i] = true;
						break;
					}
			for (int i = 0; i < ntake; i++)
				if (!matched[i])
					aw_slot_release(take_hooks[i]);
		}
		for (int j = 0; j < nclaims; j++)
		{
			if (!claims[j]->webhook_exists)
			{
				/* nothing goes out: its slot is free at once */
				aw_slot_release(claims[j]->webhook_id);
				aw_resolve_orphan(claims[j]);
			}
			else
			{
				aw_to_start[aw_nto_start++] = claims[j];
				claimed++;
			}
			free_slots--;
		}
	}

	if (aw_norphans > 0)
		aw_queue_record(aw_orphans, aw_norphans);

	/* when is the next one due, among webhooks with room? */
	aw_have_next_due = false;
	if (free_slots > 0)
	{
		int64	   *exclude;
		int			nexclude = aw_saturated(&exclude);

		aw_have_next_due = aw_queue_next_due(exclude, nexclude, &aw_next_due);
		if (aw_have_next_due && claimed == 0 && aw_next_due <= GetCurrentTransactionStartTimestamp())
		{
			/* due but not claimable (locked by someone): look again shortly */
			aw_next_due = GetCurrentTimestamp() + AW_RECHECK_MS * 1000;
		}
	}
}

/* frees what a turn held for requests that are done with */
static void
aw_forget(AwClaim **claims, int n)
{
	for (int i = 0; i < n; i++)
		MemoryContextDelete(claims[i]->cxt);
}

/* claims that will not be sent after all: their slots are free again */
static void
aw_unclaim(AwClaim **claims, int n)
{
	for (int i = 0; i < n; i++)
		aw_slot_release(claims[i]->webhook_id);
	aw_forget(claims, n);
}

/* the queue we worked on is gone (extension dropped, or dropped and re-created) */
static void
aw_detach_queue(void)
{
	aw_http_abandon_all();
	for (int i = 0; i < aw_ndone; i++)
		MemoryContextDelete(aw_done_claims[i]->cxt);
	aw_ndone = 0;
	hash_destroy(aw_slots);
	aw_slots = NULL;
	aw_queue_forget_plans();
	aw_have_next_due = false;
	aw_extension_oid = InvalidOid;
}

/* a queue to work on: whatever was in flight before is due again */
static void
aw_attach_queue(Oid extension_oid)
{
	HASHCTL		ctl;
	uint64		released;

	if (aw_slots == NULL)
	{
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(AwSlots);
		ctl.hcxt = TopMemoryContext;
		aw_slots = hash_create("aloro_webhook slots", 64, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	released = aw_queue_release_claims();
	aw_extension_oid = extension_oid;
	ereport(LOG,
			(errmsg("aloro_webhook worker is delivering webhooks from database \"%s\"",
					aw_database_name),
			 released > 0 ?
			 errdetail("%llu deliveries that were in flight when the worker last stopped are due again.",
					   (unsigned long long) released) : 0));
}

/*
 * aw_turn
 *		One short transaction: record finished attempts, claim due work.
 *		Returns after commit; what the turn recorded is forgotten only then.
 */
static void
aw_turn(bool claim)
{
	Oid			extension_oid;
	int			recorded = 0;

	aw_phase = AW_PHASE_TURN;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "aloro_webhook: recording attempts and claiming deliveries");

	extension_oid = aw_queue_extension_oid();
	if (extension_oid != aw_extension_oid && OidIsValid(aw_extension_oid))
		aw_detach_queue();
	if (!OidIsValid(extension_oid))
	{
		if (!aw_said_waiting)
			ereport(LOG,
					(errmsg("aloro_webhook worker is waiting for CREATE EXTENSION aloro_webhook in database \"%s\"",
							aw_database_name)));
		aw_said_waiting = true;
	}
	else
	{
		if (!OidIsValid(aw_extension_oid))
		{
			aw_attach_queue(extension_oid);
			aw_said_waiting = false;
			aw_last_sweep = GetCurrentTimestamp();
			aw_queue_fail_orphans();
			claim = true;
		}
		else if (TimestampDifferenceExceeds(aw_last_sweep, GetCurrentTimestamp(), aw_idle_check_ms))
		{
			aw_last_sweep = GetCurrentTimestamp();
			aw_queue_fail_orphans();
		}
		if (aw_ndone > 0)
		{
			for (int i = 0; i < aw_ndone; i++)
				if (aw_done[i]->record_attempt)
					aw_decide(aw_done[i], aw_done_claims[i]);
			aw_queue_record(aw_done, aw_ndone);
			recorded = aw_ndone;
		}
		if (claim)
			aw_claim_due();
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	/* committed: the recorded results and resolved orphans are done with */
	aw_forget(aw_done_claims, recorded);
	aw_ndone = 0;
	aw_forget(aw_orphan_claims, aw_norphans);
	aw_norphans = 0;

	/* only now, outside any transaction, does the network come in */
	aw_phase = AW_PHASE_STARTING;
	for (int i = 0; i < aw_nto_start; i++)
		aw_http_start(aw_to_start[i]);
	aw_nto_start = 0;
	aw_phase = AW_PHASE_IDLE;
}

/*
 * aw_turn_failed
 *		After an error in a turn's transaction, which the caller rolled back:
 *		what it claimed was not claimed after all; what it was recording is
 *		still to be recorded, at the next turn.
 */
static void
aw_turn_failed(void)
{
	aw_unclaim(aw_to_start, aw_nto_start);
	aw_nto_start = 0;
	aw_forget(aw_orphan_claims, aw_norphans);
	aw_norphans = 0;
	aw_have_next_due = false;
	aw_retry_at = GetCurrentTimestamp() + AW_RETRY_MS * 1000;
	/* saved plans may be what failed */
	aw_queue_forget_plans();
}

/* on shutdown: what was in flight is due again, at once */
static void
aw_release_on_exit(void)
{
	if (!OidIsValid(aw_extension_oid) || aw_http_in_flight() == 0)
		return;
	aw_http_abandon_all();
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (SPI_connect() == SPI_OK_CONNECT)
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		if (aw_queue_extension_oid() == aw_extension_oid)
			aw_queue_release_claims();
		SPI_finish();
		PopActiveSnapshot();
	}
	CommitTransactionCommand();
}

/* how long to sleep: until libcurl, the next due delivery, a retry or the idle check */
static long
aw_sleep_ms(TimestampTz now)
{
	long		timeout = aw_idle_check_ms;
	long		curl_ms = aw_http_timeout_ms();

	if (curl_ms >= 0)
		timeout = Min(timeout, curl_ms);
	if (aw_retry_at > now)
		timeout = Min(timeout, (long) ((aw_retry_at - now + 999) / 1000));
	else if (aw_ndone > 0 || (aw_http_results_waiting() && aw_ndone < AW_MAX_DONE))
		timeout = 0;
	if (aw_have_next_due)
	{
		long		due_ms = aw_next_due <= now ? 0 :
			(long) ((aw_next_due - now + 999) / 1000);

		timeout = Min(timeout, Max(due_ms, aw_retry_at > now ?
								   (long) ((aw_retry_at - now + 999) / 1000) : 0));
	}
	return Max(timeout, 0);
}

/*
 * The worker's error handler: report, roll back, and go on where that is
 * safe (see the file header); otherwise exit and be restarted.
 */
static void
aw_recover(void)
{
	HOLD_INTERRUPTS();
	QueryCancelPending = false;
	EmitErrorReport();
	/* every level: the error may come from inside a subtransaction */
	AbortOutOfAnyTransaction();
	MemoryContextSwitchTo(TopMemoryContext);
	FlushErrorState();
	if (aw_phase != AW_PHASE_TURN)
		proc_exit(1);
	aw_turn_failed();
	aw_phase = AW_PHASE_IDLE;
	pgstat_report_activity(STATE_IDLE, NULL);
	RESUME_INTERRUPTS();
}

/*
 * aw_worker_main
 *		Entry point of the background worker.
 */
void
aw_worker_main(Datum main_arg)
{
	WaitEventSet *wes;
	TimestampTz last_turn = 0;
	sigjmp_buf	local_sigjmp_buf;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, aw_sigterm);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(aw_database_name, NULL, 0);
	pgstat_report_appname(AW_WORKER_NAME);

	/*
	 * Losing the last few result writes in a crash only means those
	 * attempts are made again: at least once either way, and much faster.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/* a lock held by someone else fails the turn, which is retried */
	SetConfigOption("lock_timeout", "1s", PGC_SUSET, PGC_S_OVERRIDE);

	aw_request_cxt = AllocSetContextCreate(TopMemoryContext, "aloro_webhook requests",
										   ALLOCSET_DEFAULT_SIZES);
	aw_turn_cxt = AllocSetContextCreate(TopMemoryContext, "aloro_webhook turn",
										ALLOCSET_DEFAULT_SIZES);
	aw_http_init();
	aw_current_policy(aw_policy, sizeof(aw_policy));
	aw_done = MemoryContextAlloc(TopMemoryContext, sizeof(AwResult *) * AW_MAX_DONE);
	aw_done_claims = MemoryContextAlloc(TopMemoryContext, sizeof(AwClaim *) * AW_MAX_DONE);
	aw_to_start = MemoryContextAlloc(TopMemoryContext, sizeof(AwClaim *) * 10000);
	aw_orphans = MemoryContextAlloc(TopMemoryContext, sizeof(AwResult *) * 10000);
	aw_orphan_claims = MemoryContextAlloc(TopMemoryContext, sizeof(AwClaim *) * 10000);

	wes = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wes, WL_SOCKET_READABLE, aw_http_epoll_fd(), NULL, NULL);

	aw_worker_publish_latch();
	before_shmem_exit(aw_worker_unpublish_latch, 0);
	ereport(LOG,
			(errmsg("aloro_webhook worker started"),
			 errdetail("It works in database \"%s\" and keeps up to %d requests in flight.",
					   aw_database_name, aw_cap())));

	/* errors in a turn come back here (see aw_recover) */
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
		bool		due;
		TimestampTz now = GetCurrentTimestamp();

		nevents = WaitEventSetWait(wes, aw_sleep_ms(now), events, lengthof(events), PG_WAIT_EXTENSION);
		for (int i = 0; i < nevents; i++)
			if (events[i].events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				woken = true;
			}
		CHECK_FOR_INTERRUPTS();
		if (aw_got_sigterm)
			break;
		if (ConfigReloadPending)
		{
			char		policy[sizeof(aw_policy)];

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			aw_current_policy(policy, sizeof(policy));
			if (strcmp(policy, aw_policy) != 0)
			{
				aw_http_policy_changed();
				strlcpy(aw_policy, policy, sizeof(aw_policy));
			}
		}

		MemoryContextReset(aw_turn_cxt);
		MemoryContextSwitchTo(aw_turn_cxt);

		/* let libcurl move; collect what finished, which frees its slot */
		if (aw_ndone < AW_MAX_DONE)
		{
			int			n = aw_http_drive(aw_done + aw_ndone, aw_done_claims + aw_ndone,
										  Min(aw_batch_size, AW_MAX_DONE - aw_ndone));

			for (int i = aw_ndone; i < aw_ndone + n; i++)
				aw_slot_release(aw_done_claims[i]->webhook_id);
			aw_ndone += n;
		}

		now = GetCurrentTimestamp();
		due = woken || (aw_have_next_due && aw_next_due <= now) ||
			TimestampDifferenceExceeds(last_turn, now, aw_idle_check_ms);
		if ((aw_ndone > 0 || due) && now >= aw_retry_at)
		{
			aw_turn(due || aw_ndone > 0);
			last_turn = now;
		}
		else if (woken)
			aw_have_next_due = true, aw_next_due = Max(aw_next_due, aw_retry_at);
		MemoryContextSwitchTo(TopMemoryContext);
	}

	ereport(LOG,
			(errmsg("aloro_webhook worker stopping"),
			 aw_http_in_flight() > 0 ?
			 errdetail("%d requests in flight were cut off and are due again.", aw_http_in_flight()) : 0));
	aw_release_on_exit();
	proc_exit(1);
}
