/*-------------------------------------------------------------------------
 * http.c
 *		The HTTP transport: libcurl's multi interface driven by an epoll set.
 *
 * A request in (URL, header lines, body, limits), a response out (status,
 * the headers that matter, the first bytes of the body, why it failed,
 * timings).  It knows no webhooks, deliveries or signatures (request.c
 * does); nothing here touches the database, and nothing waits:
 * aw_http_drive() does what is ready and returns.
 *
 * Every request in flight is an easy handle on one multi handle, so that
 * connections to the same host are kept alive and reused.  libcurl tells us
 * which sockets to watch (http_conn.c keeps them in an epoll set, whose one
 * descriptor the worker waits on beside its latch) and when to call it back
 * (the timer callback).  POST only, the body sent as given, no redirects
 * followed, http and https only, TLS verified, never a proxy from the
 * environment, and the address policy applied to every address libcurl is
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
#include "portability/instr_time.h"
#include "utils/memutils.h"

#include "http.h"
#include "http_conn.h"

/* bytes read and thrown away past the kept prefix before we hang up */
#define AW_DISCARD_LIMIT (64 * 1024)
/* room for a Retry-After value ("Wed, 21 Oct 2015 07:28:00 GMT", or seconds) */
#define AW_RETRY_AFTER_LEN 64

/* what the transport keeps of a request while it is in flight */
typedef struct AwHttpHandle
{
	AwHttpRequest *req;
	CURL	   *easy;
	struct curl_slist *headers;
	char	   *response;		/* malloc'd, at most response_limit bytes */
	size_t		response_len;
	size_t		response_alloc;
	size_t		discarded;
	bool		cut_short;		/* we stopped reading a long response */
	bool		in_final;		/* the status line seen last is a final one (>= 200) */
	bool		headers_done;	/* the final response's headers ended (blank line) */
	bool		add_failed;		/* libcurl would not take the request */
	char		retry_after[AW_RETRY_AFTER_LEN];
	char		errbuf[CURL_ERROR_SIZE];
	char		blocked[AW_WHY_LEN];	/* why the address policy refused, if it did */
	instr_time	start;
	dlist_node	node;
} AwHttpHandle;

static CURLM *aw_multi = NULL;
static long aw_timer_ms = -1;	/* libcurl's timer, -1 when none */
static bool aw_msgs_waiting = false;	/* finished requests not yet collected */
static instr_time aw_timer_set;
static dlist_head aw_in_flight = DLIST_STATIC_INIT(aw_in_flight);
static int	aw_n_in_flight = 0;

/* cached connections were made under an older address policy or CA file */
static bool aw_connections_stale = false;

/* spare easy handles, kept so that their DNS and TLS state is reused */
static CURL **aw_pool = NULL;
static int	aw_pool_n = 0;
static int	aw_pool_size = 0;

static void aw_easy_pool_clear(void);

/* libcurl's timer callback */
static int
aw_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	aw_timer_ms = timeout_ms;
	INSTR_TIME_SET_CURRENT(aw_timer_set);
	return 0;
}

/*
 * Keeps the first response_limit bytes; hangs up on a flood.  Like every
 * libcurl callback here it cannot raise an error: it only copies into
 * malloc'd memory, and keeps what it has when there is no more.
 */
static size_t
aw_write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	AwHttpHandle *h = (AwHttpHandle *) userp;
	size_t		len = size * nmemb;
	size_t		limit = h->req->response_limit;
	size_t		room = limit - h->response_len;
	size_t		keep = Min(len, room);

	if (keep > 0)
	{
		/* grow to what is needed, never past response_limit */
		size_t		want = Min(limit, Max(h->response_len + keep, (size_t) 1024));
		char	   *grown = want > h->response_alloc ? realloc(h->response, want) : h->response;

		if (grown == NULL)
			keep = 0;			/* out of memory: keep what we have */
		else
		{
			if (want > h->response_alloc)
				h->response_alloc = want;
			h->response = grown;
			memcpy(h->response + h->response_len, data, keep);
			h->response_len += keep;
		}
	}
	h->discarded += len - keep;
	if (h->discarded > AW_DISCARD_LIMIT)
	{
		h->cut_short = true;
		return 0;				/* makes libcurl stop with CURLE_WRITE_ERROR */
	}
	return len;
}

