/* SPDX-License-Identifier: MIT */
/*
 * pool.c -- N libpq connections for the blocking handlers: acquire with a
 * deadline, release with a rollback, replace the broken in the background
 *
 * One thread of the pool's own makes every connection: all N at open, then
 * one for each that is discarded, with capped, jittered exponential backoff
 * while the database refuses. So a handler never waits on a connect, a
 * database that is down at start does not stop the start, and while it is
 * down an acquire fails at once instead of waiting out its timeout.
 */
#include "db.h"

#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "internal.h"
#include "log.h"
#include "metrics.h"

/* Most SQLSTATE classes microd_db_errors_total tells apart per statement;
 * the rest count as class "other". */
#define DB_ERROR_CLASSES 16

/* One statement's metrics. */
struct db_stmt_stats {
	struct metrics_histogram duration;
	struct {
		char cls[8]; /* "23", "08", "other"; "" for a free slot */
		unsigned long long n;
	} errors[DB_ERROR_CLASSES]; /* under the pool's lock */
};

struct db_pool {
	pthread_mutex_t lock; /* guards all below but the options */
	pthread_cond_t avail; /* a connection went idle, down, or closing */
	struct db_conn *idle; /* a stack: the warmest connection first */
	unsigned int nidle, used;
	unsigned int replace; /* discarded, not yet made again */
	int down, abandoned;
	_Atomic int closing; /* also read by the connecting thread's waits */
	unsigned long long acquire_timeouts, reconnects, discarded;
	pthread_t thread;
	int wake[2]; /* the connecting thread's pipe: a slot is free, close */
	struct db_pool_options opt;
	char *conninfo; /* opt.conninfo's copy */
	char *shown;    /* the conninfo without its password, for logs */
	unsigned long long rng;           /* the connecting thread's jitter */
	struct metrics_histogram acquire; /* db_acquire's waits */
	struct db_stmt_stats *stmt;       /* one per opt.statements row */
	struct db_lanes *lanes;           /* run the statements (pipeline.c) */
	/* The statements matched the schema at the last check. */
	_Atomic int schema_ok;
	/* The last db_ping that got a connection passed. */
	_Atomic int ping_ok;
};

static void
db_wake(struct db_pool *p)
{
	ssize_t n = write(p->wake[1], "", 1);

	(void)n; /* full: a wake-up is pending already */
}

/*
 * Waits for fd (or, fd < 0, only the pipe) until deadline_ms: 1 ready, 0
 * timed out, -1 closing. A wake-up that is not the close is drained.
 */
static int
db_wait(struct db_pool *p, int fd, short events, long long deadline_ms)
{
	for (;;) {
		struct pollfd pfd[2] = {{.fd = p->wake[0], .events = POLLIN},
		                        {.fd = fd, .events = events}};
		long long left = deadline_ms - now_ms();
		int n;

		if (atomic_load(&p->closing))
			return -1;
		if (deadline_ms >= 0 && left <= 0)
			return 0;
		n = poll(pfd, fd >= 0 ? 2 : 1,
		         deadline_ms < 0 ? -1
		                         : (int)(left > 60000 ? 60000 : left));
		if (n < 0 && errno != EINTR)
			return -1;
		if (n > 0 && (pfd[0].revents & POLLIN) != 0) {
			char buf[64];

			while (read(p->wake[0], buf, sizeof(buf)) > 0)
				;
			if (fd < 0)
				return 1;
		}
		if (n > 0 && fd >= 0 && pfd[1].revents != 0)
			return 1;
	}
}

/* libpq's message on one line, for the log. */
static void
db_log_pq_error(enum log_level level, const char *what, const PGconn *pg)
{
	char msg[512];
	const char *m = pg != NULL ? PQerrorMessage(pg) : "out of memory";

	snprintf(msg, sizeof(msg), "%s", m);
	for (char *c = msg; *c != '\0'; c++)
		if (*c == '\n')
			*c = *(c + 1) == '\0' ? '\0' : ' ';
	log_msg(level, "database: %s: %s", what, msg);
}

/*
 * How long a statement's PREPARE on a fresh connection may wait for a lock
 * (a migration's ALTER TABLE holds ACCESS EXCLUSIVE): past it, the
 * statement is prepared at its first use instead, under the statement
 * deadline, and the connection serves the others meanwhile.
 */
#define DB_SETUP_LOCK_MS 200

