/*-------------------------------------------------------------------------
 * json_bytes.c
 *		The byte rule's scalars: numbers, strings and array-index keys as
 *		JavaScript's JSON.stringify prints them.
 *
 * This part of the serializer needs nothing of a running server (only
 * StringInfo and the shortest-decimal code of src/common), so the fuzz
 * harness test/fuzz/fuzz_json.c builds it as it is; json_out.c walks jsonb
 * with it.
 *
 * IDENTIFICATION
 *		src/json_bytes.c
 *-------------------------------------------------------------------------
 */
#ifndef FRONTEND
#include "postgres.h"
#else
#include "postgres_fe.h"
#endif

#include <math.h>

#include "common/shortest_dec.h"
#include "lib/stringinfo.h"

#include "json_bytes.h"

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

/* A UTF-8 string as a JSON string literal with JSON.stringify's escapes. */
void
aw_json_string_utf8(StringInfo out, const char *s, int len)
{
	const unsigned char *p;
	const unsigned char *end;

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
