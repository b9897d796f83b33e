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
#include <stddef.h>

#include "db.h"
#include "query.h"

/*
 * One connection of a pool. prepared[i] says the pool's statement i is
 * prepared on it; a connection is used by one thread at a time, so the
 * flags need no lock.
 */
struct db_conn {
	PGconn *pg;
	struct db_conn *next; /* in the idle stack */
	unsigned char *prepared;
};

/* pool.c */

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
