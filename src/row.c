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

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/builtins.h"
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

/* A column as a double; false when NULL, missing or not a number. */
bool
aw_row_double(AwRow *row, const char *name, double *result)
{
	Datum		value;
	Oid			type;
	char	   *text;
	char	   *end;

	if (!aw_row_get(row, name, &value, &type))
		return false;
	switch (type)
	{
		case INT2OID:
			*result = DatumGetInt16(value);
			return true;
		case INT4OID:
			*result = DatumGetInt32(value);
			return true;
		case INT8OID:
			*result = (double) DatumGetInt64(value);
			return true;
		case FLOAT4OID:
			*result = DatumGetFloat4(value);
			return true;
		case FLOAT8OID:
			*result = DatumGetFloat8(value);
			return true;
		default:
			/* numeric, text and the rest: parse the text form */
			text = aw_output(value, type);
			*result = strtod(text, &end);
			while (*end == ' ')
				end++;
			return end != text && *end == '\0';
	}
}

/* A column as a finite timestamptz; false otherwise. */
bool
aw_row_time(AwRow *row, const char *name, TimestampTz *result)
{
	Datum		value;
	Oid			type;

	if (!aw_row_get(row, name, &value, &type))
		return false;
	switch (type)
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
				return false;
			*result = (TimestampTz) DatumGetDateADT(value) * USECS_PER_DAY;
			break;
		default:
			*result = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in,
															  CStringGetDatum(aw_output(value, type)),
															  ObjectIdGetDatum(InvalidOid),
															  Int32GetDatum(-1)));
			break;
	}
	return !TIMESTAMP_NOT_FINITE(*result);
}

/* A jsonb or json column as jsonb, or NULL. */
Jsonb *
aw_row_jsonb(AwRow *row, const char *name)
{
	Datum		value;
	Oid			type;

	if (!aw_row_get(row, name, &value, &type))
		return NULL;
	if (type == JSONBOID)
		return DatumGetJsonbP(value);
	if (type == JSONOID)
		return DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
												  CStringGetDatum(aw_output(value, type))));
	return NULL;
}
