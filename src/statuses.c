/*-------------------------------------------------------------------------
 * statuses.c
 *		The call statuses: which are live and which terminal (a call ends
 *		when it gets a terminal one).
 *
 * This is the one definition: the call-ended trigger fires for every row of
 * a calls table and asks aw_status_is_terminal() (0.1.0's install script
 * spelled the terminal ones in the trigger's WHEN clause; 0.2.0 drops it),
 * _check_call() asks both, and _call_statuses() gives the list to SQL.
 *
 * IDENTIFICATION
 *		src/statuses.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

static const char *const aw_live[] = {"queued", "ringing", "in-progress"};
static const char *const aw_terminal[] = {"completed", "missed", "busy", "voicemail", "failed"};

static bool
aw_status_in(const char *status, const char *const *list, int n)
{
	if (status == NULL)
		return false;
	for (int i = 0; i < n; i++)
		if (strcmp(status, list[i]) == 0)
			return true;
	return false;
}

/* Has a call with this status ended? */
bool
aw_status_is_terminal(const char *status)
{
	return aw_status_in(status, aw_terminal, lengthof(aw_terminal));
}

/* Is this status one of the live ones (queued, ringing, in-progress)? */
bool
aw_status_is_live(const char *status)
{
	return aw_status_in(status, aw_live, lengthof(aw_live));
}

PG_FUNCTION_INFO_V1(aloro_webhook_call_statuses);

/* _call_statuses(): (status, terminal) for every status a call may have */
Datum
aloro_webhook_call_statuses(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	for (int t = 0; t < 2; t++)
	{
		const char *const *list = t ? aw_terminal : aw_live;
		int			n = t ? lengthof(aw_terminal) : lengthof(aw_live);

		for (int i = 0; i < n; i++)
		{
			Datum		values[2] = {CStringGetTextDatum(list[i]), BoolGetDatum(t == 1)};
			bool		nulls[2] = {false, false};

			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	return (Datum) 0;
}
