/*-------------------------------------------------------------------------
 * row.c
 *		Reading the columns of a calls row by name.
 *
 * aloro_webhook.calls has the contract's column types, but watch() attaches
 * the trigger to a platform's own table, whose types may differ: an integer
 * duration may be numeric, a jsonb column may be json.  Each reader takes
 * the column by name, treats a missing or dropped column as NULL, and
 * converts what it finds to the one type the payload needs.
 *
 * IDENTIFICATION
 *		src/row.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"
#include "compat.h"

#include "access/htup_details.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/cash.h"
#include "miscadmin.h"
#include "utils/datetime.h"
#include "utils/date.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

/* attribute number of a live column, or 0 */
static int
aw_row_attnum(TupleDesc tupdesc, const char *name)
{
	for (int i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return i + 1;
	}
	return 0;
}

bool
aw_row_has_column(TupleDesc tupdesc, const char *name)
{
	return aw_row_attnum(tupdesc, name) != 0;
}

/* the datum and type of a column; false when missing or NULL */
static bool
aw_row_get(AwRow *row, const char *name, Datum *value, Oid *type)
{
	int			attnum = aw_row_attnum(row->tupdesc, name);
	bool		isnull;

	if (attnum == 0)
		return false;
	*value = heap_getattr(row->tuple, attnum, row->tupdesc, &isnull);
	*type = TupleDescAttr(row->tupdesc, attnum - 1)->atttypid;
	return !isnull;
}

/* any value through its type's output function */
static char *
aw_output(Datum value, Oid type)
{
	Oid			outfunc;
	bool		varlena;

	getTypeOutputInfo(type, &outfunc, &varlena);
	return OidOutputFunctionCall(outfunc, value);
}

/*
 * A value as text: text types as they are (char(n) without its padding),
 * the rest through the type's output function.
 */
char *
aw_value_text(Datum value, Oid type)
{
	/* a domain reads as its base type */
	Oid			base = (type == TEXTOID || type == VARCHAROID || type == BPCHAROID) ?
		type : getBaseType(type);

	if (base == TEXTOID || base == VARCHAROID)
		return TextDatumGetCString(value);
	if (base == BPCHAROID)
	{
		/* char(n) pads with spaces that are not part of the value */
		char	   *s = TextDatumGetCString(value);
		int			len = strlen(s);

		while (len > 0 && s[len - 1] == ' ')
			s[--len] = '\0';
		return s;
	}
	return aw_output(value, type);
}

/* A column as text, or NULL. */
char *
aw_row_text(AwRow *row, const char *name)
{
	Datum		value;
	Oid			type;

	if (!aw_row_get(row, name, &value, &type))
		return NULL;
	return aw_value_text(value, type);
}

/*
 * The columns read from a calls row, and what each may be.  watch() refuses
 * a table whose column of one of these names has a type outside its kind;
 * the readers below convert each accepted type by the rule doc/queuing.md
 * states ("Watching a table of your own").
 */
typedef enum AwColumnKind
{
	AW_KIND_TEXT,				/* any type, through its output function */
	AW_KIND_NUMBER,				/* numbers, money (its amount), text holding a number */
	AW_KIND_SECONDS,			/* AW_KIND_NUMBER, or an interval (its seconds) */
	AW_KIND_TIME,				/* timestamps, dates, Unix seconds, text holding a time */
	AW_KIND_JSON				/* jsonb, json, text holding JSON */
} AwColumnKind;

