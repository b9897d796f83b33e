/* SPDX-License-Identifier: MIT */
/*
 * gone.c -- tells a blocking handler that its client has gone: one thread
 * watches the sockets of the connections suspended while their handlers run
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "log.h"

/* The stop descriptor's tag in the epoll set: no slot has this index. */
#define GONE_STOP UINT64_MAX

/* Events the watcher takes at once. */
#define GONE_EVENTS 16

/*
 * One per handler thread that may run at once, reused across requests: the
 * eventfd a handler polls, and the client socket watched for it. The socket
 * is libmicrohttpd's: it is registered and removed here, never read, shut
 * down or closed.
 */
struct gone_slot {
	pthread_mutex_t lock; /* guards all below but efd and index */
	int efd;              /* the handler's gone_fd; counts once signalled */
	uint32_t index;       /* in gone.slots */
	uint32_t gen;         /* of the socket's registration: stale events
	                         name an older one */
	int fd;               /* the client's socket while registered, or -1 */
	int fired;            /* efd holds a count, drained at the next claim */
	int cut;              /* the request was cut: never register again */
	const void *owner;    /* the request holding the slot, or NULL */
	struct gone_slot *next_free;
};

struct gone {
	int epfd;             /* the client sockets (EPOLLRDHUP), the stop */
	int stopfd;           /* an eventfd: written once, by gone_stop */
	pthread_t thread;     /* the watcher */
	int running;          /* thread started: joined by gone_stop */
	pthread_mutex_t lock; /* guards free, refs, stopped */
	struct gone_slot *free;
	/* gone_stop's one, and one per claimed slot: a handler abandoned at
	 * stop may release its slot after the server is gone. */
	unsigned int refs;
	unsigned int n;
#if MICROD_TEST_HOOKS
	long lag_ms; /* MICROD_TEST_GONE_LAG_MS: see gone_main */
#endif
	struct gone_slot slots[];
};

static void
gone_free(struct gone *g)
{
	for (unsigned int i = 0; i < g->n; i++) {
		if (g->slots[i].efd >= 0)
			close(g->slots[i].efd);
		pthread_mutex_destroy(&g->slots[i].lock);
	}
	if (g->stopfd >= 0)
		close(g->stopfd);
	if (g->epfd >= 0)
		close(g->epfd);
	pthread_mutex_destroy(&g->lock);
	free(g);
}

/* Drops one reference; the last frees g. */
static void
gone_unref(struct gone *g)
{
	unsigned int left;

	pthread_mutex_lock(&g->lock);
	left = --g->refs;
	pthread_mutex_unlock(&g->lock);
	if (left == 0)
		gone_free(g);
}

/* Under s->lock: turns the handler's descriptor readable, once. */
static void
gone_signal(struct gone_slot *s)
{
	uint64_t one = 1;

	if (s->fired)
		return;
	if (write(s->efd, &one, sizeof(one)) != (ssize_t)sizeof(one))
		log_warn("%s: eventfd: %s", __func__, strerror(errno));
	s->fired = 1;
}

/* Under s->lock: takes the socket out of the epoll set (before the
 * connection is resumed, and so before libmicrohttpd may close it). */
static void
gone_remove(struct gone *g, struct gone_slot *s)
{
	if (s->fd < 0)
		return;
	if (epoll_ctl(g->epfd, EPOLL_CTL_DEL, s->fd, NULL) != 0)
		log_warn("%s: epoll_ctl: %s", __func__, strerror(errno));
	s->fd = -1;
}

/* The watcher saw the peer of the registration tag close, reset or shut
 * down its side. */
static void
gone_event(struct gone *g, uint64_t tag)
{
	uint32_t index = (uint32_t)(tag & 0xffffffffU);
	struct gone_slot *s;

	if (index >= g->n)
		return; /* cannot happen */
	s = &g->slots[index];
	pthread_mutex_lock(&s->lock);
	/* A stale event, from a registration removed since, is dropped: it
	 * was about another request. */
	if (s->fd >= 0 && s->gen == (uint32_t)(tag >> 32))
		gone_signal(s);
	pthread_mutex_unlock(&s->lock);
}

static void *
gone_main(void *arg)
{
	struct gone *g = arg;
	struct epoll_event ev[GONE_EVENTS];

	for (;;) {
		int n = epoll_wait(g->epfd, ev, GONE_EVENTS, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("%s: epoll_wait: %s: clients that leave are "
			          "no longer noticed",
			          __func__, strerror(errno));
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].data.u64 == GONE_STOP)
				return NULL;
#if MICROD_TEST_HOOKS
			/* Test builds only: a watcher that lags, so that
			 * the suite can make an event go stale. */
			if (g->lag_ms > 0) {
				struct timespec ts = {g->lag_ms / 1000,
				                      g->lag_ms % 1000 *
				                          1000000L};

				while (nanosleep(&ts, &ts) != 0)
					;
			}
#endif
			gone_event(g, ev[i].data.u64);
		}
	}
}

