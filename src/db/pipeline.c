/* SPDX-License-Identifier: MIT */
/*
 * pipeline.c -- the pool's lanes: one thread a connection, holding it in
 * libpq's pipeline mode with the batches of several requests in flight,
 * each batch its statements and one Sync (one implicit transaction), and
 * handing every batch's results back to the handler thread waiting on them
 *
 * Only a lane's thread calls libpq on its connection. A handler queues its
 * batch on the lane with the fewest and waits on the batch's condition; the
 * lane sends what is queued while its oldest batch is young (a slow one
 * holds up what is pipelined behind it, so a lane stops taking more), reads
 * the results in order, and watches the clients of the batches in flight:
 * one that leaves alone on its connection is cancelled (the connection
 * goes, so the cancel reaches nobody else); one pipelined with others runs
 * on and its result is dropped.
 */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

/* Batches in flight on one connection at most. */
#define LANE_DEPTH 32

/* Clients found gone in one look at most (more wait for the next). */
#define LANE_GONE_BATCH 32

/* A handler picks the first lane with fewer batches than this. */
#define LANE_FILL 16

/* A lane whose oldest batch has waited this long for its results sends
 * nothing more until it is answered. */
#define LANE_STALL_MS 5

/* Past the statement deadline, the server's own statement_timeout has
 * this long to answer (57014) before the lane cuts the connection. */
#define LANE_GRACE_MS 250

/*
 * Cancels sent and not yet answered. libpq 15's PQcancel blocks until the
 * server closes the cancel's connection, with no timeout of its own: a
 * database that accepts that connection and never answers would hold the
 * thread. So each runs on a thread of its own, and past this many none is
 * sent: the server's statement_timeout ends the statement anyway. Shared by
 * every lane, hence atomic.
 */
#define LANE_CANCELS_MAX 8
static atomic_int cancels_in_flight;

/* What a batch sends, in order: a statement's DEALLOCATE (its cached plan
 * went stale), its PREPARE (not prepared on this connection yet), or call
 * k's execution. */
enum item_kind { ITEM_DEALLOCATE, ITEM_PREPARE, ITEM_EXEC };

struct item {
	enum item_kind kind;
	unsigned int k; /* the call (EXEC), else the statement's row */
};

struct lane {
	pthread_mutex_t lock; /* guards all below, the connection's use too */
	pthread_cond_t work;  /* a batch was queued, or stop */
	struct db_batch *queue, *queue_tail; /* queued, not sent */
	_Atomic unsigned int load;           /* queued or in flight */
	int stop, idle;
	int polling; /* the thread waits in poll(): a handler may send */
	int failed;  /* a handler's send failed: the connection goes */
	int wake;    /* eventfd: a batch was queued while the thread polls */
	/* epoll set of the clients' gone descriptors of the batches in the
	 * lane (data: the batch), added by the handler that queues one: a
	 * batch a handler sent itself is watched without a wake-up. */
	int gone_ep;
	pthread_t thread;
	int started;
	struct db_lanes *lanes;
	struct db_conn *conn;
	struct db_batch *fly, *fly_tail; /* sent, in the server's order */
	unsigned int nfly;
};

struct db_lanes {
	struct db_pool *pool;
	const struct db_pool_options *opt;
	int pipeline; /* 0: one statement a round trip, one batch a lane */
	unsigned int n;
	struct lane lane[];
};

/* Wakes the lane's thread; under its lock. */
static void
lane_poke(struct lane *l)
{
	if (l->idle) {
		pthread_cond_signal(&l->work);
	} else if (l->polling) {
		unsigned long long one = 1;
		ssize_t w = write(l->wake, &one, sizeof(one));

		(void)w; /* the counter is only ever near 0 */
	}
}

/* Hands b's outcome to its waiter; under the lane's lock. Its client is
 * no longer watched: its handler's descriptor serves its next request. */