static const struct
{
	const char *name;
	AwColumnKind kind;
}			aw_columns[] =
{
	{"id", AW_KIND_TEXT}, {"phone", AW_KIND_TEXT}, {"direction", AW_KIND_TEXT},
	{"status", AW_KIND_TEXT}, {"duration", AW_KIND_SECONDS},
	{"started_at", AW_KIND_TIME}, {"ended_at", AW_KIND_TIME},
	{"assistant_id", AW_KIND_TEXT}, {"assistant_name", AW_KIND_TEXT},
	{"phone_number_id", AW_KIND_TEXT}, {"phone_number", AW_KIND_TEXT},
	{"campaign_id", AW_KIND_TEXT}, {"campaign_name", AW_KIND_TEXT},
	{"variables", AW_KIND_JSON}, {"transcript", AW_KIND_JSON},
	{"recording_url", AW_KIND_TEXT}, {"recording_duration", AW_KIND_SECONDS},
	{"cost_total", AW_KIND_NUMBER}, {"cost_breakdown", AW_KIND_JSON},
};

/* the column a reader is converting, for the message of a value it cannot read */
static const char *aw_reading = NULL;

/* Which column was being read when the last error was raised, or NULL. */
const char *
aw_row_column_being_read(void)
{
	return aw_reading;
}

/* Forgets the column of an earlier failure (before building a body). */
void
aw_row_reset_reading(void)
{
	aw_reading = NULL;
}

static bool
aw_is_text_type(Oid base)
{
	return base == TEXTOID || base == VARCHAROID || base == BPCHAROID;
}

static bool
aw_is_number_type(Oid base)
{
	return base == INT2OID || base == INT4OID || base == INT8OID || base == NUMERICOID ||
		base == FLOAT4OID || base == FLOAT8OID;
}

/* may a column of this kind have this (base) type? */
static bool
aw_kind_accepts(AwColumnKind kind, Oid base)
{
	switch (kind)
	{
		case AW_KIND_TEXT:
			return true;
		case AW_KIND_NUMBER:
			return aw_is_number_type(base) || base == CASHOID || aw_is_text_type(base);
		case AW_KIND_SECONDS:
			return aw_is_number_type(base) || base == CASHOID || base == INTERVALOID ||
				aw_is_text_type(base);
		case AW_KIND_TIME:
			return base == TIMESTAMPTZOID || base == TIMESTAMPOID || base == DATEOID ||
				aw_is_number_type(base) || aw_is_text_type(base);
		case AW_KIND_JSON:
			return base == JSONBOID || base == JSONOID || aw_is_text_type(base);
	}
	return false;
}

static const char *
aw_kind_types(AwColumnKind kind)
{
	switch (kind)
	{
		case AW_KIND_TEXT:
			return "any type";
		case AW_KIND_NUMBER:
			return "smallint, integer, bigint, numeric, real, double precision, money, or text holding a number";
		case AW_KIND_SECONDS:
			return "smallint, integer, bigint, numeric, real, double precision (seconds), interval, or text holding a number";
		case AW_KIND_TIME:
			return "timestamp with time zone, timestamp (read as UTC), date, a number of Unix seconds, or text holding a timestamp";
		case AW_KIND_JSON:
			return "jsonb, json, or text holding JSON";
	}
	return "";
}

/*
 * aw_row_check_types
 *		Refuses a calls table with a column the payload reads but whose type
 *		no rule converts, naming the column and the types it may have.
 */
void
aw_row_check_types(TupleDesc tupdesc, const char *table)
{
	for (size_t i = 0; i < lengthof(aw_columns); i++)
	{
		int			attnum = aw_row_attnum(tupdesc, aw_columns[i].name);
		Oid			type;

		if (attnum == 0)
			continue;
		type = TupleDescAttr(tupdesc, attnum - 1)->atttypid;
		if (!aw_kind_accepts(aw_columns[i].kind, getBaseType(type)))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("column \"%s\" of table %s has type %s, which aloro_webhook cannot read",
							aw_columns[i].name, table, format_type_be(type)),
					 errdetail("Column \"%s\" may be %s.", aw_columns[i].name,
							   aw_kind_types(aw_columns[i].kind)),
					 errhint("Change the column's type, or give the table a column of a type it may be under that name.")));
	}
}

