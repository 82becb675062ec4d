/*
 * libFuzzer harness: the byte rule's scalars (src/json_bytes.c), the part of
 * the payload serializer that decides every byte of a number, a string and
 * the order of keys; the jsonb walk around it needs a running server and is
 * checked there (test/t/010_byte_rule.pl against Node's JSON.stringify).
 *
 * The first input byte picks what is checked:
 *	- a number (the next 8 bytes as an IEEE double): NaN and infinities give
 *	  null, zeros give 0; otherwise the text is a JSON number that reads back
 *	  as exactly the double, with the fewest significant digits that do, in
 *	  ECMAScript's layout (plain digits for exponents -7 < e < 21, else
 *	  d.ddde+x / d.ddde-x, no leading zeros, no trailing zeros in a fraction);
 *	- a string (the rest, made valid UTF-8 by dropping bad bytes): the text
 *	  is a JSON string whose escapes are exactly \" \\ \b \f \n \r \t and
 *	  lowercase \u00xx for the other control characters, all else raw, and
 *	  which decodes back to the input byte for byte;
 *	- a key (the rest): it is an array index exactly when it is the
 *	  canonical decimal form of an integer below 2^32 - 1.
 */
#include "postgres_fe.h"

#include <math.h>

#include "common/shortest_dec.h"
#include "lib/stringinfo.h"

#include "json_bytes.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The significant digits of a JSON number's text (first to last nonzero
 * digit); *layout_ok is false for a leading zero, "1.", a trailing zero in
 * a fraction, a zero-padded or unsigned exponent, or more than one digit
 * before the point of an exponent form.
 */
static int
number_digits(const char *s, bool *layout_ok)
{
	const char *p = s;
	int			intdigits = 0;
	int			pos = 0;
	int			firstpos = -1;
	int			lastpos = -1;

	*layout_ok = true;
	if (*p == '-')
		p++;
	if (*p == '0' && p[1] >= '0' && p[1] <= '9')
		*layout_ok = false;
	for (; *p >= '0' && *p <= '9'; p++, intdigits++, pos++)
		if (*p != '0')
		{
			if (firstpos < 0)
				firstpos = pos;
			lastpos = pos;
		}
	if (intdigits == 0)
		*layout_ok = false;
	if (*p == '.')
	{
		int			fracdigits = 0;

		for (p++; *p >= '0' && *p <= '9'; p++, fracdigits++, pos++)
			if (*p != '0')
			{
				if (firstpos < 0)
					firstpos = pos;
				lastpos = pos;
			}
		if (fracdigits == 0 || p[-1] == '0')
			*layout_ok = false;
	}
	if (*p == 'e')
	{
		p++;
		if (*p != '+' && *p != '-')
			*layout_ok = false;
		p++;
		if (*p < '1' || *p > '9')
			*layout_ok = false;
		while (*p >= '0' && *p <= '9')
			p++;
		if (intdigits != 1)
			*layout_ok = false;
	}
	if (*p != '\0')
		*layout_ok = false;
	return firstpos < 0 ? 0 : lastpos - firstpos + 1;
}

static void
check_number(const uint8_t *data, size_t size)
{
	double		d;
	StringInfoData out;
	bool		layout_ok;
	int			k;
	double		mag;

	if (size < 8)
		return;
	memcpy(&d, data, 8);
	initStringInfo(&out);
	aw_json_double(&out, d);
	if (isnan(d) || isinf(d))
	{
		if (strcmp(out.data, "null") != 0)
			abort();
		pfree(out.data);
		return;
	}
	if (d == 0)
	{
		if (strcmp(out.data, "0") != 0)
			abort();
		pfree(out.data);
		return;
	}
	if (strtod(out.data, NULL) != d)
		abort();				/* does not read back */
	k = number_digits(out.data, &layout_ok);
	if (!layout_ok || k < 1 || k > 17)
		abort();
	/* no shorter digit string reads back: the nearest of each length does not */
	for (int t = 1; t < k; t++)
	{
		char		cand[64];

		snprintf(cand, sizeof(cand), "%.*e", t - 1, d);
		if (strtod(cand, NULL) == d)
			abort();
	}
	/* ECMAScript's choice of layout: exponent form outside 1e-7 <= |d| < 1e21 */
	mag = fabs(d);
	if ((mag >= 1e21 || mag < 1e-6) != (strchr(out.data, 'e') != NULL))
		abort();
	pfree(out.data);
}

