/*-------------------------------------------------------------------------
 * http_conn.h
 *		The HTTP client's socket layer (http_conn.c).
 *
 * IDENTIFICATION
 *		src/http_conn.h
 *-------------------------------------------------------------------------
 */
#ifndef ALORO_WEBHOOK_HTTP_CONN_H
#define ALORO_WEBHOOK_HTTP_CONN_H

#include <sys/epoll.h>
#include <curl/curl.h>

/* room for saying why the address policy refused a connection */
#define AW_WHY_LEN 256

extern void aw_conn_init(void);
extern int	aw_conn_epoll_fd(void);
extern int	aw_conn_fd_cap(void);
extern int	aw_conn_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp);
extern curl_socket_t aw_conn_open_socket_cb(void *clientp, curlsocktype purpose,
											struct curl_sockaddr *address);
extern int	aw_conn_close_socket_cb(void *clientp, curl_socket_t s);
extern int	aw_conn_ready(struct epoll_event *evs, int max, bool *more);

#endif							/* ALORO_WEBHOOK_HTTP_CONN_H */
