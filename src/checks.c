/*-------------------------------------------------------------------------
 * checks.c
 *		The checks on rows of the extension's tables, with messages that
 *		name the bad value or column.
 *
 * _check_call() is the CHECK constraint of aloro_webhook.calls.
 * _check_webhook() is the BEFORE trigger of webhooks: it refuses a NULL in
 * any NOT NULL column by name, before PostgreSQL's own check would print the
 * whole row ("Failing row contains (...)") -- secret included -- in the
 * error and the server log, keeps a URL's password apart from the URL,
 * checks the signature scheme against the secret, and on a change of
 * enabled sends the operator event (enabling also clears disabled_reason).
 *
 * IDENTIFICATION
 *		src/checks.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/rel.h"

#include "health.h"
#include "validate.h"

/* the jsonb type of a value, as users call it */
static const char *
aw_jsonb_kind(Jsonb *jb)
{
	if (JB_ROOT_IS_SCALAR(jb))
	{
		JsonbValue	v;

		JsonbExtractScalar(&jb->root, &v);
		switch (v.type)
		{
			case jbvNull:
				return "null";
			case jbvString:
				return "a string";
			case jbvNumeric:
				return "a number";
			case jbvBool:
				return "a boolean";
			default:
				return "a scalar";
		}
	}
	return JB_ROOT_IS_ARRAY(jb) ? "an array" : "an object";
}

PG_FUNCTION_INFO_V1(aloro_webhook_check_call);

/*
 * _check_call(status, direction, variables, transcript, cost_breakdown):
 * the CHECK constraint of aloro_webhook.calls, with messages that name the
 * bad value.
 */
Datum
aloro_webhook_check_call(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(0))
	{
		char	   *status = text_to_cstring(PG_GETARG_TEXT_PP(0));

		if (!aw_status_is_terminal(status) && !aw_status_is_live(status))
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("invalid call status \"%s\"", status),
					 errhint("A call status is one of queued, ringing, in-progress (live) or completed, missed, busy, voicemail, failed (ended).")));
	}
	if (!PG_ARGISNULL(1))
	{
		char	   *direction = text_to_cstring(PG_GETARG_TEXT_PP(1));

		if (strcmp(direction, "inbound") != 0 && strcmp(direction, "outbound") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("invalid call direction \"%s\"", direction),
					 errhint("A call direction is inbound or outbound.")));
	}
	if (!PG_ARGISNULL(2) && !JB_ROOT_IS_OBJECT(PG_GETARG_JSONB_P(2)))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("call variables must be a JSON object, not %s", aw_jsonb_kind(PG_GETARG_JSONB_P(2))),
				 errhint("Store post-call variables as an object, such as '{\"summary\": \"...\"}'.")));
	if (!PG_ARGISNULL(3))
	{
		Jsonb	   *t = PG_GETARG_JSONB_P(3);

		if (!JB_ROOT_IS_ARRAY(t) || JB_ROOT_IS_SCALAR(t))
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("call transcript must be a JSON array, not %s", aw_jsonb_kind(t)),
					 errhint("Store the transcript as an array of {\"speaker\": \"ai\"|\"customer\", \"text\": \"...\", \"start\": <seconds>}.")));
	}
	if (!PG_ARGISNULL(4) && !JB_ROOT_IS_OBJECT(PG_GETARG_JSONB_P(4)))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("call cost_breakdown must be a JSON object, not %s", aw_jsonb_kind(PG_GETARG_JSONB_P(4))),
				 errhint("Store the cost breakdown as an object, such as '{\"voice\": 0.30}'.")));
	PG_RETURN_BOOL(true);
}

/* refuses a NULL in any NOT NULL column of tuple, naming the column only */
static void
aw_refuse_nulls(Relation rel, HeapTuple tuple, const char *what)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || !att->attnotnull || !heap_attisnull(tuple, i + 1, desc))
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("%s %s must not be NULL", what, NameStr(att->attname)),
				 errtablecol(rel, i + 1),
				 strcmp(NameStr(att->attname), "url") == 0 ?
				 errhint("A webhook URL looks like https://example.com/webhooks/aloro.") : 0));
	}
}

/*
 * A password in the URL moves to url_password, and url shows it as ***.
 * A URL whose password is *** already keeps the url_password it has (an
 * UPDATE of other columns, or a restore); a URL without one clears it.
 */