static void
lane_notify(struct lane *l, struct db_batch *b, enum db_outcome o)
{
	if (b->notified)
		return;
	if (b->watched)
		(void)epoll_ctl(l->gone_ep, EPOLL_CTL_DEL, b->gone_fd, NULL);
	b->watched = 0;
	b->outcome = o;
	b->notified = 1;
	atomic_fetch_sub(&l->load, 1);
	pthread_cond_signal(&b->done);
}

/* b leaves the lane for good: its waiter's, or freed when it left. */
static void
lane_finish(struct lane *l, struct db_batch *b, enum db_outcome o)
{
	b->in_lane = 0;
	if (b->orphan)
		db_batch_free(b);
	else
		lane_notify(l, b, o);
}

static void *
lane_cancel_main(void *arg)
{
	PGcancel *cancel = arg;
	char err[256];

	if (!PQcancel(cancel, err, sizeof(err)))
		log_debug("database: cancel: %.*s", (int)strcspn(err, "\n"),
		          err);
	PQfreeCancel(cancel);
	atomic_fetch_sub(&cancels_in_flight, 1);
	return NULL;
}

/* Cancels what runs on the lane's connection when cancel, and discards
 * the connection: a cancel that arrives late can only hit a connection
 * nobody uses any more (its backend's key is its own). */
static void
lane_drop_conn(struct lane *l, int cancel_it)
{
	PGcancel *cancel = cancel_it ? PQgetCancel(db_conn_pg(l->conn)) : NULL;
	pthread_attr_t attr;
	pthread_t t;
	int started = 0;

	db_release(l->lanes->pool, l->conn, 1);
	l->conn = NULL;
	if (cancel == NULL)
		return;
	if (atomic_fetch_add(&cancels_in_flight, 1) >= LANE_CANCELS_MAX) {
		atomic_fetch_sub(&cancels_in_flight, 1);
		log_warn("database: %d cancels unanswered: this one is not "
		         "sent (statement_timeout ends the statement)",
		         LANE_CANCELS_MAX);
		PQfreeCancel(cancel);
		return;
	}
	if (pthread_attr_init(&attr) == 0) {
		started =
		    pthread_attr_setdetachstate(&attr,
		                                PTHREAD_CREATE_DETACHED) == 0 &&
		    pthread_create(&t, &attr, lane_cancel_main, cancel) == 0;
		pthread_attr_destroy(&attr);
	}
	if (!started)
		lane_cancel_main(cancel); /* no thread: here, then */
}

/*
 * The connection is gone or cut: the oldest batch in flight gets first
 * (the reason it was cut), every other one in flight `rest`.
 */
static void
lane_cut(struct lane *l, enum db_outcome first, enum db_outcome rest,
         int cancel_it)
{
	struct db_batch *b = l->fly;

	lane_drop_conn(l, cancel_it);
	l->fly = l->fly_tail = NULL;
	l->nfly = 0;
	for (int i = 0; b != NULL; i++) {
		struct db_batch *next = b->next;
		enum db_outcome o = i == 0 ? first : rest;

		/* The server's goodbye (57P01, ...) says more than "lost". */
		if (o == DB_LOST && b->err != NULL)
			o = DB_RAN;
		lane_finish(l, b, o);
		b = next;
	}
}

/* Sends b's next group: the whole batch and a Sync (pipelined), or one
 * statement and a Sync (not). 0, or -1 when the connection failed. */
