/*-------------------------------------------------------------------------
 * http.h
 *		The HTTP transport (http.c): a request in, a response out.
 *
 * It knows nothing of webhooks, deliveries or signatures: the caller fills
 * the request's "in" fields, starts it, and gets the same struct back from
 * aw_http_drive() with the "out" fields filled.  The caller owns the struct
 * and the memory context it names, and keeps both alive until then.
 *
 * IDENTIFICATION
 *		src/http.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_HTTP_H
#define ALORO_WEBHOOK_HTTP_H

#include "postgres.h"

#include "utils/palloc.h"
#include "utils/timestamp.h"

/* why a request got no complete response */
typedef enum AwHttpFailure
{
	AW_HTTP_OK = 0,				/* a complete response arrived */
	AW_HTTP_TIMEOUT,			/* not within timeout_ms */
	AW_HTTP_REFUSED,			/* the address policy refused every address; detail says why */
	AW_HTTP_INCOMPLETE,			/* closed before the response headers were complete */
	AW_HTTP_OTHER				/* anything else; detail is libcurl's message */
} AwHttpFailure;

typedef struct AwHttpRequest
{
	/* in: what to send */
	const char *url;
	const char *const *headers; /* "Name: value" lines */
	int			nheaders;
	const char *body;
	size_t		body_len;
	int			timeout_ms;		/* connect to last byte */
	size_t		response_limit; /* bytes of the response body kept */
	MemoryContext cxt;			/* where the "out" fields are allocated */

	/* out: what came back */
	TimestampTz started_at;
	int			duration_ms;
	int			status;			/* the final status (>= 200), 0 when none came */
	AwHttpFailure failure;
	char	   *detail;			/* for AW_HTTP_REFUSED and AW_HTTP_OTHER */
	char	   *response;		/* the first response_limit bytes of the body, raw */
	size_t		response_len;
	char	   *retry_after;	/* the Retry-After header's value, or NULL */

	/* the transport's own state while the request is in flight */
	void	   *handle;
} AwHttpRequest;

extern void aw_http_init(void);
extern int	aw_http_epoll_fd(void);
extern int	aw_http_fd_cap(void);
extern int	aw_http_in_flight(void);
extern long aw_http_timeout_ms(void);
extern void aw_http_start(AwHttpRequest *req);
extern int	aw_http_drive(AwHttpRequest **done, int max);
extern bool aw_http_results_waiting(void);
extern void aw_http_cancel(AwHttpRequest *req);
extern void aw_http_policy_changed(void);
extern bool aw_http_ready_for_new(void);
extern int64 aw_http_retry_after_ms(const char *value);

#endif							/* ALORO_WEBHOOK_HTTP_H */
