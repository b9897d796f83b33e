/* SPDX-License-Identifier: MIT */
/*
 * pool.h -- the handler pool: a bounded queue and the threads that run
 * blocking handlers, so that the threads serving connections never wait
 */
#ifndef MICROD_POOL_H
#define MICROD_POOL_H

/* One piece of work; the submitter owns it and embeds this in its own. */
struct pool_task {
	void (*run)(struct pool_task *task); /* on a pool thread */
	/* Then, on the same thread, under the pool's lock: never at the same
	 * time as a pool_abandon callback. task may be freed in it. */
	void (*finish)(struct pool_task *task);
	struct pool_task *next; /* the pool's */
};

struct pool;

/*
 * Starts threads threads, with room for queue tasks waiting besides one
 * running on each. NULL (logged) when a thread cannot be started.
 */
struct pool *pool_start(unsigned int threads, unsigned int queue);

/*
 * Queues task, to run as soon as a thread is free: 0. At once POOL_FULL
 * (counted as rejected) when every thread is busy and the queue is full, or
 * POOL_CLOSED once pool_close ran: the caller still owns task then and
 * should refuse the request (503).
 */
#define POOL_FULL (-1)
#define POOL_CLOSED (-2)
int pool_submit(struct pool *pool, struct pool_task *task);

/* Tasks waiting, and threads running one. */
unsigned int pool_queued(struct pool *pool);
unsigned int pool_busy(struct pool *pool);

/*
 * Refuses new tasks from now on and takes every task still waiting out of
 * the queue, calling cancel on each (on the caller's thread). Tasks already
 * running go on.
 */
void pool_close(struct pool *pool, void (*cancel)(struct pool_task *task));

/*
 * Calls fn on every task still running, under the pool's lock (so never at
 * the same time as that task's finish); the count of them. Their finish
 * still comes when their run returns.
 */
unsigned int pool_abandon(struct pool *pool, void (*fn)(struct pool_task *));

/*
 * Ends the threads and frees the pool, after pool_close. A thread still in a
 * task is left to end on its own (the last one frees the pool): joining it
 * could wait without end.
 */
void pool_stop(struct pool *pool);

#endif
