/*-------------------------------------------------------------------------
 * json_bytes.h
 *		JSON scalars byte for byte as JSON.stringify prints them
 *		(json_bytes.c): also built into the fuzz harness.
 *
 * IDENTIFICATION
 *		src/json_bytes.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_JSON_BYTES_H
#define ALORO_WEBHOOK_JSON_BYTES_H

#include "lib/stringinfo.h"

extern void aw_json_double(StringInfo out, double d);
extern void aw_json_string_utf8(StringInfo out, const char *s, int len);
extern bool aw_is_array_index(const char *key, int len);

#endif							/* ALORO_WEBHOOK_JSON_BYTES_H */
