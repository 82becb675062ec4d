/*
 * libFuzzer harness: the webhook URL validator and the URL password span
 * (src/validate.c), on any bytes.  Invariants: no crash or sanitizer
 * report; an accepted URL is http(s)://, printable ASCII, at most 2048
 * bytes; a password span lies inside the URL, after "://" and before '@'.
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
	char	   *url = malloc(size + 1);
	int			start;
	int			len;

	memcpy(url, data, size);
	url[size] = '\0';
	if (aw_url_problem(url) == NULL)
	{
		size_t		n = strlen(url);

		if (n == 0 || n > 2048 ||
			(strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0))
			abort();
		for (size_t i = 0; i < n; i++)
			if ((unsigned char) url[i] <= 0x20 || (unsigned char) url[i] >= 0x7f)
				abort();
	}
	if (aw_url_password_span(url, &start, &len))
	{
		const char *sep = strstr(url, "://");

		if (sep == NULL || start < (int) (sep - url) + 3 || len < 0 ||
			(size_t) start + (size_t) len >= strlen(url) + 1 || url[start + len] != '@')
			abort();
	}
	free(url);
	return 0;
}
