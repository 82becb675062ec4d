/*-------------------------------------------------------------------------
 * shmem.c
 *		The extension's shared-memory segment: what the delivery workers
 *		share with each other and with the backends that wake them.
 *
 *	- the running workers: their pids, the tokens their claims carry
 *	  (queue.claimed_by) and their latches;
 *	- whether the last worker could not connect to its database
 *	  (worker_start.c);
 *	- the earliest due time committed since the workers last looked
 *	  (their cursors rewind to it: cursor.c);
 *	- the version of the webhooks table, for the backends' copies
 *	  (webhook_cache.c).
 *
 * The workers' slots and the flag are read and written under a spinlock;
 * the due time and the version are atomics.  What a transaction has to
 * publish at commit, and when, is wakeup.c's.
 *
 * IDENTIFICATION
 *		src/shmem.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"

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
	pg_atomic_uint64 webhooks_version;	/* bumped by each commit that changed webhooks */
	AwWorkerSlot workers[AW_MAX_WORKERS];
	/* per worker: the earliest due time committed since it looked (each takes its own) */
	pg_atomic_uint64 rewind_to[AW_MAX_WORKERS];
} AwShared;

static AwShared *aw_shared = NULL;
/* this worker's slot in aw_shared->workers (-1: not a worker) */
static int	aw_my_slot = -1;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void aw_worker_unregister(int code, Datum arg);

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
		for (int i = 0; i < AW_MAX_WORKERS; i++)
			pg_atomic_init_u64(&aw_shared->rewind_to[i], PG_UINT64_MAX);
		pg_atomic_init_u64(&aw_shared->webhooks_version, 1);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Installs the hooks that ask for the segment and set it up (from _PG_init). */
void
aw_install_shmem_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = aw_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = aw_shmem_startup;
}

/* Is this process attached to the segment? */
bool
aw_shmem_attached(void)
{
	return aw_shared != NULL;
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
		/* a worker that starts looks at the whole queue */
		pg_atomic_write_u64(&aw_shared->rewind_to[slot], 0);
	}
	SpinLockRelease(&aw_shared->mutex);
	if (slot < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("too many aloro_webhook workers are running")));
	aw_my_slot = slot;
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

/* Sets the latch of every running worker (but this process's own). */
void
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
 * The earliest due time that transactions committed since this worker's
 * last call gave queue rows (DT_NOEND when none did); the worker's scans
 * start there at the latest (cursor.c).  Each worker has its own: with
 * several, the one whose share a row is must hear of it too.
 */
TimestampTz
aw_take_rewind(void)
{
	uint64		v;

	if (aw_my_slot < 0)
		return DT_NOEND;
	v = pg_atomic_exchange_u64(&aw_shared->rewind_to[aw_my_slot], PG_UINT64_MAX);
	return (TimestampTz) (v ^ (UINT64CONST(1) << 63));
}

/* At commit: publish a due time every worker must rewind to (the earliest wins). */
void
aw_publish_due(TimestampTz due)
{
	uint64		key = aw_due_key(due);

	for (int i = 0; i < AW_MAX_WORKERS; i++)
	{
		uint64		old = pg_atomic_read_u64(&aw_shared->rewind_to[i]);

		while (key < old && !pg_atomic_compare_exchange_u64(&aw_shared->rewind_to[i], &old, key))
			;
	}
}

/* The version of the webhooks table: a commit that changed it bumps it. */
uint64
aw_webhooks_version(void)
{
	return pg_atomic_read_u64(&aw_shared->webhooks_version);
}

/* At commit: every backend's copy of the webhooks is stale (when attached). */
void
aw_bump_webhooks_version(void)
{
	if (aw_shared != NULL)
		pg_atomic_fetch_add_u64(&aw_shared->webhooks_version, 1);
}
