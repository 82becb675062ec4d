/*-------------------------------------------------------------------------
 * request.c
 *		The webhook protocol: the request a delivery's attempt sends, and
 *		what its response means.
 *
 * A delivery becomes a neutral HTTP request (http.h): its URL, its body
 * bytes as stored, and the contract's headers --
 *
 *	Content-Type: application/json
 *	X-Aloro-Signature: sha256=<hex HMAC-SHA256 of the body>	(with a secret)
 *	X-Aloro-Timestamp: YYYY-MM-DDTHH:MM:SSZ				(this attempt)
 *	X-Aloro-Delivery: <delivery id>
 *	User-Agent: aloro-webhook/<version>
 *
 * -- or, for signature_scheme 'standard', the Standard Webhooks headers
 * webhook-id, webhook-timestamp and webhook-signature instead of
 * X-Aloro-Signature; during a secret rotation's overlap each request is
 * signed with both secrets.  The response becomes the attempt's outcome:
 * success for any 2xx, otherwise an error that says what happened, in words
 * an operator reads in delivery_attempts.error; a 410 disables the webhook,
 * and a 429 or 503 may say how long to wait (Retry-After).
 *
 * IDENTIFICATION
 *		src/request.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include "mb/pg_wchar.h"

#include "request.h"

/* the header lines one request carries, at most */
#define AW_MAX_HEADERS 12

/*
 * Why a claimed delivery cannot be sent, or NULL when it can: its webhook
 * was deleted, its body was erased, or is larger than
 * aloro_webhook.max_payload_size is now.
 */
const char *
aw_request_unsendable(AwDelivery *d)
{
	if (d->url == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(d->cxt);
		char	   *why = psprintf("webhook " INT64_FORMAT " was deleted", d->webhook_id);

		MemoryContextSwitchTo(old);
		return why;
	}
	if (d->body == NULL)
		return "payload erased: the body of this delivery was erased, so it cannot be sent";
	return aw_payload_too_large((int64) d->body_len);
}

/* "YYYY-MM-DDTHH:MM:SSZ" */
static char *
aw_utc_text(TimestampTz ts)
{
	StringInfoData s;

	initStringInfo(&s);
	aw_format_utc(&s, ts);
	return s.data;
}

/*
 * aw_request_prepare
 *		Fills d->http for this attempt of d, in d's memory context.
 */
void
aw_request_prepare(AwDelivery *d)
{
	MemoryContext old = MemoryContextSwitchTo(d->cxt);
	const char **headers = palloc(sizeof(char *) * (AW_MAX_HEADERS + d->nextra_headers));
	int			n = 0;
	AwHttpRequest *req = &d->http;
	TimestampTz now = GetCurrentTimestamp();

	headers[n++] = "Content-Type: application/json";
	if (d->secret != NULL && d->standard)
	{
		/* Standard Webhooks: id.timestamp.body, base64, each secret a v1 entry */
		char	   *id = psprintf(INT64_FORMAT, d->id);
		char	   *ts = psprintf(INT64_FORMAT, (int64) timestamptz_to_time_t(now));
		char	   *sig = aw_standard_signature(d->secret, id, ts, d->body, d->body_len);
		char	   *prev = d->previous_secret ?
			aw_standard_signature(d->previous_secret, id, ts, d->body, d->body_len) : NULL;

		headers[n++] = psprintf("webhook-id: %s", id);
		headers[n++] = psprintf("webhook-timestamp: %s", ts);
		if (sig != NULL)
			headers[n++] = prev ? psprintf("webhook-signature: %s %s", sig, prev) :
				psprintf("webhook-signature: %s", sig);
	}
	else if (d->secret != NULL)
	{
		char		hex[65];

		aw_hmac_sha256_hex(d->secret, strlen(d->secret), d->body, d->body_len, hex);
		headers[n++] = psprintf("X-Aloro-Signature: sha256=%s", hex);
		if (d->previous_secret != NULL)
		{
			aw_hmac_sha256_hex(d->previous_secret, strlen(d->previous_secret),
							   d->body, d->body_len, hex);
			headers[n++] = psprintf("X-Aloro-Signature-Previous: sha256=%s", hex);
		}
	}
	/* the secrets are not needed any more: don't keep them around */
	if (d->secret != NULL)
		explicit_bzero(d->secret, strlen(d->secret));
	if (d->previous_secret != NULL)
		explicit_bzero(d->previous_secret, strlen(d->previous_secret));
	headers[n++] = psprintf("X-Aloro-Timestamp: %s", aw_utc_text(now));
	headers[n++] = psprintf("X-Aloro-Delivery: " INT64_FORMAT, d->id);
	headers[n++] = "User-Agent: " AW_USER_AGENT;
	headers[n++] = "Expect:";	/* no 100-continue round trip */
	Assert(n <= AW_MAX_HEADERS);
	/* the webhook's own (webhooks.headers), which cannot name any of the above */
	for (int i = 0; i < d->nextra_headers; i++)
		headers[n++] = d->extra_headers[i];

	memset(req, 0, sizeof(AwHttpRequest));
	req->url = d->url;
	req->headers = headers;
	req->nheaders = n;
	req->body = d->body;
	req->body_len = d->body_len;
	req->timeout_ms = aw_timeout_ms;
	req->response_limit = aw_response_body_limit;
	req->cxt = d->cxt;
	d->outcome.attempt = d->attempts + 1;
	d->outcome.record_attempt = true;
	MemoryContextSwitchTo(old);
}

