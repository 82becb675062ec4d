/*-------------------------------------------------------------------------
 * worker.h
 *		The delivery worker (worker.c) and how it starts (worker_start.c).
 *
 * IDENTIFICATION
 *		src/worker.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_WORKER_H
#define ALORO_WEBHOOK_WORKER_H

#include "postgres.h"

extern bool aw_worker_stopping(void);
extern void aw_worker_connect(void);
extern void aw_worker_pin_settings(void);

#endif							/* ALORO_WEBHOOK_WORKER_H */