static int
lane_send(struct lane *l, struct db_batch *b)
{
	PGconn *pg = db_conn_pg(l->conn);
	const struct db_statement *table = l->lanes->opt->statements;
	unsigned char *prepared = l->conn->prepared;
	unsigned int end = l->lanes->pipeline ? b->n : b->next_call + 1;

	for (; b->next_call < end; b->next_call++) {
		unsigned int k = b->next_call, s = b->stmt[k];
		const struct db_statement *st = &table[s];

		if (prepared[s] == DB_STALE) {
			char sql[128];

			snprintf(sql, sizeof(sql), "DEALLOCATE \"%s\"",
			         st->name);
			if (!PQsendQueryParams(pg, sql, 0, NULL, NULL, NULL,
			                       NULL, 0))
				return -1;
			b->items[b->nitems++] =
			    (struct item){ITEM_DEALLOCATE, s};
			prepared[s] = DB_UNPREPARED;
		}
		if (prepared[s] == DB_UNPREPARED) {
			unsigned int types[DB_PARAMS_MAX];

			for (unsigned int j = 0; j < st->n_params; j++)
				types[j] = db_type_oid(st->params[j]);
			if (!PQsendPrepare(pg, st->name, st->sql,
			                   (int)st->n_params, types))
				return -1;
			b->items[b->nitems++] = (struct item){ITEM_PREPARE, s};
			prepared[s] = DB_PREPARED; /* undone if it fails */
		}
		if (!PQsendQueryPrepared(pg, st->name, (int)st->n_params,
		                         b->calls[k].values, NULL, NULL, 0))
			return -1;
		b->items[b->nitems++] = (struct item){ITEM_EXEC, k};
	}
	if (!PQpipelineSync(pg))
		return -1;
	b->sent_ns = b->sent_ns != 0 ? b->sent_ns : now_ns();
	return 0;
}

/* Moves what may go from the queue to the connection: 0, or -1 when the
 * connection failed. */
static int
lane_send_queued(struct lane *l)
{
	unsigned int depth = l->lanes->pipeline ? LANE_DEPTH : 1;

	for (;;) {
		struct db_batch *b;

		if (l->nfly >= depth ||
		    (l->fly != NULL &&
		     now_ms() - l->fly->head_ms >= LANE_STALL_MS))
			return 0;
		b = l->queue;
		if (b != NULL) {
			l->queue = b->next;
			if (l->queue == NULL)
				l->queue_tail = NULL;
			b->next = NULL;
		}
		if (b == NULL)
			return 0;
		if (l->fly_tail != NULL)
			l->fly_tail->next = b;
		else
			l->fly = b;
		l->fly_tail = b;
		l->nfly++;
		if (l->fly == b)
			b->head_ms = now_ms();
		if (lane_send(l, b) != 0)
			return -1;
	}
}

/* One result for the oldest batch in flight. */
static void
lane_result(struct lane *l, struct db_batch *b, PGresult *r)
{
	const struct item *it = &b->items[b->item];
	const char *state;

	switch (PQresultStatus(r)) {
	case PGRES_TUPLES_OK:
	case PGRES_COMMAND_OK:
		if (it->kind == ITEM_EXEC && b->pg[it->k] == NULL) {
			long long t = now_ns();

			b->pg[it->k] = r;
			b->end_ns[it->k] = t;
			db_pool_observe(l->lanes->pool, b->stmt[it->k],
			                t - b->sent_ns);
			return;
		}
		break;
	case PGRES_FATAL_ERROR:
		state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		if (state == NULL)
			state = "";
		/* Where the statement stands on the connection now. */
		if (it->kind == ITEM_PREPARE)
			l->conn->prepared[it->k] = strcmp(state, "42P05") == 0
			                               ? DB_PREPARED
			                               : DB_UNPREPARED;
		if (it->kind == ITEM_DEALLOCATE)
			l->conn->prepared[it->k] = strcmp(state, "26000") == 0
			                               ? DB_UNPREPARED
			                               : DB_STALE;
		if (it->kind == ITEM_EXEC && strcmp(state, "0A000") == 0)
			l->conn->prepared[b->stmt[it->k]] = DB_STALE;
		if (it->kind == ITEM_EXEC && strcmp(state, "26000") == 0)
			l->conn->prepared[b->stmt[it->k]] = DB_UNPREPARED;
		if (b->err == NULL) {
			b->err = r;
			b->err_stmt =
			    it->kind == ITEM_EXEC ? b->stmt[it->k] : it->k;
			b->err_ns = now_ns();
			return;
		}
		break;
	case PGRES_PIPELINE_ABORTED: /* skipped after a failure */
		if (it->kind == ITEM_PREPARE)
			l->conn->prepared[it->k] = DB_UNPREPARED;
		if (it->kind == ITEM_DEALLOCATE)
			l->conn->prepared[it->k] = DB_STALE;
		break;
	default:
		break;
	}
	PQclear(r);
}

