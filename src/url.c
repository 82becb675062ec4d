/*-------------------------------------------------------------------------
 * url.c
 *		Webhook URL validation, and the address policy applied at connect
 *		time (aloro_webhook.allowed_networks).
 *
 * A URL is checked when it is written (CHECK constraint on webhooks.url):
 * http or https only, a host, no whitespace or control characters (so
 * nothing can be smuggled into the request line or headers), bounded
 * length, and parseable by libcurl.  Where it points is checked only when
 * the worker connects, against the address DNS actually returned: loopback,
 * private, link-local and other non-public ranges are refused unless
 * allowed_networks lists them.
 *
 * IDENTIFICATION
 *		src/url.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <curl/curl.h>

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "compat.h"
#include "validate.h"

#define AW_MAX_NETWORKS 64

typedef struct AwNetworkList
{
	int			n;
	AwNetwork	nets[FLEXIBLE_ARRAY_MEMBER];
} AwNetworkList;

static const AwNetworkList *aw_allowed = NULL;

/* The URL with its password, if it has one, shown as ***. */
char *
aw_url_masked(const char *url)
{
	int			start;
	int			len;

	if (!aw_url_password_span(url, &start, &len))
		return pstrdup(url);
	return psprintf("%.*s" AW_URL_PASSWORD_MASK "%s", start, url, url + start + len);
}

/* The URL with the password it shows as *** put back: what is connected to. */
char *
aw_url_with_password(const char *url, const char *password)
{
	int			start;
	int			len;

	if (password == NULL || !aw_url_password_span(url, &start, &len))
		return pstrdup(url);
	return psprintf("%.*s%s%s", start, url, password, url + start + len);
}

/*
 * A URL as it may appear in a message: its password masked, control
 * characters shown as \xNN (so none reaches the log raw), and cut after 100
 * bytes.
 */
static char *
aw_url_for_display(const char *url)
{
	StringInfoData out;
	int			shown = 0;

	initStringInfo(&out);
	for (const unsigned char *p = (const unsigned char *) aw_url_masked(url); *p; p++)
	{
		if (shown >= 100)
		{
			appendStringInfoString(&out, "...");
			break;
		}
		if (*p < 0x20 || *p == 0x7f)
			appendStringInfo(&out, "\\x%02x", *p);
		else
			appendStringInfoChar(&out, (char) *p);
		shown++;
	}
	return out.data;
}

PG_FUNCTION_INFO_V1(aloro_webhook_check_url);

/* _check_url(url): true, or an error that says what is wrong */
Datum
aloro_webhook_check_url(PG_FUNCTION_ARGS)
{
	char	   *url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	const char *problem = aw_url_problem(url);

	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid webhook URL \"%s\"", aw_url_for_display(url)),
				 errdetail("%s", problem),
				 errhint("A webhook URL looks like https://example.com/webhooks/aloro.")));
	PG_RETURN_BOOL(true);
}

/* GUC check hook: a comma-separated list of CIDR blocks */
bool
aw_check_allowed_networks(char **newval, void **extra, GucSource source)
{
	AwNetwork	nets[AW_MAX_NETWORKS];
	int			n = 0;
	char	   *copy = pstrdup(*newval ? *newval : "");
	char	   *tok;
	char	   *save = NULL;
	AwNetworkList *list;

	for (tok = strtok_r(copy, ", \t\n", &save); tok; tok = strtok_r(NULL, ", \t\n", &save))
	{
		if (n >= AW_MAX_NETWORKS)
		{
			GUC_check_errmsg("aloro_webhook.allowed_networks lists more than %d networks", AW_MAX_NETWORKS);
			pfree(copy);
			return false;
		}
		if (!aw_parse_cidr(tok, &nets[n]))
		{
			GUC_check_errmsg("invalid network \"%s\" in aloro_webhook.allowed_networks", tok);
			GUC_check_errhint("Give a comma-separated list of CIDR blocks, such as '127.0.0.0/8, ::1/128'.");
			pfree(copy);
			return false;
		}
		n++;
	}
	pfree(copy);

	list = aw_guc_malloc(offsetof(AwNetworkList, nets) + Max(n, 1) * sizeof(AwNetwork));
	if (list == NULL)
	{
		GUC_check_errcode(ERRCODE_OUT_OF_MEMORY);
		GUC_check_errmsg("out of memory");
		return false;
	}
	list->n = n;
	memcpy(list->nets, nets, n * sizeof(AwNetwork));
	*extra = list;
	return true;
}

void
aw_assign_allowed_networks(const char *newval, void *extra)
{
	aw_allowed = (const AwNetworkList *) extra;
}

static bool
aw_in_network(const unsigned char *addr, const AwNetwork *net)
{
	int			full = net->prefix / 8;
	int			rest = net->prefix % 8;

	if (memcmp(addr, net->addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((addr[full] ^ net->addr[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

/* address blocks that are not the public internet (RFC 6890 and friends) */
static const char *const aw_nonpublic[] = {
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
	"172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24",
	"192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24",
	"224.0.0.0/4", "240.0.0.0/4",
	"::/128", "::1/128", "::/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64",
	"2001::/23", "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10",
	"ff00::/8",
};
static AwNetwork aw_nonpublic_nets[lengthof(aw_nonpublic)];
static bool aw_nonpublic_parsed = false;

/*
 * aw_address_allowed
 *		May the worker connect to this address?  When not, says why in why.
 */
bool
aw_address_allowed(const struct sockaddr *sa, char *why, size_t whylen)
{
	unsigned char addr[16];
	char		shown[INET6_ADDRSTRLEN];
	const char *blocked = NULL;

	memset(addr, 0, 16);
	if (sa->sa_family == AF_INET)
	{
		const struct sockaddr_in *s4 = (const struct sockaddr_in *) sa;

		addr[10] = 0xff;
		addr[11] = 0xff;
		memcpy(addr + 12, &s4->sin_addr, 4);
		inet_ntop(AF_INET, &s4->sin_addr, shown, sizeof(shown));
	}
	else if (sa->sa_family == AF_INET6)
	{
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *) sa;

		memcpy(addr, &s6->sin6_addr, 16);
		inet_ntop(AF_INET6, &s6->sin6_addr, shown, sizeof(shown));
	}
	else
	{
		snprintf(why, whylen, "address family %d is not supported", sa->sa_family);
		return false;
	}

	if (aw_allowed != NULL)
		for (int i = 0; i < aw_allowed->n; i++)
			if (aw_in_network(addr, &aw_allowed->nets[i]))
				return true;

	if (!aw_nonpublic_parsed)
	{
		for (size_t i = 0; i < lengthof(aw_nonpublic); i++)
			aw_parse_cidr(aw_nonpublic[i], &aw_nonpublic_nets[i]);
		aw_nonpublic_parsed = true;
	}
	for (size_t i = 0; i < lengthof(aw_nonpublic); i++)
	{
		if (aw_in_network(addr, &aw_nonpublic_nets[i]))
		{
			blocked = aw_nonpublic[i];
			break;
		}
	}
	/* IPv4-mapped IPv6 is checked as the IPv4 address it maps (above) */
	if (blocked == NULL)
		return true;
	snprintf(why, whylen,
			 "address %s is in the non-public network %s; list it in aloro_webhook.allowed_networks to allow it",
			 shown, blocked);
	return false;
}