/* records where the final response's headers end, and its Retry-After */
static size_t
aw_header_cb(char *buf, size_t size, size_t nitems, void *userp)
{
	AwHttpHandle *h = (AwHttpHandle *) userp;
	size_t		len = size * nitems;

	if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0)
	{
		/* a status line: "HTTP/1.1 200 OK", "HTTP/2 204" */
		const char *sp = memchr(buf, ' ', len);
		int			code = 0;

		if (sp != NULL)
			for (const char *p = sp + 1; p < buf + len && *p >= '0' && *p <= '9'; p++)
				code = code * 10 + (*p - '0');
		h->in_final = code >= 200;
		h->headers_done = false;
		h->retry_after[0] = '\0';
	}
	else if ((len == 2 && buf[0] == '\r' && buf[1] == '\n') || (len == 1 && buf[0] == '\n'))
	{
		if (h->in_final)
			h->headers_done = true;
	}
	else if (len > 12 && pg_strncasecmp(buf, "retry-after:", 12) == 0)
	{
		const char *v = buf + 12;
		const char *end = buf + len;
		size_t		n;

		while (v < end && (*v == ' ' || *v == '\t'))
			v++;
		while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
			end--;
		n = Min((size_t) (end - v), sizeof(h->retry_after) - 1);
		memcpy(h->retry_after, v, n);
		h->retry_after[n] = '\0';
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
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not initialize libcurl")));
	aw_conn_init();
	aw_new_multi();
}

/*
 * aw_http_policy_changed
 *		allowed_networks or ca_file changed: connections kept alive were
 *		checked against the old ones, so none of them may be reused.  Nothing
 *		new should start until the requests in flight are done (at most their
 *		timeout), and the connection cache goes with the multi handle.
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
	aw_easy_pool_clear();
	aw_new_multi();
	aw_connections_stale = false;
	return true;
}

int
aw_http_epoll_fd(void)
{
	return aw_conn_epoll_fd();
}

/* how many requests the open-file limit allows in flight */
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

/*
 * The options every request of ours has, set once on a new handle: the
 * pooled handles keep them between requests (a new policy drops the pool).
 */
static void
aw_easy_configure(CURL *easy)
{
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	/* aloro_webhook.proxy, never one from the environment */
	curl_easy_setopt(easy, CURLOPT_PROXY, aw_proxy != NULL ? aw_proxy : "");
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
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
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, aw_conn_open_socket_cb);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, aw_conn_close_socket_cb);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, aw_header_cb);
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
	aw_easy_configure(easy);
	return easy;
}

/* a handle back to the pool, its options kept */
static void
aw_easy_put(CURL *easy)
{
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

/* the pooled handles go: they were set up under the old policy */
static void
aw_easy_pool_clear(void)
{
	while (aw_pool_n > 0)
		curl_easy_cleanup(aw_pool[--aw_pool_n]);
}

/*
 * aw_http_start
 *		Puts a request in flight.  What it allocates lives in req->cxt, or is
 *		malloc'd and freed when the request finishes.
 */
void
aw_http_start(AwHttpRequest *req)
{
	AwHttpHandle *h = MemoryContextAllocZero(req->cxt, sizeof(AwHttpHandle));
	CURL	   *easy;
	CURLMcode	mc;

	h->req = req;
	req->handle = h;
	req->started_at = GetCurrentTimestamp();
	INSTR_TIME_SET_CURRENT(h->start);

	for (int i = 0; i < req->nheaders; i++)
	{
		struct curl_slist *l = curl_slist_append(h->headers, req->headers[i]);

		if (l == NULL)
		{
			curl_slist_free_all(h->headers);
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		}
		h->headers = l;
	}

	/* what changes from one request to the next (aw_easy_configure set the rest) */
	h->easy = easy = aw_easy_get();
	curl_easy_setopt(easy, CURLOPT_PRIVATE, h);
	curl_easy_setopt(easy, CURLOPT_URL, req->url);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h->headers);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) req->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) req->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, h);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, h->errbuf);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, h->blocked);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, h);

	dlist_push_tail(&aw_in_flight, &h->node);
	aw_n_in_flight++;
	mc = curl_multi_add_handle(aw_multi, easy);
	if (mc != CURLM_OK)
	{
		h->add_failed = true;
		aw_msgs_waiting = true; /* collected at the next drive, without a wait */
		snprintf(h->errbuf, sizeof(h->errbuf), "could not start the request: %s",
				 curl_multi_strerror(mc));
	}
}

