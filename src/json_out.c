/*-------------------------------------------------------------------------
 * json_out.c
 *		JSON output byte for byte as JavaScript's JSON.stringify prints it.
 *
 * The body of every delivery obeys JSON.stringify(JSON.parse(body)) === body,
 * so a receiver may verify the signature over the raw bytes or over the
 * re-serialized object.  That fixes three things (the scalars are laid out
 * by json_bytes.c, the containers are walked here):
 *
 *	- numbers: the shortest digits that round-trip the IEEE double (taken from
 *	  the server's own shortest-decimal code, the one behind float8out), laid
 *	  out as ECMAScript's Number::toString does; NaN and infinities are null;
 *	- strings: only " \ and control characters are escaped, \b \f \n \r \t
 *	  by name and the rest as lowercase \u00xx; everything else is raw UTF-8;
 *	- object keys: those that are array indices (canonical decimal integers
 *	  below 2^32-1) first in ascending order, then the others in the order
 *	  jsonb stores them.
 *
 * IDENTIFICATION
 *		src/json_out.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/numeric.h"

typedef struct AwPair
{
	JsonbValue	key;
	JsonbValue	value;
	uint32		index;			/* numeric value when the key is an array index */
	bool		is_index;
} AwPair;

static void aw_json_object(StringInfo out, JsonbContainer *jc,
						   const char *extra_key, const char *extra_json);

/* A decimal number given as text, as JavaScript would print the parsed double. */
void
aw_json_numeric_text(StringInfo out, const char *num)
{
	aw_json_double(out, strtod(num, NULL));
}

/* A string literal with JSON.stringify's escapes; s is in the server encoding. */
void
aw_json_string(StringInfo out, const char *s, int len)
{
	char	   *converted = NULL;

	/* bodies are UTF-8 whatever the database encoding */
	if (GetDatabaseEncoding() != PG_UTF8 && GetDatabaseEncoding() != PG_SQL_ASCII)
	{
		converted = pg_server_to_any(s, len, PG_UTF8);
		if (converted != s)
		{
			s = converted;
			len = strlen(converted);
		}
		else
			converted = NULL;
	}
	aw_json_string_utf8(out, s, len);
	if (converted)
		pfree(converted);
}

void
aw_json_cstring(StringInfo out, const char *s)
{
	aw_json_string(out, s, strlen(s));
}