/* the text form of a text-like value, trimmed; NULL when empty */
static char *
aw_trimmed_text(Datum value, Oid type)
{
	char	   *text = aw_value_text(value, type);
	char	   *end;

	while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r')
		text++;
	end = text + strlen(text);
	while (end > text && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
		*--end = '\0';
	return *text == '\0' ? NULL : text;
}

/* an interval's length in seconds, as extract(epoch from ...) counts it */
static double
aw_interval_seconds(const Interval *iv)
{
	return (double) iv->time / USECS_PER_SEC +
		(double) (iv->month / MONTHS_PER_YEAR) * DAYS_PER_YEAR * SECS_PER_DAY +
		(double) (iv->month % MONTHS_PER_YEAR) * DAYS_PER_MONTH * SECS_PER_DAY +
		(double) iv->day * SECS_PER_DAY;
}

/*
 * A value as a double; false when empty text or NaN/infinite.  numeric and
 * money go through their exact decimal form; an interval counts its
 * seconds; text must hold a number, or reading it fails.
 */
static bool
aw_value_double(Datum value, Oid type, void *out)
{
	double	   *result = (double *) out;
	Oid			base = aw_is_number_type(type) ? type : getBaseType(type);
	char	   *text;
	char	   *end;

	switch (base)
	{
		case INT2OID:
			*result = DatumGetInt16(value);
			break;
		case INT4OID:
			*result = DatumGetInt32(value);
			break;
		case INT8OID:
			*result = (double) DatumGetInt64(value);
			break;
		case FLOAT4OID:
			*result = DatumGetFloat4(value);
			break;
		case FLOAT8OID:
			*result = DatumGetFloat8(value);
			break;
		case INTERVALOID:
			*result = aw_interval_seconds(DatumGetIntervalP(value));
			break;
		case CASHOID:
			value = DirectFunctionCall1(cash_numeric, value);
			/* FALLTHROUGH */
		case NUMERICOID:
			text = DatumGetCString(DirectFunctionCall1(numeric_out, value));
			*result = strtod(text, NULL);
			break;
		default:
			text = aw_trimmed_text(value, type);
			if (text == NULL)
				return false;
			*result = strtod(text, &end);
			if (end == text || *end != '\0')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
						 errmsg("\"%s\" is not a number", text)));
			break;
	}
	return !isnan(*result) && !isinf(*result);
}

/*
 * Text holding a time, read as PostgreSQL reads a timestamptz -- but a time
 * without a zone is UTC whatever the session's TimeZone, and a date in
 * numbers is month/day/year whatever its DateStyle, so the bytes never
 * depend on who ended the call.  False for an infinite value.
 */
static bool
aw_parse_text_time(char *text, TimestampTz *result)
{
	char		workbuf[MAXDATELEN + MAXDATEFIELDS];
	char	   *field[MAXDATEFIELDS];
	int			ftype[MAXDATEFIELDS];
	int			nf;
	int			dtype;
	int			tz;
	struct pg_tm tt;
	fsec_t		fsec;
	int			dterr;
	pg_tz	   *save_tz = session_timezone;
	int			save_order = DateOrder;

	dterr = ParseDateTime(text, workbuf, sizeof(workbuf), field, ftype, MAXDATEFIELDS, &nf);
	if (dterr == 0)
	{
		session_timezone = pg_tzset("UTC");
		DateOrder = DATEORDER_MDY;
		PG_TRY();
		{
			dterr = aw_DecodeDateTime(field, ftype, nf, &dtype, &tt, &fsec, &tz);
		}
		PG_FINALLY();
		{
			session_timezone = save_tz;
			DateOrder = save_order;
		}
		PG_END_TRY();
	}
	if (dterr != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_DATETIME_FORMAT),
				 errmsg("\"%s\" is not a timestamp", text)));
	switch (dtype)
	{
		case DTK_DATE:
			if (tm2timestamp(&tt, fsec, &tz, result) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
						 errmsg("\"%s\" is out of range for a timestamp", text)));
			return true;
		case DTK_EPOCH:
			*result = SetEpochTimestamp();
			return true;
		default:
			return false;		/* infinity, -infinity */
	}
}

