/*-------------------------------------------------------------------------
 * http.c
 *		The HTTP client: libcurl's multi interface driven by an epoll set.
 *
 * Every request in flight is an easy handle on one multi handle, so that
 * connections to the same host are kept alive and reused.  libcurl tells us
 * which sockets to watch (socket callback) and when to call it back (timer
 * callback); we keep those sockets in an epoll set of our own, whose single
 * descriptor the worker waits on beside its latch.  Nothing here touches the
 * database, and nothing waits: aw_http_drive() does what is ready and
 * returns.
 *
 * Each request is exactly what the contract says: the stored body bytes,
 * the fixed headers, the signature, no redirects, http/https only, TLS
 * verification on, the address policy applied to every address libcurl is
 * about to connect to.
 *
 * IDENTIFICATION
 *		src/http.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>
#include <curl/curl.h>

#include "lib/ilist.h"
#include "mb/pg_wchar.h"
#include "portability/instr_time.h"

#include "http.h"

/* bytes read and thrown away past the kept prefix before we hang up */
#define AW_DISCARD_LIMIT (64 * 1024)

typedef struct AwRequest
{
	AwClaim    *claim;
	AwResult	result;
	CURL	   *easy;
	struct curl_slist *headers;
	StringInfoData response;
	size_t		discarded;
	bool		cut_short;		/* we stopped reading a long response */
	bool		add_failed;		/* libcurl would not take the request */
	char		errbuf[CURL_ERROR_SIZE];
	char		blocked[256];	/* why the address policy refused, if it did */
	instr_time	start;
	dlist_node	node;
} AwRequest;

static CURLM *aw_multi = NULL;
static int	aw_epfd = -1;
static long aw_timer_ms = -1;	/* libcurl's timer, -1 when none */
static bool aw_msgs_waiting = false;	/* finished requests not yet collected */
static instr_time aw_timer_set;
static dlist_head aw_in_flight = DLIST_STATIC_INIT(aw_in_flight);
static int	aw_n_in_flight = 0;
static int	aw_fd_cap = 0;

/* cached connections were made under an older address policy or CA file */
static bool aw_connections_stale = false;

/* spare easy handles, kept so that their DNS and TLS state is reused */
static CURL **aw_pool = NULL;
static int	aw_pool_n = 0;
static int	aw_pool_size = 0;

/* libcurl's socket callback: mirror its interest in our epoll set */
static int
aw_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		epoll_ctl(aw_epfd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	ev.data.fd = s;
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	if (epoll_ctl(aw_epfd, EPOLL_CTL_MOD, s, &ev) != 0 &&
		epoll_ctl(aw_epfd, EPOLL_CTL_ADD, s, &ev) != 0)
		elog(WARNING, "aloro_webhook could not watch socket %d: %m", (int) s);
	return 0;
}

/* libcurl's timer callback */
static int
aw_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	aw_timer_ms = timeout_ms;
	INSTR_TIME_SET_CURRENT(aw_timer_set);
	return 0;
}

/* keeps the first response_body_limit bytes; hangs up on a flood */
static size_t
aw_write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	AwRequest  *req = (AwRequest *) userp;
	size_t		len = size * nmemb;
	size_t		room = aw_response_body_limit > req->response.len ?
		(size_t) (aw_response_body_limit - req->response.len) : 0;
	size_t		keep = Min(len, room);

	if (keep > 0)
		appendBinaryStringInfo(&req->response, data, keep);
	req->discarded += len - keep;
	if (req->discarded > AW_DISCARD_LIMIT)
	{
		req->cut_short = true;
		return 0;				/* makes libcurl stop with CURLE_WRITE_ERROR */
	}
	return len;
}

/* applies the address policy to each address libcurl is about to connect to */
static curl_socket_t
aw_open_socket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	AwRequest  *req = (AwRequest *) clientp;

	if (!aw_address_allowed(&address->addr, req->blocked, sizeof(req->blocked)))
		return CURL_SOCKET_BAD;
	return socket(address->family, address->socktype, address->protocol);
}

