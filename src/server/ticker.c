/* SPDX-License-Identifier: MIT */
/*
 * ticker.c -- one connection of microd's own on each epoll worker, and a
 * thread that watches the idle ones, so that no number of ready requests
 * stalls a worker: the cure for libmicrohttpd 0.9.75's epoll stall
 *
 * 0.9.75's MHD_epoll computes one timeout, then calls epoll_wait for at most
 * 128 events again and again while a call returns exactly 128, and serves the
 * connections only after that loop. Connections are edge-triggered: once a
 * call has returned every ready one, the next blocks for the whole timeout
 * (the nearest --idle-timeout) unless a new edge comes, so a worker that finds
 * 128, 256, ... requests ready at once stops until another arrives. The
 * timeout is 0 only when a connection is already on the worker's ready list
 * (eready) as the call begins, or one was resumed just before.
 *
 * A ticker is a socketpair connection whose one request never ends. While it
 * is awake its access handler runs on its worker every round, and a
 * connection in that state (the whole request read, no response) stays on
 * eready: the worker's every wait has timeout 0 and cannot block with
 * requests read but not served. After a round without a request it suspends
 * itself, and the worker blocks as before. The first request after that
 * resumes it, but that request was read by a blocking wait, and a burst of
 * exactly 128 would stall it there. So each worker's client sockets are also
 * in an epoll set of microd's own (its shadow), edge-triggered: the watch
 * thread waits on the shadows of the workers whose ticker sleeps, and a new
 * byte on any of their sockets that the worker has not read yet resumes the
 * ticker. The resume sets the worker's inter-thread channel, which stays
 * readable until the worker's loop reads it. If that read came in a full
 * batch, the wait after it blocks again: a ticker whose handler has not run
 * a millisecond after its resume is resumed again (resume_late).
 */
#include "internal.h"

#include <errno.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

/* Calls with no request since, after which a ticker suspends itself. */
#define TICK_QUIET_CALLS 2

/* A woken ticker not run this long after is resumed again (resume_late). */
#define RESUME_AGAIN_NS 1000000LL

/* The ticker of the worker this thread is (NULL: none, or not a worker). */
static _Thread_local struct tick *here;

static const char request[] = "GET /.microd/ticker HTTP/1.1\r\n"
                              "Host: ticker\r\n\r\n";

/* Resumes t when it is suspended, from any thread. */
static void
wake(struct tick *t)
{
	int suspended = TICK_SUSPENDED;

	if (atomic_compare_exchange_strong(&t->state, &suspended, TICK_WOKEN)) {
		atomic_store(&t->woken_ns, now_ns());
		MHD_resume_connection(t->conn);
	}
}

/*
 * The resume, again, for a ticker whose handler has not run RESUME_AGAIN_NS
 * after it: the inter-thread channel it set was read by a wait that returned
 * a full batch with it, and the wait after that blocks. Its handler may have
 * run meanwhile; a resume of a connection that is not suspended only turns
 * its next suspend into nothing, and its handler suspends it a round later.
 */
static long long
resume_late(struct server *srv, long long now)
{
	long long next = -1;

	for (unsigned int i = 0; i < srv->n_ticks; i++) {
		struct tick *t = &srv->ticks[i];
		long long due;

		if (atomic_load(&t->state) != TICK_WOKEN)
			continue;
		due = atomic_load(&t->woken_ns) + RESUME_AGAIN_NS;
		if (due <= now) {
			atomic_store(&t->woken_ns, now);
			MHD_resume_connection(t->conn);
			due = now + RESUME_AGAIN_NS;
		}
		if (next < 0 || due < next)
			next = due;
	}
	return next;
}

/*
 * Takes the events a shadow holds: whether one of them is a socket with
 * bytes its worker has not read (the kernel drops the others as it hands
 * them over).
 */
static int
unread(int shadow)
{
	struct epoll_event ev[64];
	int got = 0, n;

	do {
		n = epoll_wait(shadow, ev, 64, 0);
		got |= n > 0;
	} while (n == 64);
	return got;
}

static void *
watch(void *arg)
{
	struct server *srv = arg;
	struct pollfd p[CHECK_MAX + 1];
	unsigned int at[CHECK_MAX + 1];

	for (;;) {
		nfds_t n = 1;
		long long now = now_ns(), next = resume_late(srv, now);
		int ms = next < 0 ? -1 : (int)((next - now + 999999) / 1000000);

		p[0] = (struct pollfd){.fd = srv->tick_ctl, .events = POLLIN};
		for (unsigned int i = 0; i < srv->n_ticks; i++) {
			struct tick *t = &srv->ticks[i];

			if (atomic_load(&t->state) != TICK_SUSPENDED)
				continue;
			p[n] =
			    (struct pollfd){.fd = t->shadow, .events = POLLIN};
			at[n++] = i;
		}
		if (poll(p, n, ms) < 0) {
			if (errno == EINTR)
				continue;
			log_error("%s: poll: %s", __func__, strerror(errno));
			return NULL;
		}
		if (p[0].revents != 0) {
			uint64_t v;

			if (read(srv->tick_ctl, &v, sizeof(v)) < 0 &&
			    errno != EAGAIN)
				log_warn("%s: read: %s", __func__,
				         strerror(errno));
			if (atomic_load(&srv->ticks_stop))
				return NULL;
		}
		for (nfds_t k = 1; k < n; k++)
			if (p[k].revents != 0 && unread(p[k].fd))
				wake(&srv->ticks[at[k]]);
	}
}

