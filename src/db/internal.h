/* SPDX-License-Identifier: MIT */
/*
 * internal.h -- what src/db's files share and nothing outside sees (but the
 * tests): a connection's prepared statements, the pool's table and
 * counters, one wait for a statement's result, the text formats' parsers
 */
#ifndef MICROD_DB_INTERNAL_H
#define MICROD_DB_INTERNAL_H

#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stddef.h>

#include "db.h"
#include "query.h"

/* A statement's state on one connection (db_conn.prepared[i]). */
enum {
	DB_UNPREPARED = 0,
	DB_PREPARED = 1,
	DB_STALE = 2, /* its cached plan no longer fits (0A000): DEALLOCATE */
};

/* Parameters of one statement at most. */
#define DB_PARAMS_MAX 64

/*
 * One connection of a pool. prepared[i] says where the pool's statement i
 * stands on it; a connection is used by one thread at a time, so the
 * flags need no lock.
 */
struct db_conn {
	PGconn *pg;
	struct db_conn *next; /* in the idle stack */
	unsigned char *prepared;
};

/* pool.c */

/* A connection for a lane (pipeline.c), waiting at most timeout_ms; not
 * counted in the acquire metrics (db_pool_count_acquire is). */
enum db_acquire_result db_take_lane(struct db_pool *pool,
                                    unsigned int timeout_ms,
                                    struct db_conn **out);

/* A batch waited waited_ns for a lane to send it; timed_out: in vain. */
void db_pool_count_acquire(struct db_pool *pool, long long waited_ns,
                           int timed_out);

/* The pool's lanes, which run every statement of the handlers. */
struct db_lanes *db_pool_lanes(struct db_pool *pool);

/* The pool's settings (its table among them); borrowed from the pool. */
const struct db_pool_options *db_pool_settings(const struct db_pool *pool);

/* st's row in the pool's table, or -1 when st is not one of its rows. */
int db_pool_statement(const struct db_pool *pool,
                      const struct db_statement *st);

/* One run of statement i (from send to result) took duration_ns. */
void db_pool_observe(struct db_pool *pool, unsigned int i,
                     long long duration_ns);

/*
 * A statement's cached plan no longer fits the schema (0A000): the
 * database check compares the statements with it again (until then it
 * fails when they do not match). name: the statement that saw it.
 */
void db_pool_schema_changed(struct db_pool *pool, const char *name);

/* Statement i failed with sqlstate (NULL: no SQLSTATE, counted as 08). */
void db_pool_count_error(struct db_pool *pool, unsigned int i,
                         const char *sqlstate);

/* pipeline.c */

/* How a batch ended. */
enum db_outcome {
	DB_RAN,         /* every result came: pg[k] each, or err */
	DB_GONE,        /* the client left */
	DB_TIMEOUT,     /* no answer past the deadline: the connection cut */
	DB_LOST,        /* the connection failed under it */
	DB_NO_SLOT,     /* not sent within the acquire timeout */
	DB_UNREACHABLE, /* no connection: the database is down */
	DB_CLOSING,     /* the pool stops */
};

struct item;

/*
 * One db_pipeline call's statements on their way: made by query.c, queued
 * on a lane by db_lanes_run, answered there. The fields after `in` are the
 * lane's while the batch is in it.
 */
struct db_batch {
	const struct db_call *calls; /* values read only while sending */
	unsigned int *stmt;          /* calls[k]'s row of the pool's table */
	unsigned int n;
	int gone_fd; /* turns readable when the client leaves; -1: none */
	long long acquire_deadline_ms; /* now_ms()'s clock */
	/* out, once db_lanes_run returned */
	enum db_outcome outcome;
	PGresult **pg;         /* call k's result (DB_RAN without err) */
	long long *end_ns;     /* when it came (now_ns()'s clock) */
	PGresult *err;         /* the first failure, or NULL */
	unsigned int err_stmt; /* its statement's row */
	long long err_ns;      /* when it came */
	long long sent_ns;     /* the first statement sent; 0: never */
	/* in: the lane's */
	pthread_cond_t done; /* with the lane's lock: notified */
	struct db_batch *next;
	struct item *items;
	unsigned int nitems, item, next_call;
	long long head_ms; /* the oldest in flight since then */
	int in_lane, notified, orphan;
	int watched; /* gone_fd is in the lane's epoll set */
};

/* A batch for n calls (stmt left to fill), NULL when memory is short. */
struct db_batch *db_batch_new(const struct db_call *calls, unsigned int n);

void db_batch_free(struct db_batch *b); /* NULL-safe, with its results */

/*
 * One lane a connection of the pool (opt->size), each with its thread;
 * pipeline 0 sends one statement a round trip and one batch a lane at a
 * time. NULL when a thread cannot start (logged).
 */
struct db_lanes *db_lanes_start(struct db_pool *pool,
                                const struct db_pool_options *opt,
                                int pipeline);

/*
 * Queues b on the lane with the fewest batches and waits for its outcome:
 * 1 when b is the caller's again (db_batch_free), 0 when it stays in the
 * lane (its client left while it runs pipelined with others; the lane
 * frees it).
 */
int db_lanes_run(struct db_lanes *ls, struct db_batch *b);

/* Answers what waits with DB_CLOSING, gives the connections back, joins
 * the threads. Batches run after it are answered DB_CLOSING at once. */
void db_lanes_stop(struct db_lanes *ls);

void db_lanes_free(struct db_lanes *ls); /* after db_lanes_stop */

/* query.c */

/* The OID of t (pg_type), for PQprepare and the schema check. */
unsigned int db_type_oid(enum db_type t);

/* What db_result_wait saw. */
enum db_wait {
	DB_WAIT_DONE,    /* *out holds the result (or NULL: none came) */
	DB_WAIT_TIMEOUT, /* deadline_ms passed: the statement still runs */
	DB_WAIT_GONE,    /* stop_fd turned readable: likewise */
	DB_WAIT_BROKEN,  /* the connection failed: *out may hold why */
};

/*
 * After a PQsend*: waits for its results until deadline_ms (now_ms()'s
 * clock; < 0: none) or until stop_fd (-1: none) turns readable, reading
 * them all; *out is the first failed one, else the last (the caller's to
 * PQclear). Only DB_WAIT_DONE leaves pg ready for the next statement.
 */
enum db_wait db_result_wait(PGconn *pg, long long deadline_ms, int stop_fd,
                            PGresult **out);

/*
 * Prepares st under its name on pg (one prepared there already counts): 0,
 * or -1 with *err the failed result (NULL: the connection failed), -2 past
 * deadline_ms, -3 stop_fd turned readable (then the connection must go).
 */
int db_prepare(PGconn *pg, const struct db_statement *st, long long deadline_ms,
               int stop_fd, PGresult **err);

/*
 * A text[] in PostgreSQL's array text format ("{a,\"b c\",NULL}") as a new
 * JSON array of strings (SQL NULL elements as null); one dimension only.
 * NULL when s is not such an array or memory runs out.
 */
json_t *db_text_array_json(const char *s);

/*
 * A timestamptz as PostgreSQL's ISO DateStyle writes it ("2026-12-07
 * 23:00:00.123+00", any offset, "+05:30") as RFC 3339 in UTC into out
 * ("2026-12-07T23:00:00.123Z"): 0, or -1 when s is not one (infinity, a
 * BC or five-digit year) or out is too short.
 */
int db_time_rfc3339(const char *s, char *out, size_t len);

#endif
