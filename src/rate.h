/*-------------------------------------------------------------------------
 * rate.h
 *		Pacing of requests per webhook, webhooks.rate_limit (rate.c).
 *
 * IDENTIFICATION
 *		src/rate.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_RATE_H
#define ALORO_WEBHOOK_RATE_H

#include "postgres.h"

#include "utils/timestamp.h"

extern void aw_rate_limits_refresh(void);
extern int	aw_rate_limit_of(int64 webhook_id);
extern void aw_rate_forget(void);
extern bool aw_rate_ready(int64 webhook_id, int rate, TimestampTz now, TimestampTz *next_at);
extern void aw_rate_take(int64 webhook_id, int rate, TimestampTz now);

#endif							/* ALORO_WEBHOOK_RATE_H */