/*
 * The results of what was sent on a fresh connection, within the connect
 * deadline or the close: 0 all succeeded, 1 one failed (its primary message
 * in why and its SQLSTATE in state, when given), -1 the connection or the
 * wait failed.
 */
static int
db_setup_wait(struct db_pool *p, PGconn *pg, long long deadline, char *why,
              size_t len, char state[6])
{
	PGresult *r;
	int ret = 0;

	for (;;) {
		while (PQisBusy(pg)) {
			if (db_wait(p, PQsocket(pg), POLLIN, deadline) <= 0 ||
			    !PQconsumeInput(pg))
				return -1;
		}
		r = PQgetResult(pg);
		if (r == NULL)
			return PQstatus(pg) == CONNECTION_OK ? ret : -1;
		if (PQresultStatus(r) != PGRES_COMMAND_OK && ret == 0) {
			const char *m =
			    PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
			const char *st =
			    PQresultErrorField(r, PG_DIAG_SQLSTATE);

			if (why != NULL)
				snprintf(why, len, "%s",
				         m != NULL ? m : "no message");
			if (state != NULL)
				snprintf(state, 6, "%s", st != NULL ? st : "");
			ret = 1;
		}
		PQclear(r);
	}
}

/* A statement on a fresh connection, within the connect deadline. */
static int
db_setup(struct db_pool *p, PGconn *pg, const char *sql, long long deadline)
{
	if (!PQsendQuery(pg, sql))
		return -1;
	return db_setup_wait(p, pg, deadline, NULL, 0, NULL) == 0 ? 0 : -1;
}

/*
 * Prepares the pool's statements on a fresh connection, each flag of
 * prepared set for the ones that did. One the server refuses (its table is
 * not migrated yet) or that waits on a lock past DB_SETUP_LOCK_MS leaves
 * the connection usable: it is prepared again at its first use. -1 when
 * the connection or the wait failed.
 */
static int
db_setup_statements(struct db_pool *p, PGconn *pg, unsigned char *prepared,
                    long long deadline)
{
	const struct db_statement *st = p->opt.statements;
	char sql[64];

	if (p->opt.n_statements == 0)
		return 0;
	snprintf(sql, sizeof(sql), "SET lock_timeout = %d", DB_SETUP_LOCK_MS);
	if (db_setup(p, pg, sql, deadline) != 0)
		return -1;
	for (unsigned int i = 0; i < p->opt.n_statements; i++) {
		Oid types[64];
		char why[256], state[6] = "";
		int got;

		if (st[i].n_params > sizeof(types) / sizeof(types[0]))
			continue; /* db_statements_check names it */
		for (unsigned int j = 0; j < st[i].n_params; j++)
			types[j] = db_type_oid(st[i].params[j]);
		if (!PQsendPrepare(pg, st[i].name, st[i].sql,
		                   (int)st[i].n_params, types))
			return -1;
		got = db_setup_wait(p, pg, deadline, why, sizeof(why), state);
		if (got < 0)
			return -1;
		prepared[i] = got == 0;
		if (got > 0 && strcmp(state, "55P03") == 0) {
			/* A migration under way, most likely: the rest
			 * would wait as long, one after the other. */
			log_info("database: statement %s: no answer within %d "
			         "ms on a new connection (a lock held): it and "
			         "the %u after it prepared at their first use",
			         st[i].name, DB_SETUP_LOCK_MS,
			         p->opt.n_statements - i - 1);
			break;
		}
		if (got > 0)
			log_debug("database: statement %s not prepared on a "
			          "new connection (prepared again at its first "
			          "use): %s",
			          st[i].name, why);
	}
	return db_setup(p, pg, "RESET lock_timeout", deadline);
}

/* One connection, made without blocking past the connect timeout or the
 * close, its statements prepared (prepared's flags); NULL when it failed,
 * with libpq's reason logged at level. */
