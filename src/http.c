/*-------------------------------------------------------------------------
 * http.c
 *		The HTTP client: libcurl's multi interface driven by an epoll set.
 *
 * Every request in flight is an easy handle on one multi handle, so that
 * connections to the same host are kept alive and reused.  libcurl tells us
 * which sockets to watch (http_conn.c keeps them in an epoll set, whose one
 * descriptor the worker waits on beside its latch) and when to call it back
 * (timer callback).  Nothing here touches the database, and nothing waits:
 * aw_http_drive() does what is ready and returns.
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
#include <curl/curl.h>

#include "lib/ilist.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "mb/pg_wchar.h"
#include "portability/instr_time.h"

#include "http.h"
#include "http_conn.h"

/* bytes read and thrown away past the kept prefix before we hang up */
#define AW_DISCARD_LIMIT (64 * 1024)

typedef struct AwRequest
{
	AwClaim    *claim;
	AwResult	result;
	CURL	   *easy;
	struct curl_slist *headers;
	char	   *response;		/* malloc'd, at most response_body_limit bytes */
	size_t		response_len;
	size_t		response_cap;
	size_t		response_alloc;
	size_t		discarded;
	bool		cut_short;		/* we stopped reading a long response */
	bool		in_final;		/* the status line seen last is a final one (>= 200) */
	bool		headers_done;	/* the final response's headers ended (blank line) */
	bool		add_failed;		/* libcurl would not take the request */
	size_t		body_len;
	char		errbuf[CURL_ERROR_SIZE];
	char		blocked[AW_WHY_LEN];	/* why the address policy refused, if it did */
	instr_time	start;
	dlist_node	node;
} AwRequest;

static CURLM *aw_multi = NULL;
static long aw_timer_ms = -1;	/* libcurl's timer, -1 when none */
static bool aw_msgs_waiting = false;	/* finished requests not yet collected */
static instr_time aw_timer_set;
static dlist_head aw_in_flight = DLIST_STATIC_INIT(aw_in_flight);
static int	aw_n_in_flight = 0;
static int64 aw_bytes_in_flight = 0;	/* body bytes of the requests in flight */

/* requests in flight per webhook: counted where they start and where they end */
typedef struct AwHookCount
{
	int64		webhook_id;		/* hash key */
	int			n;
} AwHookCount;
static HTAB *aw_hook_counts = NULL;

/* cached connections were made under an older address policy or CA file */
static bool aw_connections_stale = false;

/* spare easy handles, kept so that their DNS and TLS state is reused */
static CURL **aw_pool = NULL;
static int	aw_pool_n = 0;
static int	aw_pool_size = 0;

/* libcurl's timer callback */
static int
aw_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	aw_timer_ms = timeout_ms;
	INSTR_TIME_SET_CURRENT(aw_timer_set);
	return 0;
}

/*
 * Keeps the first response_body_limit bytes; hangs up on a flood.  Like
 * every libcurl callback here it cannot raise an error: it only copies into
 * a buffer allocated before the request started.
 */
static size_t
aw_write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	AwRequest  *req = (AwRequest *) userp;
	size_t		len = size * nmemb;
	size_t		room = req->response_cap - req->response_len;
	size_t		keep = Min(len, room);

	if (keep > 0)
	{
		/* grow to what is needed, never past response_body_limit */
		size_t		want = Min(req->response_cap, Max(req->response_len + keep, (size_t) 1024));
		char	   *grown = want > req->response_alloc ? realloc(req->response, want) : req->response;

		if (grown == NULL)
			keep = 0;			/* out of memory: keep what we have */
		else
		{
			if (want > req->response_alloc)
				req->response_alloc = want;
			req->response = grown;
			memcpy(req->response + req->response_len, data, keep);
			req->response_len += keep;
		}
	}
	req->discarded += len - keep;
	if (req->discarded > AW_DISCARD_LIMIT)
	{
		req->cut_short = true;
		return 0;				/* makes libcurl stop with CURLE_WRITE_ERROR */
	}
	return len;
}

/* records where the final response's headers end */
static size_t
aw_header_cb(char *buf, size_t size, size_t nitems, void *userp)
{
	AwRequest  *req = (AwRequest *) userp;
	size_t		len = size * nitems;

	if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0)
	{
		/* a status line: "HTTP/1.1 200 OK", "HTTP/2 204" */
		const char *sp = memchr(buf, ' ', len);
		int			code = 0;

		if (sp != NULL)
			for (const char *p = sp + 1; p < buf + len && *p >= '0' && *p <= '9'; p++)
				code = code * 10 + (*p - '0');
		req->in_final = code >= 200;
		req->headers_done = false;
	}
	else if ((len == 2 && buf[0] == '\r' && buf[1] == '\n') || (len == 1 && buf[0] == '\n'))
	{
		if (req->in_final)
			req->headers_done = true;
	}
	return len;
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
	curl_multi_setopt(aw_multi, CURLMOPT_SOCKETFUNCTION, aw_conn_socket_cb);
	curl_multi_setopt(aw_multi, CURLMOPT_TIMERFUNCTION, aw_timer_cb);
	curl_multi_setopt(aw_multi, CURLMOPT_MAXCONNECTS, (long) Min(aw_conn_fd_cap(), 10000));
	aw_timer_ms = -1;
}