/* response bytes as storable text: valid UTF-8, no NUL, in the server encoding */
static char *
aw_clean_text(const char *data, size_t len)
{
	StringInfoData out;
	bool		ascii_only = GetDatabaseEncoding() != PG_UTF8 &&
		GetDatabaseEncoding() != PG_SQL_ASCII;
	size_t		i = 0;

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

/*
 * aw_request_outcome
 *		What the response to d's attempt means: d->outcome's status, error
 *		and response body, in d's memory context.
 */
void
aw_request_outcome(AwDelivery *d)
{
	AwHttpRequest *req = &d->http;
	AwOutcome  *o = &d->outcome;
	MemoryContext old = MemoryContextSwitchTo(d->cxt);

	o->started_at = req->started_at;
	o->duration_ms = req->duration_ms;
	o->http_status = req->status;
	if (req->response_limit > 0 && (req->response_len > 0 || req->status > 0))
		o->response_body = aw_clean_text(req->response, req->response_len);

	switch (req->failure)
	{
		case AW_HTTP_OK:
			if (req->status >= 200 && req->status < 300)
				o->error = NULL;
			else if (req->status >= 300 && req->status < 400)
				o->error = psprintf("HTTP %d: redirects are not followed", req->status);
			else if (req->status == 410)
			{
				/* the receiver says the endpoint is gone for good */
				o->error = pstrdup("HTTP 410: the receiver says this endpoint is gone; the webhook is disabled");
				o->final = true;
				o->disable_reason = "the receiver answered 410 Gone";
			}
			else
				o->error = psprintf("HTTP %d", req->status);
			if ((req->status == 429 || req->status == 503) && req->retry_after != NULL)
				o->retry_after_ms = aw_http_retry_after_ms(req->retry_after);
			break;
		case AW_HTTP_REFUSED:
			o->error = psprintf("connection refused by policy: %s", req->detail);
			break;
		case AW_HTTP_TIMEOUT:
			o->error = psprintf("timeout: no complete response within %d ms (aloro_webhook.timeout)",
								req->timeout_ms);
			break;
		case AW_HTTP_INCOMPLETE:
			o->error = pstrdup("the connection closed before the response headers were complete");
			break;
		case AW_HTTP_OTHER:
			o->error = pstrdup(req->detail);
			break;
	}
	MemoryContextSwitchTo(old);
}

/* d is failed without being sent, for why */
void
aw_request_unsent(AwDelivery *d, const char *why)
{
	AwOutcome  *o = &d->outcome;

	o->attempt = d->attempts;
	o->record_attempt = false;
	o->final = true;
	o->started_at = GetCurrentTimestamp();
	o->error = MemoryContextStrdup(d->cxt, why);
}
