/*-------------------------------------------------------------------------
 * aloro_webhook.c
 *		Module entry point: refuses to load except from
 *		shared_preload_libraries, then sets up each part of the extension
 *		from the file that owns it.
 *
 *	- settings.c: the aloro_webhook.* settings;
 *	- shmem.c: the shared-memory segment (the running workers, their tokens
 *	  and latches);
 *	- wakeup.c: the transaction callback that wakes the workers at commit;
 *	- utility.c: the ProcessUtility hook;
 *	- worker_start.c: the registration of the delivery workers.
 *
 * IDENTIFICATION
 *		src/aloro_webhook.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "worker_start.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

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
	aw_install_shmem_hooks();
	aw_install_xact_callback();
	aw_install_utility_hook();
	aw_register_workers();
}
