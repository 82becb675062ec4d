/*-------------------------------------------------------------------------
 * http_conn.c
 *		The HTTP client's sockets: the epoll set the worker waits on, the
 *		address policy applied to every connection, the open-file budget, and
 *		the watch on connections kept alive.
 *
 * libcurl opens and closes its sockets through us (so the address policy
 * sees the address DNS actually returned, and we know which sockets are
 * libcurl's), and tells us which ones it wants watched; they all go into
 * one epoll set.
 *
 * None of these callbacks can raise an error: they run inside libcurl.
 *
 * IDENTIFICATION
 *		src/http_conn.c
 *-------------------------------------------------------------------------
 */
#include "aloro_webhook.h"

#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>
#include <curl/curl.h>

#include "utils/memutils.h"

#include "http_conn.h"

static int	aw_epfd = -1;
static int	aw_fd_cap = 0;

/*
 * The sockets libcurl opened through us, and which of them sit idle in its
 * connection cache.  libcurl 7.88 reuses an idle connection that has unread
 * bytes waiting (a stray response, say), and would take those bytes as the
 * answer to the next request; so we watch idle connections, and one that
 * turns readable while idle is emptied and shut down, which libcurl then
 * sees as dead.
 */
#define AW_SOCK_OURS 1
#define AW_SOCK_IDLE 2
static uint8 *aw_sock_state = NULL;
static int	aw_sock_state_size = 0;

/* how many requests the open-file limit allows in flight */
static int
aw_compute_fd_cap(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 100;
	/* raise the soft limit as far as the hard one allows */
	if (rl.rlim_cur < rl.rlim_max)
	{
		rlim_t		want = Min(rl.rlim_max, (rlim_t) 65536);

		if (want > rl.rlim_cur)
		{
			struct rlimit nl = rl;

			nl.rlim_cur = want;
			if (setrlimit(RLIMIT_NOFILE, &nl) == 0)
				rl.rlim_cur = want;
		}
	}
	if (rl.rlim_cur == RLIM_INFINITY)
		return 10000;
	/*
	 * Leave 128 descriptors to the server (relation files, the WAL) and
	 * count three per request: its connection, a cached idle connection,
	 * and the resolver's.
	 */
	return Max(1, ((int) rl.rlim_cur - 128) / 3);
}

/* Sets up the epoll set and the socket bookkeeping. */
void
aw_conn_init(void)
{
	struct rlimit rl;

	aw_epfd = epoll_create1(EPOLL_CLOEXEC);
	if (aw_epfd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("could not create epoll set: %m")));
	aw_fd_cap = aw_compute_fd_cap();
	aw_sock_state_size = (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) ?
		(int) Min(rl.rlim_cur, (rlim_t) 1048576) : 65536;
	aw_sock_state = MemoryContextAllocZero(TopMemoryContext, aw_sock_state_size);
}

int
aw_conn_epoll_fd(void)
{
	return aw_epfd;
}

int
aw_conn_fd_cap(void)
{
	return aw_fd_cap;
}

/* libcurl's socket callback: mirror its interest in our epoll set */
int
aw_conn_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct epoll_event ev;

	bool		ours = s >= 0 && s < aw_sock_state_size && aw_sock_state[s] != 0;

	memset(&ev, 0, sizeof(ev));
	ev.data.fd = s;
	if (what == CURL_POLL_REMOVE)
	{
		if (!ours)
		{
			epoll_ctl(aw_epfd, EPOLL_CTL_DEL, s, NULL);
			return 0;
		}
		/* kept alive in the cache: watch it for anything arriving unasked */
		aw_sock_state[s] = AW_SOCK_IDLE;
		ev.events = EPOLLIN | EPOLLRDHUP;
	}
	else
	{
		if (ours)
			aw_sock_state[s] = AW_SOCK_OURS;
		if (what & CURL_POLL_IN)
			ev.events |= EPOLLIN;
		if (what & CURL_POLL_OUT)
			ev.events |= EPOLLOUT;
	}
	/*
	 * If the socket cannot be watched (out of memory), its transfer runs into
	 * aloro_webhook.timeout; returning an error would abort every transfer.
	 */
	if (epoll_ctl(aw_epfd, EPOLL_CTL_MOD, s, &ev) != 0)
		(void) epoll_ctl(aw_epfd, EPOLL_CTL_ADD, s, &ev);
	return 0;
}

/*
 * libcurl's open-socket callback: applies the address policy to each address
 * it is about to connect to; clientp is where to say why one is refused.
 */
curl_socket_t
aw_conn_open_socket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	char	   *why = (char *) clientp; /* AW_WHY_LEN bytes of the request's */

	curl_socket_t s;

	if (!aw_address_allowed(&address->addr, why, AW_WHY_LEN))
		return CURL_SOCKET_BAD;
	s = socket(address->family, address->socktype, address->protocol);
	if (s >= 0 && s < aw_sock_state_size)
		aw_sock_state[s] = AW_SOCK_OURS;
	return s;
}

/* libcurl is done with a socket it opened through aw_conn_open_socket_cb */
int
aw_conn_close_socket_cb(void *clientp, curl_socket_t s)
{
	if (s >= 0 && s < aw_sock_state_size && aw_sock_state[s] != 0)
	{
		aw_sock_state[s] = 0;
		epoll_ctl(aw_epfd, EPOLL_CTL_DEL, s, NULL);
	}
	return close(s);
}

/* an idle kept-alive connection became readable: retire it */
static void
aw_retire_idle(int s)
{
	char		sink[4096];

	/* empty it, so that libcurl's liveness check sees the end, not data */
	while (recv(s, sink, sizeof(sink), MSG_DONTWAIT) > 0)
		;
	shutdown(s, SHUT_RDWR);
	epoll_ctl(aw_epfd, EPOLL_CTL_DEL, s, NULL);
	aw_sock_state[s] = AW_SOCK_OURS;
}

/*
 * aw_conn_ready
 *		Sockets that are ready for libcurl, up to max, into evs; *more says
 *		whether to ask again.  Idle connections that turned readable are
 *		retired on the way.
 */
int
aw_conn_ready(struct epoll_event *evs, int max, bool *more)
{
	int			n = epoll_wait(aw_epfd, evs, max, 0);
	int			kept = 0;

	for (int i = 0; i < n; i++)
	{
		int			fd = evs[i].data.fd;

		if (fd >= 0 && fd < aw_sock_state_size && aw_sock_state[fd] == AW_SOCK_IDLE)
			aw_retire_idle(fd);
		else
			evs[kept++] = evs[i];
	}
	*more = (n == max);
	return kept;
}
