/*-------------------------------------------------------------------------
 * payload.c
 *		A calls row -> the exact bytes of its call.ended body.
 *
 * Sections and keys come in the contract's order; a key whose value is NULL
 * is left out, and so is a section left with nothing in it.  All JSON is
 * written by json_out.c, which keeps the byte rule.
 *
 * IDENTIFICATION
 *		src/payload.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/typcache.h"

/* an object being written: remembers whether a key came yet */
typedef struct AwObject
{
	StringInfo	out;
	bool		empty;
} AwObject;

static void
aw_key(AwObject *obj, const char *key)
{
	if (!obj->empty)
		appendStringInfoChar(obj->out, ',');
	obj->empty = false;
	aw_json_cstring(obj->out, key);
	appendStringInfoChar(obj->out, ':');
}

/* "key":"text" from a column, left out when NULL */
static void
aw_put_text(AwObject *obj, const char *key, AwRow *row, const char *column)
{
	char	   *value = aw_row_text(row, column);

	if (value == NULL)
		return;
	aw_key(obj, key);
	aw_json_cstring(obj->out, value);
}

/* "key":number from a column, left out when NULL */
static void
aw_put_number(AwObject *obj, const char *key, AwRow *row, const char *column)
{
	double		value;

	/* NaN and infinities have no JSON form: left out, like NULL */
	if (!aw_row_double(row, column, &value) || isnan(value) || isinf(value))
		return;
	aw_key(obj, key);
	aw_json_double(obj->out, value);
}

/* "key":"YYYY-MM-DDTHH:MM:SSZ" from a column, left out when NULL */
static void
aw_put_time(AwObject *obj, const char *key, AwRow *row, const char *column)
{
	TimestampTz value;

	if (!aw_row_time(row, column, &value))
		return;
	aw_key(obj, key);
	aw_json_utc(obj->out, value);
}

/* Appends ,"name":{content} to data when content has anything in it. */
static void
aw_put_section(AwObject *data, const char *name, StringInfo content)
{
	if (content->len == 0)
		return;
	aw_key(data, name);
	appendStringInfoChar(data->out, '{');
	appendBinaryStringInfo(data->out, content->data, content->len);
	appendStringInfoChar(data->out, '}');
	resetStringInfo(content);
}

/* data.call */
static void
aw_section_call(AwRow *row, StringInfo buf)
{
	AwObject	obj = {buf, true};
	TimestampTz started;
	TimestampTz ended;
	double		duration;

	aw_put_text(&obj, "id", row, "id");
	aw_put_text(&obj, "phone", row, "phone");
	aw_put_text(&obj, "direction", row, "direction");
	aw_put_text(&obj, "status", row, "status");
	if (aw_row_double(row, "duration", &duration) && !isnan(duration) && !isinf(duration))
	{
		aw_key(&obj, "duration");
		aw_json_double(buf, duration);
	}
	else if (aw_row_time(row, "started_at", &started) &&
			 aw_row_time(row, "ended_at", &ended))
	{
		/* whole seconds between the two, truncated */
		aw_key(&obj, "duration");
		aw_json_double(buf, (double) ((ended - started) / USECS_PER_SEC));
	}
	aw_put_time(&obj, "started_at", row, "started_at");
	aw_put_time(&obj, "ended_at", row, "ended_at");
}

/* data.variables: the stored object, always with a status */
static void
aw_section_variables(AwObject *data, AwRow *row)
{
	Jsonb	   *vars = aw_row_jsonb(row, "variables");
	char	   *status = aw_row_text(row, "status");
	const char *status_json = (status && strcmp(status, "completed") == 0) ? "true" : "false";

	aw_key(data, "variables");
	if (vars != NULL && JB_ROOT_IS_OBJECT(vars))
	{
		if (getKeyJsonValueFromContainer(&vars->root, "status", 6, NULL) != NULL)
			aw_json_jsonb(data->out, &vars->root);
		else
			aw_json_jsonb_object_with(data->out, &vars->root, "status", status_json);
	}
	else
		appendStringInfo(data->out, "{\"status\":%s}", status_json);
}

/* "MM:SS", or "H:MM:SS" from one hour, of a start offset in seconds */
static void
aw_clock(StringInfo out, double seconds)
{
	int64		s;

	if (seconds < 0 || isnan(seconds))
		seconds = 0;
	if (seconds > 1e15)
		seconds = 1e15;
	s = (int64) floor(seconds);
	if (s >= 3600)
		appendStringInfo(out, "\"" INT64_FORMAT ":%02d:%02d\"",
						 s / 3600, (int) (s % 3600) / 60, (int) (s % 60));
	else
		appendStringInfo(out, "\"%02d:%02d\"", (int) (s / 60), (int) (s % 60));
}