/* Reads every result that has arrived, finishing the batches whose Sync
 * came: 0, or -1 when the connection failed. */
static int
lane_read(struct lane *l)
{
	PGconn *pg = db_conn_pg(l->conn);

	if (!PQconsumeInput(pg))
		return -1;
	while (l->fly != NULL && !PQisBusy(pg)) {
		struct db_batch *b = l->fly;
		PGresult *r = PQgetResult(pg);

		if (r == NULL) { /* one item's results end */
			if (b->item >= b->nitems)
				return -1; /* out of step: never trust it */
			b->item++;
			continue;
		}
		if (PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
			if (b->item >= b->nitems) {
				PQclear(r);
				return -1;
			}
			lane_result(l, b, r);
			continue;
		}
		PQclear(r);
		if (b->err == NULL && b->next_call < b->n) {
			if (lane_send(l, b) != 0) /* not pipelined: next */
				return -1;
			continue;
		}
		l->fly = b->next;
		if (l->fly == NULL)
			l->fly_tail = NULL;
		else
			l->fly->head_ms = now_ms();
		l->nfly--;
		b->next = NULL;
		lane_finish(l, b, DB_RAN);
	}
	if (PQstatus(pg) != CONNECTION_OK)
		return -1;
	return 0;
}

/* Fails the queued batches whose acquire deadline passed (all of them
 * with o when all). */
static void
lane_expire_queued(struct lane *l, enum db_outcome o, int all)
{
	long long now = now_ms();
	struct db_batch **pp, *b;

	pp = &l->queue;
	l->queue_tail = NULL;
	while ((b = *pp) != NULL) {
		if (all || now >= b->acquire_deadline_ms) {
			*pp = b->next;
			b->next = NULL;
			b->in_lane = 0;
			lane_notify(l, b, o);
			continue;
		}
		l->queue_tail = b;
		pp = &b->next;
	}
}

/* A connection for the lane, in pipeline mode, taken with the lock let
 * go: 0, or -1 with the queue failed as the pool answered (none within the
 * first queued batch's acquire deadline, or the database down). */
static int
lane_connect(struct lane *l)
{
	struct db_conn *c = NULL;
	enum db_acquire_result got;
	long long left;
	PGconn *pg;

	left = l->queue != NULL ? l->queue->acquire_deadline_ms - now_ms() : 0;
	pthread_mutex_unlock(&l->lock);
	got = left > 0 ? db_take_lane(l->lanes->pool, (unsigned int)left, &c)
	               : DB_EXHAUSTED;
	if (got == DB_OK) {
		pg = db_conn_pg(c);
		if (PQsetnonblocking(pg, 1) != 0 ||
		    PQenterPipelineMode(pg) != 1) {
			db_release(l->lanes->pool, c, 1);
			c = NULL;
			got = DB_DOWN;
		}
	}
	pthread_mutex_lock(&l->lock);
	if (c != NULL) {
		l->conn = c;
		return 0;
	}
	lane_expire_queued(l, got == DB_DOWN ? DB_UNREACHABLE : DB_NO_SLOT,
	                   got == DB_DOWN);
	return -1;
}

/* The lane's connection back to the pool, out of pipeline mode. */
static void
lane_put_conn(struct lane *l)
{
	PGconn *pg = db_conn_pg(l->conn);
	int ok = PQexitPipelineMode(pg) == 1 && PQsetnonblocking(pg, 0) == 0;

	db_release(l->lanes->pool, l->conn, !ok);
	l->conn = NULL;
}