static PGconn *
db_connect(struct db_pool *p, enum log_level level, unsigned char *prepared)
{
	/*
	 * Keys before dbname are defaults the conninfo may override, those
	 * after it are ours: handlers read and write UTF-8 JSON.
	 */
	const char *const keys[] = {"fallback_application_name", "dbname",
	                            "client_encoding", NULL};
	const char *const vals[] = {"microd", p->conninfo, "UTF8", NULL};
	long long deadline = now_ms() + p->opt.connect_timeout_ms;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	PGconn *pg;
	char sql[64];

	pg = PQconnectStartParams(keys, vals, 1);
	if (pg == NULL || PQstatus(pg) == CONNECTION_BAD)
		goto fail;
	while (st != PGRES_POLLING_OK) {
		if (st == PGRES_POLLING_FAILED)
			goto fail;
		if (db_wait(p, PQsocket(pg),
		            st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
		            deadline) <= 0) {
			if (!atomic_load(&p->closing))
				log_msg(level,
				        "database: cannot connect to %s within "
				        "%u ms",
				        p->shown, p->opt.connect_timeout_ms);
			PQfinish(pg);
			return NULL;
		}
		st = PQconnectPoll(pg);
	}
	if (p->opt.statement_timeout_ms > 0) {
		snprintf(sql, sizeof(sql), "SET statement_timeout = %u",
		         p->opt.statement_timeout_ms);
		if (db_setup(p, pg, sql, deadline) != 0)
			goto fail;
	}
	/* Times as db_result_json reads them: ISO, in UTC. */
	if (db_setup(p, pg, "SET DateStyle = 'ISO'; SET TimeZone = 'UTC'",
	             deadline) != 0 ||
	    db_setup_statements(p, pg, prepared, deadline) != 0)
		goto fail;
	return pg;
fail:
	if (atomic_load(&p->closing))
		; /* the close cut it short: nothing to say */
	else if (pg != NULL && PQerrorMessage(pg)[0] == '\0')
		log_msg(level,
		        "database: cannot connect to %s: no answer within "
		        "%u ms",
		        p->shown, p->opt.connect_timeout_ms);
	else if (log_enabled(level))
		db_log_pq_error(level, "cannot connect", pg);
	PQfinish(pg); /* NULL-safe */
	return NULL;
}

/* xorshift64*: the backoff's jitter, drawn by the connecting thread only. */
static unsigned long long
db_random(struct db_pool *p)
{
	p->rng ^= p->rng >> 12;
	p->rng ^= p->rng << 25;
	p->rng ^= p->rng >> 27;
	return p->rng * 0x2545F4914F6CDD1DULL;
}

