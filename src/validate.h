/*-------------------------------------------------------------------------
 * validate.h
 *		Checks that need nothing of the server (validate.c): also built into
 *		the fuzz harnesses.
 *
 * IDENTIFICATION
 *		src/validate.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_VALIDATE_H
#define ALORO_WEBHOOK_VALIDATE_H

#include <stdbool.h>

/* one CIDR block; IPv4 is kept as IPv4-mapped IPv6 */
typedef struct AwNetwork
{
	unsigned char addr[16];
	int			prefix;			/* in bits of the 128-bit form */
} AwNetwork;

extern const char *aw_url_problem(const char *url);
extern bool aw_url_password_span(const char *url, int *start, int *len);
extern bool aw_parse_cidr(const char *text, AwNetwork *net);
extern bool aw_header_name_ok(const char *s, int len);
extern bool aw_header_reserved(const char *name, int len);
extern bool aw_header_value_ok(const char *s, int len);

#endif							/* ALORO_WEBHOOK_VALIDATE_H */
