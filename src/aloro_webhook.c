/*-------------------------------------------------------------------------
 * aloro_webhook.c
 *		Module entry point: settings, shared memory, worker registration,
 *		and the commit-time wake-up of the worker.
 *
 * The worker sleeps on its latch.  A transaction that queues deliveries
 * marks itself (aw_wake_worker_at_commit); when it commits, a transaction
 * callback sets the latch whose address the worker published in shared
 * memory.  A rollback sets nothing.
 *
 * IDENTIFICATION
 *		src/aloro_webhook.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "port/atomics.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/memutils.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* settings */
char	   *aw_database_name = NULL;
char	   *aw_retry_schedule = NULL;
int			aw_timeout_ms = 5000;
char	   *aw_ca_file = NULL;
char	   *aw_allowed_networks = NULL;
int			aw_max_in_flight = 256;
int			aw_max_in_flight_per_webhook = 32;
int			aw_response_body_limit = 4096;
int			aw_idle_check_ms = 60000;
int			aw_batch_size = 200;
int			aw_max_payload_size = 1024 * 1024;
int			aw_max_in_flight_bytes = 32 * 1024 * 1024;
bool		aw_copy_ends_calls = false;
int			aw_retention_s = 30 * 86400;
int			aw_failed_retention_s = 90 * 86400;
int			aw_disable_after_failures = 100;
double		aw_retry_jitter = 0.0;
int			aw_max_retry_after_s = 3600;
char	   *aw_proxy = NULL;
int			aw_workers = 1;

/* a running delivery worker, as the others and the backends see it */
typedef struct AwWorkerSlot
{
	pid_t		pid;			/* 0: free */
	int64		token;			/* what its claims carry (queue.claimed_by) */
	Latch	   *latch;			/* set to wake it */
} AwWorkerSlot;

/* what the workers share with each other and with the backends that wake them */
typedef struct AwShared
{
	slock_t		mutex;
	bool		database_missing;	/* the last worker could not connect */
	pg_atomic_uint64 rewind_to;	/* earliest due time committed since the workers looked */
	pg_atomic_uint64 webhooks_version;	/* bumped by each commit that changed webhooks */
	AwWorkerSlot workers[AW_MAX_WORKERS];
} AwShared;

static AwShared *aw_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* set when this transaction queued work; consumed at commit or abort */
static bool aw_wake_pending = false;
/* the earliest due time this transaction gave a queue row (DT_NOEND: none) */
static TimestampTz aw_due_min = DT_NOEND;
/* did this transaction change webhooks?  (webhook_cache.c) */
static bool aw_webhooks_changed_in_xact = false;
/* is this process a delivery worker?  (its own queue changes publish nothing) */
static bool aw_am_worker = false;

static void aw_shmem_request(void);
static void aw_shmem_startup(void);
static void aw_xact_callback(XactEvent event, void *arg);
static void aw_wake_workers(void);
static void aw_define_settings(void);
static void aw_register_worker(void);
static void aw_register_one_worker(int index);
static void aw_worker_unregister(int code, Datum arg);

/* GUC check hook: empty, or http://host[:port] */
static bool
aw_check_proxy(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;

	if (v == NULL || v[0] == '\0')
		return true;
	if (strncmp(v, "http://", 7) != 0 || v[7] == '\0' || strpbrk(v, " \t\r\n") != NULL)
	{
		GUC_check_errmsg("invalid aloro_webhook.proxy \"%s\": not an http:// proxy address", v);
		GUC_check_errhint("Give the forward proxy as http://host:port, or empty for direct connections.");
		return false;
	}
	return true;
}

/*
 * _PG_init
 *		Refuses to load except from shared_preload_libraries, defines the
 *		settings and registers the worker.
 */
void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("aloro_webhook must be loaded via shared_preload_libraries"),
				 errhint("Add aloro_webhook to shared_preload_libraries in postgresql.conf and restart the server.")));

	aw_define_settings();

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = aw_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = aw_shmem_startup;

	RegisterXactCallback(aw_xact_callback, NULL);
	aw_install_utility_hook();

	aw_register_worker();
}