/* The earliest moment something in flight or queued is due. */
static long long
lane_due(struct lane *l, long long limit_ms)
{
	long long due = -1;

	if (l->fly != NULL && limit_ms > 0)
		due = l->fly->head_ms + limit_ms + LANE_GRACE_MS;
	if (l->fly != NULL && l->queue != NULL) {
		/* Held up already: the oldest's answer (the socket) or the
		 * queue's deadline comes first; no spinning meanwhile. */
		long long unstall = l->fly->head_ms + LANE_STALL_MS;
		long long expire = l->queue->acquire_deadline_ms;
		long long d =
		    unstall > now_ms() && unstall < expire ? unstall : expire;

		if (due < 0 || d < due)
			due = d;
	}
	return due;
}

/*
 * The client of b left. Not sent yet: b leaves the queue. In flight alone
 * on the connection: cancelled, the connection cut (1). In flight with
 * others: its waiter is answered now, its result dropped when it comes.
 */
static int
lane_gone(struct lane *l, struct db_batch *b)
{
	struct db_batch **pp;

	if (b->sent_ns == 0) {
		for (pp = &l->queue; *pp != NULL && *pp != b; pp = &(*pp)->next)
			;
		if (*pp == b) {
			*pp = b->next;
			b->next = NULL;
			if (l->queue_tail == b) {
				l->queue_tail = l->queue;
				while (l->queue_tail != NULL &&
				       l->queue_tail->next != NULL)
					l->queue_tail = l->queue_tail->next;
			}
			b->in_lane = 0;
			lane_notify(l, b, DB_GONE);
		}
		return 0;
	}
	if (l->nfly == 1 && b == l->fly) {
		lane_cut(l, DB_GONE, DB_LOST, 1);
		return 1;
	}
	lane_notify(l, b, DB_GONE);
	return 0;
}

/*
 * One wait on the connection, the wake-up and the clients in flight, with
 * the lock let go (a handler may send meanwhile: polling says so), then
 * what it found.
 */
static void
lane_poll(struct lane *l)
{
	struct pollfd pfd[3];
	struct epoll_event ev[LANE_GONE_BATCH];
	long long limit = l->lanes->opt->statement_timeout_ms, due, left;
	PGconn *pg = db_conn_pg(l->conn);
	int flush = PQflush(pg), n, timeout;

	if (flush < 0 || l->failed) {
		l->failed = 0;
		lane_cut(l, DB_LOST, DB_LOST, 0);
		return;
	}
	pfd[0] = (struct pollfd){.fd = l->wake, .events = POLLIN};
	pfd[1] = (struct pollfd){.fd = PQsocket(pg),
	                         .events = POLLIN | (flush ? POLLOUT : 0)};
	pfd[2] = (struct pollfd){.fd = l->gone_ep, .events = POLLIN};
	due = lane_due(l, limit);
	left = due < 0 ? 60000 : due - now_ms();
	timeout = left < 0 ? 0 : (int)(left > 60000 ? 60000 : left);
	l->polling = 1;
	pthread_mutex_unlock(&l->lock);
	n = poll(pfd, 3, timeout);
	pthread_mutex_lock(&l->lock);
	l->polling = 0;
	if (n < 0 && errno != EINTR) {
		lane_cut(l, DB_LOST, DB_LOST, 0);
		return;
	}
	if (n > 0 && pfd[0].revents != 0) {
		unsigned long long v;
		ssize_t r = read(l->wake, &v, sizeof(v));

		(void)r;
	}
	/* Clients first: a batch read below may be freed at once. Those
	 * found are in the lane still (queued, or sent by a handler since):
	 * only this thread answers one, and its answer unwatches it. */
	if (n > 0 && pfd[2].revents != 0) {
		int k = epoll_wait(l->gone_ep, ev, LANE_GONE_BATCH, 0);

		for (int i = 0; i < k; i++) {
			struct db_batch *b = ev[i].data.ptr;

			if (!b->notified && lane_gone(l, b))
				return; /* the connection went with it */
		}
	}
	if (l->failed || (n > 0 && pfd[1].revents != 0 && lane_read(l) != 0)) {
		l->failed = 0;
		lane_cut(l, DB_LOST, DB_LOST, 0);
		return;
	}
	if (l->fly != NULL && limit > 0 &&
	    now_ms() >= l->fly->head_ms + limit + LANE_GRACE_MS)
		lane_cut(l, DB_TIMEOUT, DB_LOST, 1);
}