static void *
db_main(void *arg)
{
	struct db_pool *p = arg;
	unsigned int backoff = p->opt.backoff_min_ms, failures = 0;
	long long next = 0; /* no attempt before this, while backing off */

	for (;;) {
		unsigned int missing;
		struct db_conn *c;
		PGconn *pg;

		pthread_mutex_lock(&p->lock);
		missing = p->opt.size - p->nidle - p->used;
		pthread_mutex_unlock(&p->lock);
		if (missing == 0 || now_ms() < next) {
			if (db_wait(p, -1, 0, missing == 0 ? -1 : next) < 0)
				break;
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (c != NULL)
			c->prepared = calloc(p->opt.n_statements + 1, 1);
		pg = c != NULL && c->prepared != NULL
		         ? db_connect(p, failures == 0 ? LOG_WARN : LOG_DEBUG,
		                      c->prepared)
		         : NULL;
		if (pg == NULL) {
			if (c != NULL)
				free(c->prepared);
			free(c);
			if (atomic_load(&p->closing))
				break;
			if (failures++ == 0)
				log_warn(
				    "database: trying %s again with backoff "
				    "up to %u ms",
				    p->shown, p->opt.backoff_max_ms);
			pthread_mutex_lock(&p->lock);
			if (p->nidle + p->used == 0 && !p->down) {
				p->down = 1;
				pthread_cond_broadcast(&p->avail);
			}
			pthread_mutex_unlock(&p->lock);
			/* Half the backoff, plus up to the other half. */
			next = now_ms() + backoff / 2 +
			       (long long)(db_random(p) % (backoff / 2 + 1));
			backoff = backoff >= p->opt.backoff_max_ms / 2
			              ? p->opt.backoff_max_ms
			              : backoff * 2;
			continue;
		}
		if (failures > 0)
			log_info("database: connected to %s again after %u "
			         "failed attempts",
			         p->shown, failures);
		failures = 0;
		backoff = p->opt.backoff_min_ms;
		next = 0;
		c->pg = pg;
		pthread_mutex_lock(&p->lock);
		c->next = p->idle;
		p->idle = c;
		p->nidle++;
		p->down = 0;
		if (p->replace > 0) {
			p->replace--;
			p->reconnects++;
		}
		pthread_cond_signal(&p->avail);
		pthread_mutex_unlock(&p->lock);
	}
	return NULL;
}

static void
db_pool_free(struct db_pool *p)
{
	pthread_cond_destroy(&p->avail);
	pthread_mutex_destroy(&p->lock);
	if (p->wake[0] >= 0)
		close(p->wake[0]);
	if (p->wake[1] >= 0)
		close(p->wake[1]);
	free(p->conninfo);
	free(p->shown);
	free(p->stmt);
	db_lanes_free(p->lanes);
	free(p);
}

static void
db_conn_free(struct db_conn *c)
{
	PQfinish(c->pg);
	free(c->prepared);
	free(c);
}

struct db_pool *
db_pool_open(const struct db_pool_options *opt)
{
	struct db_pool *p;
	int err;

	p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->wake[0] = p->wake[1] = -1;
	pthread_mutex_init(&p->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&p->avail, &ca);
		pthread_condattr_destroy(&ca);
	}
	p->opt = *opt;
	if (p->opt.size == 0)
		p->opt.size = 1;
	if (p->opt.connect_timeout_ms == 0)
		p->opt.connect_timeout_ms = 5000;
	if (p->opt.backoff_min_ms == 0)
		p->opt.backoff_min_ms = 50;
	if (p->opt.backoff_max_ms < p->opt.backoff_min_ms)
		p->opt.backoff_max_ms =
		    p->opt.backoff_min_ms > 1000 ? p->opt.backoff_min_ms : 1000;
	p->rng = (unsigned long long)now_ns() | 1;
	p->shown = db_conninfo_redact(opt->conninfo);
	if (p->shown == NULL) {
		log_error("database: the connection string does not parse "
		          "(a libpq URI or key=value pairs)");
		goto fail;
	}
	p->conninfo = strdup(opt->conninfo);
	p->opt.conninfo = NULL; /* ours is p->conninfo */
	p->stmt = calloc(p->opt.n_statements + 1, sizeof(*p->stmt));
	if (p->conninfo == NULL || p->stmt == NULL || pipe(p->wake) != 0 ||
	    fcntl(p->wake[0], F_SETFL, O_NONBLOCK) != 0 ||
	    fcntl(p->wake[1], F_SETFL, O_NONBLOCK) != 0) {
		log_error("database: %s", strerror(errno));
		goto fail;
	}
	err = pthread_create(&p->thread, NULL, db_main, p);
	if (err != 0) {
		log_error("database: cannot start its thread: %s",
		          strerror(err));
		goto fail;
	}
	p->lanes = db_lanes_start(p, &p->opt, p->opt.pipeline);
	if (p->lanes == NULL) {
		db_pool_close(p);
		return NULL;
	}
	log_info("database: %s, %u connections, acquire timeout %u ms, "
	         "statement timeout %u ms, pipeline %s",
	         p->shown, p->opt.size, p->opt.acquire_timeout_ms,
	         p->opt.statement_timeout_ms, p->opt.pipeline ? "on" : "off");
	return p;
fail:
	db_pool_free(p);
	return NULL;
}

/*
 * An idle connection has nothing to read: the server speaks first only to
 * say it is closing it (a shutdown, pg_terminate_backend, a timeout), with
 * an error and then the end of the stream. A connection that was spoken to
 * is not handed out (the rare harmless message costs one reconnect).
 */
static int
db_conn_alive(PGconn *pg)
{
	struct pollfd pfd = {.fd = PQsocket(pg), .events = POLLIN};

	if (PQstatus(pg) != CONNECTION_OK || pfd.fd < 0)
		return 0;
	if (poll(&pfd, 1, 0) == 0)
		return 1;
	return 0;
}

/*
 * Closes c outside the lock and asks the connecting thread for another (a
 * pool that was closed or abandoned makes none: its thread has stopped).
 */
static void
db_discard(struct db_pool *p, struct db_conn *c)
{
	db_conn_free(c);
	pthread_mutex_lock(&p->lock);
	p->used--;
	p->discarded++;
	p->replace++;
	pthread_mutex_unlock(&p->lock);
	db_wake(p);
}

/* db_acquire with its own timeout; counted: a failure is an acquire
 * timeout of the metrics. */
static enum db_acquire_result
db_take(struct db_pool *p, unsigned int timeout_ms, int counted,
        struct db_conn **out)
{
	struct timespec deadline;
	long long ns;
	enum db_acquire_result ret;

