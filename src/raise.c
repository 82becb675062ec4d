/*-------------------------------------------------------------------------
 * raise.c
 *		Raises again, on the Citus coordinator, an error that another node
 *		reported.
 *
 * _on_nodes() (sql/citus.sql) runs a statement on each node through
 * _run_here(), which answers an error as its SQLSTATE, message, and the
 * detail and hint when it had them.  PL/pgSQL's RAISE cannot leave out a
 * DETAIL or HINT it is given as NULL, so the error is raised here, with
 * exactly the fields the node's had.
 *
 * IDENTIFICATION
 *		src/raise.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(aloro_webhook_raise);

/* a text argument as a C string, or NULL */
static char *
aw_text_arg(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/*
 * _raise(sqlstate, message, detail, hint): raises the error; detail and hint
 * are left out when NULL.  A SQLSTATE that is not five digits or capital
 * letters is raised as internal_error.
 */
Datum
aloro_webhook_raise(PG_FUNCTION_ARGS)
{
	char	   *state = aw_text_arg(fcinfo, 0);
	char	   *message = aw_text_arg(fcinfo, 1);
	char	   *detail = aw_text_arg(fcinfo, 2);
	char	   *hint = aw_text_arg(fcinfo, 3);
	int			code = ERRCODE_INTERNAL_ERROR;

	if (state != NULL && strlen(state) == 5 && strspn(state, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ") == 5)
		code = MAKE_SQLSTATE(state[0], state[1], state[2], state[3], state[4]);
	ereport(ERROR,
			(errcode(code),
			 errmsg_internal("%s", message ? message : "error on another node"),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0));
	PG_RETURN_VOID();
}
