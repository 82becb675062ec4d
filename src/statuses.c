/*-------------------------------------------------------------------------
 * statuses.c
 *		The call statuses: which are live and which terminal (a call ends
 *		when it gets a terminal one).
 *
 * This is the one C definition.  The install script spells the terminal
 * ones once more, in the WHEN clause of the call-ended trigger on
 * aloro_webhook.calls; _call_statuses() gives this list to SQL, and the
 * regression test 001_install checks that clause against it.  watch()
 * writes its trigger's WHEN clause from this list.
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

/* The terminal statuses as a SQL list: 'completed', 'missed', ... */
char *
aw_terminal_statuses_sql(void)
{
	StringInfoData out;

	initStringInfo(&out);
	for (size_t i = 0; i < lengthof(aw_terminal); i++)
		appendStringInfo(&out, "%s%s", i > 0 ? ", " : "", quote_literal_cstr(aw_terminal[i]));
	return out.data;
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