/* how many requests the open-file limit allows in flight */
static int
aw_compute_fd_cap(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 100;
	/* raise the soft limit as far as the hard one allows */
	if (rl.rlim_cur < rl.rlim_max)
	{
		rlim_t		want = Min(rl.rlim_max, (rlim_t) 65536);

		if (want > rl.rlim_cur)
		{
			struct rlimit nl = rl;

			nl.rlim_cur = want;
			if (setrlimit(RLIMIT_NOFILE, &nl) == 0)
				rl.rlim_cur = want;
		}
	}
	if (rl.rlim_cur == RLIM_INFINITY)
		return 10000;
	/*
	 * Leave 128 descriptors to the server (relation files, the WAL) and
	 * count three per request: its connection, a cached idle connection,
	 * and the resolver's.
	 */
	return Max(1, ((int) rl.rlim_cur - 128) / 3);
}

/* a multi handle, with an empty connection cache */
static void
aw_new_multi(void)
{
	aw_multi = curl_multi_init();
	if (aw_multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not create a libcurl multi handle")));
	curl_multi_setopt(aw_multi, CURLMOPT_SOCKETFUNCTION, aw_socket_cb);
	curl_multi_setopt(aw_multi, CURLMOPT_TIMERFUNCTION, aw_timer_cb);
	curl_multi_setopt(aw_multi, CURLMOPT_MAXCONNECTS, (long) Min(aw_fd_cap, 10000));
	aw_timer_ms = -1;
}

/* replaces the multi handle (and so closes its cached connections) if it is idle and stale */
static void
aw_refresh_if_idle(void)
{
	if (!aw_connections_stale || aw_n_in_flight > 0)
		return;
	curl_multi_cleanup(aw_multi);
	aw_new_multi();
	aw_connections_stale = false;
}

/* Sets up libcurl, the multi handle and the epoll set. */
void
aw_http_init(void)
{
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialize libcurl")));
	aw_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (aw_epfd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("could not create epoll set: %m")));
	aw_fd_cap = aw_compute_fd_cap();
	aw_new_multi();
}

/*
 * aw_http_policy_changed
 *		allowed_networks or ca_file changed: connections kept alive were
 *		checked against the old ones, so none of them may be reused.  The
 *		connection cache goes as soon as nothing is in flight; until then new
 *		requests open connections of their own.
 */
void
aw_http_policy_changed(void)
{
	aw_connections_stale = true;
	aw_refresh_if_idle();
}

int
aw_http_epoll_fd(void)
{
	return aw_epfd;
}

int
aw_http_fd_cap(void)
{
	return aw_fd_cap;
}

int
aw_http_in_flight(void)
{
	return aw_n_in_flight;
}

/* milliseconds until libcurl wants to be called, or -1 */
long
aw_http_timeout_ms(void)
{
	instr_time	now;
	long		elapsed;

	if (aw_msgs_waiting)
		return 0;
	if (aw_timer_ms < 0)
		return -1;
	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, aw_timer_set);
	elapsed = (long) INSTR_TIME_GET_MILLISEC(now);
	return aw_timer_ms > elapsed ? aw_timer_ms - elapsed : 0;
}

/* "YYYY-MM-DDTHH:MM:SSZ" into buf */
static void
aw_utc_text(char *buf, size_t len, TimestampTz ts)
{
	StringInfoData s;

	initStringInfo(&s);
	aw_json_utc(&s, ts);
	/* drop the quotes of the JSON form */
	strlcpy(buf, s.data + 1, Min(len, (size_t) s.len - 1));
	pfree(s.data);
}

