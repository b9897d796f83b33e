/* SPDX-License-Identifier: MIT */
/* pool.c -- the handler pool: bounded queue, worker threads, their gauges */
#include "pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"

struct pool {
	pthread_mutex_t lock; /* guards all below */
	pthread_cond_t work;  /* a task was queued, or the pool closed */
	pthread_cond_t idle;  /* a task ended */
	struct pool_task *head, *tail;
	unsigned int queued, busy, threads, room;
	int closed;
	int abandoned;        /* pool_stop left: the last thread frees it */
	unsigned int live;    /* threads not yet ended */
	unsigned int started; /* threads in tid[] and current[] */
	struct pool_task **current; /* per thread: the task it runs, or NULL */
	pthread_t tid[];
};

/* What each thread gets: the pool and its own slot in current[]. */
struct pool_thread {
	struct pool *pool;
	unsigned int slot;
};

static void
pool_free(struct pool *p)
{
	free(p->current);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->idle);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static void *
pool_main(void *arg)
{
	struct pool_thread self = *(struct pool_thread *)arg;
	struct pool *p = self.pool;
	int last;

	free(arg);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct pool_task *t;

		while (p->head == NULL && !p->closed)
			pthread_cond_wait(&p->work, &p->lock);
		if (p->head == NULL)
			break; /* closed and empty */
		t = p->head;
		p->head = t->next;
		if (p->head == NULL)
			p->tail = NULL;
		p->queued--;
		p->busy++;
		p->current[self.slot] = t;
		metrics_handler_moved(-1, 1);
		pthread_mutex_unlock(&p->lock);
		t->run(t);
		pthread_mutex_lock(&p->lock);
		p->current[self.slot] = NULL;
		t->finish(t); /* t may be gone once this returns */
		p->busy--;
		metrics_handler_moved(0, -1);
		pthread_cond_broadcast(&p->idle);
	}
	last = --p->live == 0 && p->abandoned;
	pthread_mutex_unlock(&p->lock);
	if (last)
		pool_free(p);
	return NULL;
}

struct pool *
pool_start(unsigned int threads, unsigned int queue)
{
	struct pool *p = calloc(1, sizeof(*p) + threads * sizeof(pthread_t));
	int err;

	if (p == NULL) {
		log_error("%s: out of memory", __func__);
		return NULL;
	}
	if (pthread_mutex_init(&p->lock, NULL) != 0) {
		free(p);
		log_error("%s: cannot set up the handler pool", __func__);
		return NULL;
	}
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->idle, NULL);
	p->current = calloc(threads, sizeof(struct pool_task *));
	if (p->current == NULL) {
		log_error("%s: out of memory", __func__);
		pool_free(p);
		return NULL;
	}
	p->threads = threads;
	p->room = threads + queue;
	for (; p->started < threads; p->started++) {
		struct pool_thread *arg = malloc(sizeof(*arg));

		if (arg == NULL) {
			log_error("%s: out of memory", __func__);
			pool_close(p, NULL);
			pool_stop(p);
			return NULL;
		}
		arg->pool = p;
		arg->slot = p->started;
		pthread_mutex_lock(&p->lock);
		p->live++;
		pthread_mutex_unlock(&p->lock);
		/* The thread frees arg. */
		err = pthread_create(&p->tid[p->started], NULL, pool_main, arg);
		if (err != 0) {
			free(arg);
			pthread_mutex_lock(&p->lock);
			p->live--;
			pthread_mutex_unlock(&p->lock);
			log_error("%s: cannot start handler thread %u: %s",
			          __func__, p->started + 1, strerror(err));
			pool_close(p, NULL);
			pool_stop(p);
			return NULL;
		}
	}
	metrics_handler_threads(threads);
	return p;
}

int
pool_submit(struct pool *p, struct pool_task *t)
{
	int ret = POOL_FULL;

	pthread_mutex_lock(&p->lock);
	if (p->closed)
		ret = POOL_CLOSED;
	else if (p->queued + p->busy < p->room) {
		t->next = NULL;
		if (p->tail != NULL)
			p->tail->next = t;
		else
			p->head = t;
		p->tail = t;
		p->queued++;
		metrics_handler_moved(1, 0);
		pthread_cond_signal(&p->work);
		ret = 0;
	}
	pthread_mutex_unlock(&p->lock);
	if (ret == POOL_FULL)
		metrics_handler_rejected();
	return ret;
}

unsigned int
pool_queued(struct pool *p)
{
	unsigned int n;

	pthread_mutex_lock(&p->lock);
	n = p->queued;
	pthread_mutex_unlock(&p->lock);
	return n;
}

unsigned int
pool_busy(struct pool *p)
{
	unsigned int n;

	pthread_mutex_lock(&p->lock);
	n = p->busy;
	pthread_mutex_unlock(&p->lock);
	return n;
}

void
pool_close(struct pool *p, void (*cancel)(struct pool_task *))
{
	struct pool_task *t;

	pthread_mutex_lock(&p->lock);
	p->closed = 1;
	t = p->head;
	p->head = p->tail = NULL;
	metrics_handler_moved(-(int)p->queued, 0);
	p->queued = 0;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	while (t != NULL) {
		struct pool_task *next = t->next;

		if (cancel != NULL)
			cancel(t);
		t = next;
	}
}

unsigned int
pool_abandon(struct pool *p, void (*fn)(struct pool_task *))
{
	unsigned int n = 0;

	pthread_mutex_lock(&p->lock);
	for (unsigned int i = 0; i < p->started; i++) {
		if (p->current[i] == NULL)
			continue;
		fn(p->current[i]);
		n++;
	}
	pthread_mutex_unlock(&p->lock);
	return n;
}

void
pool_stop(struct pool *p)
{
	int busy;

	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	busy = p->busy > 0;
	if (busy) {
		/* Joining would wait for a handler that did not end in time:
		 * the threads end on their own, the last one frees the pool. */
		p->abandoned = 1;
		for (unsigned int i = 0; i < p->started; i++)
			pthread_detach(p->tid[i]);
	}
	pthread_mutex_unlock(&p->lock);
	if (busy) {
		log_warn("handler pool: a handler still running is left to "
		         "the exit");
		return;
	}
	for (unsigned int i = 0; i < p->started; i++)
		pthread_join(p->tid[i], NULL);
	pool_free(p);
}
