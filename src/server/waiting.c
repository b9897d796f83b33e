/* SPDX-License-Identifier: MIT */
/*
 * waiting.c -- client connections waiting for a request head: closed once
 * --header-timeout passes, and, at the connection limit, the one that has
 * waited longest closed to make room, as nginx reuses its idle connections
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "internal.h"
#include "log.h"
#include "metrics.h"

/* The sweep's period: a quarter of the timeout, within these bounds. */
#define SWEEP_MIN_NS 10000000LL
#define SWEEP_MAX_NS 1000000000LL

struct waiting {
	pthread_mutex_t lock; /* guards the list and each entry's closing */
	struct waiter list;   /* sentinel of a circular list */
	/* Evicted and not yet removed: past the limit until they close. */
	unsigned int evicting;
	long long timeout_ns;
	/* The sweep thread. */
	pthread_t thread;
	pthread_cond_t wake;
	int stop; /* under lock */
};

/* Shuts c down, under the lock: libmicrohttpd reads its end of file and
 * closes it on its own thread; the descriptor stays c's until then (it is
 * closed only after NOTIFY_CLOSED has taken c off the list). */
static void
shut(struct waiting *w, struct waiter *c, int evicted)
{
	c->closing = evicted ? 2 : 1;
	w->evicting += evicted;
	if (shutdown(c->fd, SHUT_RDWR) != 0 && errno != ENOTCONN)
		log_warn("%s: shutdown: %s", __func__, strerror(errno));
}

/* Claims c, under the lock, when it still waits since since: 1 when it
 * was, 0 when its request began meanwhile (it is then no longer waiting). */
static int
claim(struct waiter *c, long long since)
{
	return atomic_compare_exchange_strong_explicit(
	    &c->since_ns, &since, WAITING_CLAIMED, memory_order_relaxed,
	    memory_order_relaxed);
}

static void
sweep(struct waiting *w, long long now)
{
	for (struct waiter *c = w->list.next; c != &w->list; c = c->next) {
		long long since =
		    atomic_load_explicit(&c->since_ns, memory_order_relaxed);

		if (c->closing || since <= WAITING_BUSY ||
		    now - since < w->timeout_ns || !claim(c, since))
			continue;
		shut(w, c, 0);
		/* An idle keep-alive connection apart from a slow head. */
		metrics_connection_cut(
		    atomic_load_explicit(&c->served, memory_order_relaxed)
		        ? METRICS_CLOSED_IDLE
		        : METRICS_CLOSED_HEADER_TIMEOUT);
	}
}

static void *
sweeper(void *arg)
{
	struct waiting *w = arg;
	long long period = w->timeout_ns / 4;

	if (period < SWEEP_MIN_NS)
		period = SWEEP_MIN_NS;
	if (period > SWEEP_MAX_NS)
		period = SWEEP_MAX_NS;
	pthread_mutex_lock(&w->lock);
	while (!w->stop) {
		struct timespec until;

		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += (time_t)(period / 1000000000LL);
		until.tv_nsec += (long)(period % 1000000000LL);
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		(void)pthread_cond_timedwait(&w->wake, &w->lock, &until);
		if (!w->stop)
			sweep(w, now_ns());
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

struct waiting *
waiting_start(long long timeout_ns)
{
	struct waiting *w = calloc(1, sizeof(*w));
	pthread_condattr_t attr;
	int ok = 0;

	if (w == NULL)
		return NULL;
	w->list.next = w->list.prev = &w->list;
	w->timeout_ns = timeout_ns;
	if (pthread_mutex_init(&w->lock, NULL) != 0) {
		free(w);
		return NULL;
	}
	if (pthread_condattr_init(&attr) == 0) {
		ok = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0 &&
		     pthread_cond_init(&w->wake, &attr) == 0;
		pthread_condattr_destroy(&attr);
	}
	if (!ok) {
		pthread_mutex_destroy(&w->lock);
		free(w);
		return NULL;
	}
	if (pthread_create(&w->thread, NULL, sweeper, w) != 0) {
		pthread_cond_destroy(&w->wake);
		pthread_mutex_destroy(&w->lock);
		free(w);
		return NULL;
	}
	return w;
}

void
waiting_stop(struct waiting *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = 1;
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->wake);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

void
waiting_add(struct waiting *w, struct waiter *c, int fd)
{
	c->fd = fd;
	c->closing = 0;
	atomic_init(&c->since_ns, now_ns());
	atomic_init(&c->served, 0);
	pthread_mutex_lock(&w->lock);
	c->prev = w->list.prev;
	c->next = &w->list;
	w->list.prev->next = c;
	w->list.prev = c;
	pthread_mutex_unlock(&w->lock);
}

void
waiting_remove(struct waiting *w, struct waiter *c)
{
	pthread_mutex_lock(&w->lock);
	c->prev->next = c->next;
	c->next->prev = c->prev;
	if (c->closing == 2)
		w->evicting--;
	pthread_mutex_unlock(&w->lock);
}

int
waiting_evict(struct waiting *w)
{
	int done = 0;

	pthread_mutex_lock(&w->lock);
	while (!done && w->evicting < WAITING_CLOSING_MAX) {
		struct waiter *oldest = NULL;
		long long first = 0;

		for (struct waiter *c = w->list.next; c != &w->list;
		     c = c->next) {
			long long since = atomic_load_explicit(
			    &c->since_ns, memory_order_relaxed);

			if (!c->closing && since > WAITING_BUSY &&
			    (oldest == NULL || since < first)) {
				oldest = c;
				first = since;
			}
		}
		if (oldest == NULL)
			break;
		/* Its head may have arrived since: then it is in a request,
		 * and the next oldest is looked for. */
		if (claim(oldest, first)) {
			shut(w, oldest, 1);
			metrics_connection_cut(METRICS_CLOSED_EVICTED);
			done = 1;
		}
	}
	pthread_mutex_unlock(&w->lock);
	return done;
}
