/*
 * libFuzzer harness: the header checks of webhooks.headers
 * (src/validate.c).  The input is split at its first '=' into a name and a
 * value.  Invariants: no crash; an accepted name is a non-empty token with
 * no separator, space or control byte; an accepted value has no CR, LF or
 * NUL, so that a header line can never be split into two; a reserved name
 * is one of the extension's own.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "validate.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *) data;
	const char *eq = memchr(s, '=', size);
	int			nlen = eq ? (int) (eq - s) : (int) size;
	const char *value = eq ? eq + 1 : s + size;
	int			vlen = (int) (size - (size_t) (value - s));

	if (aw_header_name_ok(s, nlen))
	{
		if (nlen == 0)
			abort();
		for (int i = 0; i < nlen; i++)
			if ((unsigned char) s[i] <= 0x20 || (unsigned char) s[i] >= 0x7f || strchr(":\"(),/;<=>?@[\\]{}", s[i]))
				abort();
	}
	if (aw_header_value_ok(value, vlen))
	{
		if (memchr(value, '\r', vlen) || memchr(value, '\n', vlen) || memchr(value, '\0', vlen))
			abort();
	}
	if (aw_header_reserved(s, nlen) && nlen >= 8 &&
		strncasecmp(s, "x-aloro-", 8) != 0 && strncasecmp(s, "webhook-", 8) != 0 &&
		strncasecmp(s, "content-", 8) != 0 && strncasecmp(s, "transfer", 8) != 0 &&
		strncasecmp(s, "connecti", 8) != 0 && strncasecmp(s, "user-age", 8) != 0 &&
		strncasecmp(s, "keep-ali", 8) != 0)
		abort();
	return 0;
}
