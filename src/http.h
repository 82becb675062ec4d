/*-------------------------------------------------------------------------
 * http.h
 *		The worker's HTTP client (http.c).
 *
 * IDENTIFICATION
 *		src/http.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_HTTP_H
#define ALORO_WEBHOOK_HTTP_H

#include "queue.h"

extern void aw_http_init(void);
extern int	aw_http_epoll_fd(void);
extern int	aw_http_fd_cap(void);
extern int	aw_http_in_flight(void);
extern int64 aw_http_bytes_in_flight(void);
extern long aw_http_timeout_ms(void);
extern void aw_http_start(AwClaim *claim);
extern int	aw_http_drive(AwResult **done, AwClaim **done_claims, int max);
extern void aw_http_abandon_all(void);
extern void aw_http_policy_changed(void);
extern bool aw_http_ready_for_new(void);
extern bool aw_http_results_waiting(void);
extern void aw_http_each_webhook(void (*fn) (int64 webhook_id, int n, void *arg), void *arg);

#endif							/* ALORO_WEBHOOK_HTTP_H */