static HeapTuple
aw_split_url_password(Relation rel, HeapTuple tuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			url_att = SPI_fnumber(desc, "url");
	int			pw_att = SPI_fnumber(desc, "url_password");
	bool		isnull;
	char	   *url;
	int			start;
	int			len;
	Datum	   *values;
	bool	   *nulls;
	bool	   *repl;

	if (url_att <= 0 || pw_att <= 0)
		return tuple;
	url = TextDatumGetCString(heap_getattr(tuple, url_att, desc, &isnull));
	values = palloc0(sizeof(Datum) * desc->natts);
	nulls = palloc0(sizeof(bool) * desc->natts);
	repl = palloc0(sizeof(bool) * desc->natts);
	if (!aw_url_password_span(url, &start, &len))
	{
		if (heap_attisnull(tuple, pw_att, desc))
			return tuple;
		nulls[pw_att - 1] = true;
		repl[pw_att - 1] = true;
	}
	else if (len == strlen(AW_URL_PASSWORD_MASK) &&
			 memcmp(url + start, AW_URL_PASSWORD_MASK, len) == 0)
		return tuple;
	else
	{
		values[url_att - 1] = CStringGetTextDatum(aw_url_masked(url));
		repl[url_att - 1] = true;
		values[pw_att - 1] = PointerGetDatum(cstring_to_text_with_len(url + start, len));
		repl[pw_att - 1] = true;
	}
	return heap_modify_tuple(tuple, desc, values, nulls, repl);
}

/* a column by name into *value; false when NULL or missing (a 0.1.0 table) */
static bool
aw_column_value(Relation rel, HeapTuple tuple, const char *name, Datum *value)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			att = SPI_fnumber(desc, name);
	bool		isnull;

	if (att <= 0)
		return false;
	*value = heap_getattr(tuple, att, desc, &isnull);
	return !isnull;
}

/* text of a column by name, NULL when NULL or missing */
static char *
aw_column_text(Relation rel, HeapTuple tuple, const char *name)
{
	Datum		v;

	return aw_column_value(rel, tuple, name, &v) ? TextDatumGetCString(v) : NULL;
}

/* a boolean column by name; dflt when NULL or missing */
static bool
aw_column_bool(Relation rel, HeapTuple tuple, const char *name, bool dflt)
{
	Datum		v;

	return aw_column_value(rel, tuple, name, &v) ? DatumGetBool(v) : dflt;
}

/* the signature scheme is one we know, and a standard one has a whsec_ secret */
static void
aw_check_signature_scheme(Relation rel, HeapTuple tuple)
{
	char	   *scheme = aw_column_text(rel, tuple, "signature_scheme");
	char	   *secret;
	unsigned char *key;
	int			keylen;

	if (scheme == NULL || strcmp(scheme, "aloro") == 0)
		return;
	if (strcmp(scheme, "standard") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("invalid webhook signature_scheme \"%s\"", scheme),
				 errhint("A signature scheme is aloro (X-Aloro-Signature) or standard (Standard Webhooks).")));
	secret = aw_column_text(rel, tuple, "secret");
	if (!aw_standard_key(secret, &key, &keylen))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("a webhook with signature_scheme standard needs a secret of the form whsec_<base64>"),
				 errhint("aloro_webhook.generate_secret() makes one.")));
}

/*
 * headers must be an object of string values, each name an HTTP token the
 * extension does not set itself, each value free of CR, LF and NUL.  The
 * messages name the header, never its value (it may be a credential).
 */
static void
aw_check_headers(Relation rel, HeapTuple tuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			att = SPI_fnumber(desc, "headers");
	bool		isnull;
	Jsonb	   *jb;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *name = NULL;

	if (att <= 0)
		return;
	jb = DatumGetJsonbP(heap_getattr(tuple, att, desc, &isnull));
	if (isnull)
		return;
	if (!JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("webhook headers must be a JSON object, not %s", aw_jsonb_kind(jb)),
				 errhint("Give the extra request headers as {\"Authorization\": \"Bearer ...\"}.")));
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			name = pnstrdup(v.val.string.val, v.val.string.len);
			if (!aw_header_name_ok(v.val.string.val, v.val.string.len))
				ereport(ERROR,
						(errcode(ERRCODE_CHECK_VIOLATION),
						 errmsg("invalid webhook header name \"%s\"", name),
						 errhint("A header name is letters, digits and !#$%%&'*+-.^_`|~, such as X-Api-Key.")));
			if (aw_header_reserved(v.val.string.val, v.val.string.len))
				ereport(ERROR,
						(errcode(ERRCODE_CHECK_VIOLATION),
						 errmsg("webhook header \"%s\" cannot be set: the extension sets it", name),
						 errhint("Content-Type, Content-Length, Host, User-Agent, X-Aloro-* and webhook-* are the extension's own.")));
		}
		else if (tok == WJB_VALUE)
		{
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_CHECK_VIOLATION),
						 errmsg("webhook header \"%s\" must have a string value", name),
						 errhint("Write numbers as strings: {\"X-Tenant\": \"42\"}.")));
			if (!aw_header_value_ok(v.val.string.val, v.val.string.len))
				ereport(ERROR,
						(errcode(ERRCODE_CHECK_VIOLATION),
						 errmsg("webhook header \"%s\" has a CR, LF or NUL character in its value", name)));
		}
	}
}

