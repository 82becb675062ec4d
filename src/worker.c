/* placeholder until the delivery worker lands */
#include "aloro_webhook.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
void
aw_worker_main(Datum main_arg)
{
	proc_exit(0);
}