static void *
lane_main(void *arg)
{
	struct lane *l = arg;

	pthread_mutex_lock(&l->lock);
	while (!l->stop) {
		if (l->queue == NULL && l->fly == NULL) {
			if (l->conn != NULL) {
				lane_put_conn(l);
				continue;
			}
			l->idle = 1;
			pthread_cond_wait(&l->work, &l->lock);
			l->idle = 0;
			continue;
		}
		if (l->conn == NULL && lane_connect(l) != 0)
			continue;
		if (lane_send_queued(l) != 0) {
			lane_cut(l, DB_LOST, DB_LOST, 0);
			continue;
		}
		lane_expire_queued(l, DB_NO_SLOT, 0);
		if (l->fly != NULL)
			lane_poll(l);
	}
	if (l->fly != NULL)
		lane_cut(l, DB_CLOSING, DB_CLOSING, 1);
	else if (l->conn != NULL)
		lane_put_conn(l);
	lane_expire_queued(l, DB_CLOSING, 1);
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

struct db_lanes *
db_lanes_start(struct db_pool *pool, const struct db_pool_options *opt,
               int pipeline)
{
	unsigned int n = opt->size;
	struct db_lanes *ls = calloc(1, sizeof(*ls) + n * sizeof(ls->lane[0]));

	if (ls == NULL)
		return NULL;
	ls->pool = pool;
	ls->opt = opt;
	ls->pipeline = pipeline;
	ls->n = n;
	for (unsigned int i = 0; i < n; i++) {
		struct lane *l = &ls->lane[i];

		l->lanes = ls;
		l->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		l->gone_ep = epoll_create1(EPOLL_CLOEXEC);
		if (l->wake < 0 || l->gone_ep < 0 ||
		    pthread_mutex_init(&l->lock, NULL) != 0 ||
		    pthread_cond_init(&l->work, NULL) != 0 ||
		    pthread_create(&l->thread, NULL, lane_main, l) != 0) {
			log_error("database: cannot start the pool's lane %u: "
			          "%s",
			          i, strerror(errno));
			ls->n = i + 1;
			db_lanes_stop(ls);
			db_lanes_free(ls);
			return NULL;
		}
		l->started = 1;
	}
	return ls;
}

void
db_lanes_stop(struct db_lanes *ls)
{
	if (ls == NULL)
		return;
	for (unsigned int i = 0; i < ls->n; i++) {
		struct lane *l = &ls->lane[i];

		if (!l->started)
			continue;
		unsigned long long one = 1;
		ssize_t w;

		pthread_mutex_lock(&l->lock);
		l->stop = 1;
		pthread_cond_signal(&l->work);
		pthread_mutex_unlock(&l->lock);
		w = write(l->wake, &one, sizeof(one)); /* if it polls */
		(void)w;
	}
	for (unsigned int i = 0; i < ls->n; i++)
		if (ls->lane[i].started) {
			pthread_join(ls->lane[i].thread, NULL);
			ls->lane[i].started = 0;
		}
}

void
db_lanes_free(struct db_lanes *ls)
{
	if (ls == NULL)
		return;
	for (unsigned int i = 0; i < ls->n; i++) {
		struct lane *l = &ls->lane[i];

		if (l->wake >= 0)
			close(l->wake);
		if (l->gone_ep >= 0)
			close(l->gone_ep);
		pthread_mutex_destroy(&l->lock);
		pthread_cond_destroy(&l->work);
	}
	free(ls);
}

struct db_batch *
db_batch_new(const struct db_call *calls, unsigned int n)
{
	struct db_batch *b;
	size_t size =
	    sizeof(*b) + n * (sizeof(unsigned int) + sizeof(PGresult *) +
	                      sizeof(long long) + 3 * sizeof(struct item));
	char *p;

	b = calloc(1, size);
	if (b == NULL)
		return NULL;
	if (pthread_cond_init(&b->done, NULL) != 0) {
		free(b);
		return NULL;
	}
	p = (char *)(b + 1);
	b->items = (struct item *)(void *)p;
	p += (size_t)3 * n * sizeof(struct item);
	b->pg = (PGresult **)(void *)p;
	p += n * sizeof(PGresult *);
	b->end_ns = (long long *)(void *)p;
	p += n * sizeof(long long);
	b->stmt = (unsigned int *)(void *)p;
	b->calls = calls;
	b->n = n;
	b->gone_fd = -1;
	return b;
}

void
db_batch_free(struct db_batch *b)
{
	if (b == NULL)
		return;
	for (unsigned int k = 0; k < b->n; k++)
		PQclear(b->pg[k]);
	PQclear(b->err);
	pthread_cond_destroy(&b->done);
	free(b);
}

int
db_lanes_run(struct db_lanes *ls, struct db_batch *b)
{
	struct lane *best = &ls->lane[0]; /* a pool has one at least */
	unsigned int least = ~0u;
	int keep;

	/* The first lane with room that is not held up: requests gather on
	 * few connections, and each of the server's wake-ups answers more. */
	for (unsigned int i = 0; i < ls->n; i++) {
		struct lane *l = &ls->lane[i];
		unsigned int load = atomic_load(&l->load);

		if (load < least) {
			least = load;
			best = l;
		}
		if (load >= LANE_FILL)
			continue;
		pthread_mutex_lock(&l->lock);
		if (l->conn != NULL &&
		    (l->fly == NULL ||
		     now_ms() - l->fly->head_ms < LANE_STALL_MS)) {
			best = l;
			goto queue;
		}
		pthread_mutex_unlock(&l->lock);
		if (load == 0) /* idle, without a connection: as good as any */
			break;
	}
	/* Else the one with the fewest. */
	pthread_mutex_lock(&best->lock);
queue:
	if (best->stop) {
		pthread_mutex_unlock(&best->lock);
		b->outcome = DB_CLOSING;
		return 1;
	}
	atomic_fetch_add(&best->load, 1);
	b->in_lane = 1;
	if (b->gone_fd >= 0) {
		struct epoll_event e = {.events = EPOLLIN, .data.ptr = b};

		b->watched = epoll_ctl(best->gone_ep, EPOLL_CTL_ADD, b->gone_fd,
		                       &e) == 0;
	}
	if (best->queue_tail != NULL)
		best->queue_tail->next = b;
	else
		best->queue = b;
	best->queue_tail = b;
	/* The lane's thread waits on the connection: send from here, one
	 * wake-up fewer. It looks at the new batch when it wakes. */
	if (best->polling && !best->failed) {
		if (lane_send_queued(best) != 0) {
			best->failed = 1;
			lane_poke(best);
		} else if (best->queue != NULL ||
		           PQflush(db_conn_pg(best->conn)) != 0) {
			lane_poke(best); /* held back, or not all written */
		}
	} else {
		lane_poke(best);
	}
	while (!b->notified)
		pthread_cond_wait(&b->done, &best->lock);
	keep = !b->in_lane;
	if (!keep)
		b->orphan = 1; /* in flight still: the lane frees it */
	pthread_mutex_unlock(&best->lock);
	return keep;
}
