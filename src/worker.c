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
 * meanwhile.  A cancel outside a turn has nothing to cancel and is ignored.
 * An error anywhere else ends the worker, which the postmaster restarts;
 * start-up then makes whatever was in flight due again.
 *
 * AW_WORKER_READY
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
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_database.h"
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
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "http.h"
#include "queue.h"

/* when due work could not be claimed (locked by someone), look again after */
#define AW_RECHECK_MS 250
/* pause after a turn that failed */
#define AW_RETRY_MS 1000
/* while database_name does not exist: check every 5 s, say so every hour */
#define AW_MISSING_DB_CHECK_MS 5000
#define AW_MISSING_DB_REMIND_MS (3600 * 1000)
/* claim rounds in one transaction */
#define AW_MAX_CLAIM_ROUNDS 16
/* finished requests held at most, waiting to be recorded */
#define AW_MAX_DONE 5000
/* claims started after one turn at most */
#define AW_MAX_START 10000

/* what the worker is doing, for the error handler */
typedef enum AwPhase
{
	AW_PHASE_IDLE,				/* waiting, or driving libcurl */
	AW_PHASE_TURN,				/* in a turn's transaction: an error rolls it back */
	AW_PHASE_SWEEP,				/* in the sweep's transaction: an error is only logged */
	AW_PHASE_STARTING			/* putting committed claims in flight */
} AwPhase;

/* requests to one webhook, in flight or claimed in the current turn */
typedef struct AwUse
{
	int64		webhook_id;		/* hash key */
	int			n;
} AwUse;

static volatile sig_atomic_t aw_got_sigterm = false;
static AwPhase aw_phase = AW_PHASE_IDLE;

static MemoryContext aw_request_cxt = NULL;
static MemoryContext aw_turn_cxt = NULL;

/* finished requests waiting to be recorded; kept until a commit has them */
static AwResult **aw_done = NULL;
static AwClaim **aw_done_claims = NULL;
static int	aw_ndone = 0;

/* claimed in the current transaction, started after it commits */
static AwClaim **aw_to_start = NULL;
static int	aw_nto_start = 0;
static int64 aw_bytes_to_start = 0;

/* this worker's claims carry its token (shared memory lists the live ones) */
static int64 aw_token = 0;

/* requests went out since the heap was last trimmed */
static bool aw_trim_pending = false;

/* waiting deliveries of deleted webhooks seen at the last sweep */
#define AW_MAX_ORPHANS 1000
static int64 aw_orphans[AW_MAX_ORPHANS];
static int	aw_norphans = 0;

static Oid	aw_extension_oid = InvalidOid;	/* the extension whose queue we work on */
static int	aw_said_waiting = -1;	/* the AwQueueState last logged as waited for */
static bool aw_have_next_due = false;
static TimestampTz aw_next_due = 0;
static TimestampTz aw_retry_at = 0;	/* after a failed turn, no turn before */
static TimestampTz aw_last_turn = 0;
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

static void
aw_use_add(HTAB *use, int64 webhook_id, int n)
{
	bool		found;
	AwUse	   *u = hash_search(use, &webhook_id, HASH_ENTER, &found);

	u->n = (found ? u->n : 0) + n;
}

static void
aw_use_from_http(int64 webhook_id, int n, void *arg)
{
	aw_use_add((HTAB *) arg, webhook_id, n);
}

/*
 * Requests per webhook: those in flight (counted by the HTTP client where
 * they start and end) plus those claimed in this turn.  Derived each time,
 * so no failed turn can leave a count behind.
 */
