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
 * AW_WORKER_READY
 *
 * IDENTIFICATION
 *		src/worker.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "http.h"
#include "queue.h"

/* when nothing went wrong but due work could not be claimed, look again after */
#define AW_RECHECK_MS 250
/* claim rounds in one transaction */
#define AW_MAX_CLAIM_ROUNDS 16

typedef struct AwSlots
{
	int64		webhook_id;		/* hash key */
	int			in_flight;
} AwSlots;

static volatile sig_atomic_t aw_got_sigterm = false;

static HTAB *aw_slots = NULL;	/* webhook -> requests in flight */
static MemoryContext aw_request_cxt = NULL;
static MemoryContext aw_cycle_cxt = NULL;

/* finished requests waiting to be recorded */
static AwResult **aw_done = NULL;
static AwClaim **aw_done_claims = NULL;
static int	aw_ndone = 0;

/* claimed in the current transaction, started after it commits */
static AwClaim **aw_to_start = NULL;
static int	aw_nto_start = 0;

static Oid	aw_extension_oid = InvalidOid;	/* the extension whose queue we work on */
static bool aw_said_waiting = false;
static bool aw_have_next_due = false;
static TimestampTz aw_next_due = 0;

/* what connections kept alive were checked against, to notice a change */
static char *aw_policy = NULL;