static void
aw_define_settings(void)
{
	DefineCustomStringVariable("aloro_webhook.database_name",
							   "Database in which the delivery worker runs.",
							   NULL,
							   &aw_database_name,
							   "postgres",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("aloro_webhook.retry_schedule",
							   "Comma-separated delays before each attempt; its length is the number of attempts.",
							   "Entry k is the delay before attempt k: the first after queuing, later ones after the previous failure.",
							   &aw_retry_schedule,
							   "0, 1min, 5min, 15min, 1h",
							   PGC_SIGHUP,
							   0,
							   aw_check_retry_schedule, aw_assign_retry_schedule, NULL);

	DefineCustomIntVariable("aloro_webhook.timeout",
							"Time limit for one attempt, from connect to the last byte.",
							NULL,
							&aw_timeout_ms,
							5000, 1, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("aloro_webhook.ca_file",
							   "PEM bundle of certificate authorities trusted for https receivers; empty means the system store.",
							   NULL,
							   &aw_ca_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("aloro_webhook.allowed_networks",
							   "CIDR list of non-public networks that receivers may resolve to.",
							   "Loopback, private, link-local and other non-public addresses are refused at connect time unless listed here.",
							   &aw_allowed_networks,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   aw_check_allowed_networks, aw_assign_allowed_networks, NULL);

	DefineCustomIntVariable("aloro_webhook.max_in_flight",
							"Most requests the worker keeps in flight at once.",
							"Also capped by the worker's open-file limit.",
							&aw_max_in_flight,
							256, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.max_in_flight_per_webhook",
							"Most requests in flight to one webhook, so that a slow endpoint holds only its own slots.",
							NULL,
							&aw_max_in_flight_per_webhook,
							32, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.max_in_flight_bytes",
							"Most body bytes the worker keeps in flight at once.",
							"Bounds the worker's memory, and gives each request the time to be sent; a body larger than this goes alone.",
							&aw_max_in_flight_bytes,
							32 * 1024 * 1024, 64 * 1024, MaxAllocSize,
							PGC_SIGHUP,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.response_body_limit",
							"Bytes of each response body kept in delivery_attempts.response_body.",
							NULL,
							&aw_response_body_limit,
							4096, 0, 1024 * 1024,
							PGC_SIGHUP,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.batch_size",
							"Most deliveries claimed, or results recorded, in one worker transaction.",
							NULL,
							&aw_batch_size,
							200, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.idle_check_interval",
							"Longest the idle worker sleeps before looking for due deliveries it was not woken for.",
							"Commits that queue work wake the worker at once; this only covers wake-ups that cannot be sent, such as COMMIT PREPARED.",
							&aw_idle_check_ms,
							60000, 100, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.max_payload_size",
							"Largest body sent; a delivery whose body is larger fails without being sent.",
							"The call still ends; raise the setting and redeliver to send it.",
							&aw_max_payload_size,
							1024 * 1024, 1, MaxAllocSize / 2,
							PGC_SIGHUP,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.workers",
							"Delivery worker processes sharing the queue.",
							"Each takes an equal share of max_in_flight, max_in_flight_bytes, max_in_flight_per_webhook and every rate_limit, so the totals hold.",
							&aw_workers,
							1, 1, AW_MAX_WORKERS,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("aloro_webhook.proxy",
							   "HTTP forward proxy every request goes through, as http://host:port; empty: direct.",
							   "The address policy then applies to the proxy's address; the proxy resolves and reaches the receivers.",
							   &aw_proxy,
							   "",
							   PGC_SIGHUP,
							   0,
							   aw_check_proxy, NULL, NULL);

	DefineCustomBoolVariable("aloro_webhook.copy_ends_calls",
							 "Whether COPY into a watched table ends the calls it loads.",
							 "Off: COPY loads calls as they are (a restore, a backfill) and queues nothing.",
							 &aw_copy_ends_calls,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.retention",
							"How long succeeded deliveries and their attempts are kept after they finish.",
							"The worker prunes older ones in small batches; 0 keeps them for good.",
							&aw_retention_s,
							30 * 86400, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.failed_retention",
							"How long failed deliveries and their attempts are kept after they finish.",
							"The worker prunes older ones in small batches; 0 keeps them for good.",
							&aw_failed_retention_s,
							90 * 86400, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.disable_after_failures",
							"Consecutive failed deliveries that disable a webhook (0: never).",
							"A disabled webhook keeps its deliveries, and those of calls that end meanwhile, until it is enabled again.",
							&aw_disable_after_failures,
							100, 0, 1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomRealVariable("aloro_webhook.retry_jitter",
							 "Fraction of random spread on each retry delay.",
							 "0.2 makes a 5min delay anything from 4 to 6 minutes.",
							 &aw_retry_jitter,
							 0.0, 0.0, 1.0,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.max_retry_after",
							"Longest wait a receiver's Retry-After (on 429 and 503) can impose before the next attempt.",
							NULL,
							&aw_max_retry_after_s,
							3600, 0, 366 * 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("aloro_webhook");
}

/* registers aloro_webhook.workers delivery workers, numbered from 0 */
static void
aw_register_worker(void)
{
	for (int i = 0; i < aw_workers; i++)
		aw_register_one_worker(i);
}

static void
aw_register_one_worker(int index)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "aloro_webhook");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "aw_worker_main");
	if (aw_workers > 1)
		snprintf(worker.bgw_name, BGW_MAXLEN, AW_WORKER_NAME " %d", index + 1);
	else
		snprintf(worker.bgw_name, BGW_MAXLEN, AW_WORKER_NAME);
	snprintf(worker.bgw_type, BGW_MAXLEN, AW_WORKER_NAME);
	worker.bgw_main_arg = Int32GetDatum(index);
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
}

static void
aw_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(AwShared)));
}