/* a transcript entry's start as seconds; false when missing or not a number */
static bool
aw_start_seconds(JsonbValue *v, double *seconds)
{
	char	   *text;
	char	   *end;

	if (v->type == jbvNumeric)
		text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	else if (v->type == jbvString)
		text = pnstrdup(v->val.string.val, v->val.string.len);
	else
		return false;
	*seconds = strtod(text, &end);
	return end != text && *end == '\0';
}

/* data.transcript: formatted lines and timestamped segments */
static void
aw_section_transcript(AwObject *data, AwRow *row)
{
	Jsonb	   *transcript = aw_row_jsonb(row, "transcript");
	JsonbIterator *it;
	JsonbValue	elem;
	JsonbIteratorToken tok;
	StringInfoData formatted;
	StringInfoData segments;
	int			nsegments = 0;

	if (transcript == NULL || !JB_ROOT_IS_ARRAY(transcript) || JB_ROOT_IS_SCALAR(transcript))
		return;

	initStringInfo(&formatted);
	initStringInfo(&segments);
	it = JsonbIteratorInit(&transcript->root);
	tok = JsonbIteratorNext(&it, &elem, true);	/* WJB_BEGIN_ARRAY */
	while ((tok = JsonbIteratorNext(&it, &elem, true)) == WJB_ELEM)
	{
		JsonbContainer *entry;
		JsonbValue	speaker;
		JsonbValue	text;
		JsonbValue	start;
		bool		has_speaker;
		bool		has_text;
		double		seconds;
		AwObject	seg = {&segments, true};

		/* entries that are not objects carry nothing to send */
		if (elem.type != jbvBinary || !JsonContainerIsObject(elem.val.binary.data))
			continue;
		entry = elem.val.binary.data;
		has_speaker = getKeyJsonValueFromContainer(entry, "speaker", 7, &speaker) != NULL &&
			speaker.type != jbvNull;
		has_text = getKeyJsonValueFromContainer(entry, "text", 4, &text) != NULL &&
			text.type != jbvNull;

		/* the formatted line: "AI: text", "Customer: text", other speakers as stored */
		if (nsegments > 0)
			appendStringInfoChar(&formatted, '\n');
		if (has_speaker && speaker.type == jbvString)
		{
			if (speaker.val.string.len == 2 && memcmp(speaker.val.string.val, "ai", 2) == 0)
				appendStringInfoString(&formatted, "AI: ");
			else if (speaker.val.string.len == 8 && memcmp(speaker.val.string.val, "customer", 8) == 0)
				appendStringInfoString(&formatted, "Customer: ");
			else
			{
				appendBinaryStringInfo(&formatted, speaker.val.string.val, speaker.val.string.len);
				appendStringInfoString(&formatted, ": ");
			}
		}
		if (has_text)
		{
			if (text.type == jbvString)
				appendBinaryStringInfo(&formatted, text.val.string.val, text.val.string.len);
			else
				aw_json_jsonb_value(&formatted, &text);
		}

		/* the timestamped segment */
		if (nsegments > 0)
			appendStringInfoChar(&segments, ',');
		appendStringInfoChar(&segments, '{');
		if (has_speaker)
		{
			aw_key(&seg, "speaker");
			aw_json_jsonb_value(&segments, &speaker);
		}
		if (has_text)
		{
			aw_key(&seg, "text");
			aw_json_jsonb_value(&segments, &text);
		}
		if (getKeyJsonValueFromContainer(entry, "start", 5, &start) != NULL &&
			aw_start_seconds(&start, &seconds))
		{
			aw_key(&seg, "timestamp");
			aw_clock(&segments, seconds);
		}
		appendStringInfoChar(&segments, '}');
		nsegments++;
	}

	if (nsegments > 0)
	{
		aw_key(data, "transcript");
		appendStringInfoString(data->out, "{\"formatted\":");
		aw_json_string(data->out, formatted.data, formatted.len);
		appendStringInfoString(data->out, ",\"timestamped\":[");
		appendBinaryStringInfo(data->out, segments.data, segments.len);
		appendStringInfoString(data->out, "]}");
	}
	pfree(formatted.data);
	pfree(segments.data);
}

/*
 * aw_build_payload
 *		The call.ended body for one calls row.  queued_at stands in for the
 *		top-level timestamp when the call has no ended_at.
 */