/* Unix seconds as a timestamptz */
static TimestampTz
aw_unix_time(double seconds)
{
	double		pg = seconds - (double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY;

	if (isnan(seconds) || pg < (double) MIN_TIMESTAMP / USECS_PER_SEC ||
		pg >= (double) END_TIMESTAMP / USECS_PER_SEC)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("%g is out of range for a number of Unix seconds", seconds)));
	return (TimestampTz) (pg * USECS_PER_SEC);
}

/*
 * A value as a finite timestamptz; false when empty text or infinite.
 * timestamp and date are UTC; numbers are Unix seconds; text is parsed
 * (aw_parse_text_time), and text that holds no time fails reading.
 */
static bool
aw_value_time(Datum value, Oid type, void *out)
{
	TimestampTz *result = (TimestampTz *) out;
	Oid			base = (type == TIMESTAMPTZOID || type == TIMESTAMPOID) ? type : getBaseType(type);
	double		seconds;
	char	   *text;

	switch (base)
	{
		case TIMESTAMPTZOID:
			*result = DatumGetTimestampTz(value);
			break;
		case TIMESTAMPOID:
			/* a timestamp without time zone is taken as UTC */
			*result = DatumGetTimestamp(value);
			break;
		case DATEOID:
			if (DATE_NOT_FINITE(DatumGetDateADT(value)))
				*result = DT_NOBEGIN;
			else
				*result = (TimestampTz) DatumGetDateADT(value) * USECS_PER_DAY;
			break;
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case NUMERICOID:
		case FLOAT4OID:
		case FLOAT8OID:
			if (!aw_value_double(value, type, &seconds))
				return false;
			*result = aw_unix_time(seconds);
			break;
		default:
			text = aw_trimmed_text(value, type);
			if (text == NULL || !aw_parse_text_time(text, result))
				*result = DT_NOBEGIN;
			break;
	}
	return !TIMESTAMP_NOT_FINITE(*result);
}

/*
 * A jsonb, json or text value as jsonb; false for empty text.  A value
 * jsonb cannot hold (a \u0000 in a json string, say) fails reading.
 */
static bool
aw_value_jsonb(Datum value, Oid type, void *out)
{
	Jsonb	  **result = (Jsonb **) out;
	Oid			base = (type == JSONBOID) ? type : getBaseType(type);
	char	   *text;

	if (base == JSONBOID)
	{
		*result = DatumGetJsonbP(value);
		return true;
	}
	text = (base == JSONOID) ? aw_output(value, type) : aw_trimmed_text(value, type);
	if (text == NULL)
		return false;
	*result = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	return true;
}

/*
 * Reads a column through one of the converters above; false when it is
 * missing or NULL, or the converter finds no value.  While the converter
 * runs, aw_row_column_being_read() names the column, for the message of a
 * value it cannot read.
 */
static bool
aw_row_read(AwRow *row, const char *name,
			bool (*convert) (Datum value, Oid type, void *out), void *out)
{
	Datum		value;
	Oid			type;
	bool		found;

	if (!aw_row_get(row, name, &value, &type))
		return false;
	aw_reading = name;
	found = convert(value, type, out);
	aw_reading = NULL;
	return found;
}

/* A column as a double (aw_value_double); false when there is none. */
bool
aw_row_double(AwRow *row, const char *name, double *result)
{
	return aw_row_read(row, name, aw_value_double, result);
}

/* A column as a finite timestamptz (aw_value_time); false when there is none. */
bool
aw_row_time(AwRow *row, const char *name, TimestampTz *result)
{
	return aw_row_read(row, name, aw_value_time, result);
}

/* A jsonb, json or text column as jsonb (aw_value_jsonb), or NULL. */
Jsonb *
aw_row_jsonb(AwRow *row, const char *name)
{
	Jsonb	   *result = NULL;

	return aw_row_read(row, name, aw_value_jsonb, &result) ? result : NULL;
}