static HTAB *
aw_use_now(void)
{
	HASHCTL		ctl;
	HTAB	   *use;

	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(AwUse);
	ctl.hcxt = aw_turn_cxt;
	use = hash_create("aloro_webhook use", 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	aw_http_each_webhook(aw_use_from_http, use);
	for (int i = 0; i < aw_nto_start; i++)
		aw_use_add(use, aw_to_start[i]->webhook_id, 1);
	return use;
}

/* the webhooks at their per-webhook cap, into out[]; returns how many */
static int
aw_saturated(HTAB *use, int64 **out)
{
	HASH_SEQ_STATUS seq;
	AwUse	   *u;
	int			n = 0;

	*out = MemoryContextAlloc(aw_turn_cxt, sizeof(int64) * Max(hash_get_num_entries(use), 1));
	hash_seq_init(&seq, use);
	while ((u = hash_seq_search(&seq)) != NULL)
		if (u->n >= aw_max_in_flight_per_webhook)
			(*out)[n++] = u->webhook_id;
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
	else if (r->final || sched == NULL || made >= sched->nentries)
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

/*
 * aw_claim_due
 *		Fills free slots with due deliveries.  Runs inside the turn's
 *		transaction; the claimed ones are started after it commits.
 */
static void
aw_claim_due(void)
{
	int			free_slots = aw_cap() - aw_http_in_flight() - aw_nto_start;
	int64		free_bytes = (int64) aw_max_in_flight_bytes - aw_http_bytes_in_flight();
	bool		bytes_full = false;
	int			claimed = 0;
	bool		more_due = true;
	HTAB	   *use = aw_use_now();

	/* after a policy change, nothing new starts on the old connections */
	if (!aw_http_ready_for_new())
		free_slots = 0;

	for (int round = 0; round < AW_MAX_CLAIM_ROUNDS && free_slots > 0 && more_due; round++)
	{
		int64	   *exclude;
		int			nexclude = aw_saturated(use, &exclude);
		int			limit = Min(free_slots, Min(aw_batch_size, aw_max_in_flight_per_webhook));
		ItemPointerData *tids = palloc(sizeof(ItemPointerData) * limit);
		int64	   *hooks = palloc(sizeof(int64) * limit);
		ItemPointerData *take = palloc(sizeof(ItemPointerData) * limit);
		AwClaim   **claims = palloc(sizeof(AwClaim *) * limit);
		int		   *sizes = palloc(sizeof(int) * limit);
		int			n;
		int			ntake = 0;
		int			nclaims;

		n = aw_queue_candidates(limit, exclude, nexclude, tids, hooks, sizes);
		more_due = (n == limit);
		/* take each candidate while its webhook, and the bytes in flight, have room */
		for (int i = 0; i < n; i++)
		{
			bool		found;
			AwUse	   *u = hash_search(use, &hooks[i], HASH_ENTER, &found);

			if (!found)
				u->n = 0;
			if (u->n >= aw_max_in_flight_per_webhook)
				continue;
			/* a body larger than the byte cap goes alone */
			if (aw_bytes_to_start + sizes[i] > free_bytes &&
				(aw_http_in_flight() > 0 || aw_nto_start + ntake > 0))
			{
				more_due = false;
				bytes_full = true;
				break;
			}
			u->n++;
			aw_bytes_to_start += sizes[i];
			take[ntake++] = tids[i];
		}
		if (ntake == 0)
			continue;

		nclaims = aw_queue_claim(take, ntake, aw_token, aw_request_cxt, claims);
		for (int j = 0; j < nclaims && aw_nto_start < AW_MAX_START; j++)
			aw_to_start[aw_nto_start++] = claims[j];
		claimed += nclaims;
		free_slots -= nclaims;
		if (nclaims < ntake)
		{
			/* some were not claimable after all: count again from what is real */
			hash_destroy(use);
			use = aw_use_now();
		}
	}

	/* when is the next one due, among webhooks with room? */
	aw_have_next_due = false;
	if (free_slots > 0 && !more_due && !bytes_full)
	{
		int64	   *exclude;
		int			nexclude = aw_saturated(use, &exclude);

		aw_have_next_due = aw_queue_next_due(exclude, nexclude, &aw_next_due);
		if (aw_have_next_due && claimed == 0 && aw_next_due <= GetCurrentTransactionStartTimestamp())
		{
			/* due but not claimable (locked by someone): look again shortly */
			aw_next_due = GetCurrentTimestamp() + AW_RECHECK_MS * 1000;
		}
	}
}

/* releases the claims of workers that no longer run; returns how many */
static uint64
aw_release_stale_claims(void)
{
	int64		live[AW_MAX_WORKERS];
	int			nlive = aw_live_worker_tokens(live, true);

	return aw_queue_release_claims(live, nlive);
}

/*
 * Why a claimed delivery cannot be sent, or NULL when it can: its body was
 * erased, or is larger than aloro_webhook.max_payload_size is now.
 */
static const char *
aw_unsendable(AwClaim *c)
{
	if (c->body == NULL)
		return "payload erased: the body of this delivery was erased, so it cannot be sent";
	return aw_payload_too_large(strlen(c->body));
}

/* the result of a claimed delivery that is failed without being sent */
static AwResult *
aw_resolve_unsent(AwClaim *c, const char *why)
{
	AwResult   *r = MemoryContextAllocZero(c->cxt, sizeof(AwResult));

	r->id = c->id;
	r->webhook_id = c->webhook_id;
	r->ctid = c->ctid;
	r->attempt = c->attempts;
	r->record_attempt = false;
	r->final = true;
	r->started_at = GetCurrentTimestamp();
	r->error = MemoryContextStrdup(c->cxt, why);
	return r;
}

/* frees what a turn held for requests that are done with */
static void
aw_forget(AwClaim **claims, int n)
{
	for (int i = 0; i < n; i++)
		MemoryContextDelete(claims[i]->cxt);
}

/* the queue we worked on is gone (extension dropped, or dropped and re-created) */
static void
aw_detach_queue(void)
{
	aw_http_abandon_all();
	aw_forget(aw_done_claims, aw_ndone);
	aw_ndone = 0;
	aw_queue_forget_plans();
	aw_have_next_due = false;
	aw_extension_oid = InvalidOid;
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

/*
 * aw_turn
 *		One short transaction: record finished attempts, claim due work.
 *		What the turn recorded is forgotten, and what it claimed is started,
 *		only after it commits.
 */
static void
aw_turn(void)
{
	Oid			extension_oid;
	Oid			attached = InvalidOid;
	int			recorded = 0;
	AwQueueState state;

	aw_phase = AW_PHASE_TURN;
	aw_begin("aloro_webhook: recording attempts and claiming deliveries");

	extension_oid = aw_queue_extension_oid(&state);
	if (extension_oid != aw_extension_oid && OidIsValid(aw_extension_oid))
		aw_detach_queue();
	if (!OidIsValid(extension_oid))
	{
		if (state != AW_QUEUE_NOT_READY && aw_said_waiting != (int) state)
			ereport(LOG,
					state == AW_QUEUE_LEGACY ?
					(errmsg("aloro_webhook worker is waiting for ALTER EXTENSION aloro_webhook UPDATE in database \"%s\"",
							aw_database_name),
					 errdetail("The library is version %s; the extension's tables there are still version 0.1.0's.",
							   AW_VERSION),
					 errhint("Run ALTER EXTENSION aloro_webhook UPDATE; deliveries queued meanwhile are kept and sent afterwards.")) :
					(errmsg("aloro_webhook worker is waiting for CREATE EXTENSION aloro_webhook in database \"%s\"",
							aw_database_name)));
		if (state != AW_QUEUE_NOT_READY)
			aw_said_waiting = (int) state;
		/* installed but not usable yet: look again shortly */
		aw_have_next_due = state != AW_QUEUE_NONE;
		if (aw_have_next_due)
			aw_next_due = GetCurrentTimestamp() + (state == AW_QUEUE_LEGACY ? AW_RETRY_MS : AW_RECHECK_MS) * 1000;
	}
	else
	{
		uint64		released = 0;

		/* a queue to work on: whatever was in flight before is due again */
		if (!OidIsValid(aw_extension_oid))
		{
			released = aw_release_stale_claims();
			attached = extension_oid;
		}
		if (aw_ndone > 0)
		{
			for (int i = 0; i < aw_ndone; i++)
				aw_decide(aw_done[i], aw_done_claims[i]);
			aw_queue_record(aw_done, aw_ndone, aw_token);
			recorded = aw_ndone;
		}
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
	aw_phase = AW_PHASE_STARTING;
	if (OidIsValid(attached))
	{
		aw_extension_oid = attached;
		aw_said_waiting = -1;
	}
	aw_forget(aw_done_claims, recorded);
	aw_ndone = 0;

	/* only now, outside any transaction, does the network come in */
	for (int i = 0; i < aw_nto_start; i++)
	{
		const char *unsendable = aw_unsendable(aw_to_start[i]);

		if (unsendable == NULL)
		{
			aw_http_start(aw_to_start[i]);
			aw_trim_pending = true;
		}
		else if (aw_ndone < AW_MAX_DONE)
		{
			aw_done[aw_ndone] = aw_resolve_unsent(aw_to_start[i], unsendable);
			aw_done_claims[aw_ndone++] = aw_to_start[i];
		}
		else
			aw_forget(&aw_to_start[i], 1);	/* released when the worker restarts */
	}
	aw_nto_start = 0;
	aw_bytes_to_start = 0;
	aw_phase = AW_PHASE_IDLE;
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
	aw_forget(aw_to_start, aw_nto_start);
	aw_nto_start = 0;
	aw_bytes_to_start = 0;
	aw_retry_at = GetCurrentTimestamp() + AW_RETRY_MS * 1000;
	aw_have_next_due = true;
	aw_next_due = aw_retry_at;
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

	aw_phase = AW_PHASE_SWEEP;
	aw_begin("aloro_webhook: releasing stale claims, failing deliveries of deleted webhooks");
	aw_release_stale_claims();
	nseen = aw_queue_orphans(seen, AW_MAX_ORPHANS);
	if (aw_norphans > 0 && nseen > 0)
		aw_queue_fail_orphans(aw_orphans, aw_norphans);
	aw_commit();
	memcpy(aw_orphans, seen, sizeof(int64) * nseen);
	aw_norphans = nseen;
	aw_last_sweep = GetCurrentTimestamp();
	aw_phase = AW_PHASE_IDLE;
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

	if (!OidIsValid(aw_extension_oid))
		return;
	aw_http_abandon_all();
	aw_begin("aloro_webhook: stopping");
	if (aw_queue_extension_oid(&state) == aw_extension_oid)
	{
		int64		others[AW_MAX_WORKERS];
		int			nothers = aw_live_worker_tokens(others, false);

		for (int i = 0; i < aw_ndone; i++)
			aw_decide(aw_done[i], aw_done_claims[i]);
		aw_queue_record(aw_done, aw_ndone, aw_token);
		/* ours are released: every claim but those of the workers still running */
		aw_queue_release_claims(others, nothers);
	}
	aw_commit();
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
		timeout = Min(timeout, aw_next_due <= now ? 0 : (long) ((aw_next_due - now + 999) / 1000));
	return Max(timeout, 0);
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
	switch (aw_phase)
	{
		case AW_PHASE_TURN:
			aw_turn_failed();
			break;
		case AW_PHASE_SWEEP:
			aw_last_sweep = GetCurrentTimestamp();	/* try again next interval */
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
	aw_phase = AW_PHASE_IDLE;
	pgstat_report_activity(STATE_IDLE, NULL);
	RESUME_INTERRUPTS();
}

/*
 * aw_worker_pin_settings
 *		The settings the worker's statements rely on, fixed over whatever the
 *		database's or a role's defaults say (ALTER DATABASE ... SET is open to
 *		the database owner, who need not be a superuser; the worker is one).
 *
 * search_path above all: with pg_catalog first and nothing else, no function,
 * operator or type a user creates (in public, say) can stand in for one the
 * worker's statements name; they also name them schema-qualified.
 */
static void
aw_worker_pin_settings(void)
{
	static const char *const pinned[][2] = {
		{"search_path", "pg_catalog, pg_temp"},
		/*
		 * Losing the last few result writes in a crash only means those
		 * attempts are made again: at least once either way, and much faster.
		 */
		{"synchronous_commit", "off"},
		/* a lock held by someone else fails the turn, which is retried */
		{"lock_timeout", "1s"},
		{"statement_timeout", "0"},
		{"idle_in_transaction_session_timeout", "0"},
		{"default_transaction_read_only", "off"},
		{"default_transaction_isolation", "read committed"},
		{"jit", "off"},
	};

	for (size_t i = 0; i < lengthof(pinned); i++)
		SetConfigOption(pinned[i][0], pinned[i][1], PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * Does a database of this name exist?  Connected to no database, only the
 * shared catalogs can be read, and only by a plain scan (the syscache and
 * the catalogs' indexes need a database), as the autovacuum launcher does.
 */
static bool
aw_database_exists(const char *name)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	bool		found = false;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (!found && (tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
		found = strcmp(NameStr(((Form_pg_database) GETSTRUCT(tup))->datname), name) == 0;
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return found;
}

/*
 * aw_wait_for_database
 *		Runs instead of the worker, connected to no database, while
 *		aloro_webhook.database_name names one that does not exist: says so
 *		once (and again every hour), checks quietly every few seconds, and
 *		when it appears exits, to be started again and connect to it.
 */
static void
aw_wait_for_database(void)
{
	TimestampTz said = 0;

	for (;;)
	{
		bool		exists;

		CHECK_FOR_INTERRUPTS();
		if (aw_got_sigterm)
			proc_exit(0);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		exists = aw_database_exists(aw_database_name);
		if (exists)
		{
			aw_set_database_missing(false);
			ereport(LOG,
					(errmsg("aloro_webhook worker: database \"%s\" exists now; restarting to deliver from it",
							aw_database_name)));
			proc_exit(1);
		}
		if (said == 0 || TimestampDifferenceExceeds(said, GetCurrentTimestamp(), AW_MISSING_DB_REMIND_MS))
		{
			ereport(LOG,
					(errmsg("aloro_webhook worker is waiting for database \"%s\" to exist", aw_database_name),
					 errdetail("aloro_webhook.database_name names it; the worker checks every %d seconds and starts delivering when it appears.",
							   AW_MISSING_DB_CHECK_MS / 1000),
					 errhint("Create the database, or set aloro_webhook.database_name and restart the server.")));
			said = GetCurrentTimestamp();
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 AW_MISSING_DB_CHECK_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * aw_connect
 *		Connects to aloro_webhook.database_name.  A connection that fails
 *		(the database does not exist) ends this process with PostgreSQL's
 *		FATAL; shared memory remembers it, and the next start waits for the
 *		database instead of failing again every second.
 */
static void
aw_connect(void)
{
	if (aw_database_missing())
	{
		BackgroundWorkerInitializeConnection(NULL, NULL, 0);
		aw_wait_for_database();
	}
	aw_set_database_missing(true);
	BackgroundWorkerInitializeConnection(aw_database_name, NULL, 0);
	aw_set_database_missing(false);
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

	aw_connect();
	pgstat_report_appname(AW_WORKER_NAME);
#ifdef __GLIBC__
	/*
	 * Big bodies in their own mappings, returned to the system when freed;
	 * by default glibc raises this threshold after the first big free, and a
	 * burst of large bodies would stay in the heap for good.
	 */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
#endif

	aw_worker_pin_settings();

	aw_request_cxt = AllocSetContextCreate(TopMemoryContext, "aloro_webhook requests",
										   ALLOCSET_DEFAULT_SIZES);
	aw_turn_cxt = AllocSetContextCreate(TopMemoryContext, "aloro_webhook turn",
										ALLOCSET_DEFAULT_SIZES);
	aw_http_init();
	aw_current_policy(aw_policy, sizeof(aw_policy));
	aw_done = MemoryContextAlloc(TopMemoryContext, sizeof(AwResult *) * AW_MAX_DONE);
	aw_done_claims = MemoryContextAlloc(TopMemoryContext, sizeof(AwClaim *) * AW_MAX_DONE);
	aw_to_start = MemoryContextAlloc(TopMemoryContext, sizeof(AwClaim *) * AW_MAX_START);

	wes = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wes, WL_SOCKET_READABLE, aw_http_epoll_fd(), NULL, NULL);

	if (!pg_strong_random(&aw_token, sizeof(aw_token)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate the worker's token")));
	aw_worker_register(aw_token);
	ereport(LOG,
			(errmsg("aloro_webhook worker started"),
			 errdetail("It works in database \"%s\" and keeps up to %d requests in flight.",
					   aw_database_name, aw_cap())));

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

		nevents = WaitEventSetWait(wes, aw_sleep_ms(now), events, lengthof(events), PG_WAIT_EXTENSION);
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

#ifdef __GLIBC__
		/* after a burst, give back what the heap kept */
		if (aw_trim_pending && aw_http_in_flight() == 0 && aw_ndone == 0)
		{
			malloc_trim(0);
			aw_trim_pending = false;
		}
#endif
		MemoryContextReset(aw_turn_cxt);
		MemoryContextSwitchTo(aw_turn_cxt);

		/* let libcurl move; collect what finished */
		if (aw_ndone < AW_MAX_DONE)
			aw_ndone += aw_http_drive(aw_done + aw_ndone, aw_done_claims + aw_ndone,
									  Min(aw_batch_size, AW_MAX_DONE - aw_ndone));

		now = GetCurrentTimestamp();
		if (woken && aw_retry_at > now)
		{
			/* woken during the pause after a failed turn: come back after it */
			aw_have_next_due = true;
			aw_next_due = aw_retry_at;
		}
		if (now >= aw_retry_at &&
			(woken || aw_ndone > 0 || (aw_have_next_due && aw_next_due <= now) ||
			 TimestampDifferenceExceeds(aw_last_turn, now, aw_idle_check_ms)))
		{
			aw_last_turn = now;
			aw_turn();
		}
		if (OidIsValid(aw_extension_oid) && aw_phase == AW_PHASE_IDLE &&
			TimestampDifferenceExceeds(aw_last_sweep, now, aw_idle_check_ms))
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