/* One jsonb value (scalar or nested container). */
void
aw_json_jsonb_value(StringInfo out, JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			appendStringInfoString(out, "null");
			break;
		case jbvBool:
			appendStringInfoString(out, v->val.boolean ? "true" : "false");
			break;
		case jbvString:
			aw_json_string(out, v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			{
				char	   *num = DatumGetCString(DirectFunctionCall1(numeric_out,
																	  NumericGetDatum(v->val.numeric)));

				aw_json_numeric_text(out, num);
				pfree(num);
				break;
			}
		case jbvBinary:
			aw_json_jsonb(out, v->val.binary.data);
			break;
		default:
			/* jbvArray/jbvObject/jbvDatetime never come out of an iterator */
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
}

static int
aw_pair_index_cmp(const void *a, const void *b)
{
	const AwPair *pa = (const AwPair *) a;
	const AwPair *pb = (const AwPair *) b;

	if (pa->index != pb->index)
		return pa->index < pb->index ? -1 : 1;
	return 0;
}

static void
aw_json_pair(StringInfo out, AwPair *pair, bool *first)
{
	if (!*first)
		appendStringInfoChar(out, ',');
	*first = false;
	aw_json_string(out, pair->key.val.string.val, pair->key.val.string.len);
	appendStringInfoChar(out, ':');
	aw_json_jsonb_value(out, &pair->value);
}

/*
 * An object in JavaScript key order.  When extra_key is given, that key with
 * the already-serialized value extra_json is added ahead of the stored
 * non-index keys (and so behind any index keys).
 */
static void
aw_json_object(StringInfo out, JsonbContainer *jc,
			   const char *extra_key, const char *extra_json)
{
	JsonbIterator *it = JsonbIteratorInit(jc);
	JsonbValue	v;
	JsonbIteratorToken tok;
	AwPair	   *pairs;
	int			npairs = 0;
	int			nindex = 0;
	bool		first = true;

	tok = JsonbIteratorNext(&it, &v, true);
	Assert(tok == WJB_BEGIN_OBJECT);
	pairs = palloc(sizeof(AwPair) * Max(v.val.object.nPairs, 1));
	while ((tok = JsonbIteratorNext(&it, &v, true)) == WJB_KEY)
	{
		AwPair	   *pair = &pairs[npairs++];

		pair->key = v;
		tok = JsonbIteratorNext(&it, &pair->value, true);
		Assert(tok == WJB_VALUE);
		pair->is_index = aw_is_array_index(v.val.string.val, v.val.string.len);
		pair->index = 0;
		for (int i = 0; pair->is_index && i < v.val.string.len; i++)
			pair->index = pair->index * 10 + (v.val.string.val[i] - '0');
		if (pair->is_index)
			nindex++;
	}

	appendStringInfoChar(out, '{');
	if (nindex > 0)
	{
		AwPair	   *index_pairs = palloc(sizeof(AwPair) * nindex);
		int			j = 0;

		for (int i = 0; i < npairs; i++)
			if (pairs[i].is_index)
				index_pairs[j++] = pairs[i];
		qsort(index_pairs, nindex, sizeof(AwPair), aw_pair_index_cmp);
		for (int i = 0; i < nindex; i++)
			aw_json_pair(out, &index_pairs[i], &first);
		pfree(index_pairs);
	}
	if (extra_key != NULL)
	{
		if (!first)
			appendStringInfoChar(out, ',');
		first = false;
		aw_json_cstring(out, extra_key);
		appendStringInfoChar(out, ':');
		appendStringInfoString(out, extra_json);
	}
	for (int i = 0; i < npairs; i++)
		if (!pairs[i].is_index)
			aw_json_pair(out, &pairs[i], &first);
	appendStringInfoChar(out, '}');
	pfree(pairs);
}

/* Any jsonb container: object, array, or a raw scalar. */
void
aw_json_jsonb(StringInfo out, JsonbContainer *jc)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	bool		first = true;

	/* nesting is the user's to choose: fail cleanly, never overflow the stack */
	check_stack_depth();
	if (JsonContainerIsObject(jc))
	{
		aw_json_object(out, jc, NULL, NULL);
		return;
	}

	it = JsonbIteratorInit(jc);
	tok = JsonbIteratorNext(&it, &v, true);
	Assert(tok == WJB_BEGIN_ARRAY);
	if (v.val.array.rawScalar)
	{
		tok = JsonbIteratorNext(&it, &v, true);
		aw_json_jsonb_value(out, &v);
		return;
	}
	appendStringInfoChar(out, '[');
	while ((tok = JsonbIteratorNext(&it, &v, true)) == WJB_ELEM)
	{
		if (!first)
			appendStringInfoChar(out, ',');
		first = false;
		aw_json_jsonb_value(out, &v);
	}
	appendStringInfoChar(out, ']');
}

/* An object with one extra key placed as JavaScript would place a first key. */
void
aw_json_jsonb_object_with(StringInfo out, JsonbContainer *jc,
						  const char *extra_key, const char *extra_json)
{
	aw_json_object(out, jc, extra_key, extra_json);
}

/*
 * The contract's time format, "YYYY-MM-DDTHH:MM:SSZ" (UTC, fractions
 * dropped); false for a time it cannot show.  Bodies and headers use it.
 */
bool
aw_format_utc(StringInfo out, TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (TIMESTAMP_NOT_FINITE(ts) || timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		return false;
	appendStringInfo(out, "%04d-%02d-%02dT%02d:%02d:%02dZ",
					 tm.tm_year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec);
	return true;
}

/* a time as a JSON string in the contract's format; null when it has none */
void
aw_json_utc(StringInfo out, TimestampTz ts)
{
	int			mark = out->len;

	/* (digits, '-', ':', 'T' and 'Z': nothing to escape) */
	appendStringInfoChar(out, '"');
	if (aw_format_utc(out, ts))
		appendStringInfoChar(out, '"');
	else
	{
		out->len = mark;
		out->data[mark] = '\0';
		appendStringInfoString(out, "null");
	}
}
