/*-------------------------------------------------------------------------
 * settings.c
 *		The aloro_webhook.* settings: their variables, their definitions
 *		(names, descriptions, defaults, bounds, contexts) and the check hook
 *		of aloro_webhook.proxy.
 *
 * The check and assign hooks of the settings that need parsing live with
 * the code that uses them: retry_schedule in schedule.c, allowed_networks
 * in url.c.
 *
 * IDENTIFICATION
 *		src/settings.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "utils/guc.h"
#include "utils/memutils.h"

/* the settings, at their defaults until _PG_init defines them */
char	   *aw_database_name = NULL;
char	   *aw_retry_schedule = NULL;
int			aw_timeout_ms = 5000;
char	   *aw_ca_file = NULL;
char	   *aw_allowed_networks = NULL;
int			aw_max_in_flight = 256;
int			aw_max_in_flight_per_webhook = 32;
int			aw_response_body_limit = 4096;
int			aw_idle_check_ms = 60000;
int			aw_batch_size = 200;
int			aw_max_payload_size = 1024 * 1024;
int			aw_max_in_flight_bytes = 32 * 1024 * 1024;
bool		aw_copy_ends_calls = false;
int			aw_retention_s = 30 * 86400;
int			aw_failed_retention_s = 90 * 86400;
int			aw_disable_after_failures = 100;
double		aw_retry_jitter = 0.0;
int			aw_max_retry_after_s = 3600;
char	   *aw_proxy = NULL;
int			aw_workers = 1;

/* GUC check hook: empty, or http://host[:port] */
static bool
aw_check_proxy(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;

	if (v == NULL || v[0] == '\0')
		return true;
	if (strncmp(v, "http://", 7) != 0 || v[7] == '\0' || strpbrk(v, " \t\r\n") != NULL)
	{
		GUC_check_errmsg("invalid aloro_webhook.proxy \"%s\": not an http:// proxy address", v);
		GUC_check_errhint("Give the forward proxy as http://host:port, or empty for direct connections.");
		return false;
	}
	return true;
}

/*
 * aw_define_settings
 *		Defines every aloro_webhook.* setting (from _PG_init) and reserves the
 *		prefix.
 */
void
aw_define_settings(void)
{
	DefineCustomStringVariable("aloro_webhook.database_name",
							   "Database in which the delivery worker runs.",
							   NULL,
							   &aw_database_name,
							   "postgres",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("aloro_webhook.retry_schedule",
							   "Comma-separated delays before each attempt; its length is the number of attempts.",
							   "Entry k is the delay before attempt k: the first after queuing, later ones after the previous failure.",
							   &aw_retry_schedule,
							   "0, 1min, 5min, 15min, 1h",
							   PGC_SIGHUP,
							   0,
							   aw_check_retry_schedule, aw_assign_retry_schedule, NULL);

	DefineCustomIntVariable("aloro_webhook.timeout",
							"Time limit for one attempt, from connect to the last byte.",
							NULL,
							&aw_timeout_ms,
							5000, 1, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("aloro_webhook.ca_file",
							   "PEM bundle of certificate authorities trusted for https receivers; empty means the system store.",
							   NULL,
							   &aw_ca_file,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("aloro_webhook.allowed_networks",
							   "CIDR list of non-public networks that receivers may resolve to.",
							   "Loopback, private, link-local and other non-public addresses are refused at connect time unless listed here.",
							   &aw_allowed_networks,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY,
							   aw_check_allowed_networks, aw_assign_allowed_networks, NULL);

	DefineCustomIntVariable("aloro_webhook.max_in_flight",
							"Most requests the worker keeps in flight at once.",
							"Also capped by the worker's open-file limit.",
							&aw_max_in_flight,
							256, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.max_in_flight_per_webhook",
							"Most requests in flight to one webhook, so that a slow endpoint holds only its own slots.",
							NULL,
							&aw_max_in_flight_per_webhook,
							32, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.max_in_flight_bytes",
							"Most body bytes the worker keeps in flight at once.",
							"Bounds the worker's memory, and gives each request the time to be sent; a body larger than this goes alone.",
							&aw_max_in_flight_bytes,
							32 * 1024 * 1024, 64 * 1024, MaxAllocSize,
							PGC_SIGHUP,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.response_body_limit",
							"Bytes of each response body kept in delivery_attempts.response_body.",
							NULL,
							&aw_response_body_limit,
							4096, 0, 1024 * 1024,
							PGC_SIGHUP,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.batch_size",
							"Most deliveries claimed, or results recorded, in one worker transaction.",
							NULL,
							&aw_batch_size,
							200, 1, 10000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.idle_check_interval",
							"Longest the idle worker sleeps before looking for due deliveries it was not woken for.",
							"Commits that queue work wake the worker at once; this only covers wake-ups that cannot be sent, such as COMMIT PREPARED.",
							&aw_idle_check_ms,
							60000, 100, 3600 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.max_payload_size",
							"Largest body sent; a delivery whose body is larger fails without being sent.",
							"The call still ends; raise the setting and redeliver to send it.",
							&aw_max_payload_size,
							1024 * 1024, 1, MaxAllocSize / 2,
							PGC_SIGHUP,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.workers",
							"Delivery worker processes sharing the queue.",
							"Each takes an equal share of max_in_flight, max_in_flight_bytes, max_in_flight_per_webhook and every rate_limit, so the totals hold.",
							&aw_workers,
							1, 1, AW_MAX_WORKERS,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);

	DefineCustomStringVariable("aloro_webhook.proxy",
							   "HTTP forward proxy every request goes through, as http://host:port; empty: direct.",
							   "The address policy then applies to the proxy's address; the proxy resolves and reaches the receivers.",
							   &aw_proxy,
							   "",
							   PGC_SIGHUP,
							   0,
							   aw_check_proxy, NULL, NULL);

	DefineCustomBoolVariable("aloro_webhook.copy_ends_calls",
							 "Whether COPY into a watched table ends the calls it loads.",
							 "Off: COPY loads calls as they are (a restore, a backfill) and queues nothing.",
							 &aw_copy_ends_calls,
							 false,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.retention",
							"How long succeeded deliveries and their attempts are kept after they finish.",
							"The worker prunes older ones in small batches; 0 keeps them for good.",
							&aw_retention_s,
							30 * 86400, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.failed_retention",
							"How long failed deliveries and their attempts are kept after they finish.",
							"The worker prunes older ones in small batches; 0 keeps them for good.",
							&aw_failed_retention_s,
							90 * 86400, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.disable_after_failures",
							"Consecutive failed deliveries that disable a webhook (0: never).",
							"A disabled webhook keeps its deliveries, and those of calls that end meanwhile, until it is enabled again.",
							&aw_disable_after_failures,
							100, 0, 1000000,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomRealVariable("aloro_webhook.retry_jitter",
							 "Fraction of random spread on each retry delay.",
							 "0.2 makes a 5min delay anything from 4 to 6 minutes.",
							 &aw_retry_jitter,
							 0.0, 0.0, 1.0,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("aloro_webhook.max_retry_after",
							"Longest wait a receiver's Retry-After (on 429 and 503) can impose before the next attempt.",
							NULL,
							&aw_max_retry_after_s,
							3600, 0, 366 * 86400,
							PGC_SIGHUP,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("aloro_webhook");
}