static void
aw_add_header(AwRequest *req, const char *line)
{
	struct curl_slist *l = curl_slist_append(req->headers, line);

	if (l == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	req->headers = l;
}

static CURL *
aw_easy_get(void)
{
	CURL	   *easy;

	if (aw_pool_n > 0)
		return aw_pool[--aw_pool_n];
	easy = curl_easy_init();
	if (easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	return easy;
}

static void
aw_easy_put(CURL *easy)
{
	curl_easy_reset(easy);
	if (aw_pool_n >= aw_pool_size)
	{
		int			newsize = Max(16, aw_pool_size * 2);
		CURL	  **grown = realloc(aw_pool, sizeof(CURL *) * newsize);

		if (grown == NULL)
		{
			curl_easy_cleanup(easy);
			return;
		}
		aw_pool = grown;
		aw_pool_size = newsize;
	}
	aw_pool[aw_pool_n++] = easy;
}

/*
 * aw_http_start
 *		Puts one attempt of a claimed delivery in flight.  All it allocates
 *		lives in the claim's memory context.
 */
void
aw_http_start(AwClaim *claim)
{
	MemoryContext old = MemoryContextSwitchTo(claim->cxt);
	AwRequest  *req = palloc0(sizeof(AwRequest));
	char		line[256];
	char		when[32];
	CURL	   *easy;
	CURLMcode	mc;

	req->claim = claim;
	req->result.id = claim->id;
	req->result.webhook_id = claim->webhook_id;
	req->result.ctid = claim->ctid;
	req->result.attempt = claim->attempts + 1;
	req->result.record_attempt = true;
	req->result.started_at = GetCurrentTimestamp();
	INSTR_TIME_SET_CURRENT(req->start);
	initStringInfo(&req->response);

	aw_add_header(req, "Content-Type: application/json");
	if (claim->secret != NULL)
	{
		char		hex[65];

		aw_hmac_sha256_hex(claim->secret, strlen(claim->secret),
						   claim->body, strlen(claim->body), hex);
		snprintf(line, sizeof(line), "X-Aloro-Signature: sha256=%s", hex);
		aw_add_header(req, line);
		/* the secret is not needed any more: don't keep it around */
		explicit_bzero(claim->secret, strlen(claim->secret));
	}
	aw_utc_text(when, sizeof(when), req->result.started_at);
	snprintf(line, sizeof(line), "X-Aloro-Timestamp: %s", when);
	aw_add_header(req, line);
	snprintf(line, sizeof(line), "X-Aloro-Delivery: " INT64_FORMAT, claim->id);
	aw_add_header(req, line);
	aw_add_header(req, "User-Agent: " AW_USER_AGENT);
	aw_add_header(req, "Expect:");	/* no 100-continue round trip */

	req->easy = easy = aw_easy_get();
	aw_refresh_if_idle();
	if (aw_connections_stale)
	{
		/* neither reuse a connection checked under the old policy nor keep this one */
		curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);
	}
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	curl_easy_setopt(easy, CURLOPT_URL, claim->url);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, claim->body);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(claim->body));
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(easy, CURLOPT_PROXY, "");	/* never a proxy from the environment */
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) aw_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) aw_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (aw_ca_file != NULL && aw_ca_file[0] != '\0')
		curl_easy_setopt(easy, CURLOPT_CAINFO, aw_ca_file);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, aw_write_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, aw_open_socket_cb);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, req);

	dlist_push_tail(&aw_in_flight, &req->node);
	aw_n_in_flight++;
	mc = curl_multi_add_handle(aw_multi, easy);
	if (mc != CURLM_OK)
	{
		req->add_failed = true;
		snprintf(req->errbuf, sizeof(req->errbuf), "could not start the request: %s",
				 curl_multi_strerror(mc));
	}
	MemoryContextSwitchTo(old);
}

/* response bytes as storable text: valid UTF-8, no NUL, in the server encoding */
static char *
aw_clean_text(const char *data, int len)
{
	StringInfoData out;
	bool		ascii_only = GetDatabaseEncoding() != PG_UTF8 &&
		GetDatabaseEncoding() != PG_SQL_ASCII;
	int			i = 0;

	initStringInfo(&out);
	while (i < len)
	{
		unsigned char c = (unsigned char) data[i];
		int			l = pg_utf_mblen((const unsigned char *) data + i);

		if (c == 0)
		{
			appendStringInfoChar(&out, '?');
			i++;
		}
		else if (c < 0x80)
		{
			appendStringInfoChar(&out, (char) c);
			i++;
		}
		else if (!ascii_only && i + l <= len &&
				 pg_utf8_islegal((const unsigned char *) data + i, l))
		{
			appendBinaryStringInfo(&out, data + i, l);
			i += l;
		}
		else
		{
			/* a broken sequence, or one cut by the size limit */
			appendStringInfoChar(&out, '?');
			i++;
		}
	}
	return out.data;
}

