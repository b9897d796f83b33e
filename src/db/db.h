/* SPDX-License-Identifier: MIT */
/*
 * db.h -- the database layer: a pool of libpq connections, SQLSTATE → HTTP,
 * migrations
 */
#ifndef MICROD_DB_H
#define MICROD_DB_H

#include <stddef.h>
#include <stdio.h>

/*
 * What a statement's failure means for the client. A NULL SQLSTATE is a
 * connection failure (libpq's own errors carry none), as is class 08;
 * retry: run the statement once more before answering with status
 * (serialization failure, deadlock); retry_after: seconds for Retry-After,
 * 0 for none.
 */
struct db_verdict {
	unsigned int status;
	int retry;
	unsigned int retry_after;
};

struct db_verdict db_sqlstate_verdict(const char *sqlstate);

/*
 * conninfo (a libpq URI or key=value string) as key='value' pairs without
 * its password and sslpassword, for logs and --check-config: a string to
 * free(), or NULL when it does not parse (libpq's message is not given: it
 * may quote the string, password and all).
 */
char *db_conninfo_redact(const char *conninfo);

struct db_statement;
struct db_migration;

struct db_pool_options {
	const char *conninfo; /* libpq's PG* variables fill what it omits */
	/* The service's statements (src/db/query.h), prepared on every new
	 * connection; one that fails to prepare (its table not migrated yet)
	 * is prepared again at its first use on that connection. Borrowed:
	 * they outlive the pool. */
	const struct db_statement *statements;
	unsigned int n_statements;
	/* The migrations built in, for the database check (db_ping):
	 * pending ones fail it, naming them. Borrowed. */
	const struct db_migration *migrations;
	unsigned int n_migrations;
	unsigned int size; /* connections, at least 1 */
	unsigned int acquire_timeout_ms;
	unsigned int statement_timeout_ms; /* SET at connect; 0: the server's */
	unsigned int connect_timeout_ms;   /* one attempt; 0: 5000 */
	unsigned int backoff_min_ms; /* between failed attempts, doubling */
	unsigned int backoff_max_ms; /* with jitter; 0: 50 and 1000 */
	/* Several requests' statements in flight on each connection (libpq's
	 * pipeline mode); 0: one statement a round trip, one request's
	 * statements at a time on a connection. */
	int pipeline;
};

struct db_pool;
struct db_conn;
struct pg_conn; /* libpq's PGconn */

/*
 * Checks the conninfo and starts the pool's one connecting thread, which
 * opens every connection in the background and replaces each discarded one,
 * with capped, jittered exponential backoff while the database refuses: a
 * database that is down at start does not stop microd from starting. NULL
 * when the conninfo does not parse or memory or a thread is short (logged).
 */
struct db_pool *db_pool_open(const struct db_pool_options *opt);

enum db_acquire_result {
	DB_OK = 0,
	DB_EXHAUSTED = -1, /* every connection in use for the whole timeout */
	DB_DOWN = -2,      /* none to be had: the database cannot be reached */
};

/*
 * A connection for one blocking handler (never an I/O thread): waits at
 * most the acquire timeout, and fails at once while the pool has no
 * connection and its last attempt to make one failed. An idle connection
 * the server has closed meanwhile is discarded here, not handed out.
 * Both failures are a 503 with Retry-After: 1 (db_sqlstate_verdict(NULL)).
 */
enum db_acquire_result db_acquire(struct db_pool *pool, struct db_conn **out);

/*
 * db_acquire with waited_ms (the request's time in the handler queue)
 * taken from the acquire timeout: with the pool as large as the handler
 * pool, that queue is where a request waits for a connection. Waited as
 * long already: DB_EXHAUSTED at once, without taking a connection.
 */
enum db_acquire_result db_acquire_waited(struct db_pool *pool,
                                         long long waited_ms,
                                         struct db_conn **out);

/*
 * Gives c back, with every result read. broken: the caller saw a
 * connection failure (SQLSTATE class 08, a NULL SQLSTATE) or sent a cancel;
 * c is then closed and replaced in the background, as it is when libpq
 * reports it bad. A transaction left open or failed is rolled back here;
 * when that fails, c is discarded too.
 */
void db_release(struct db_pool *pool, struct db_conn *c, int broken);

/* The libpq connection, for src/db's statements and the tests. */
struct pg_conn *db_conn_pg(struct db_conn *c);

struct db_pool_stats {
	unsigned int idle, used, max;
	int down; /* no connection, and the last attempt failed */
	unsigned long long acquire_timeouts; /* DB_EXHAUSTED and DB_DOWN */
	unsigned long long reconnects; /* made to replace a discarded one */
	unsigned long long discarded;
};

void db_pool_stats(struct db_pool *pool, struct db_pool_stats *st);

