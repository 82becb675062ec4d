/*-------------------------------------------------------------------------
 * json_out.c
 *		JSON output byte for byte as JavaScript's JSON.stringify prints it.
 *
 * The body of every delivery obeys JSON.stringify(JSON.parse(body)) === body,
 * so a receiver may verify the signature over the raw bytes or over the
 * re-serialized object.  That fixes three things:
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

#include <math.h>

#include "common/shortest_dec.h"
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

/*
 * Reads a decimal in any layout ("123.45", "1.2e+21", "1e-07") into its
 * significant digits (no leading or trailing zeros) and the exponent e of
 * the scientific form d1.d2d3... x 10^e.  Returns the number of digits.
 */
static int
aw_parse_decimal(const char *p, char *digits, int *e)
{
	char		all[64];
	int			nd = 0;
	int			point = -1;
	int			exp10 = 0;
	int			lead = 0;
	int			k;

	if (*p == '-' || *p == '+')
		p++;
	for (; *p && *p != 'e' && *p != 'E' && nd < (int) sizeof(all); p++)
	{
		if (*p == '.')
			point = nd;
		else
			all[nd++] = *p;
	}
	if (point < 0)
		point = nd;
	if (*p == 'e' || *p == 'E')
		exp10 = atoi(p + 1);
	while (lead < nd - 1 && all[lead] == '0')
		lead++;
	k = nd - lead;
	while (k > 1 && all[lead + k - 1] == '0')
		k--;
	memcpy(digits, all + lead, k);
	*e = point + exp10 - lead - 1;
	return k;
}

/* does the decimal digits x 10^(e-k+1) read back as exactly d? */
static bool
aw_round_trips(const char *digits, int k, int e, double d)
{
	char		text[64];

	snprintf(text, sizeof(text), "%c.%.*se%d", digits[0], k - 1, digits + 1, e);
	return strtod(text, NULL) == d;
}

/*
 * aw_shortest
 *		The digits ECMAScript's Number::toString picks for a finite d > 0:
 *		the fewest that read back as d, and of those the closest to d.
 *
 * The server's shortest-decimal code (behind float8out) gives the digits in
 * nearly every case, but it never picks a decimal that lies exactly half-way
 * to the neighbouring double, which reads back as d when d's significand is
 * even (1e23 comes out as 9.999999999999999e+22).  So every shorter length is
 * tried too: the nearest decimal of that length (printf rounds correctly),
 * and the neighbour on the other side, which can be the only one that reads
 * back when d is a power of two and its rounding interval is lopsided.
 */
static int
aw_shortest(double d, char *digits, int *e)
{
	char		buf[DOUBLE_SHORTEST_DECIMAL_LEN];
	int			k;

	double_to_shortest_decimal_buf(d, buf);
	k = aw_parse_decimal(buf, digits, e);

	for (int t = 1; t < k; t++)
	{
		char		cand[64];
		char		cd[64];
		int			ce;
		int			ck;

		snprintf(cand, sizeof(cand), "%.*e", t - 1, d);
		if (strtod(cand, NULL) == d)
			return aw_parse_decimal(cand, digits, e);

		/* the t-digit neighbour on the other side of d */
		ck = aw_parse_decimal(cand, cd, &ce);
		while (ck < t)
			cd[ck++] = '0';
		if (strtod(cand, NULL) < d)
		{
			int			i = t - 1;

			while (i >= 0 && cd[i] == '9')
				cd[i--] = '0';
			if (i < 0)
			{
				cd[0] = '1';
				ce++;
			}
			else
				cd[i]++;
		}
		else
		{
			int			i = t - 1;

			while (i >= 0 && cd[i] == '0')
				cd[i--] = '9';
			if (i < 0 || (i == 0 && cd[0] == '1' && t > 1))
				continue;		/* would lose a digit: a shorter length covered it */
			cd[i]--;
		}
		if (aw_round_trips(cd, t, ce, d))
		{
			memcpy(digits, cd, t);
			ck = t;
			while (ck > 1 && digits[ck - 1] == '0')
				ck--;
			return ck;
		}
	}
	return k;
}