/* fills in the result of a finished request */
static void
aw_finish(AwRequest *req, CURLcode code)
{
	AwResult   *r = &req->result;
	long		status = 0;
	instr_time	elapsed;
	MemoryContext old = MemoryContextSwitchTo(req->claim->cxt);

	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, req->start);
	r->duration_ms = (int) Min(INSTR_TIME_GET_MILLISEC(elapsed), (double) PG_INT32_MAX);

	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	if (code == CURLE_WRITE_ERROR && req->cut_short && status > 0)
		code = CURLE_OK;		/* we hung up on a long body: the status stands */

	/* a status line that came before an error still counts as the status */
	r->http_status = status > 0 ? (int) status : 0;

	if (aw_response_body_limit > 0 && (req->response.len > 0 || r->http_status > 0))
		r->response_body = aw_clean_text(req->response.data, req->response.len);

	if (code == CURLE_OK && status >= 200 && status < 300)
		r->error = NULL;
	else if (req->blocked[0] != '\0')
		r->error = psprintf("connection refused by policy: %s", req->blocked);
	else if (code == CURLE_OPERATION_TIMEDOUT)
		r->error = psprintf("timeout: no complete response within %d ms (aloro_webhook.timeout)",
							aw_timeout_ms);
	else if (code != CURLE_OK)
		r->error = psprintf("%s%s%s", curl_easy_strerror(code),
							req->errbuf[0] ? ": " : "", req->errbuf);
	else if (status >= 300 && status < 400)
		r->error = psprintf("HTTP %ld: redirects are not followed", status);
	else
		r->error = psprintf("HTTP %ld", status);

	if (req->headers)
		curl_slist_free_all(req->headers);
	req->headers = NULL;
	MemoryContextSwitchTo(old);
}

/* takes a request off the multi handle and returns its easy handle to the pool */
static void
aw_detach(AwRequest *req)
{
	if (!req->add_failed)
		curl_multi_remove_handle(aw_multi, req->easy);
	aw_easy_put(req->easy);
	req->easy = NULL;
	dlist_delete(&req->node);
	aw_n_in_flight--;
}

/*
 * aw_http_drive
 *		Lets libcurl act on every socket that is ready and on its timer, and
 *		returns the requests that finished (up to max) in done[].
 */
int
aw_http_drive(AwResult **done, AwClaim **done_claims, int max)
{
	struct epoll_event evs[64];
	int			running = 0;
	int			n;
	int			ndone = 0;
	CURLMsg    *msg;
	int			left;
	dlist_mutable_iter it;

	/* requests that could not even be added */
	dlist_foreach_modify(it, &aw_in_flight)
	{
		AwRequest  *req = dlist_container(AwRequest, node, it.cur);

		if (req->add_failed && ndone < max)
		{
			aw_finish(req, CURLE_FAILED_INIT);
			aw_detach(req);
			done[ndone] = &req->result;
			done_claims[ndone++] = req->claim;
		}
	}

	do
	{
		n = epoll_wait(aw_epfd, evs, lengthof(evs), 0);
		for (int i = 0; i < n; i++)
		{
			int			flags = 0;

			if (evs[i].events & EPOLLIN)
				flags |= CURL_CSELECT_IN;
			if (evs[i].events & EPOLLOUT)
				flags |= CURL_CSELECT_OUT;
			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				flags |= CURL_CSELECT_ERR;
			curl_multi_socket_action(aw_multi, evs[i].data.fd, flags, &running);
		}
	} while (n == lengthof(evs));

	if (aw_timer_ms >= 0 && aw_http_timeout_ms() == 0)
	{
		aw_timer_ms = -1;
		curl_multi_socket_action(aw_multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}

	left = 0;
	while (ndone < max && (msg = curl_multi_info_read(aw_multi, &left)) != NULL)
	{
		AwRequest  *req;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		aw_finish(req, msg->data.result);
		aw_detach(req);
		done[ndone] = &req->result;
		done_claims[ndone++] = req->claim;
	}
	/* more finished than fit in this batch: come back without sleeping */
	aw_msgs_waiting = left > 0;
	return ndone;
}

/*
 * aw_http_abandon_all
 *		Drops every request in flight without a result, for shutdown or when
 *		the extension went away.  Their deliveries stay claimed in the table,
 *		and the next worker start makes them due again.
 */
void
aw_http_abandon_all(void)
{
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &aw_in_flight)
	{
		AwRequest  *req = dlist_container(AwRequest, node, it.cur);

		if (req->headers)
			curl_slist_free_all(req->headers);
		aw_detach(req);
		MemoryContextDelete(req->claim->cxt);
	}
}
