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

/* what the worker shares with the backends that wake it */
typedef struct AwShared
{
	slock_t		mutex;
	Latch	   *worker_latch;	/* NULL while no worker runs */
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
		SpinLockInit(&aw_shared->mutex);
		aw_shared->worker_latch = NULL;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Called by the worker at start: backends now know which latch to set. */
void
aw_worker_publish_latch(void)
{
	SpinLockAcquire(&aw_shared->mutex);
	aw_shared->worker_latch = &MyProc->procLatch;
	SpinLockRelease(&aw_shared->mutex);
}

/* on_shmem_exit callback of the worker */
void
aw_worker_unpublish_latch(int code, Datum arg)
{
	SpinLockAcquire(&aw_shared->mutex);
	if (aw_shared->worker_latch == &MyProc->procLatch)
		aw_shared->worker_latch = NULL;
	SpinLockRelease(&aw_shared->mutex);
}

/* Ask for the worker to be woken when the current transaction commits. */
void
aw_wake_worker_at_commit(void)
{
	aw_wake_pending = true;
}

static void
aw_xact_callback(XactEvent event, void *arg)
{
	Latch	   *latch;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (!aw_wake_pending || aw_shared == NULL)
				break;
			aw_wake_pending = false;
			SpinLockAcquire(&aw_shared->mutex);
			latch = aw_shared->worker_latch;
			SpinLockRelease(&aw_shared->mutex);
			if (latch != NULL && latch != &MyProc->procLatch)
				SetLatch(latch);
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