/*
 * The database check's run: a connection within timeout_ms (a failure here
 * is not counted in acquire_timeouts: those are the handlers'), then
 * SELECT 1 answered before the same deadline; then no migration of the
 * pool's may be pending ("migrations pending: 0001_notes.sql, ..."), and
 * the pool's statements are checked against the schema at every run
 * (DEALLOCATE ALL, then db_statements_check, on that connection). A run cut
 * short when stop_fd (-1: none) turns readable. 0, or -1 with why set to one
 * line without the conninfo; a connection that did not answer in time is
 * discarded. No connection free while the pool is not down (every one busy) is
 * the last run's verdict: 0 with why set, when that run passed.
 */
int db_ping(struct db_pool *pool, unsigned int timeout_ms, int stop_fd,
            char *why, size_t len);

/*
 * Writes the pool's histograms and error counters in the Prometheus text
 * format: microd_db_acquire_seconds, microd_db_operation_duration_seconds
 * {statement}, microd_db_errors_total{statement,class} (the gauges and
 * counters of db_pool_stats are the caller's).
 */
void db_pool_render_metrics(struct db_pool *pool, FILE *f);

/*
 * Stops the connecting thread (joined), wakes every waiter (DB_DOWN) and
 * closes the idle connections, then frees the pool: for a stop after every
 * handler finished (one still holding a connection leaves it unfreed, as
 * db_pool_abandon; a second db_pool_close, once none is, frees it).
 */
void db_pool_close(struct db_pool *pool);

/*
 * The same stop for a shutdown that cut handlers still running: the pool
 * is never freed, so a cut handler may go on calling it until the process
 * ends (db_acquire then fails at once, DB_DOWN; db_release closes what it
 * gives back). No thread of the pool's runs any more.
 */
void db_pool_abandon(struct db_pool *pool);

/*
 * One migration: a file of src/app/sql/ built into the binary (the
 * Makefile's table, src/app/sql.h). sql is the file's bytes with a NUL
 * after them; len does not count it.
 */
struct db_migration {
	const char *name; /* the file's name: 0001_notes.sql */
	const char *sql;
	size_t len;
};

/* The file's SHA-256 as 64 lower-case hex digits and a NUL: 0, or -1. */
int db_migration_checksum(const struct db_migration *m, char hex[65]);

/*
 * microd migrate: connects to conninfo, takes an advisory lock (one key for
 * every microd, so a second runner waits), creates microd_migrations when
 * it is missing, then goes through m[0..n) in order: an applied file with
 * the same checksum is skipped; one applied with another checksum stops
 * the run; any other is applied in its own transaction with its row in
 * microd_migrations. Each step is logged. dry_run: no lock, nothing
 * created or applied, the pending files logged. Returns the exit status:
 * 0 every file is applied (dry_run: none changed), 1 the database cannot
 * be reached or a migration failed (rolled back), 2 a checksum changed, the
 * conninfo does not parse, or m is not in strictly increasing name order.
 * The password is never logged.
 */
int db_migrate(const char *conninfo, const struct db_migration *m,
               unsigned int n, int dry_run);

/*
 * For the database check, on a connection of the pool (db_conn_pg()): how
 * many of m[0..n) are not applied (one applied with another checksum is
 * not pending: db_migrate_changed), their names in buf, comma-separated and
 * cut with "..." when they do not fit; -1 when the query fails. Reads only:
 * a database without microd_migrations has every file pending.
 */
int db_migrate_pending(struct pg_conn *pg, const struct db_migration *m,
                       unsigned int n, char *buf, size_t len);

/* The same for the files applied with another checksum than theirs now:
 * microd migrate stops at them (exit 2), so they are not pending. */
int db_migrate_changed(struct pg_conn *pg, const struct db_migration *m,
                       unsigned int n, char *buf, size_t len);

/*
 * The statement table against the live schema, on pg: each statement is
 * prepared (under its own name, unless prepared on pg already) and
 * described, and its parameter count and types, column count, names and
 * types compared with the table. 0 when all match; -1 with why naming the
 * first statement that does not and the server's error or the difference
 * ("statement note_get: column \"titel\" does not exist"); -2 when pg
 * failed (a connection error: why says so); -3 when a statement's PREPARE
 * met the session's lock_timeout (55P03: a lock held, a migration's).
 * deadline_ms (now_ms()'s clock) bounds the whole; stop_fd (-1: none) turning
 * readable cuts it short.
 */
int db_statements_check(struct pg_conn *pg, const struct db_statement *st,
                        unsigned int n, long long deadline_ms, int stop_fd,
                        char *why, size_t len);

enum db_schema_result {
	DB_SCHEMA_OK = 0,      /* every statement matches */
	DB_SCHEMA_SKIPPED = 1, /* not checked: unreachable, or pending */
	DB_SCHEMA_MISMATCH = 2,
};

/*
 * At start and under --check-config: connects to conninfo once (within
 * timeout_ms), and when no migration of m[0..n_m) is pending checks the
 * statements (db_statements_check). why says what was found: the
 * mismatch, why the check was skipped (the database cannot be reached;
 * the pending files), or nothing. The password is never in it.
 */
enum db_schema_result
db_schema_check(const char *conninfo, const struct db_statement *st,
                unsigned int n, const struct db_migration *m, unsigned int n_m,
                unsigned int timeout_ms, char *why, size_t len);

#endif
