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
	AwWorkerSlot workers[AW_MAX_WORKERS];
} AwShared;

static AwShared *aw_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* set when this transaction queued work; consumed at commit or abort */
static bool aw_wake_pending = false;

static void aw_shmem_request(void);
static void aw_shmem_startup(void);
static void aw_xact_callback(XactEvent event, void *arg);
static void aw_define_settings(void);
static void aw_register_worker(void);
static void aw_worker_unregister(int code, Datum arg);

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

	DefineCustomBoolVariable("aloro_webhook.copy_ends_calls",
							 "Whether COPY into a watched table ends the calls it loads.",
							 "Off: COPY loads calls as they are (a restore, a backfill) and queues nothing.",
							 &aw_copy_ends_calls,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	MarkGUCPrefixReserved("aloro_webhook");
}

static void
aw_register_worker(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "aloro_webhook");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "aw_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, AW_WORKER_NAME);
	snprintf(worker.bgw_type, BGW_MAXLEN, AW_WORKER_NAME);
	worker.bgw_main_arg = (Datum) 0;
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
			if (!aw_wake_pending || aw_shared == NULL)
				break;
			aw_wake_pending = false;
			aw_wake_workers();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			aw_wake_pending = false;
			break;
		case XACT_EVENT_PREPARE:
			/* COMMIT PREPARED happens elsewhere; the idle check covers it */
			aw_wake_pending = false;
			break;
		default:
			break;
	}
}

PG_FUNCTION_INFO_V1(aloro_webhook_wake_at_commit);

/* Statement trigger on deliveries/webhooks: wake the worker at commit. */
Datum
aloro_webhook_wake_at_commit(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("aloro_webhook._wake_at_commit() must be called as a trigger")));
	aw_wake_worker_at_commit();
	return PointerGetDatum(NULL);
}