struct gone *
gone_start(unsigned int slots)
{
	struct gone *g = calloc(1, sizeof(*g) + slots * sizeof(g->slots[0]));
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = GONE_STOP};
	int err;

	if (g == NULL) {
		log_error("%s: out of memory", __func__);
		return NULL;
	}
	g->epfd = g->stopfd = -1;
	g->refs = 1;
#if MICROD_TEST_HOOKS
	if (getenv("MICROD_TEST_GONE_LAG_MS") != NULL)
		g->lag_ms = atol(getenv("MICROD_TEST_GONE_LAG_MS"));
#endif
	if (pthread_mutex_init(&g->lock, NULL) != 0) {
		free(g);
		log_error("%s: cannot set up the client watch", __func__);
		return NULL;
	}
	for (; g->n < slots; g->n++) {
		struct gone_slot *s = &g->slots[g->n];

		s->fd = -1;
		s->index = g->n;
		s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (s->efd < 0 || pthread_mutex_init(&s->lock, NULL) != 0) {
			log_error("%s: eventfd: %s", __func__, strerror(errno));
			if (s->efd >= 0)
				close(s->efd);
			goto fail;
		}
		s->next_free = g->free;
		g->free = s;
	}
	g->epfd = epoll_create1(EPOLL_CLOEXEC);
	g->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (g->epfd < 0 || g->stopfd < 0 ||
	    epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->stopfd, &ev) != 0) {
		log_error("%s: epoll: %s", __func__, strerror(errno));
		goto fail;
	}
	err = pthread_create(&g->thread, NULL, gone_main, g);
	if (err != 0) {
		log_error("%s: cannot start the client watch: %s", __func__,
		          strerror(err));
		goto fail;
	}
	g->running = 1;
	return g;
fail:
	gone_free(g);
	return NULL;
}

void
gone_stop(struct gone *g)
{
	uint64_t one = 1;

	if (g == NULL)
		return;
	if (g->running) {
		if (write(g->stopfd, &one, sizeof(one)) !=
		    (ssize_t)sizeof(one)) {
			/* The watcher goes on: g is left to it. */
			log_warn("%s: eventfd: %s", __func__, strerror(errno));
			return;
		}
		pthread_join(g->thread, NULL);
	}
	gone_unref(g); /* a slot still claimed keeps g */
}

struct gone_slot *
gone_claim(struct gone *g, const void *owner)
{
	struct gone_slot *s;
	uint64_t count;

	pthread_mutex_lock(&g->lock);
	s = g->free;
	if (s != NULL) {
		g->free = s->next_free;
		g->refs++;
	}
	pthread_mutex_unlock(&g->lock);
	if (s == NULL)
		return NULL; /* more handlers than threads: cannot happen */
	pthread_mutex_lock(&s->lock);
	/* The previous request's signal must not reach this one. */
	if (s->fired && read(s->efd, &count, sizeof(count)) < 0 &&
	    errno != EAGAIN)
		log_warn("%s: eventfd: %s", __func__, strerror(errno));
	s->fired = 0;
	s->cut = 0;
	s->owner = owner;
	pthread_mutex_unlock(&s->lock);
	return s;
}

const int *
gone_fd(const struct gone_slot *s)
{
	return &s->efd; /* constant while the slot is claimed */
}

void
gone_watch(struct gone *g, struct gone_slot *s, int fd)
{
	/* EPOLLRDHUP only: data the client sends (a pipelined request) is
	 * no sign of leaving. Errors and hang-ups come anyway. One shot: a
	 * closed socket stays closed, and the watcher must not spin on it. */
	struct epoll_event ev = {.events = EPOLLRDHUP | EPOLLONESHOT};

	pthread_mutex_lock(&s->lock);
	if (!s->cut && s->fd < 0) {
		s->gen++;
		ev.data.u64 = (uint64_t)s->gen << 32 | s->index;
		if (epoll_ctl(g->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
			s->fd = fd;
		else
			log_warn("%s: epoll_ctl: %s: a client that leaves is "
			         "not noticed",
			         __func__, strerror(errno));
	}
	pthread_mutex_unlock(&s->lock);
}

void
gone_cut(struct gone *g, struct gone_slot *s, const void *owner)
{
	pthread_mutex_lock(&s->lock);
	if (s->owner == owner) { /* else released, maybe claimed again */
		gone_remove(g, s);
		s->cut = 1;
		gone_signal(s);
	}
	pthread_mutex_unlock(&s->lock);
}

void
gone_release(struct gone *g, struct gone_slot *s)
{
	pthread_mutex_lock(&s->lock);
	gone_remove(g, s);
	s->owner = NULL;
	pthread_mutex_unlock(&s->lock);
	pthread_mutex_lock(&g->lock);
	s->next_free = g->free;
	g->free = s;
	pthread_mutex_unlock(&g->lock);
	gone_unref(g);
}