/* Tells the watch thread to look again: a ticker sleeps, or stop. */
static void
signal_watch(struct server *srv)
{
	uint64_t one = 1;

	if (write(srv->tick_ctl, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("%s: write: %s", __func__, strerror(errno));
}

int
ticker_start(struct server *srv)
{
	unsigned int n = srv->workers < CHECK_MAX ? srv->workers : CHECK_MAX;

	srv->tick_ctl = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (srv->tick_ctl < 0) {
		log_error("%s: eventfd: %s", __func__, strerror(errno));
		return -1;
	}
	for (unsigned int i = 0; i < n; i++) {
		struct tick *t = &srv->ticks[i];
		int fd, peer;

		t->shadow = epoll_create1(EPOLL_CLOEXEC);
		if (t->shadow < 0) {
			log_error("%s: epoll_create1: %s", __func__,
			          strerror(errno));
			return -1;
		}
		peer = selfcall_pair(srv->workers, i, &fd);
		if (peer < 0) {
			log_error("%s: no ticker for worker %u: %s", __func__,
			          i, strerror(errno));
			return -1;
		}
		t->peer = peer;
		atomic_store(&t->fd, fd); /* before the library can see it */
		srv->n_ticks = i + 1;
		/* MHD owns fd from here on, and closes it even on failure. */
		if (selfcall_add(srv, fd) != 0) {
			log_error("%s: no ticker for worker %u", __func__, i);
			return -1;
		}
		/* Short enough for the socket buffer: send does not block. */
		if (send(peer, request, sizeof(request) - 1, MSG_NOSIGNAL) !=
		    (ssize_t)(sizeof(request) - 1)) {
			log_error("%s: ticker for worker %u: %s", __func__, i,
			          strerror(errno));
			return -1;
		}
	}
	if (pthread_create(&srv->tick_thread, NULL, watch, srv) != 0) {
		log_error("%s: cannot start the tickers' watch", __func__);
		return -1;
	}
	srv->tick_watching = 1;
	return 0;
}

int
ticker_is(struct server *srv, int fd)
{
	for (unsigned int i = 0; i < CHECK_MAX; i++)
		if (atomic_load_explicit(&srv->ticks[i].fd,
		                         memory_order_relaxed) == fd)
			return 1;
	return 0;
}

void
ticker_shadow(int fd)
{
	struct epoll_event ev = {.events = EPOLLIN | EPOLLET};

	/* Before its worker's ticker has run: the ticker is awake anyway. */
	if (here != NULL &&
	    epoll_ctl(here->shadow, EPOLL_CTL_ADD, fd, &ev) != 0)
		log_warn("%s: epoll_ctl: %s", __func__, strerror(errno));
}

void
ticker_poke(void)
{
	if (here == NULL)
		return;
	here->quiet = 0;
	wake(here);
}

/* At stop: an empty answer that closes the connection (into our end). */
static enum MHD_Result
answer_last(struct MHD_Connection *conn)
{
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret = MHD_NO;

	if (resp == NULL)
		return MHD_NO;
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION,
	                            "close") == MHD_YES)
		ret = MHD_queue_response(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
		                         resp);
	MHD_destroy_response(resp); /* MHD keeps its own reference */
	return ret;
}

enum MHD_Result
ticker_call(struct server *srv, struct MHD_Connection *conn, int first)
{
	const union MHD_ConnectionInfo *fd =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct tick *t = NULL;

	/* n_ticks may still grow while the first ones run: by fd, to the end */
	for (unsigned int i = 0; fd != NULL && i < CHECK_MAX && t == NULL; i++)
		if (atomic_load(&srv->ticks[i].fd) == fd->connect_fd)
			t = &srv->ticks[i];
	if (t == NULL)
		return MHD_NO; /* closed unanswered */
	if (atomic_load(&srv->ticks_stop))
		return answer_last(conn);
	if (first) {
		t->conn = conn;
		here = t;
		/* No timeout: an awake ticker sees no traffic of its own. */
		(void)MHD_set_connection_option(
		    conn, MHD_CONNECTION_OPTION_TIMEOUT, 0);
		/* 0.9.75 calls again at once, with the request whole. */
		return MHD_YES;
	}
	/* Not suspended, whatever resumed it: a resume_late one too. */
	atomic_store(&t->state, TICK_AWAKE);
	/*
	 * Called twice a round while awake: from the walk over the
	 * connections with a timeout of their own, then from eready, before
	 * the round's requests (it has been on eready longest). Two calls
	 * with no request between them are one round without a request.
	 */
	if (t->quiet++ < TICK_QUIET_CALLS)
		return MHD_YES;
	t->quiet = 0;
	MHD_suspend_connection(conn);
	atomic_store(&t->state, TICK_SUSPENDED);
	signal_watch(srv);
	/* ticker_stop may have looked before the store: wake it for it. */
	if (atomic_load(&srv->ticks_stop))
		wake(t);
	return MHD_YES;
}

void
ticker_stop(struct server *srv)
{
	atomic_store(&srv->ticks_stop, 1);
	if (srv->tick_watching) {
		signal_watch(srv);
		pthread_join(srv->tick_thread, NULL);
		srv->tick_watching = 0;
	}
	for (unsigned int i = 0; i < srv->n_ticks; i++)
		wake(&srv->ticks[i]);
}

void
ticker_close(struct server *srv)
{
	for (unsigned int i = 0; i < srv->n_ticks; i++)
		if (srv->ticks[i].peer >= 0)
			close(srv->ticks[i].peer);
	for (unsigned int i = 0; i < CHECK_MAX; i++)
		if (srv->ticks[i].shadow >= 0)
			close(srv->ticks[i].shadow);
	if (srv->tick_ctl >= 0)
		close(srv->tick_ctl);
}
