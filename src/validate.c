/*-------------------------------------------------------------------------
 * validate.c
 *		The checks on what users and receivers hand the extension that need
 *		nothing of the server: webhook URLs, a URL's password, CIDR blocks
 *		(aloro_webhook.allowed_networks), header names and values
 *		(webhooks.headers), and the list structure of
 *		aloro_webhook.retry_schedule.
 *
 * Plain C on libcurl and libc only, so that the fuzz harnesses
 * (test/fuzz/, scripts/fuzz.sh) run these very functions outside the
 * server.  Callers turn the answers into errors.
 *
 * IDENTIFICATION
 *		src/validate.c
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>

#include "validate.h"

#define AW_URL_MAX_LEN 2048

/*
 * aw_url_problem
 *		NULL when url is an acceptable webhook URL, else what is wrong with it.
 */
const char *
aw_url_problem(const char *url)
{
	size_t		len = strlen(url);
	CURLU	   *h;
	CURLUcode	rc;
	char	   *scheme = NULL;
	char	   *host = NULL;
	const char *problem = NULL;

	if (len == 0)
		return "The URL is empty.";
	if (len > AW_URL_MAX_LEN)
		return "The URL is longer than 2048 bytes.";
	for (size_t i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) url[i];

		if (c <= 0x20 || c == 0x7f)
			return "The URL contains whitespace or a control character.";
		if (c >= 0x80)
			return "The URL contains a non-ASCII character; percent-encode it, or use the punycode form of the host name.";
	}
	if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
		return "Only http:// and https:// URLs are supported.";
	{
		/* libcurl would read "https:///hooks" as the host "hooks" */
		const char *after = strstr(url, "://") + 3;

		if (*after == '\0' || *after == '/' || *after == '?' || *after == '#')
			return "The URL has no host.";
	}

	h = curl_url();
	if (h == NULL)
		return "Out of memory while parsing the URL.";
	rc = curl_url_set(h, CURLUPART_URL, url, 0);
	if (rc != CURLUE_OK)
		problem = "libcurl could not parse it as a URL.";
	else if (curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
			 (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0))
		problem = "Only http:// and https:// URLs are supported.";
	else if (curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK || host[0] == '\0')
		problem = "The URL has no host.";
	if (scheme)
		curl_free(scheme);
	if (host)
		curl_free(host);
	curl_url_cleanup(h);
	return problem;
}

/*
 * aw_url_password_span
 *		Where the password of a URL's userinfo ("scheme://user:PASSWORD@host")
 *		starts, and how long it is; false when the URL carries none.
 */
bool
aw_url_password_span(const char *url, int *start, int *len)
{
	const char *p = strstr(url, "://");
	const char *auth_end;
	const char *at = NULL;
	const char *colon;

	if (p == NULL)
		return false;
	p += 3;
	auth_end = p + strcspn(p, "/?#");
	/* the userinfo ends at the last '@' of the authority */
	for (const char *q = p; q < auth_end; q++)
		if (*q == '@')
			at = q;
	if (at == NULL)
		return false;
	colon = memchr(p, ':', at - p);
	if (colon == NULL)
		return false;
	*start = (int) (colon + 1 - url);
	*len = (int) (at - colon - 1);
	return true;
}

/* parses "a.b.c.d/n" or "x::y/n" (prefix optional) into net */
bool
aw_parse_cidr(const char *text, AwNetwork *net)
{
	char		buf[INET6_ADDRSTRLEN + 8];
	char	   *slash;
	int			maxbits;
	struct in_addr a4;
	struct in6_addr a6;

	if (strlen(text) >= sizeof(buf))
		return false;
	strcpy(buf, text);
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	memset(net->addr, 0, 16);
	if (inet_pton(AF_INET, buf, &a4) == 1)
	{
		net->addr[10] = 0xff;
		net->addr[11] = 0xff;
		memcpy(net->addr + 12, &a4, 4);
		maxbits = 32;
	}
	else if (inet_pton(AF_INET6, buf, &a6) == 1)
	{
		memcpy(net->addr, &a6, 16);
		maxbits = 128;
	}
	else
		return false;

	net->prefix = maxbits;
	if (slash)
	{
		char	   *end;
		long		bits = strtol(slash + 1, &end, 10);

		if (end == slash + 1 || *end != '\0' || bits < 0 || bits > maxbits)
			return false;
		net->prefix = (int) bits;
	}
	if (maxbits == 32)
		net->prefix += 96;
	return true;
}


