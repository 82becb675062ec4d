/*-------------------------------------------------------------------------
 * request.h
 *		The webhook protocol (request.c): what a delivery's request carries,
 *		and what its response means.
 *
 * IDENTIFICATION
 *		src/request.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_REQUEST_H
#define ALORO_WEBHOOK_REQUEST_H

#include "delivery.h"

extern const char *aw_request_unsendable(AwDelivery *d);
extern void aw_request_prepare(AwDelivery *d);
extern void aw_request_outcome(AwDelivery *d);
extern void aw_request_unsent(AwDelivery *d, const char *why);

#endif							/* ALORO_WEBHOOK_REQUEST_H */