/* the length of a valid UTF-8 sequence at p (0 if none) */
static int
utf8_len(const unsigned char *p, size_t left)
{
	int			n;
	unsigned int cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, cp = p[0] & 0x07;
	else
		return 0;
	if ((size_t) n > left)
		return 0;
	for (int i = 1; i < n; i++)
	{
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		(cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

static void
check_string(const uint8_t *data, size_t size)
{
	unsigned char *in = malloc(size + 1);
	unsigned char *back = malloc(size + 1);
	size_t		n = 0;
	size_t		m = 0;
	StringInfoData out;
	const unsigned char *p;
	const unsigned char *end;

	/* the server hands over valid UTF-8 without NUL: keep only that */
	for (size_t i = 0; i < size;)
	{
		int			l = data[i] == 0 ? 0 : utf8_len(data + i, size - i);

		if (l == 0)
		{
			i++;
			continue;
		}
		memcpy(in + n, data + i, l);
		n += l;
		i += l;
	}
	initStringInfo(&out);
	aw_json_string_utf8(&out, (const char *) in, (int) n);

	p = (const unsigned char *) out.data;
	end = p + out.len;
	if (out.len < 2 || p[0] != '"' || end[-1] != '"')
		abort();
	for (p++, end--; p < end;)
	{
		if (*p < 0x20 || *p == '"')
			abort();			/* raw control character or quote */
		if (*p != '\\')
		{
			back[m++] = *p++;
			continue;
		}
		p++;
		if (p >= end)
			abort();
		switch (*p)
		{
			case '"':
				back[m++] = '"';
				break;
			case '\\':
				back[m++] = '\\';
				break;
			case 'b':
				back[m++] = '\b';
				break;
			case 'f':
				back[m++] = '\f';
				break;
			case 'n':
				back[m++] = '\n';
				break;
			case 'r':
				back[m++] = '\r';
				break;
			case 't':
				back[m++] = '\t';
				break;
			case 'u':
				{
					static const char hex[] = "0123456789abcdef";
					const char *lo;
					unsigned int v;

					/* four lowercase hex digits naming a code below 0x20 */
					if (end - p < 5 || p[1] != '0' || p[2] != '0' ||
						(p[3] != '0' && p[3] != '1') || p[4] == '\0' ||
						(lo = strchr(hex, p[4])) == NULL)
						abort();
					v = (unsigned int) ((p[3] - '0') * 16 + (lo - hex));
					if (v == '\b' || v == '\f' || v == '\n' || v == '\r' || v == '\t')
						abort();	/* those have names */
					back[m++] = (unsigned char) v;
					p += 4;
					break;
				}
			default:
				abort();
		}
		p++;
	}
	if (m != n || memcmp(in, back, n) != 0)
		abort();				/* does not decode back to the input */
	pfree(out.data);
	free(in);
	free(back);
}

static void
check_key(const uint8_t *data, size_t size)
{
	char		key[32];
	char		canon[32];
	unsigned long long v;
	bool		expect = false;

	if (size > 20)
		size = 20;
	memcpy(key, data, size);
	key[size] = '\0';
	if (size > 0 && strlen(key) == size && key[0] >= '0' && key[0] <= '9' &&
		strspn(key, "0123456789") == size)
	{
		v = strtoull(key, NULL, 10);
		snprintf(canon, sizeof(canon), "%llu", v);
		expect = strcmp(canon, key) == 0 && v < 4294967295ULL;
	}
	if (aw_is_array_index((const char *) data, (int) size) != expect)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] % 3)
	{
		case 0:
			check_number(data + 1, size - 1);
			break;
		case 1:
			check_string(data + 1, size - 1);
			break;
		default:
			check_key(data + 1, size - 1);
			break;
	}
	return 0;
}
