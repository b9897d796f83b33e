/* SPDX-License-Identifier: MIT */
/*
 * query.h -- the service's statements: a table of named, typed SQL that is
 * prepared on every connection, checked against the live schema at start,
 * and run by blocking handlers, each failure answered by its SQLSTATE
 */
#ifndef MICROD_DB_QUERY_H
#define MICROD_DB_QUERY_H

#include <jansson.h>

#include "request.h"

/* A parameter's or column's type: each is one PostgreSQL type (its OID).
 * Values travel as text both ways. */
enum db_type {
	DB_BOOL,
	DB_INT4,
	DB_INT8,
	DB_TEXT,
	DB_TEXT_ARRAY, /* text[] */
	DB_JSONB,
	DB_TIMESTAMPTZ,
};

struct db_column {
	const char *name;
	enum db_type type;
};

/*
 * One statement of the service's table (src/app/statements.c). name is the
 * prepared statement's name on every connection and the label of its
 * metrics and log lines; sql takes $1..$n, bound, never pasted in.
 * At start each is described by the server and compared with its row
 * (parameter types; column names and types); a row with no columns
 * (columns NULL) reads no result, and its result is not compared.
 */
struct db_statement {
	const char *name;
	const char *sql;
	const enum db_type *params;
	unsigned int n_params;
	const struct db_column *columns;
	unsigned int n_columns;
};

struct db_result;

/*
 * Runs st with values (st->n_params of them, text; NULL is SQL NULL) on a
 * connection of the pool, for a blocking handler only (ROUTE_BLOCKING).
 * 0 with *res set (free with db_result_free), or -1 with rep set to the
 * problem reply the SQLSTATE calls for (db_sqlstate_verdict: 409, 503 with
 * Retry-After, 504, 400, 500; never the SQL or the server's message) and one
 * log line naming st->name and the SQLSTATE. A serialization failure or
 * deadlock is run once more first. The statement is cancelled, and its
 * connection discarded, when the client leaves (request_gone_fd) or the
 * statement deadline (--database-timeout) passes. On a request that is not
 * on the handler pool (req->queued_ms 0: an I/O thread) it refuses with a
 * 500, logged once: "db_query on an I/O thread: mark the route
 * ROUTE_BLOCKING".
 */
int db_query(const struct request *req, const struct db_statement *st,
             const char *const *values, struct db_result **res,
             struct reply *rep);

/* One statement of a db_pipeline: st with its values in; res out. */
struct db_call {
	const struct db_statement *st;
	const char *const *values;
	struct db_result *res; /* set when db_pipeline returns 0 */
};

/*
 * Runs calls[0..n) in order as one implicit transaction, sent together on
 * one connection (libpq's pipeline mode): n statements, one round trip.
 * 0 with every calls[k].res set (each freed with db_result_free), or -1
 * with rep set as db_query says, for the first statement that failed; the
 * others' effects are rolled back, and no res is set. A serialization
 * failure or deadlock runs the whole batch once more. n is at most
 * DB_PIPELINE_MAX.
 */
#define DB_PIPELINE_MAX 512
int db_pipeline(const struct request *req, struct db_call *calls,
                unsigned int n, struct reply *rep);

unsigned int db_result_rows(const struct db_result *res);

/* Row row's column col as text, NULL for SQL NULL; owned by res. */
const char *db_result_value(const struct db_result *res, unsigned int row,
                            unsigned int col);

/*
 * Row row as a new object keyed by the statement's column names, each value
 * typed by its column: integers, booleans, strings, text[] an array of
 * strings, jsonb its JSON, timestamptz RFC 3339 in UTC; SQL NULL is null.
 * NULL when memory runs out.
 */
json_t *db_result_json(const struct db_result *res, unsigned int row);

void db_result_free(struct db_result *res); /* NULL-safe */

/*
 * A JSON array of strings as a DB_TEXT_ARRAY parameter's text: every
 * element quoted, '"' and '\\' escaped ("{\"a\",\"b c\"}"), so any string
 * goes in as it is. A string to free(), or NULL when an element is not a
 * string or memory runs out.
 */
char *db_text_array_literal(const json_t *strings);

#endif
