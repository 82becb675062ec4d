/*-------------------------------------------------------------------------
 * health.h
 *		Per-webhook statistics, the circuit breaker and operator events
 *		(health.c).
 *
 * IDENTIFICATION
 *		src/health.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_HEALTH_H
#define ALORO_WEBHOOK_HEALTH_H

#include "delivery.h"

/* the channel of the operator events */
#define AW_EVENTS_CHANNEL "aloro_webhook_events"
/* buckets of the attempt duration histogram (see _duration_bounds()) */
#define AW_HIST_BUCKETS 16
/* how often tallied successes are written */
#define AW_HEALTH_WRITE_MS 1000

extern void aw_health_turn(AwDelivery **ds, int n);
extern void aw_health_write(void);
extern bool aw_health_write_due(TimestampTz now);
extern TimestampTz aw_health_next_write(void);
extern void aw_health_committed(void);
extern void aw_health_aborted(void);
extern void aw_health_forget(void);
extern void aw_health_notify_webhook(bool enabled, int64 webhook_id, const char *reason);

#endif							/* ALORO_WEBHOOK_HEALTH_H */