/* rate_limit is NULL or at least 1 request per second */
static void
aw_check_rate_limit(Relation rel, HeapTuple tuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			att = SPI_fnumber(desc, "rate_limit");
	bool		isnull;
	int32		rate;

	if (att <= 0)
		return;
	rate = DatumGetInt32(heap_getattr(tuple, att, desc, &isnull));
	if (!isnull && rate < 1)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("webhook rate_limit must be at least 1 request per second, not %d", rate),
				 errhint("Set it to NULL for no limit.")));
}

/*
 * On UPDATE: enabling a webhook clears why it was disabled; each change of
 * enabled is an operator event.  Returns the tuple, changed or not.
 */
static HeapTuple
aw_enabled_change(Relation rel, HeapTuple old, HeapTuple tuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	bool		was = aw_column_bool(rel, old, "enabled", true);
	bool		is = aw_column_bool(rel, tuple, "enabled", true);
	int			reason_att = SPI_fnumber(desc, "disabled_reason");
	int			at_att = SPI_fnumber(desc, "disabled_at");
	int			id_att = SPI_fnumber(desc, "id");
	bool		isnull;
	int64		id;

	if (was == is || reason_att <= 0 || at_att <= 0 || id_att <= 0)
		return tuple;
	id = DatumGetInt64(heap_getattr(tuple, id_att, desc, &isnull));
	if (is)
	{
		Datum	   *values = palloc0(sizeof(Datum) * desc->natts);
		bool	   *nulls = palloc0(sizeof(bool) * desc->natts);
		bool	   *repl = palloc0(sizeof(bool) * desc->natts);

		nulls[reason_att - 1] = nulls[at_att - 1] = true;
		repl[reason_att - 1] = repl[at_att - 1] = true;
		aw_health_notify_webhook(true, id, NULL);
		return heap_modify_tuple(tuple, desc, values, nulls, repl);
	}
	else
	{
		char	   *reason = aw_column_text(rel, tuple, "disabled_reason");

		aw_health_notify_webhook(false, id, reason ? reason : "set enabled = false");
	}
	return tuple;
}

PG_FUNCTION_INFO_V1(aloro_webhook_check_webhook);

/*
 * BEFORE INSERT OR UPDATE FOR EACH ROW on webhooks: a NULL in a NOT NULL
 * column is refused naming the column only (every NOT NULL column, so a
 * column added later is covered), and a password in the URL is kept apart.
 */
Datum
aloro_webhook_check_webhook(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	HeapTuple	tuple;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || TRIGGER_FIRED_BY_DELETE(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("aloro_webhook._check_webhook() must fire BEFORE INSERT OR UPDATE FOR EACH ROW")));
	tuple = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	aw_refuse_nulls(td->tg_relation, tuple, "webhook");
	aw_check_signature_scheme(td->tg_relation, tuple);
	aw_check_headers(td->tg_relation, tuple);
	aw_check_rate_limit(td->tg_relation, tuple);
	tuple = aw_split_url_password(td->tg_relation, tuple);
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
		tuple = aw_enabled_change(td->tg_relation, td->tg_trigtuple, tuple);
	return PointerGetDatum(tuple);
}

PG_FUNCTION_INFO_V1(aloro_webhook_text_of);

/*
 * _text_of(anyelement): a value as text through its type's output function,
 * as the triggers read call ids -- never through a cast, which the owner of
 * a type may define.
 */
Datum
aloro_webhook_text_of(PG_FUNCTION_ARGS)
{
	Oid			type = get_fn_expr_argtype(fcinfo->flinfo, 0);

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (!OidIsValid(type))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not determine the type of the argument of aloro_webhook._text_of()")));
	PG_RETURN_TEXT_P(cstring_to_text(aw_value_text(PG_GETARG_DATUM(0), type)));
}