char *
aw_build_payload(AwRow *row, bool include_recording, TimestampTz queued_at)
{
	StringInfoData out;
	StringInfoData section;
	AwObject	data = {&out, true};
	AwObject	sec = {&section, true};
	TimestampTz ended;
	Jsonb	   *breakdown;

	initStringInfo(&out);
	initStringInfo(&section);

	appendStringInfoString(&out, "{\"event\":\"call.ended\",\"timestamp\":");
	aw_json_utc(&out, aw_row_time(row, "ended_at", &ended) ? ended : queued_at);
	appendStringInfoString(&out, ",\"data\":{");

	aw_section_call(row, &section);
	aw_put_section(&data, "call", &section);

	sec.empty = true;
	aw_put_text(&sec, "id", row, "assistant_id");
	aw_put_text(&sec, "name", row, "assistant_name");
	aw_put_section(&data, "assistant", &section);

	sec.empty = true;
	aw_put_text(&sec, "id", row, "phone_number_id");
	aw_put_text(&sec, "number", row, "phone_number");
	aw_put_section(&data, "phone_number", &section);

	sec.empty = true;
	aw_put_text(&sec, "id", row, "campaign_id");
	aw_put_text(&sec, "name", row, "campaign_name");
	aw_put_section(&data, "campaign", &section);

	aw_section_variables(&data, row);
	aw_section_transcript(&data, row);

	if (include_recording)
	{
		sec.empty = true;
		aw_put_text(&sec, "url", row, "recording_url");
		aw_put_number(&sec, "duration", row, "recording_duration");
		aw_put_section(&data, "recording", &section);
	}

	sec.empty = true;
	aw_put_number(&sec, "total", row, "cost_total");
	breakdown = aw_row_jsonb(row, "cost_breakdown");
	if (breakdown != NULL && JB_ROOT_IS_OBJECT(breakdown))
	{
		aw_key(&sec, "breakdown");
		aw_json_jsonb(&section, &breakdown->root);
	}
	aw_put_section(&data, "cost", &section);

	appendStringInfoString(&out, "}}");
	pfree(section.data);
	return out.data;
}

/* The error of a delivery whose body could not be built (column: where, or NULL). */
char *
aw_payload_error_message(const char *column, const char *why)
{
	if (column != NULL)
		return psprintf("payload could not be built: column \"%s\": %s; fix the call's data, then redeliver",
						column, why);
	return psprintf("payload could not be built: %s; fix the call's data, then redeliver", why);
}

/*
 * The error of a delivery whose body is larger than
 * aloro_webhook.max_payload_size, or NULL when it is not.  The enqueue
 * trigger and the worker (which sends nothing larger, whatever the setting
 * was when it was queued) say it the same way.
 */
char *
aw_payload_too_large(int64 bytes)
{
	if (bytes <= (int64) aw_max_payload_size)
		return NULL;
	return psprintf("payload too large: " INT64_FORMAT " bytes, more than aloro_webhook.max_payload_size (%d bytes); "
					"raise the setting, then redeliver", bytes, aw_max_payload_size);
}

/* The contract's test payload for a test delivery. */
char *
aw_build_test_payload(int64 delivery_id, TimestampTz at)
{
	StringInfoData out;

	initStringInfo(&out);
	appendStringInfoString(&out, "{\"event\":\"call.ended\",\"timestamp\":");
	aw_json_utc(&out, at);
	appendStringInfo(&out,
					 ",\"test\":true,\"data\":{\"call\":{\"id\":\"test_call_" INT64_FORMAT "\","
					 "\"phone\":\"+15555555555\",\"status\":\"completed\",\"duration\":120},"
					 "\"variables\":{\"status\":true,\"summary\":\"This is a test webhook\"}}}",
					 delivery_id);
	return out.data;
}

PG_FUNCTION_INFO_V1(aloro_webhook_payload);

/*
 * _payload(call record, include_recording, queued_at): the body for one
 * row; queued_at (now() when NULL) stands in for a NULL ended_at.
 */
Datum
aloro_webhook_payload(PG_FUNCTION_ARGS)
{
	HeapTupleHeader rec;
	bool		include_recording = PG_ARGISNULL(1) ? true : PG_GETARG_BOOL(1);
	TimestampTz queued_at = PG_ARGISNULL(2) ? GetCurrentTransactionStartTimestamp() :
		PG_GETARG_TIMESTAMPTZ(2);
	HeapTupleData tuple;
	AwRow		row;
	char	   *body;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	rec = PG_GETARG_HEAPTUPLEHEADER(0);
	row.tupdesc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(rec),
										 HeapTupleHeaderGetTypMod(rec));
	tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = rec;
	row.tuple = &tuple;

	body = aw_build_payload(&row, include_recording, queued_at);
	ReleaseTupleDesc(row.tupdesc);
	PG_RETURN_TEXT_P(cstring_to_text(body));
}

PG_FUNCTION_INFO_V1(aloro_webhook_test_payload);

/* _test_payload(delivery_id, at) */
Datum
aloro_webhook_test_payload(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(aw_build_test_payload(PG_GETARG_INT64(0),
															 PG_GETARG_TIMESTAMPTZ(1))));
}
