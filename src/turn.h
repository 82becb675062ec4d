/*-------------------------------------------------------------------------
 * turn.h
 *		The transaction work of the delivery worker's turns, the sweep, and
 *		the release of claims at shutdown (turn.c).
 *
 * IDENTIFICATION
 *		src/turn.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_TURN_H
#define ALORO_WEBHOOK_TURN_H

#include "postgres.h"

#include "worker_state.h"

extern void aw_turn(AwWorker *w);
extern void aw_turn_failed(AwWorker *w);
extern void aw_sweep(AwWorker *w);
extern void aw_release_on_exit(AwWorker *w);

#endif							/* ALORO_WEBHOOK_TURN_H */