static void
aw_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	aw_shared = ShmemInitStruct("aloro_webhook", sizeof(AwShared), &found);
	if (!found)
	{
		memset(aw_shared, 0, sizeof(AwShared));
		SpinLockInit(&aw_shared->mutex);
		pg_atomic_init_u64(&aw_shared->rewind_to, PG_UINT64_MAX);
		pg_atomic_init_u64(&aw_shared->webhooks_version, 1);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * aw_worker_register
 *		Called by a worker at start: it is live, its claims carry token, and
 *		backends know which latch to set.  Unregistered at exit.
 */
void
aw_worker_register(int64 token)
{
	int			slot = -1;

	SpinLockAcquire(&aw_shared->mutex);
	for (int i = 0; i < AW_MAX_WORKERS && slot < 0; i++)
		if (aw_shared->workers[i].pid == 0)
			slot = i;
	if (slot >= 0)
	{
		aw_shared->workers[slot].pid = MyProcPid;
		aw_shared->workers[slot].token = token;
		aw_shared->workers[slot].latch = &MyProc->procLatch;
	}
	SpinLockRelease(&aw_shared->mutex);
	if (slot < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many aloro_webhook workers are running")));
	before_shmem_exit(aw_worker_unregister, Int32GetDatum(slot));
}

/* before_shmem_exit callback of a worker */
static void
aw_worker_unregister(int code, Datum arg)
{
	int			slot = DatumGetInt32(arg);

	SpinLockAcquire(&aw_shared->mutex);
	if (aw_shared->workers[slot].pid == MyProcPid)
		memset(&aw_shared->workers[slot], 0, sizeof(AwWorkerSlot));
	SpinLockRelease(&aw_shared->mutex);
}

/*
 * The tokens of the running workers (this one too when include_self) into
 * out[AW_MAX_WORKERS]; returns how many.  A claim with any other token was
 * cut off.
 */
int
aw_live_worker_tokens(int64 *out, bool include_self)
{
	int			n = 0;

	SpinLockAcquire(&aw_shared->mutex);
	for (int i = 0; i < AW_MAX_WORKERS; i++)
		if (aw_shared->workers[i].pid != 0 &&
			(include_self || aw_shared->workers[i].pid != MyProcPid))
			out[n++] = aw_shared->workers[i].token;
	SpinLockRelease(&aw_shared->mutex);
	return n;
}

/*
 * This worker's share of the queue: *count workers run, and it is number
 * *index of them (in slot order).  Workers claim the deliveries whose id is
 * their index modulo the count; counting the running ones, not the
 * configured aloro_webhook.workers, means a worker that could not start or
 * has stopped leaves no share unclaimed.
 */
void
aw_worker_share(int *count, int *index)
{
	int			n = 0;
	int			me = 0;

	SpinLockAcquire(&aw_shared->mutex);
	for (int i = 0; i < AW_MAX_WORKERS; i++)
		if (aw_shared->workers[i].pid != 0)
		{
			if (aw_shared->workers[i].pid == MyProcPid)
				me = n;
			n++;
		}
	SpinLockRelease(&aw_shared->mutex);
	*count = Max(n, 1);
	*index = me;
}

/* Did the last worker fail to connect to its database?  (And set it.) */
bool
aw_database_missing(void)
{
	bool		missing;

	SpinLockAcquire(&aw_shared->mutex);
	missing = aw_shared->database_missing;
	SpinLockRelease(&aw_shared->mutex);
	return missing;
}

void
aw_set_database_missing(bool missing)
{
	SpinLockAcquire(&aw_shared->mutex);
	aw_shared->database_missing = missing;
	SpinLockRelease(&aw_shared->mutex);
}

/* due times in an atomic: order kept, DT_NOEND is the "none" PG_UINT64_MAX */
static inline uint64
aw_due_key(TimestampTz ts)
{
	return (uint64) ts ^ (UINT64CONST(1) << 63);
}

/*
 * The earliest due time that transactions committed since the last call
 * gave queue rows (DT_NOEND when none did); the workers' scans start there
 * at the latest (cursor.c).
 */
TimestampTz
aw_take_rewind(void)
{
	uint64		v = pg_atomic_exchange_u64(&aw_shared->rewind_to, PG_UINT64_MAX);

	return (TimestampTz) (v ^ (UINT64CONST(1) << 63));
}

/* at commit: publish this transaction's earliest due time */
static void
aw_publish_due(TimestampTz due)
{
	uint64		key = aw_due_key(due);
	uint64		old = pg_atomic_read_u64(&aw_shared->rewind_to);

	while (key < old && !pg_atomic_compare_exchange_u64(&aw_shared->rewind_to, &old, key))
		;
}

/* The version of the webhooks table: a commit that changed it bumps it. */
uint64
aw_webhooks_version(void)
{
	return pg_atomic_read_u64(&aw_shared->webhooks_version);
}

/* Has the current transaction changed webhooks? */
bool
aw_webhooks_changed_here(void)
{
	return aw_webhooks_changed_in_xact;
}

PG_FUNCTION_INFO_V1(aloro_webhook_webhooks_changed);

/* Statement trigger on webhooks: every backend's copy is stale at commit. */
Datum
aloro_webhook_webhooks_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("aloro_webhook._webhooks_changed() must be called as a trigger")));
	aw_webhooks_changed_in_xact = true;
	return PointerGetDatum(NULL);
}