	*out = NULL;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	ns = deadline.tv_nsec + (long long)timeout_ms * 1000000;
	deadline.tv_sec += (time_t)(ns / 1000000000);
	deadline.tv_nsec = (long)(ns % 1000000000);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		int err = 0;

		if (p->closing) {
			ret = DB_DOWN;
			break;
		}
		if (p->idle != NULL) {
			struct db_conn *c = p->idle;

			p->idle = c->next;
			p->nidle--;
			p->used++;
			pthread_mutex_unlock(&p->lock);
			if (db_conn_alive(c->pg)) {
				*out = c;
				return DB_OK;
			}
			log_info("database: an idle connection was closed by "
			         "the server; discarded");
			db_discard(p, c);
			pthread_mutex_lock(&p->lock);
			continue;
		}
		if (p->down) {
			ret = DB_DOWN;
			break;
		}
		while (err == 0 && p->idle == NULL && !p->down && !p->closing)
			err = pthread_cond_timedwait(&p->avail, &p->lock,
			                             &deadline);
		if (err == ETIMEDOUT && p->idle == NULL) {
			/* None at all is no sign of a database down: each
			 * may be being replaced (57014s, clients leaving);
			 * only the connecting thread's failure is. */
			ret = p->down ? DB_DOWN : DB_EXHAUSTED;
			break;
		}
	}
	if (counted)
		p->acquire_timeouts++;
	pthread_mutex_unlock(&p->lock);
	return ret;
}

enum db_acquire_result
db_acquire_waited(struct db_pool *p, long long waited_ms, struct db_conn **out)
{
	long long t0 = now_ns() - (waited_ms > 0 ? waited_ms * 1000000 : 0);
	long long left = (long long)p->opt.acquire_timeout_ms -
	                 (waited_ms > 0 ? waited_ms : 0);
	enum db_acquire_result got;

	if (left <= 0) {
		*out = NULL;
		pthread_mutex_lock(&p->lock);
		p->acquire_timeouts++;
		pthread_mutex_unlock(&p->lock);
		got = DB_EXHAUSTED;
	} else {
		got = db_take(p, (unsigned int)left, 1, out);
	}
	/* The wait in the handler queue counts: it is the acquire's. */
	metrics_histogram_observe(&p->acquire, now_ns() - t0);
	return got;
}

enum db_acquire_result
db_take_lane(struct db_pool *p, unsigned int timeout_ms, struct db_conn **out)
{
	return db_take(p, timeout_ms, 0, out);
}

void
db_pool_count_acquire(struct db_pool *p, long long waited_ns, int timed_out)
{
	if (timed_out) {
		pthread_mutex_lock(&p->lock);
		p->acquire_timeouts++;
		pthread_mutex_unlock(&p->lock);
	}
	metrics_histogram_observe(&p->acquire, waited_ns);
}

struct db_lanes *
db_pool_lanes(struct db_pool *p)
{
	return p->lanes;
}

enum db_acquire_result
db_acquire(struct db_pool *p, struct db_conn **out)
{
	return db_acquire_waited(p, 0, out);
}

/* Ends a transaction the handler left open or failed: 0, or -1 when c
 * must go. */
static int
db_conn_reset(PGconn *pg)
{
	PGresult *r;
	int ret;

	if (PQstatus(pg) != CONNECTION_OK)
		return -1;
	switch (PQtransactionStatus(pg)) {
	case PQTRANS_IDLE:
		return 0;
	case PQTRANS_INTRANS:
	case PQTRANS_INERROR:
		break;
	default: /* a statement still running, or no connection */
		return -1;
	}
	r = PQexec(pg, "ROLLBACK");
	ret = PQresultStatus(r) == PGRES_COMMAND_OK &&
	              PQtransactionStatus(pg) == PQTRANS_IDLE
	          ? 0
	          : -1;
	PQclear(r);
	return ret;
}

void
db_release(struct db_pool *p, struct db_conn *c, int broken)
{
	int abandoned;

	if (c == NULL)
		return;
	if (broken || db_conn_reset(c->pg) != 0) {
		db_discard(p, c);
		return;
	}
	pthread_mutex_lock(&p->lock);
	p->used--;
	abandoned = p->abandoned;
	if (!abandoned) {
		c->next = p->idle;
		p->idle = c;
		p->nidle++;
		pthread_cond_signal(&p->avail);
	}
	pthread_mutex_unlock(&p->lock);
	if (abandoned)
		db_conn_free(c);
}

