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

/* aw_schedule_split's answers besides a count of entries */
#define AW_SCHEDULE_EMPTY_ENTRY (-1)
#define AW_SCHEDULE_TOO_MANY (-2)
extern int	aw_schedule_split(char *text, char **entries, int max, int *bad);
extern long long aw_schedule_delay_ms(long long usec, int mday, int mon, int year,
									  long long max_ms);

#endif							/* ALORO_WEBHOOK_VALIDATE_H */