/*
 * After COMMIT PREPARED: a prepared transaction may have queued deliveries
 * or changed webhooks, and its commit ran none of the callbacks above.
 * Wake the workers, have them look from the start, and make every copy of
 * the webhooks stale.
 */
void
aw_after_commit_prepared(void)
{
	if (aw_shared == NULL)
		return;
	pg_atomic_fetch_add_u64(&aw_shared->webhooks_version, 1);
	aw_publish_due(DT_NOBEGIN);
	aw_wake_workers();
}

/* This process is a delivery worker. */
void
aw_set_am_worker(void)
{
	aw_am_worker = true;
}

/* Ask for the worker to be woken when the current transaction commits. */
void
aw_wake_worker_at_commit(void)
{
	aw_wake_pending = true;
}

/* sets the latch of every running worker (but this process's own) */
static void
aw_wake_workers(void)
{
	Latch	   *latches[AW_MAX_WORKERS];
	int			n = 0;

	SpinLockAcquire(&aw_shared->mutex);
	for (int i = 0; i < AW_MAX_WORKERS; i++)
		if (aw_shared->workers[i].pid != 0 && aw_shared->workers[i].latch != &MyProc->procLatch)
			latches[n++] = aw_shared->workers[i].latch;
	SpinLockRelease(&aw_shared->mutex);
	for (int i = 0; i < n; i++)
		SetLatch(latches[i]);
}

