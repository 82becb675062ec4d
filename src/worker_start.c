/*-------------------------------------------------------------------------
 * worker_start.c
 *		How the delivery workers start: the postmaster is asked for
 *		aloro_webhook.workers of them (from _PG_init), and each process
 *		catches its signals (SIGTERM sets the flag its loop stops on),
 *		connects to aloro_webhook.database_name -- or, while that database
 *		does not exist, waits for it quietly -- and pins the settings its
 *		statements rely on.
 *
 * IDENTIFICATION
 *		src/worker_start.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "worker_start.h"

/* set by SIGTERM: the worker is to stop */
static volatile sig_atomic_t aw_got_sigterm = false;

/* while database_name does not exist: check every 5 s, say so every hour */
#define AW_MISSING_DB_CHECK_MS 5000
#define AW_MISSING_DB_REMIND_MS (3600 * 1000)

/* asks the postmaster for worker number index (from 0) */
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

/* Registers aloro_webhook.workers delivery workers, numbered from 0 (from _PG_init). */
void
aw_register_workers(void)
{
	for (int i = 0; i < aw_workers; i++)
		aw_register_one_worker(i);
}

/* SIGTERM handler: the loop stops at its next look (aw_worker_stopping) */
static void
aw_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	aw_got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/* Installs the worker's signal handlers (SIGHUP reloads, SIGTERM stops) and unblocks signals. */
void
aw_worker_catch_signals(void)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, aw_sigterm);
	BackgroundWorkerUnblockSignals();
}

/* Has the worker been asked to stop? */
bool
aw_worker_stopping(void)
{
	return aw_got_sigterm;
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
		CHECK_FOR_INTERRUPTS();
		if (aw_worker_stopping())
			proc_exit(0);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (aw_database_exists(aw_database_name))
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
 * aw_worker_connect
 *		Connects to aloro_webhook.database_name.  A connection that fails
 *		(the database does not exist) ends this process with PostgreSQL's
 *		FATAL; shared memory remembers it, and the next start waits for the
 *		database instead of failing again every second.
 */
void
aw_worker_connect(void)
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
 * aw_worker_pin_settings
 *		The settings the worker's statements rely on, fixed over whatever the
 *		database's or a role's defaults say (ALTER DATABASE ... SET is open to
 *		the database owner, who need not be a superuser; the worker is one).
 *
 * search_path above all: with pg_catalog first and nothing else, no function,
 * operator or type a user creates (in public, say) can stand in for one the
 * worker's statements name; they also name them schema-qualified.
 */
void
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

		/*
		 * Every statement of the worker touches a handful of rows, by ctid, by
		 * primary key, or at the head of the due index; a bulk enqueue makes
		 * the statistics stale (the planner then takes a 20,000-row queue for
		 * a tiny one, and reads it all to sort it).  So the worker's plans
		 * do not depend on them: the scans and joins that only pay off for
		 * large sets are off, and each statement keeps its one generic plan.
		 */
		{"enable_bitmapscan", "off"},
		{"enable_seqscan", "off"},
		{"enable_hashjoin", "off"},
		{"enable_mergejoin", "off"},
		{"plan_cache_mode", "force_generic_plan"},
	};

	for (size_t i = 0; i < lengthof(pinned); i++)
		SetConfigOption(pinned[i][0], pinned[i][1], PGC_SUSET, PGC_S_OVERRIDE);
}