/* an HTTP token (RFC 9110 field-name): tchar+ */
bool
aw_header_name_ok(const char *s, int len)
{
	if (len <= 0)
		return false;
	for (int i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c == '\0' ||
			!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  strchr("!#$%&'*+-.^_`|~", c) != NULL))
			return false;
	}
	return true;
}

/* a header the extension sets itself, or one that would break the request's framing */
bool
aw_header_reserved(const char *name, int len)
{
	static const char *const reserved[] = {"content-type", "content-length", "host", "user-agent",
	"transfer-encoding", "connection", "expect", "te", "trailer", "upgrade", "keep-alive"};

	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if ((size_t) len == strlen(reserved[i]) && strncasecmp(name, reserved[i], len) == 0)
			return true;
	return len >= 8 && (strncasecmp(name, "x-aloro-", 8) == 0 || strncasecmp(name, "webhook-", 8) == 0);
}

/* a header value goes on one line: no CR, LF or NUL */
bool
aw_header_value_ok(const char *s, int len)
{
	for (int i = 0; i < len; i++)
		if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
			return false;
	return true;
}

/* a blank around a retry schedule's entries */
static bool
aw_schedule_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * aw_schedule_split
 *		Splits aloro_webhook.retry_schedule in place into its comma-separated
 *		entries, each trimmed of blanks.  Returns how many there are, or
 *		AW_SCHEDULE_EMPTY_ENTRY / AW_SCHEDULE_TOO_MANY with *bad set to the
 *		(1-based) entry at fault.  Each entry is then an interval for the
 *		server's own parser.
 */
int
aw_schedule_split(char *text, char **entries, int max, int *bad)
{
	char	   *p = text;
	int			n = 0;

	for (;;)
	{
		char	   *comma = strchr(p, ',');
		char	   *entry = p;
		char	   *end;

		if (comma)
			*comma = '\0';
		while (aw_schedule_blank(*entry))
			entry++;
		end = entry + strlen(entry);
		while (end > entry && aw_schedule_blank(end[-1]))
			*--end = '\0';
		if (*entry == '\0')
		{
			*bad = n + 1;
			return AW_SCHEDULE_EMPTY_ENTRY;
		}
		if (n >= max)
		{
			*bad = n + 1;
			return AW_SCHEDULE_TOO_MANY;
		}
		entries[n++] = entry;
		if (!comma)
			return n;
		p = comma + 1;
	}
}

/*
 * aw_schedule_delay_ms
 *		An interval's fields as a delay in whole milliseconds (truncated),
 *		months counting as 30 days and years as 365.25 (as interval comparison
 *		does): -1 when the total is negative, max_ms + 1 when it is longer
 *		than max_ms.  Summed exactly in microseconds: in a double, fields of
 *		opposite signs that nearly cancel would leave an error of several
 *		milliseconds (the fuzz harness found one).
 */
long long
aw_schedule_delay_ms(long long usec, int mday, int mon, int year, long long max_ms)
{
#ifdef __SIZEOF_INT128__
	__int128	total = (__int128) usec
		+ (__int128) mday * 86400000000LL
		+ (__int128) mon * (30 * 86400000000LL)
		+ (__int128) year * 31557600000000LL;	/* 365.25 days */

	if (total < 0)
		return -1;
	if (total / 1000 > (__int128) max_ms)
		return max_ms + 1;
	return (long long) (total / 1000);
#else
	long double total = (long double) usec / 1000.0L
		+ (long double) mday * 86400000.0L
		+ (long double) mon * 30.0L * 86400000.0L
		+ (long double) year * 365.25L * 86400000.0L;

	if (total < 0)
		return -1;
	if (total > (long double) max_ms)
		return max_ms + 1;
	return (long long) total;
#endif
}