struct pg_conn *
db_conn_pg(struct db_conn *c)
{
	return c->pg;
}

void
db_pool_stats(struct db_pool *p, struct db_pool_stats *st)
{
	pthread_mutex_lock(&p->lock);
	st->idle = p->nidle;
	st->used = p->used;
	st->max = p->opt.size;
	st->down = p->down;
	st->acquire_timeouts = p->acquire_timeouts;
	st->reconnects = p->reconnects;
	st->discarded = p->discarded;
	pthread_mutex_unlock(&p->lock);
}

/*
 * Stops the connecting thread (joined: no libpq call of its own outlives
 * this), wakes every waiter and closes the idle connections: the number
 * still in use, each closed by its db_release().
 */
static unsigned int
db_pool_stop(struct db_pool *p)
{
	struct db_conn *c;
	unsigned int used;
	int stopped;

	pthread_mutex_lock(&p->lock);
	stopped = atomic_exchange(&p->closing, 1);
	pthread_cond_broadcast(&p->avail);
	pthread_mutex_unlock(&p->lock);
	if (!stopped) { /* else a close or abandon did it */
		db_wake(p);
		pthread_join(p->thread, NULL);
	}
	/* Their connections go back to the idle stack, freed below. */
	db_lanes_stop(p->lanes);
	pthread_mutex_lock(&p->lock);
	c = p->idle;
	p->idle = NULL;
	p->nidle = 0;
	used = p->used;
	p->abandoned = 1;
	pthread_mutex_unlock(&p->lock);
	while (c != NULL) {
		struct db_conn *next = c->next;

		db_conn_free(c);
		c = next;
	}
	return used;
}

void
db_pool_close(struct db_pool *p)
{
	if (p == NULL)
		return;
	if (db_pool_stop(p) == 0)
		db_pool_free(p);
	else
		log_warn("database: the pool is not freed: a connection is "
		         "still in use");
}

void
db_pool_abandon(struct db_pool *p)
{
	if (p != NULL)
		(void)db_pool_stop(p);
}

/* libpq's message, its first line only, into why after what. */
static void
db_why_pq(char *why, size_t len, const char *what, const PGconn *pg)
{
	const char *m = PQerrorMessage(pg);

	snprintf(why, len, "%s: %.*s", what, (int)strcspn(m, "\n"), m);
}

/*
 * sql on the check's connection within deadline, every result read: 0, or
 * -1 with why (NULL: not wanted) saying what failed.
 */
static int
db_ping_exec(PGconn *pg, const char *sql, long long deadline, int stop_fd,
             char *why, size_t len)
{
	PGresult *r = NULL;
	enum db_wait w = PQsendQuery(pg, sql)
	                     ? db_result_wait(pg, deadline, stop_fd, &r)
	                     : DB_WAIT_BROKEN;
	int done = w == DB_WAIT_DONE && r != NULL &&
	           PQresultStatus(r) == PGRES_COMMAND_OK;

	PQclear(r);
	if (done || why == NULL)
		return done ? 0 : -1;
	if (w == DB_WAIT_TIMEOUT || w == DB_WAIT_GONE)
		snprintf(why, len, "%s: %s", sql,
		         w == DB_WAIT_GONE ? "halted" : "no answer in time");
	else
		db_why_pq(why, len, sql, pg);
	return -1;
}

/*
 * The database check past SELECT 1: no migration pending, and the statement
 * table matching the schema, checked until it once does. 0, or -1 with why;
 * *broken set when the connection must go.
 */