static void
aw_xact_callback(XactEvent event, void *arg)
{

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (aw_webhooks_changed_in_xact && aw_shared != NULL)
				pg_atomic_fetch_add_u64(&aw_shared->webhooks_version, 1);
			aw_webhooks_changed_in_xact = false;
			if (!aw_wake_pending || aw_shared == NULL)
				break;
			aw_wake_pending = false;
			if (aw_due_min != DT_NOEND)
				aw_publish_due(aw_due_min);
			aw_due_min = DT_NOEND;
			aw_wake_workers();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			aw_wake_pending = false;
			aw_due_min = DT_NOEND;
			aw_webhooks_changed_in_xact = false;
			break;
		case XACT_EVENT_PREPARE:
			/* COMMIT PREPARED tells the workers and the copies (utility.c) */
			aw_wake_pending = false;
			aw_due_min = DT_NOEND;
			aw_webhooks_changed_in_xact = false;
			break;
		default:
			break;
	}
}

PG_FUNCTION_INFO_V1(aloro_webhook_wake_at_commit);

/*
 * Statement trigger: wake the worker at commit.  On the queue, with the
 * rows the statement inserted or updated as its transition table, it also
 * notes their earliest due time, for the workers' cursors (cursor.c); on
 * webhooks (one enabled again) it asks them to look from the start.
 */
Datum
aloro_webhook_wake_at_commit(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("aloro_webhook._wake_at_commit() must be called as a trigger")));
	aw_wake_worker_at_commit();
	if (aw_am_worker)
		return PointerGetDatum(NULL);	/* the worker's own rows are behind no cursor */
	if (td->tg_newtable == NULL)
		aw_due_min = DT_NOBEGIN;
	else
	{
		TupleDesc	desc = RelationGetDescr(td->tg_relation);
		int			attnum = SPI_fnumber(desc, "due_at");
		Tuplestorestate *rows = td->tg_newtable;
		TupleTableSlot *slot;
		int			ptr;

		if (attnum <= 0)
		{
			aw_due_min = DT_NOBEGIN;
			return PointerGetDatum(NULL);
		}
		slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
		/*
		 * A read pointer of our own, so as not to move another reader's; it
		 * starts where pointer 0 is, at the first row: no one else reads
		 * this trigger's transition table.
		 */
		ptr = tuplestore_alloc_read_pointer(rows, 0);
		tuplestore_select_read_pointer(rows, ptr);
		while (tuplestore_gettupleslot(rows, true, false, slot))
		{
			bool		isnull;
			Datum		due = slot_getattr(slot, attnum, &isnull);

			if (!isnull && DatumGetTimestampTz(due) < aw_due_min)
				aw_due_min = DatumGetTimestampTz(due);
		}
		tuplestore_select_read_pointer(rows, 0);
		ExecDropSingleTupleTableSlot(slot);
	}
	return PointerGetDatum(NULL);
}
