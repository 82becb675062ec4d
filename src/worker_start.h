/*-------------------------------------------------------------------------
 * worker_start.h
 *		How the delivery workers are registered and how each process starts
 *		(worker_start.c).
 *
 * IDENTIFICATION
 *		src/worker_start.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_WORKER_START_H
#define ALORO_WEBHOOK_WORKER_START_H

#include "postgres.h"

extern void aw_register_workers(void);
extern void aw_worker_catch_signals(void);
extern bool aw_worker_stopping(void);
extern void aw_worker_connect(void);
extern void aw_worker_pin_settings(void);

#endif							/* ALORO_WEBHOOK_WORKER_START_H */