static int
db_ping_schema(struct db_pool *p, struct db_conn *c, long long deadline,
               int stop_fd, char *why, size_t len, int *broken)
{
	/* Room for the words around the names: they are cut, not those. */
	const size_t around = sizeof(" migrations pending:  (microd migrate, "
	                             "or --migrate)") +
	                      10;
	char names[256], sql[64];
	int pending, got;

	if (p->opt.n_migrations > 0) {
		pending = db_migrate_changed(
		    c->pg, p->opt.migrations, p->opt.n_migrations, names,
		    len > around && len - around < sizeof(names)
		        ? len - around
		        : sizeof(names));
		if (pending > 0) {
			snprintf(why, len,
			         "%s: checksum changed (applied with another "
			         "one: restore the file, or fix the database)",
			         names);
			return -1;
		}
		pending = db_migrate_pending(
		    c->pg, p->opt.migrations, p->opt.n_migrations, names,
		    len > around && len - around < sizeof(names)
		        ? len - around
		        : sizeof(names));
		if (pending < 0) {
			db_why_pq(why, len, "migrations", c->pg);
			*broken = PQstatus(c->pg) != CONNECTION_OK;
			return -1;
		}
		if (pending > 0) {
			snprintf(
			    why, len,
			    "%d migration%s pending: %s (microd migrate, or "
			    "--migrate)",
			    pending, pending == 1 ? "" : "s", names);
			return -1;
		}
	}
	if (p->opt.n_statements == 0)
		return 0;
	/*
	 * Checked at every run, not once: the man page says the check passes
	 * while the statements match, and a schema changed under them (an
	 * ALTER while serving) does not always show as a 0A000. Described
	 * afresh: a statement prepared before the change would be described
	 * as it was.
	 */
	memset(c->prepared, 0, p->opt.n_statements);
	snprintf(sql, sizeof(sql), "SET lock_timeout = %d; DEALLOCATE ALL",
	         DB_SETUP_LOCK_MS);
	if (db_ping_exec(c->pg, sql, deadline, stop_fd, why, len) != 0) {
		*broken = 1;
		return -1;
	}
	got = db_statements_check(c->pg, p->opt.statements, p->opt.n_statements,
	                          deadline, stop_fd, why, len);
	if (got == -2 ||
	    db_ping_exec(c->pg, "RESET lock_timeout", deadline, stop_fd,
	                 got == 0 ? why : NULL, len) != 0) {
		*broken = 1;
		return -1;
	}
	if (got == -3) {
		/* The schema is locked (a migration under way): it keeps
		 * the verdict it had, rather than fail a healthy service or
		 * wait on the lock at every run. */
		if (atomic_load(&p->schema_ok))
			return 0;
		return -1;
	}
	if (got != 0) {
		atomic_store(&p->schema_ok, 0);
		return -1;
	}
	/* Prepared now on this connection under their names. */
	memset(c->prepared, 1, p->opt.n_statements);
	if (!atomic_exchange(&p->schema_ok, 1))
		log_info("database: the %u statements match the schema",
		         p->opt.n_statements);
	return 0;
}

int
db_ping(struct db_pool *p, unsigned int timeout_ms, int stop_fd, char *why,
        size_t len)
{
	long long deadline = now_ms() + timeout_ms;
	struct db_conn *c;
	PGresult *r;
	PGconn *pg;
	int ret = -1, broken = 1;

	switch (db_take(p, timeout_ms, 0, &c)) {
	case DB_OK:
		break;
	case DB_EXHAUSTED:
		/* Every connection busy proves the database answers: a busy
		 * service stays in its load balancer, with the verdict of
		 * the last run that got one. */
		snprintf(why, len,
		         "no connection free within %u ms: all %u in use",
		         timeout_ms, p->opt.size);
		return atomic_load(&p->ping_ok) ? 0 : -1;
	case DB_DOWN:
	default:
		snprintf(why, len,
		         "no connection: the database cannot be "
		         "reached (the log has libpq's reason)");
		return -1;
	}
	pg = c->pg;
	if (!PQsendQuery(pg, "SELECT 1")) {
		db_why_pq(why, len, "SELECT 1", pg);
		goto out;
	}
	while (PQisBusy(pg)) {
		struct pollfd pfd[2] = {{.fd = PQsocket(pg), .events = POLLIN},
		                        {.fd = stop_fd, .events = POLLIN}};
		long long left = deadline - now_ms();
		int n =
		    left > 0 ? poll(pfd, stop_fd >= 0 ? 2 : 1, (int)left) : 0;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || pfd[1].revents != 0) {
			if (n == 0)
				snprintf(why, len,
				         "SELECT 1: no answer within %u ms",
				         timeout_ms);
			else
				snprintf(why, len, "SELECT 1: %s",
				         n < 0 ? strerror(errno) : "halted");
			goto out; /* a query in flight: the connection goes */
		}
		if (!PQconsumeInput(pg)) {
			db_why_pq(why, len, "SELECT 1", pg);
			goto out;
		}
	}
	ret = 0;
	while ((r = PQgetResult(pg)) != NULL) {
		if (PQresultStatus(r) != PGRES_TUPLES_OK && ret == 0) {
			const char *state =
			    PQresultErrorField(r, PG_DIAG_SQLSTATE);

			snprintf(why, len, "SELECT 1: SQLSTATE %s",
			         state != NULL ? state : "none");
			ret = -1;
		}
		PQclear(r);
	}
	broken = ret != 0 || PQstatus(pg) != CONNECTION_OK;
	if (ret == 0)
		ret =
		    db_ping_schema(p, c, deadline, stop_fd, why, len, &broken);