/* fills in the "out" fields of a finished request */
static void
aw_finish(AwHttpHandle *h, CURLcode code)
{
	AwHttpRequest *req = h->req;
	long		status = 0;
	instr_time	elapsed;

	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, h->start);
	req->duration_ms = (int) Min(INSTR_TIME_GET_MILLISEC(elapsed), (double) PG_INT32_MAX);

	curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
	if (code == CURLE_WRITE_ERROR && h->cut_short && status > 0)
		code = CURLE_OK;		/* we hung up on a long body: the status stands */
	/* a transfer that ended inside the final response's headers is no response */
	if (code == CURLE_OK && !h->headers_done)
		code = CURLE_RECV_ERROR;

	/*
	 * A final status line that came before an error still counts as the
	 * status; an interim 1xx alone is no response.
	 */
	req->status = status >= 200 ? (int) status : 0;
	req->response_len = h->response_len;
	req->response = MemoryContextAlloc(req->cxt, h->response_len + 1);
	if (h->response_len > 0)
		memcpy(req->response, h->response, h->response_len);
	req->response[h->response_len] = '\0';
	req->retry_after = h->retry_after[0] ? MemoryContextStrdup(req->cxt, h->retry_after) : NULL;

	if (code == CURLE_OK)
		req->failure = AW_HTTP_OK;
	else if (h->blocked[0] != '\0' && code == CURLE_COULDNT_CONNECT && status == 0)
	{
		req->failure = AW_HTTP_REFUSED;
		req->detail = MemoryContextStrdup(req->cxt, h->blocked);
	}
	else if (code == CURLE_OPERATION_TIMEDOUT)
		req->failure = AW_HTTP_TIMEOUT;
	else if (code == CURLE_RECV_ERROR && !h->headers_done && h->errbuf[0] == '\0')
		req->failure = AW_HTTP_INCOMPLETE;
	else
	{
		MemoryContext old = MemoryContextSwitchTo(req->cxt);

		req->failure = AW_HTTP_OTHER;
		req->detail = psprintf("%s%s%s", curl_easy_strerror(code), h->errbuf[0] ? ": " : "", h->errbuf);
		MemoryContextSwitchTo(old);
	}
}

/* takes a request off the multi handle and returns its easy handle to the pool */
static void
aw_detach(AwHttpHandle *h)
{
	if (!h->add_failed)
		curl_multi_remove_handle(aw_multi, h->easy);
	/* the header list may go only once libcurl no longer holds the handle */
	if (h->headers)
		curl_slist_free_all(h->headers);
	h->headers = NULL;
	aw_easy_put(h->easy);
	h->easy = NULL;
	dlist_delete(&h->node);
	aw_n_in_flight--;
	if (h->response != NULL)
		free(h->response);
	h->response = NULL;
	h->req->handle = NULL;
}

/*
 * aw_http_drive
 *		Lets libcurl act on every socket that is ready and on its timer, and
 *		returns the requests that finished (up to max) in done[].
 */
int
aw_http_drive(AwHttpRequest **done, int max)
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
		AwHttpHandle *h = dlist_container(AwHttpHandle, node, it.cur);

		if (h->add_failed && ndone < max)
		{
			AwHttpRequest *req = h->req;

			aw_finish(h, CURLE_FAILED_INIT);
			aw_detach(h);
			done[ndone++] = req;
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
		AwHttpHandle *h;
		AwHttpRequest *req;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &h);
		req = h->req;
		aw_finish(h, msg->data.result);
		aw_detach(h);
		done[ndone++] = req;
	}
	/* more finished than fit in this batch: come back without sleeping */
	aw_msgs_waiting = left > 0;
	return ndone;
}

/*
 * aw_http_cancel
 *		Drops a request in flight without a response (shutdown, or the
 *		queue went away).  The caller may free it afterwards.
 */
void
aw_http_cancel(AwHttpRequest *req)
{
	if (req->handle != NULL)
		aw_detach((AwHttpHandle *) req->handle);
}

/*
 * aw_http_retry_after_ms
 *		How long a Retry-After value ("120", or an HTTP date) asks to wait,
 *		in ms from now; 0 when it asks for nothing or cannot be read.
 */
int64
aw_http_retry_after_ms(const char *value)
{
	const char *p = value;
	int64		secs = 0;

	if (*p >= '0' && *p <= '9')
	{
		for (; *p >= '0' && *p <= '9'; p++)
		{
			secs = secs * 10 + (*p - '0');
			if (secs > (int64) 100 * 366 * 86400)
				return (int64) 100 * 366 * 86400 * 1000;
		}
		return *p == '\0' ? secs * 1000 : 0;
	}
	else
	{
		time_t		at = curl_getdate(value, NULL);
		time_t		now = time(NULL);

		if (at == (time_t) -1 || at <= now)
			return 0;
		return (int64) (at - now) * 1000;
	}
}