/* the settings that decide whether a connection may be used */
static char *
aw_current_policy(void)
{
	return MemoryContextStrdup(TopMemoryContext,
							   psprintf("%s\n%s", aw_allowed_networks ? aw_allowed_networks : "",
										aw_ca_file ? aw_ca_file : ""));
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

/* the next state of a delivery after this attempt */
static void
aw_decide(AwResult *r, AwClaim *c)
{
	const AwSchedule *sched = aw_current_schedule();
	int			round_attempt = r->attempt - c->budget_start;

	if (r->error == NULL)
	{
		r->new_status = "succeeded";
		r->next_attempt_at = 0;
	}
	else if (sched == NULL || round_attempt >= sched->nentries)
	{
		r->new_status = "failed";
		r->next_attempt_at = 0;
	}
	else
	{
		r->new_status = "pending";
		r->next_attempt_at = GetCurrentTimestamp() + sched->delay_ms[round_attempt] * 1000;
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
	aw_done[aw_ndone] = r;
	aw_done_claims[aw_ndone++] = c;
}

/*
 * aw_claim_due
 *		Fills free slots with due deliveries.  Runs inside the cycle's
 *		transaction; the claimed ones are started after commit.
 */
static void
aw_claim_due(void)
{
	int			cap = aw_cap();
	int			free_slots = cap - aw_http_in_flight() - aw_nto_start;
	int			claimed = 0;
	bool		more_due = true;

	for (int round = 0; round < AW_MAX_CLAIM_ROUNDS && free_slots > 0 && more_due; round++)
	{
		int64	   *exclude;
		int			nexclude = aw_saturated(&exclude);
		int			limit = Min(free_slots, Min(aw_batch_size, aw_max_in_flight_per_webhook));
		ItemPointerData *tids = palloc(sizeof(ItemPointerData) * limit);
		int64	   *hooks = palloc(sizeof(int64) * limit);
		ItemPointerData *take = palloc(sizeof(ItemPointerData) * limit);
		int64	   *take_hooks = palloc(sizeof(int64) * limit);
		int		   *taken_per_hook = palloc0(sizeof(int) * limit);
		int64	   *park = palloc(sizeof(int64) * limit);
		AwClaim   **claims = palloc(sizeof(AwClaim *) * limit);
		int			n;
		int			ntake = 0;
		int			nclaims;
		int			npark = 0;

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
			/* give back the slots of rows that changed under us */
			for (int j = 0; j < nclaims; j++)
				for (int i = 0; i < ntake; i++)
					if (take_hooks[i] == claims[j]->webhook_id && taken_per_hook[i] == 0)
					{
						taken_per_hook[i] = 1;
						break;
					}
			for (int i = 0; i < ntake; i++)
				if (taken_per_hook[i] == 0)
					aw_slot_release(take_hooks[i]);
		}
		for (int j = 0; j < nclaims; j++)
		{
			AwClaim    *c = claims[j];

			if (!c->webhook_exists || (!c->enabled && !c->test))
			{
				aw_slot_release(c->webhook_id);
				if (!c->webhook_exists)
					aw_resolve_orphan(c);
				else
				{
					park[npark++] = c->id;
					MemoryContextDelete(c->cxt);
				}
				continue;
			}
			aw_to_start[aw_nto_start++] = c;
			free_slots--;
			claimed++;
		}
		aw_queue_park(park, npark);
	}

	/* orphans resolved above are recorded with the other results */
	if (aw_ndone > 0)
	{
		aw_queue_record(aw_done, aw_ndone);
		for (int i = 0; i < aw_ndone; i++)
			MemoryContextDelete(aw_done_claims[i]->cxt);
		aw_ndone = 0;
	}

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

	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(AwSlots);
	ctl.hcxt = TopMemoryContext;
	aw_slots = hash_create("aloro_webhook slots", 64, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	aw_extension_oid = extension_oid;
	released = aw_queue_release_claims();
	ereport(LOG,
			(errmsg("aloro_webhook worker is delivering webhooks from database \"%s\"",
					aw_database_name),
			 released > 0 ?
			 errdetail("%llu deliveries that were in flight when the worker last stopped are due again.",
					   (unsigned long long) released) : 0));
}

/* records the finished attempts collected so far, and frees their requests */
static void
aw_record_done(void)
{
	for (int i = 0; i < aw_ndone; i++)
		if (aw_done[i]->record_attempt)
			aw_decide(aw_done[i], aw_done_claims[i]);
	aw_queue_record(aw_done, aw_ndone);
	for (int i = 0; i < aw_ndone; i++)
	{
		aw_slot_release(aw_done_claims[i]->webhook_id);
		MemoryContextDelete(aw_done_claims[i]->cxt);
	}
	aw_ndone = 0;
}

/*
 * aw_cycle
 *		One short transaction: record finished attempts, claim due work.
 */
static void
aw_cycle(bool claim)
{
	Oid			extension_oid;

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
			claim = true;
		}
		if (aw_ndone > 0)
			aw_record_done();
		if (claim)
			aw_claim_due();
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	/* only now, outside any transaction, does the network come in */
	for (int i = 0; i < aw_nto_start; i++)
		aw_http_start(aw_to_start[i]);
	aw_nto_start = 0;
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

/* how long to sleep: until libcurl, the next due delivery or the idle check */
static long
aw_sleep_ms(void)
{
	long		timeout = aw_idle_check_ms;
	long		curl_ms = aw_http_timeout_ms();

	if (curl_ms >= 0)
		timeout = Min(timeout, curl_ms);
	if (aw_have_next_due)
	{
		TimestampTz now = GetCurrentTimestamp();
		long		due_ms = aw_next_due <= now ? 0 :
			(long) ((aw_next_due - now + 999) / 1000);

		timeout = Min(timeout, due_ms);
	}
	return Max(timeout, 0);
}

/*
 * aw_worker_main
 *		Entry point of the background worker.
 */
void
aw_worker_main(Datum main_arg)
{
	WaitEventSet *wes;
	TimestampTz last_cycle = 0;

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
	SetConfigOption("lock_timeout", "5s", PGC_SUSET, PGC_S_OVERRIDE);

	aw_request_cxt = AllocSetContextCreate(TopMemoryContext, "aloro_webhook requests",
										   ALLOCSET_DEFAULT_SIZES);
	aw_cycle_cxt = AllocSetContextCreate(TopMemoryContext, "aloro_webhook cycle",
										 ALLOCSET_DEFAULT_SIZES);
	aw_http_init();
	aw_policy = aw_current_policy();
	aw_done = MemoryContextAlloc(TopMemoryContext, sizeof(AwResult *) * 10000);
	aw_done_claims = MemoryContextAlloc(TopMemoryContext, sizeof(AwClaim *) * 10000);
	aw_to_start = MemoryContextAlloc(TopMemoryContext, sizeof(AwClaim *) * 10000);

	wes = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wes, WL_SOCKET_READABLE, aw_http_epoll_fd(), NULL, NULL);

	aw_worker_publish_latch();
	before_shmem_exit(aw_worker_unpublish_latch, 0);
	ereport(LOG,
			(errmsg("aloro_webhook worker started"),
			 errdetail("database \"%s\", up to %d requests in flight", aw_database_name, aw_cap())));

	/* the first turn looks for the extension and for work left from before */
	SetLatch(MyLatch);

	while (!aw_got_sigterm)
	{
		WaitEvent	events[3];
		int			nevents;
		bool		woken = false;
		bool		due;
		TimestampTz now;

		nevents = WaitEventSetWait(wes, aw_sleep_ms(), events, lengthof(events), PG_WAIT_EXTENSION);
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
			char	   *policy;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			policy = aw_current_policy();
			if (strcmp(policy, aw_policy) != 0)
				aw_http_policy_changed();
			pfree(aw_policy);
			aw_policy = policy;
		}

		MemoryContextReset(aw_cycle_cxt);
		MemoryContextSwitchTo(aw_cycle_cxt);

		/* let libcurl move; collect what finished */
		aw_ndone += aw_http_drive(aw_done + aw_ndone, aw_done_claims + aw_ndone,
								  Min(aw_batch_size, 10000 / 2) - aw_ndone);

		now = GetCurrentTimestamp();
		due = woken || (aw_have_next_due && aw_next_due <= now) ||
			TimestampDifferenceExceeds(last_cycle, now, aw_idle_check_ms);
		if (aw_ndone > 0 || due)
		{
			aw_cycle(due || aw_ndone > 0);
			last_cycle = now;
		}
		MemoryContextSwitchTo(TopMemoryContext);
	}

	ereport(LOG,
			(errmsg("aloro_webhook worker stopping"),
			 aw_http_in_flight() > 0 ?
			 errdetail("%d requests in flight were cut off and are due again.", aw_http_in_flight()) : 0));
	aw_release_on_exit();
	proc_exit(1);
}