out:
	atomic_store(&p->ping_ok, ret == 0);
	db_release(p, c, broken);
	return ret;
}

void
db_pool_schema_changed(struct db_pool *p, const char *name)
{
	/* Once per connection and statement at most: each is prepared
	 * again where it was met. */
	atomic_store(&p->schema_ok, 0);
	log_warn("database: statement %s: its result changed type (the "
	         "schema changed): prepared again, and the statements checked "
	         "against the schema",
	         name);
}

const struct db_pool_options *
db_pool_settings(const struct db_pool *p)
{
	return &p->opt;
}

int
db_pool_statement(const struct db_pool *p, const struct db_statement *st)
{
	const struct db_statement *t = p->opt.statements;

	if (t == NULL || st < t || st >= t + p->opt.n_statements)
		return -1;
	return (int)(st - t);
}

void
db_pool_observe(struct db_pool *p, unsigned int i, long long duration_ns)
{
	metrics_histogram_observe(&p->stmt[i].duration, duration_ns);
}

void
db_pool_count_error(struct db_pool *p, unsigned int i, const char *sqlstate)
{
	struct db_stmt_stats *s = &p->stmt[i];
	char cls[3] = "08"; /* no SQLSTATE: libpq's own, a connection's */
	unsigned int k;

	if (sqlstate != NULL && strlen(sqlstate) == 5)
		snprintf(cls, sizeof(cls), "%.2s", sqlstate);
	pthread_mutex_lock(&p->lock);
	for (k = 0; k < DB_ERROR_CLASSES - 1; k++)
		if (s->errors[k].cls[0] == '\0' ||
		    strcmp(s->errors[k].cls, cls) == 0)
			break;
	if (s->errors[k].cls[0] == '\0')
		snprintf(s->errors[k].cls, sizeof(s->errors[k].cls), "%s",
		         k < DB_ERROR_CLASSES - 1 ? cls : "other");
	s->errors[k].n++;
	pthread_mutex_unlock(&p->lock);
}

void
db_pool_render_metrics(struct db_pool *p, FILE *f)
{
	const struct db_statement *st = p->opt.statements;

	fputs("# HELP microd_db_acquire_seconds How long handlers waited for "
	      "a connection, those that got none included.\n"
	      "# TYPE microd_db_acquire_seconds histogram\n",
	      f);
	metrics_histogram_render(f, "microd_db_acquire_seconds", NULL,
	                         &p->acquire, 0);
	fputs("# HELP microd_db_operation_duration_seconds Each run of a "
	      "statement, from its sending to its result, by statement.\n"
	      "# TYPE microd_db_operation_duration_seconds histogram\n",
	      f);
	for (unsigned int i = 0; i < p->opt.n_statements; i++) {
		const char *const labels[] = {"statement", st[i].name, NULL};

		metrics_histogram_render(f,
		                         "microd_db_operation_duration_seconds",
		                         labels, &p->stmt[i].duration, 0);
	}
	fputs("# HELP microd_db_errors_total Statements that failed, by "
	      "statement and SQLSTATE class (its first two characters; 08 "
	      "also for a failure without one, libpq's own).\n"
	      "# TYPE microd_db_errors_total counter\n",
	      f);
	pthread_mutex_lock(&p->lock);
	for (unsigned int i = 0; i < p->opt.n_statements; i++)
		for (unsigned int k = 0; k < DB_ERROR_CLASSES &&
		                         p->stmt[i].errors[k].cls[0] != '\0';
		     k++) {
			fputs("microd_db_errors_total{statement=\"", f);
			metrics_put_label(f, st[i].name);
			fprintf(f, "\",class=\"%s\"} %llu\n",
			        p->stmt[i].errors[k].cls,
			        p->stmt[i].errors[k].n);
		}
	pthread_mutex_unlock(&p->lock);
}
