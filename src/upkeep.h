/*-------------------------------------------------------------------------
 * upkeep.h
 *		The delivery worker's housekeeping between turns (upkeep.c).
 *
 * IDENTIFICATION
 *		src/upkeep.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_UPKEEP_H
#define ALORO_WEBHOOK_UPKEEP_H

#include "postgres.h"

#include "utils/timestamp.h"

#include "worker_state.h"

extern bool aw_upkeep_due(AwUpkeep *u, TimestampTz now);
extern TimestampTz aw_upkeep_next(AwUpkeep *u);
extern void aw_upkeep(AwWorker *w);
extern void aw_upkeep_failed(AwWorker *w);
extern void aw_upkeep_forget(AwUpkeep *u);

#endif							/* ALORO_WEBHOOK_UPKEEP_H */
