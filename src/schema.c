/*-------------------------------------------------------------------------
 * schema.c
 *		Which version's tables the extension has in this database.
 *
 * The library is upgraded before ALTER EXTENSION ... UPDATE runs (a restart
 * loads the new library; the update is a statement someone runs later), so
 * for a while it serves a database whose tables are an earlier version's.
 * The call-ended trigger keeps queuing into them; the worker waits for the
 * update (turn.c).
 *
 * IDENTIFICATION
 *		src/schema.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "catalog/namespace.h"
#include "utils/lsyscache.h"

/*
 * The version of the extension's tables here: 3 (0.3.0: delivery_state
 * exists), 2 (0.2.0: queue exists), 1 (0.1.0: neither), 0 (no schema).
 */
int
aw_schema_version(void)
{
	Oid			nsp = get_namespace_oid("aloro_webhook", true);

	if (!OidIsValid(nsp))
		return 0;
	if (OidIsValid(get_relname_relid("delivery_state", nsp)))
		return 3;
	if (OidIsValid(get_relname_relid("queue", nsp)))
		return 2;
	return 1;
}