/* Sets up libcurl, the socket layer and the multi handle. */
void
aw_http_init(void)
{
	HASHCTL		ctl;

	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialize libcurl")));
	aw_conn_init();
	aw_new_multi();
	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(AwHookCount);
	ctl.hcxt = TopMemoryContext;
	aw_hook_counts = hash_create("aloro_webhook requests per webhook", 64, &ctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* Calls fn for each webhook with requests in flight, with how many. */
void
aw_http_each_webhook(void (*fn) (int64 webhook_id, int n, void *arg), void *arg)
{
	HASH_SEQ_STATUS seq;
	AwHookCount *c;

	hash_seq_init(&seq, aw_hook_counts);
	while ((c = hash_seq_search(&seq)) != NULL)
		fn(c->webhook_id, c->n, arg);
}

static void
aw_hook_count_add(int64 webhook_id, int delta)
{
	bool		found;
	AwHookCount *c = hash_search(aw_hook_counts, &webhook_id, HASH_ENTER, &found);

	c->n = (found ? c->n : 0) + delta;
	if (c->n <= 0)
		hash_search(aw_hook_counts, &webhook_id, HASH_REMOVE, NULL);
}

/*
 * aw_http_policy_changed
 *		allowed_networks or ca_file changed: connections kept alive were
 *		checked against the old ones, so none of them may be reused.  The
 *		worker starts nothing new until the requests in flight are done (at
 *		most aloro_webhook.timeout), and the connection cache goes with the
 *		multi handle.
 */
void
aw_http_policy_changed(void)
{
	aw_connections_stale = true;
	aw_http_ready_for_new();
}

/* May new requests start?  Replaces a stale connection cache once idle. */
bool
aw_http_ready_for_new(void)
{
	if (!aw_connections_stale)
		return true;
	if (aw_n_in_flight > 0)
		return false;
	curl_multi_cleanup(aw_multi);
	aw_new_multi();
	aw_connections_stale = false;
	return true;
}

int
aw_http_epoll_fd(void)
{
	return aw_conn_epoll_fd();
}

int
aw_http_fd_cap(void)
{
	return aw_conn_fd_cap();
}

int
aw_http_in_flight(void)
{
	return aw_n_in_flight;
}

int64
aw_http_bytes_in_flight(void)
{
	return aw_bytes_in_flight;
}

/* did more requests finish than the last aw_http_drive() could return? */
bool
aw_http_results_waiting(void)
{
	return aw_msgs_waiting;
}

/* milliseconds until libcurl wants to be called, or -1 */
long
aw_http_timeout_ms(void)
{
	instr_time	now;
	long		elapsed;

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
	req->response_cap = aw_response_body_limit;
	req->response = NULL;		/* malloc'd by the write callback as bytes come */

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
	{
		/* this bundle instead of the system store, not beside it */
		curl_easy_setopt(easy, CURLOPT_CAINFO, aw_ca_file);
		curl_easy_setopt(easy, CURLOPT_CAPATH, NULL);
	}
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, aw_write_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, aw_conn_open_socket_cb);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, req->blocked);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, aw_conn_close_socket_cb);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, aw_header_cb);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);

	dlist_push_tail(&aw_in_flight, &req->node);
	aw_n_in_flight++;
	req->body_len = strlen(claim->body);
	aw_bytes_in_flight += req->body_len;
	aw_hook_count_add(claim->webhook_id, 1);
	mc = curl_multi_add_handle(aw_multi, easy);
	if (mc != CURLM_OK)
	{
		req->add_failed = true;
		aw_msgs_waiting = true; /* collected at the next drive, without a wait */
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

	/* a transfer that ended inside the final response's headers is no response */
	if (code == CURLE_OK && !req->headers_done)
		code = CURLE_RECV_ERROR;

	/*
	 * A final status line that came before an error still counts as the
	 * status; an interim 1xx alone is no response.
	 */
	r->http_status = status >= 200 ? (int) status : 0;

	if (req->response_cap > 0 && (req->response_len > 0 || r->http_status > 0))
		r->response_body = aw_clean_text(req->response ? req->response : "", (int) req->response_len);

	if (code == CURLE_OK && status >= 200 && status < 300)
		r->error = NULL;
	else if (req->blocked[0] != '\0' && code == CURLE_COULDNT_CONNECT && status == 0)
		r->error = psprintf("connection refused by policy: %s", req->blocked);
	else if (code == CURLE_OPERATION_TIMEDOUT)
		r->error = psprintf("timeout: no complete response within %d ms (aloro_webhook.timeout)",
							aw_timeout_ms);
	else if (code == CURLE_RECV_ERROR && !req->headers_done && req->errbuf[0] == '\0')
		r->error = pstrdup("the connection closed before the response headers were complete");
	else if (code != CURLE_OK)
		r->error = psprintf("%s%s%s", curl_easy_strerror(code),
							req->errbuf[0] ? ": " : "", req->errbuf);
	else if (status >= 300 && status < 400)
		r->error = psprintf("HTTP %ld: redirects are not followed", status);
	else
		r->error = psprintf("HTTP %ld", status);

	MemoryContextSwitchTo(old);
}

/* takes a request off the multi handle and returns its easy handle to the pool */
static void
aw_detach(AwRequest *req)
{
	if (!req->add_failed)
		curl_multi_remove_handle(aw_multi, req->easy);
	/* the header list may go only once libcurl no longer holds the handle */
	if (req->headers)
		curl_slist_free_all(req->headers);
	req->headers = NULL;
	aw_easy_put(req->easy);
	req->easy = NULL;
	dlist_delete(&req->node);
	aw_n_in_flight--;
	aw_bytes_in_flight -= req->body_len;
	aw_hook_count_add(req->claim->webhook_id, -1);
	if (req->response != NULL)
		free(req->response);
	req->response = NULL;
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
	bool		more;
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
		n = aw_conn_ready(evs, lengthof(evs), &more);
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
	} while (more);

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

		aw_detach(req);
		MemoryContextDelete(req->claim->cxt);
	}
}
