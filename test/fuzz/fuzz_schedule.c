/*
 * libFuzzer harness: the list structure of aloro_webhook.retry_schedule
 * (aw_schedule_split and aw_schedule_delay_ms in src/validate.c; each entry
 * then goes to the server's own interval parser, which the regression tests
 * drive).  The input is the setting's text.  Invariants: no crash and no
 * write outside the text; a split gives between 1 and the limit entries,
 * each non-empty, free of commas, without blanks at either end, one more
 * than the commas; a refusal names an entry that exists (an empty one, or
 * the first over the limit).  The first 20 bytes are also read as interval
 * fields: the delay is -1 exactly when the total is negative, never above
 * the limit + 1, and otherwise exactly the total truncated to whole
 * milliseconds (an input whose fields nearly cancel once showed a double
 * sum several milliseconds off: corpus/schedule/cancelling-fields).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

#define LIMIT 100

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void
check_split(const uint8_t *data, size_t size)
{
	char	   *text = malloc(size + 1);
	char	   *entries[LIMIT];
	int			commas = 0;
	int			bad = 0;
	int			n;
	size_t		len;

	memcpy(text, data, size);
	text[size] = '\0';
	len = strlen(text);			/* the setting is a C string: it stops at a NUL */
	for (size_t i = 0; i < len; i++)
		commas += text[i] == ',';

	n = aw_schedule_split(text, entries, LIMIT, &bad);
	if (n > 0)
	{
		if (n > LIMIT || n != commas + 1)
			abort();
		for (int i = 0; i < n; i++)
		{
			size_t		elen = strlen(entries[i]);

			if (elen == 0 || strchr(entries[i], ',') ||
				blank(entries[i][0]) || blank(entries[i][elen - 1]))
				abort();
			if (entries[i] < text || entries[i] + elen > text + len)
				abort();
		}
	}
	else if (n == AW_SCHEDULE_EMPTY_ENTRY || n == AW_SCHEDULE_TOO_MANY)
	{
		if (bad < 1 || bad > commas + 1)
			abort();
		if (n == AW_SCHEDULE_TOO_MANY && bad != LIMIT + 1)
			abort();
	}
	else
		abort();
	free(text);
}

static void
check_delay(const uint8_t *data, size_t size)
{
	int64_t		usec;
	int32_t		mday,
				mon,
				year;
	const long long max_ms = (long long) 100 * 366 * 86400 * 1000;
	__int128	us;
	long long	want;
	long long	ms;

	if (size < 20)
		return;
	memcpy(&usec, data, 8);
	memcpy(&mday, data + 8, 4);
	memcpy(&mon, data + 12, 4);
	memcpy(&year, data + 16, 4);
	ms = aw_schedule_delay_ms(usec, mday, mon, year, max_ms);

	/* the exact answer, by another road: whole days and months in ms first */
	us = (__int128) usec + ((__int128) mday + (__int128) mon * 30) * 86400 * 1000000
		+ (__int128) year * 36525 * 864 * 1000000;
	if (us < 0)
		want = -1;
	else if (us / 1000 > max_ms)
		want = max_ms + 1;
	else
		want = (long long) (us / 1000);
	if (ms != want)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_split(data, size);
	check_delay(data, size);
	return 0;
}