/* Appends the ECMAScript Number::toString form of a finite nonzero double. */
static void
aw_json_layout_digits(StringInfo out, double d)
{
	char		digits[64];
	int			e;
	int			k;
	int			n;

	if (d < 0)
	{
		appendStringInfoChar(out, '-');
		d = -d;
	}
	k = aw_shortest(d, digits, &e);
	n = e + 1;					/* value = 0.d1d2...dk x 10^n */

	if (k <= n && n <= 21)
	{
		/* integer: the digits, then n-k zeros */
		appendBinaryStringInfo(out, digits, k);
		for (int i = 0; i < n - k; i++)
			appendStringInfoChar(out, '0');
	}
	else if (0 < n && n <= 21)
	{
		appendBinaryStringInfo(out, digits, n);
		appendStringInfoChar(out, '.');
		appendBinaryStringInfo(out, digits + n, k - n);
	}
	else if (-6 < n && n <= 0)
	{
		appendStringInfoString(out, "0.");
		for (int i = 0; i < -n; i++)
			appendStringInfoChar(out, '0');
		appendBinaryStringInfo(out, digits, k);
	}
	else
	{
		appendStringInfoChar(out, digits[0]);
		if (k > 1)
		{
			appendStringInfoChar(out, '.');
			appendBinaryStringInfo(out, digits + 1, k - 1);
		}
		appendStringInfo(out, "e%c%d", e < 0 ? '-' : '+', e < 0 ? -e : e);
	}
}

/* A number as JSON.stringify prints it (NaN and infinities print as null). */
void
aw_json_double(StringInfo out, double d)
{
	if (isnan(d) || isinf(d))
		appendStringInfoString(out, "null");
	else if (d == 0)
		appendStringInfoChar(out, '0');	/* also -0 */
	else
		aw_json_layout_digits(out, d);
}

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
	const unsigned char *p;
	const unsigned char *end;
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

	p = (const unsigned char *) s;
	end = p + len;
	enlargeStringInfo(out, len + 2);
	appendStringInfoChar(out, '"');
	while (p < end)
	{
		const unsigned char *run = p;

		/* copy the longest run that needs no escape in one go */
		while (p < end && *p >= 0x20 && *p != '"' && *p != '\\')
			p++;
		if (p > run)
			appendBinaryStringInfo(out, (const char *) run, p - run);
		if (p >= end)
			break;
		switch (*p)
		{
			case '"':
				appendStringInfoString(out, "\\\"");
				break;
			case '\\':
				appendStringInfoString(out, "\\\\");
				break;
			case '\b':
				appendStringInfoString(out, "\\b");
				break;
			case '\f':
				appendStringInfoString(out, "\\f");
				break;
			case '\n':
				appendStringInfoString(out, "\\n");
				break;
			case '\r':
				appendStringInfoString(out, "\\r");
				break;
			case '\t':
				appendStringInfoString(out, "\\t");
				break;
			default:
				appendStringInfo(out, "\\u%04x", (unsigned int) *p);
				break;
		}
		p++;
	}
	appendStringInfoChar(out, '"');
	if (converted)
		pfree(converted);
}

void
aw_json_cstring(StringInfo out, const char *s)
{
	aw_json_string(out, s, strlen(s));
}

/*
 * Is this key an ECMAScript array index: a canonical decimal integer
 * (no sign, no leading zero unless it is "0") below 2^32 - 1?
 */
bool
aw_is_array_index(const char *key, int len)
{
	uint64		v = 0;

	if (len < 1 || len > 10)
		return false;
	if (len > 1 && key[0] == '0')
		return false;
	for (int i = 0; i < len; i++)
	{
		if (key[i] < '0' || key[i] > '9')
			return false;
		v = v * 10 + (key[i] - '0');
	}
	return v < UINT64CONST(4294967295);
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
