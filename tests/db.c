/* SPDX-License-Identifier: MIT */
/*
 * db.c -- the connection pool against a real PostgreSQL (TAP): acquire and
 * release, the acquire timeout, the statement deadline, rollback, a backend
 * killed while idle, the database stopped and started again, down at open,
 * and no password in the log
 *
 * The cluster is tests/pg.py's (MICROD_PG_PY names it), in a directory of
 * its own, started, stopped and removed through its command line.
 */
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "app/sql.h"
#include "check.h"
#include "clock.h"
#include "db/db.h"
#include "db/internal.h"
#include "db/query.h"
#include "log.h"
#include "reply.h"
#include "runtime.h"

#define SIZE 3
#define ACQUIRE_MS 300
#define STATEMENT_MS 200
#define SLACK_MS 100 /* the bound: the acquire timeout + 100 ms */

static const char *pg_py;
static char pg_dir[64];

/* python3 tests/pg.py VERB DIR: its exit status. */
static int
pg_run(const char *verb)
{
	char cmd[512];
	int st;

	snprintf(cmd, sizeof(cmd), "python3 '%s' %s '%s' >/dev/null", pg_py,
	         verb, pg_dir);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Starts (first: initdb) the cluster; its URI, to free, or NULL. */
static char *
pg_start(void)
{
	char cmd[512], uri[512];
	FILE *f;
	int ok_ = 0;

	snprintf(cmd, sizeof(cmd), "python3 '%s' start '%s'", pg_py, pg_dir);
	f = popen(cmd, "r");
	if (f == NULL)
		return NULL;
	if (fgets(uri, sizeof(uri), f) != NULL) {
		uri[strcspn(uri, "\n")] = '\0';
		ok_ = strncmp(uri, "postgresql://", 13) == 0;
	}
	if (pclose(f) != 0 || !ok_)
		return NULL;
	return strdup(uri);
}

static void
nap_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
	                      .tv_nsec = ms % 1000 * 1000000};

	nanosleep(&ts, NULL);
}

/* Polls cond every 10 ms until it holds or ms have passed. */
#define WAIT_UNTIL(cond, ms)                                                   \
	do {                                                                   \
		long long wu_end_ = now_ms() + (ms);                           \
		while (!(cond) && now_ms() < wu_end_)                          \
			nap_ms(10);                                            \
	} while (0)

static struct db_pool_stats
stats(struct db_pool *p)
{
	struct db_pool_stats st;

	db_pool_stats(p, &st);
	return st;
}

/* sql's result status is a success. */
static int
run_ok(struct db_conn *c, const char *sql)
{
	PGresult *r = PQexec(db_conn_pg(c), sql);
	ExecStatusType st = PQresultStatus(r);

	PQclear(r);
	return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* The SQLSTATE sql fails with, in buf ("" for none, "ok" for success). */
static const char *
run_state(struct db_conn *c, const char *sql, char *buf, size_t len)
{
	PGresult *r = PQexec(db_conn_pg(c), sql);
	ExecStatusType st = PQresultStatus(r);
	const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		s = "ok";
	snprintf(buf, len, "%s", s != NULL ? s : "");
	PQclear(r);
	return buf;
}

static long
backend_pid(struct db_conn *c)
{
	PGresult *r = PQexec(db_conn_pg(c), "SELECT pg_backend_pid()");
	long pid = PQresultStatus(r) == PGRES_TUPLES_OK
	               ? strtol(PQgetvalue(r, 0, 0), NULL, 10)
	               : -1;

	PQclear(r);
	return pid;
}

struct waiter {
	struct db_pool *pool;
	enum db_acquire_result got;
	struct db_conn *c;
};

static void *
waiter_main(void *arg)
{
	struct waiter *w = arg;

	w->got = db_acquire(w->pool, &w->c);
	return NULL;
}

static void
test_acquire(struct db_pool *p)
{
	struct db_conn *c[SIZE + 1] = {NULL}, *again;
	struct db_pool_stats st;
	struct waiter w = {.pool = p};
	pthread_t t;
	long long t0;
	int all = 1;
	enum db_acquire_result got;

	WAIT_UNTIL(stats(p).idle == SIZE, 5000);
	st = stats(p);
	ok(st.idle == SIZE && st.used == 0 && st.max == SIZE,
	   "the pool connects its %d in the background (idle %u)", SIZE,
	   st.idle);
	for (int i = 0; i < SIZE; i++)
		all &=
		    db_acquire(p, &c[i]) == DB_OK && run_ok(c[i], "SELECT 1");
	st = stats(p);
	ok(all && st.used == SIZE && st.idle == 0,
	   "%d acquired, each runs SELECT 1 (used %u, idle %u)", SIZE, st.used,
	   st.idle);

	t0 = now_ms();
	got = db_acquire(p, &c[SIZE]);
	t0 = now_ms() - t0;
	ok(got == DB_EXHAUSTED && c[SIZE] == NULL,
	   "one more, with all %d in use: DB_EXHAUSTED (%d)", SIZE, got);
	ok(t0 >= ACQUIRE_MS - 5 && t0 <= ACQUIRE_MS + SLACK_MS,
	   "  after the acquire timeout: %lld ms (timeout %d ms)", t0,
	   ACQUIRE_MS);
	is(stats(p).acquire_timeouts, 1, "  counted as an acquire timeout");
	is(db_sqlstate_verdict(NULL).status, 503, "  which is a 503");

	pthread_create(&t, NULL, waiter_main, &w);
	db_release(p, c[0], 0);
	pthread_join(t, NULL);
	ok(w.got == DB_OK && w.c == c[0],
	   "a waiting acquire gets the connection released meanwhile");
	c[0] = w.c;
	for (int i = SIZE - 1; i >= 0; i--)
		db_release(p, c[i], 0);
	st = stats(p);
	ok(st.idle == SIZE && st.used == 0 && st.discarded == 0,
	   "all released: idle %u, used %u, none discarded", st.idle, st.used);
	db_acquire(p, &again);
	ok(again == c[0], "the last released is the next acquired (warm)");
	db_release(p, again, 0);
}

static void
test_transactions(struct db_pool *p)
{
	struct db_conn *c, *again;
	char buf[16];

	db_acquire(p, &c);
	run_ok(c, "BEGIN");
	is_str(run_state(c, "SELECT 1/0", buf, sizeof(buf)), "22012",
	       "a statement fails in a transaction (22012)");
	is(PQtransactionStatus(db_conn_pg(c)), PQTRANS_INERROR,
	   "  which is now aborted");
	db_release(p, c, 0);
	db_acquire(p, &again);
	ok(again == c && PQtransactionStatus(db_conn_pg(c)) == PQTRANS_IDLE &&
	       run_ok(c, "SELECT 1"),
	   "released: rolled back, kept, and usable");
	run_ok(c, "BEGIN");
	run_ok(c, "CREATE TABLE left_open (id int)");
	db_release(p, c, 0);
	db_acquire(p, &again);
	ok(again == c && PQtransactionStatus(db_conn_pg(c)) == PQTRANS_IDLE &&
	       strcmp(run_state(c, "SELECT * FROM left_open", buf, sizeof(buf)),
	              "42P01") == 0,
	   "a transaction left open is rolled back at release (%s)", buf);
	is(stats(p).discarded, 0, "  neither was discarded");

	is_str(run_state(c, "SELECT 'x'::int", buf, sizeof(buf)), "22P02",
	       "bad input: 22P02 from the server");
	is(db_sqlstate_verdict(buf).status, 400, "  a 400");
	run_ok(c, "CREATE TEMP TABLE u (id int PRIMARY KEY)");
	run_ok(c, "INSERT INTO u VALUES (1)");
	is_str(run_state(c, "INSERT INTO u VALUES (1)", buf, sizeof(buf)),
	       "23505", "a duplicate key: 23505 from the server");
	is(db_sqlstate_verdict(buf).status, 409, "  a 409");
	run_ok(c, "DROP TABLE u");
	db_release(p, c, 0);
}

static void
test_deadline(struct db_pool *p)
{
	struct db_conn *c;
	struct db_pool_stats st;
	char buf[16];
	long long t0;

	db_acquire(p, &c);
	t0 = now_ms();
	run_state(c, "SELECT pg_sleep(5)", buf, sizeof(buf));
	t0 = now_ms() - t0;
	ok(strcmp(buf, "57014") == 0 && t0 < 5LL * STATEMENT_MS,
	   "a statement past the %d ms deadline: %s after %lld ms",
	   STATEMENT_MS, buf, t0);
	is(db_sqlstate_verdict(buf).status, 504, "  a 504");
	db_release(p, c, 1);
	WAIT_UNTIL(stats(p).idle == SIZE, 2000);
	st = stats(p);
	ok(st.discarded == 1 && st.reconnects == 1 && st.idle == SIZE,
	   "released as broken: discarded and replaced in the background "
	   "(discarded %llu, reconnects %llu, idle %u)",
	   st.discarded, st.reconnects, st.idle);
}

/* A backend ended while its connection sits idle in the pool. */
static void
test_killed_idle(struct db_pool *p)
{
	struct db_conn *victim, *killer, *c[SIZE] = {NULL};
	char sql[96], buf[16];
	long pid;
	int all = 1, seen = 0;

	db_acquire(p, &victim);
	db_acquire(p, &killer);
	pid = backend_pid(victim);
	db_release(p, victim, 0);
	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%ld, 5000)",
	         pid);
	ok(strcmp(run_state(killer, sql, buf, sizeof(buf)), "ok") == 0,
	   "the idle connection's backend %ld is terminated", pid);
	db_release(p, killer, 0);
	for (int i = 0; i < SIZE; i++) {
		all &=
		    db_acquire(p, &c[i]) == DB_OK && run_ok(c[i], "SELECT 1");
		seen |= c[i] != NULL && backend_pid(c[i]) == pid;
	}
	ok(all && !seen,
	   "then %d acquired at once all work: the dead one was not handed "
	   "out",
	   SIZE);
	for (int i = 0; i < SIZE; i++)
		db_release(p, c[i], 0);
	is(stats(p).discarded, 2, "  it was discarded at acquire");
}

/*
 * db_migrate_pending on a pool's connection, for the database check: the
 * built-in files all pending before db_migrate, none after, a changed
 * checksum not pending but changed, and a short buffer cut with "...".
 */
static void
test_pending(struct db_pool *p, const char *uri)
{
	const struct db_migration *m = app_migrations;
	unsigned int n = app_migrations_count;
	struct db_conn *c = NULL;
	char buf[256], want[256] = "", tiny[20];
	int got;

	for (unsigned int i = 0; i < n; i++)
		snprintf(want + strlen(want), sizeof(want) - strlen(want),
		         "%s%s", i > 0 ? ", " : "", m[i].name);
	if (db_acquire(p, &c) != DB_OK) {
		ok(0, "a connection for db_migrate_pending");
		return;
	}
	got = db_migrate_pending(db_conn_pg(c), m, n, buf, sizeof(buf));
	ok(n >= 2 && got == (int)n && strcmp(buf, want) == 0,
	   "before db_migrate every file is pending: %d, %s", got, buf);
	got = db_migrate_pending(db_conn_pg(c), m, n, tiny, sizeof(tiny));
	ok(got == (int)n && strcmp(tiny, "0001_notes.sql, ...") == 0,
	   "  a buffer too short for the names ends in ...: %s", tiny);
	is(db_migrate(uri, m, n, 0), 0, "db_migrate applies them");
	got = db_migrate_pending(db_conn_pg(c), m, n, buf, sizeof(buf));
	ok(got == 0 && buf[0] == '\0', "then none is pending: %d, '%s'", got,
	   buf);
	ok(run_ok(c, "UPDATE microd_migrations SET checksum = 'x' WHERE "
	             "name = '0001_notes.sql'"),
	   "a checksum changed behind its back");
	got = db_migrate_pending(db_conn_pg(c), m, n, buf, sizeof(buf));
	ok(got == 0 && buf[0] == '\0',
	   "  is not pending (microd migrate would not apply it): %d, '%s'",
	   got, buf);
	got = db_migrate_changed(db_conn_pg(c), m, n, buf, sizeof(buf));
	ok(got == 1 && strcmp(buf, "0001_notes.sql") == 0,
	   "  db_migrate_changed names it: %d, %s", got, buf);
	is(db_migrate(uri, m, n, 0), 2, "  and db_migrate refuses with 2");
	ok(run_ok(c, "DROP TABLE microd_migrations, notes, world"),
	   "the tables dropped again");
	db_release(p, c, 0);
}

static void
test_restart(struct db_pool *p)
{
	struct db_conn *held, *c[SIZE] = {NULL};
	struct db_pool_stats st;
	char buf[16];
	long long t0, worst = 0, up;
	int any_ok = 0, all = 1;

	WAIT_UNTIL(stats(p).idle == SIZE, 2000);
	db_acquire(p, &held);
	ok(pg_run("stop") == 0, "the database is stopped (fast)");
	run_state(held, "SELECT 1", buf, sizeof(buf));
	ok(strcmp(buf, "ok") != 0 &&
	       PQstatus(db_conn_pg(held)) == CONNECTION_BAD,
	   "a connection in use fails (SQLSTATE '%s') and libpq says bad", buf);
	is(db_sqlstate_verdict(buf[0] ? buf : NULL).status, 503, "  a 503");
	db_release(p, held, 0);
	for (int i = 0; i < 10; i++) {
		struct db_conn *x;
		enum db_acquire_result got;

		t0 = now_ms();
		got = db_acquire(p, &x);
		t0 = now_ms() - t0;
		worst = t0 > worst ? t0 : worst;
		if (got == DB_OK) {
			any_ok = 1;
			db_release(p, x, 0);
		}
	}
	ok(!any_ok && worst <= ACQUIRE_MS + SLACK_MS,
	   "with it down, 10 acquires fail, the slowest in %lld ms", worst);
	WAIT_UNTIL(stats(p).down, 2000);
	st = stats(p);
	ok(st.down && st.idle == 0 && st.used == 0,
	   "  the pool says down (idle %u, used %u)", st.idle, st.used);
	t0 = now_ms();
	db_acquire(p, &c[0]);
	t0 = now_ms() - t0;
	ok(c[0] == NULL && t0 < 50, "  and an acquire fails at once: %lld ms",
	   t0);

	{
		char *uri = pg_start();

		ok(uri != NULL, "the database is started again");
		free(uri);
	}
	up = now_ms();
	for (;;) {
		struct db_conn *x;

		if (db_acquire(p, &x) == DB_OK) {
			db_release(p, x, 0);
			break;
		}
		if (now_ms() - up > 5000)
			break;
		nap_ms(10);
	}
	up = now_ms() - up;
	ok(up < 2000, "served again %lld ms after it came up", up);
	for (int i = 0; i < SIZE; i++)
		all &=
		    db_acquire(p, &c[i]) == DB_OK && run_ok(c[i], "SELECT 1");
	ok(all, "then %d acquired at once: none is dead", SIZE);
	for (int i = 0; i < SIZE; i++)
		db_release(p, c[i], 0);
	st = stats(p);
	ok(st.reconnects >= 2 + SIZE,
	   "  every lost connection was made again (reconnects %llu)",
	   st.reconnects);
}

static void
test_down_at_open(const char *uri)
{
	struct db_pool_options o = {.conninfo = uri,
	                            .size = 2,
	                            .acquire_timeout_ms = ACQUIRE_MS,
	                            .backoff_min_ms = 20,
	                            .backoff_max_ms = 500};
	struct db_pool *p;
	struct db_conn *c = NULL, *c2 = NULL;
	long long t0, up;
	enum db_acquire_result got;
	char *again;

	ok(pg_run("stop") == 0, "the database is stopped");
	p = db_pool_open(&o);
	ok(p != NULL, "a pool opens with the database down");
	if (p == NULL)
		return;
	t0 = now_ms();
	got = db_acquire(p, &c);
	t0 = now_ms() - t0;
	ok(got == DB_DOWN && t0 <= ACQUIRE_MS + SLACK_MS,
	   "  its acquire fails (%d) in %lld ms", got, t0);
	again = pg_start();
	up = now_ms();
	WAIT_UNTIL(stats(p).idle == 2, 5000);
	up = now_ms() - up;
	ok(again != NULL && stats(p).idle == 2 && up < 2000,
	   "  connected %lld ms after the database came up", up);
	free(again);
	got = db_acquire(p, &c);
	ok(got == DB_OK && run_ok(c, "SELECT 1"), "  and serves");
	/* Closed with c in use (a shutdown that cut a handler): the pool
	 * stays, its thread stopped, for the handler's next calls. */
	db_pool_abandon(p);
	t0 = now_ms();
	got = db_acquire(p, &c2);
	t0 = now_ms() - t0;
	ok(got == DB_DOWN && t0 <= SLACK_MS,
	   "  abandoned with a connection in use: a new acquire fails at "
	   "once (%d, %lld ms)",
	   got, t0);
	db_release(p, c, 0);
	ok(stats(p).used == 0 && stats(p).idle == 0,
	   "  the one in use released: closed, not made idle");
	db_pool_close(p); /* nothing in use now: freed */
}

/*
 * Every connection being replaced (each discarded, as a 57014 or a client
 * leaving does) while the database is up: an acquire that times out then
 * says the pool is exhausted, never that the database is down.
 */
static void
test_replacing(const char *uri)
{
	struct db_pool_options o = {.conninfo = uri,
	                            .size = 1,
	                            .acquire_timeout_ms = 1,
	                            .backoff_min_ms = 20,
	                            .backoff_max_ms = 500};
	struct db_pool *p = db_pool_open(&o);
	struct db_conn *c = NULL;
	int down = 0, exhausted = 0;

	if (p == NULL) {
		ok(0, "a pool of 1");
		return;
	}
	for (int i = 0; i < 5; i++) {
		WAIT_UNTIL(stats(p).idle == 1, 5000);
		if (db_acquire(p, &c) != DB_OK) {
			ok(0, "  an acquire of the idle one");
			break;
		}
		db_release(p, c, 1); /* discarded: replaced in the background */
		switch (db_acquire(p, &c)) {
		case DB_OK:
			db_release(p, c, 0);
			break;
		case DB_DOWN:
			down++;
			break;
		case DB_EXHAUSTED:
			exhausted++;
			break;
		}
	}
	ok(down == 0 && exhausted > 0,
	   "its one connection being replaced, the database up: an acquire "
	   "times out as DB_EXHAUSTED (%d), never DB_DOWN (%d)",
	   exhausted, down);
	db_pool_close(p);
}

/* A wrong password: the pool stays down, and says why without it. */
static void
test_wrong_password(const char *wrong)
{
	struct db_pool_options o = {
	    .conninfo = wrong, .size = 1, .acquire_timeout_ms = ACQUIRE_MS};
	struct db_pool *p;
	struct db_conn *c = NULL;

	p = db_pool_open(&o);
	WAIT_UNTIL(stats(p).down, 3000);
	ok(db_acquire(p, &c) == DB_DOWN,
	   "a wrong password: the pool is down, acquire says DB_DOWN");
	db_pool_close(p);
	o.conninfo = "host=/tmp password";
	ok(db_pool_open(&o) == NULL, "a conninfo that does not parse: no pool");
}

/* The URI with its password replaced by "wrong-XYZ". */
static char *
wrong_password(const char *uri)
{
	const char *at = strchr(uri, '@');
	const char *colon = strchr(uri + strlen("postgresql://"), ':');
	char *out;

	if (at == NULL || colon == NULL || colon > at)
		return NULL;
	out = malloc(strlen(uri) + 32);
	if (out == NULL)
		return NULL;
	snprintf(out, strlen(uri) + 32, "%.*swrong-7Hq2%s",
	         (int)(colon + 1 - uri), uri, at);
	return out;
}

/* The password in uri (between the user's ':' and '@'). */
static char *
password_of(const char *uri)
{
	const char *at = strchr(uri, '@');
	const char *colon = strchr(uri + strlen("postgresql://"), ':');

	if (at == NULL || colon == NULL || colon > at)
		return NULL;
	return strndup(colon + 1, (size_t)(at - colon - 1));
}

/* ---- the statement layer (src/db/query.c, schema.c) ---- */

/* The text formats' parsers, as a table: no database needed. */
static const struct array_case {
	const char *text; /* as PostgreSQL writes a text[] */
	const char *json; /* db_text_array_json's, compact; NULL: refused */
} array_cases[] = {
    {"{}", "[]"},
    {"{a,b}", "[\"a\",\"b\"]"},
    {"{\"a,b\",c}", "[\"a,b\",\"c\"]"},
    {"{\"\\\"q\\\"\",\"back\\\\slash\"}", "[\"\\\"q\\\"\",\"back\\\\slash\"]"},
    {"{NULL,\"NULL\",null}", "[null,\"NULL\",\"null\"]"},
    {"{\"\",\" x \"}", "[\"\",\" x \"]"},
    {"{\"'; DROP TABLE t; --\"}", "[\"'; DROP TABLE t; --\"]"},
    {"{\"{}\",\"}\"}", "[\"{}\",\"}\"]"},
    {"[0:1]={a,b}", "[\"a\",\"b\"]"},
    {"{\"caf\xc3\xa9\"}", "[\"caf\xc3\xa9\"]"},
    {"", NULL},
    {"{", NULL},
    {"{a", NULL},
    {"{\"a}", NULL},
    {"{a,,b}", NULL},
    {"{a}x", NULL},
    {"{{a},{b}}", NULL},
    {"{a\"b}", NULL},
};

static const struct time_case {
	const char *text;    /* as ISO DateStyle writes a timestamptz */
	const char *rfc3339; /* NULL: refused */
} time_cases[] = {
    {"2026-12-07 23:00:00.123+00", "2026-12-07T23:00:00.123Z"},
    {"2026-12-07 23:00:00+00", "2026-12-07T23:00:00Z"},
    {"2026-12-07 23:00:00.123456+00", "2026-12-07T23:00:00.123456Z"},
    {"2026-12-08 00:30:00+01", "2026-12-07T23:30:00Z"},
    {"2026-12-07 18:30:00-05", "2026-12-07T23:30:00Z"},
    {"2026-12-08 05:00:00.5+05:30", "2026-12-07T23:30:00.5Z"},
    {"1900-01-01 00:00:00+00:19:32", "1899-12-31T23:40:28Z"},
    {"2024-02-29 23:59:59-01", "2024-03-01T00:59:59Z"},
    {"infinity", NULL},
    {"-infinity", NULL},
    {"0044-03-15 12:00:00+00 BC", NULL},
    {"12026-12-07 23:00:00+00", NULL},
    {"2026-12-07T23:00:00Z", NULL},
    {"2026-13-07 23:00:00+00", NULL},
    {"2026-12-07 23:00:00", NULL},
    {"2026-12-07 23:00:00.+00", NULL},
};

static void
test_formats(void)
{
	char out[64];

	for (size_t i = 0; i < sizeof(array_cases) / sizeof(array_cases[0]);
	     i++) {
		const struct array_case *c = &array_cases[i];
		json_t *j = db_text_array_json(c->text);
		char *got = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;

		if (c->json == NULL)
			ok(j == NULL, "text[] '%s' is refused", c->text);
		else
			is_str(got, c->json, "text[] '%s' reads as %s", c->text,
			       c->json);
		free(got);
		json_decref(j);
	}
	for (size_t i = 0; i < sizeof(time_cases) / sizeof(time_cases[0]);
	     i++) {
		const struct time_case *c = &time_cases[i];
		int got = db_time_rfc3339(c->text, out, sizeof(out));

		if (c->rfc3339 == NULL)
			ok(got == -1, "timestamptz '%s' has no RFC 3339 form",
			   c->text);
		else
			ok(got == 0 && strcmp(out, c->rfc3339) == 0,
			   "timestamptz '%s' is %s (%s)", c->text, c->rfc3339,
			   got == 0 ? out : "refused");
	}
	ok(db_time_rfc3339("2026-12-07 23:00:00.123+00", out, 24) == -1,
	   "an output buffer too short: refused");
	{
		json_t *in = json_pack("[s,s,s,s,s]", "a,b", "\"q\"", "b\\s",
		                       "NULL", "");
		char *lit = db_text_array_literal(in);
		json_t *back = lit != NULL ? db_text_array_json(lit) : NULL;

		is_str(lit, "{\"a,b\",\"\\\"q\\\"\",\"b\\\\s\",\"NULL\",\"\"}",
		       "db_text_array_literal quotes every element");
		ok(back != NULL && json_equal(in, back),
		   "  and db_text_array_json reads it back as it was");
		free(lit);
		json_decref(back);
		json_decref(in);
		in = json_pack("[s,i]", "a", 1);
		ok(db_text_array_literal(in) == NULL,
		   "  an element that is not a string: NULL");
		json_decref(in);
	}
}

static const enum db_type p_item[] = {DB_INT4, DB_TEXT, DB_TEXT_ARRAY, DB_JSONB,
                                      DB_TIMESTAMPTZ};
static const enum db_type p_int[] = {DB_INT4};
static const enum db_type p_text[] = {DB_TEXT};
static const struct db_column c_item[] = {
    {"id", DB_INT4},   {"name", DB_TEXT},      {"tags", DB_TEXT_ARRAY},
    {"doc", DB_JSONB}, {"at", DB_TIMESTAMPTZ}, {"flag", DB_BOOL},
    {"big", DB_INT8},
};
static const struct db_column c_slept[] = {{"slept", DB_BOOL}};
static const struct db_column c_n[] = {{"n", DB_INT4}};

/* The test's own statement table, over t_items (made after the pool
 * opens: each is prepared again at its first use). */
static const struct db_statement q_table[] = {
    {"q_insert",
     "INSERT INTO t_items (id, name, tags, doc, at) VALUES ($1, $2, $3, $4, "
     "$5) RETURNING id, name, tags, doc, at, flag, big",
     p_item, 5, c_item, 7},
    {"q_get",
     "SELECT id, name, tags, doc, at, flag, big FROM t_items WHERE "
     "id = $1",
     p_int, 1, c_item, 7},
    {"q_sleep", "SELECT true AS slept FROM pg_sleep($1)", p_int, 1, c_slept, 1},
    {"q_flaky", "SELECT t_flaky($1) AS n", p_int, 1, c_n, 1},
    {"q_int", "SELECT $1::int AS n", p_text, 1, c_n, 1},
    /* Prepared at its first use: its table comes after the pools. */
    {"q_count", "SELECT count(*)::int + $1 AS n FROM t_items", p_int, 1, c_n,
     1},
};
#define Q_INSERT (&q_table[0])
#define Q_GET (&q_table[1])
#define Q_SLEEP (&q_table[2])
#define Q_FLAKY (&q_table[3])
#define Q_INT (&q_table[4])
#define Q_COUNT (&q_table[5])
#define Q_N (sizeof(q_table) / sizeof(q_table[0]))

static const char q_schema[] =
    "CREATE TABLE t_items (id int PRIMARY KEY, name text NOT NULL, "
    "tags text[] NOT NULL DEFAULT '{}', doc jsonb, at timestamptz, "
    "flag boolean NOT NULL DEFAULT true, big bigint NOT NULL DEFAULT "
    "9007199254740993);"
    "CREATE SEQUENCE t_seq;"
    "CREATE FUNCTION t_flaky(every int) RETURNS int LANGUAGE plpgsql AS $$ "
    "DECLARE v bigint := nextval('t_seq'); BEGIN "
    "IF v % every <> 0 THEN RAISE EXCEPTION 'not this time' USING "
    "ERRCODE = '40001'; END IF; RETURN v::int; END $$";

static const char *
detail_of(const struct reply *rep)
{
	return json_string_value(json_object_get(rep->body, "detail"));
}

/* One db_query; its reply kept in rep (released by the caller). */
static int
query(struct request *req, const struct db_statement *st,
      const char *const *values, struct db_result **res, struct reply *rep)
{
	memset(rep, 0, sizeof(*rep));
	return db_query(req, st, values, res, rep);
}

static char *
admin_value(PGconn *admin, const char *sql)
{
	PGresult *r = PQexec(admin, sql);
	char *v = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 &&
	                  !PQgetisnull(r, 0, 0)
	              ? strdup(PQgetvalue(r, 0, 0))
	              : NULL;

	PQclear(r);
	return v;
}

/* The metrics text of the pool, for the counters. */
static char *
pool_metrics(struct db_pool *p)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (f == NULL)
		return NULL;
	db_pool_render_metrics(p, f);
	fclose(f);
	return text;
}

static int
metrics_has(struct db_pool *p, const char *line)
{
	char *m = pool_metrics(p);
	int found = m != NULL && strstr(m, line) != NULL;

	if (!found && m != NULL)
		diag("no '%s' in:\n%s", line, m);
	free(m);
	return found;
}

struct runner {
	struct request *req;
	const struct db_statement *st;
	const char *const *values;
	struct reply rep;
	int ret;
	long long took_ms;
};

static void *
runner_main(void *arg)
{
	struct runner *r = arg;
	struct db_result *res = NULL;
	long long t0 = now_ms();

	r->ret = query(r->req, r->st, r->values, &res, &r->rep);
	r->took_ms = now_ms() - t0;
	db_result_free(res);
	return NULL;
}

/* The pid of the backend running sql's statement, within ms; -1. */
static long
active_backend(PGconn *admin, const char *like, long ms)
{
	char sql[256], *v = NULL;
	long pid = -1;

	snprintf(sql, sizeof(sql),
	         "SELECT pid FROM pg_stat_activity WHERE state = 'active' "
	         "AND query LIKE '%s%%' AND pid <> pg_backend_pid()",
	         like);
	WAIT_UNTIL((free(v), v = admin_value(admin, sql)) != NULL, ms);
	if (v != NULL)
		pid = strtol(v, NULL, 10);
	free(v);
	return pid;
}

static void
test_query_values(struct request *req, struct db_pool *p)
{
	const char *evil = "'; DROP TABLE t_items; -- \"x\" \\ $1 %s";
	json_t *tags = json_pack("[s,s,s,s,s,s]", "a,b", "\"q\"", "back\\slash",
	                         "NULL", "", "{}');--");
	char *tag_lit = db_text_array_literal(tags);
	const char *const v1[] = {"1", evil, tag_lit,
	                          "{\"k\": [1, \"two\", null]}",
	                          "2026-12-08 00:00:00.123+01"};
	const char *const id1[] = {"1"};
	struct db_result *res = NULL;
	struct reply rep;
	json_t *row, *want;
	int ret;

	ret = query(req, Q_INSERT, v1, &res, &rep);
	ok(ret == 0 && res != NULL && db_result_rows(res) == 1,
	   "db_query: an INSERT ... RETURNING, prepared at its first use (the "
	   "table came after the connections)");
	row = res != NULL ? db_result_json(res, 0) : NULL;
	want = json_pack("{s:i,s:s,s:O,s:{s:[i,s,n]},s:s,s:b,s:I}", "id", 1,
	                 "name", evil, "tags", tags, "doc", "k", 1, "two", "at",
	                 "2026-12-07T23:00:00.123Z", "flag", 1, "big",
	                 (json_int_t)9007199254740993LL);
	ok(row != NULL && json_equal(row, want),
	   "  db_result_json: every type as the header says, the injection "
	   "shapes verbatim");
	if (row != NULL && !json_equal(row, want)) {
		char *g = json_dumps(row, JSON_COMPACT);

		diag("got %s", g);
		free(g);
	}
	json_decref(row);
	db_result_free(res);
	res = NULL;
	reply_release(&rep);

	ret = query(req, Q_GET, id1, &res, &rep);
	row = ret == 0 ? db_result_json(res, 0) : NULL;
	ok(row != NULL && json_equal(row, want),
	   "  read back by id: the same object");
	ok(ret == 0 && db_result_value(res, 0, 3) != NULL &&
	       db_result_value(res, 0, 9) == NULL &&
	       db_result_value(res, 5, 0) == NULL,
	   "  db_result_value: the text; NULL past the row or the columns");
	json_decref(row);
	db_result_free(res);
	res = NULL;
	reply_release(&rep);
	{
		const char *const v2[] = {"2", "nulls", "{}", NULL, NULL};
		const char *const id2[] = {"2"};

		query(req, Q_INSERT, v2, &res, &rep);
		db_result_free(res);
		res = NULL;
		reply_release(&rep);
		ret = query(req, Q_GET, id2, &res, &rep);
		row = ret == 0 ? db_result_json(res, 0) : NULL;
		ok(row != NULL && json_is_null(json_object_get(row, "doc")) &&
		       json_is_null(json_object_get(row, "at")) &&
		       json_array_size(json_object_get(row, "tags")) == 0,
		   "  SQL NULL is null, '{}' an empty array");
		json_decref(row);
		db_result_free(res);
		res = NULL;
		reply_release(&rep);
	}
	{
		const char *const none[] = {"99"};

		ret = query(req, Q_GET, none, &res, &rep);
		ok(ret == 0 && db_result_rows(res) == 0,
		   "  no row: 0 rows, no error");
		db_result_free(res);
		res = NULL;
		reply_release(&rep);
	}

	/* 23505: the same id again. */
	ret = query(req, Q_INSERT, v1, &res, &rep);
	ok(ret == -1 && res == NULL && rep.status == 409,
	   "23505 (the same id again): 409 (%u)", rep.status);
	is_str(detail_of(&rep), "a stored row has the same unique value",
	       "  the detail names no SQL and no server message");
	ok(rep.retry_after == 0, "  no Retry-After");
	ok(metrics_has(p, "microd_db_errors_total{statement=\"q_insert\","
	                  "class=\"23\"} 1"),
	   "  microd_db_errors_total{statement=\"q_insert\",class=\"23\"} 1");
	reply_release(&rep);

	/* 22P02: not an integer. */
	{
		const char *const bad[] = {"abc"};
		const char *const good[] = {"42"};

		ret = query(req, Q_INT, bad, &res, &rep);
		ok(ret == -1 && rep.status == 400,
		   "22P02 ('abc'::int): 400 (%u)", rep.status);
		is_str(detail_of(&rep),
		       "a value is not valid input for its type",
		       "  the detail does not quote the value");
		reply_release(&rep);
		ret = query(req, Q_INT, good, &res, &rep);
		ok(ret == 0 && strcmp(db_result_value(res, 0, 0), "42") == 0,
		   "  the connection is fine after it: 42");
		db_result_free(res);
		res = NULL;
		reply_release(&rep);
	}
	json_decref(want);
	json_decref(tags);
	free(tag_lit);
}

static void
test_query_retry(struct request *req, struct db_pool *p, PGconn *admin)
{
	const char *const every2[] = {"2"}, *const never[] = {"1000000"};
	struct db_result *res = NULL;
	struct reply rep;
	char *seq;
	int ret;

	ret = query(req, Q_FLAKY, every2, &res, &rep);
	seq = admin_value(admin, "SELECT last_value FROM t_seq");
	ok(ret == 0 && strcmp(db_result_value(res, 0, 0), "2") == 0,
	   "40001 once, then success: run once more, and answered");
	is_str(seq, "2", "  the statement ran twice (t_seq)");
	free(seq);
	db_result_free(res);
	res = NULL;
	reply_release(&rep);

	ret = query(req, Q_FLAKY, never, &res, &rep);
	seq = admin_value(admin, "SELECT last_value FROM t_seq");
	ok(ret == -1 && rep.status == 503 && rep.retry_after == 1,
	   "40001 twice: 503 with Retry-After: 1 (%u, %u)", rep.status,
	   rep.retry_after);
	is_str(seq, "4", "  after two runs, not three (t_seq)");
	is_str(detail_of(&rep),
	       "the database could not serialize the transaction; try again",
	       "  the detail");
	ok(metrics_has(p, "microd_db_errors_total{statement=\"q_flaky\","
	                  "class=\"40\"} 3"),
	   "  microd_db_errors_total counts each of the three failed runs");
	free(seq);
	reply_release(&rep);
}

static void
test_query_deadline(struct request *req, struct db_pool *p, PGconn *admin)
{
	const char *const five[] = {"5"};
	struct db_result *res = NULL;
	struct reply rep;
	unsigned long long before = stats(p).discarded;
	long long t0;
	int ret;

	(void)admin;
	t0 = now_ms();
	ret = query(req, Q_SLEEP, five, &res, &rep);
	t0 = now_ms() - t0;
	ok(ret == -1 && rep.status == 504 && t0 < STATEMENT_MS + 250 + 200,
	   "57014 (pg_sleep past the %d ms deadline): 504 after %lld ms (%u)",
	   STATEMENT_MS, t0, rep.status);
	is_str(detail_of(&rep),
	       "the database statement did not finish within 200 ms",
	       "  the detail names the deadline");
	/* The server ended the statement: the connection is fine. */
	ok(stats(p).discarded == before, "  its connection is kept");
	ok(metrics_has(p, "microd_db_errors_total{statement=\"q_sleep\","
	                  "class=\"57\"} 1"),
	   "  microd_db_errors_total{statement=\"q_sleep\",class=\"57\"} 1");
	reply_release(&rep);
}

/* The client leaves while its statement runs: cancelled, discarded. */
static void
test_query_gone(struct request *req, struct db_pool *p, PGconn *admin,
                struct db_pool *slow)
{
	const char *const two[] = {"2"};
	struct runtime rt = {.db = slow};
	int fds[2] = {-1, -1}, gone;
	struct request r2 = *req;
	struct runner run = {.req = &r2, .st = Q_SLEEP, .values = two};
	pthread_t t;
	long pid;
	long long t0;
	char sql[128], *state = NULL;

	(void)p;
	if (pipe(fds) != 0) {
		ok(0, "pipe");
		return;
	}
	gone = fds[0];
	r2.runtime = &rt;
	r2.gone_fd = &gone;
	pthread_create(&t, NULL, runner_main, &run);
	pid = active_backend(admin, "SELECT true AS slept", 2000);
	ok(pid > 0, "a 2 s statement runs (backend %ld)", pid);
	t0 = now_ms();
	ssize_t n = write(fds[1], "x", 1); /* the client's socket closed */
	(void)n;
	pthread_join(t, NULL);
	snprintf(sql, sizeof(sql),
	         "SELECT coalesce((SELECT state FROM pg_stat_activity WHERE "
	         "pid = %ld), 'gone')",
	         pid);
	WAIT_UNTIL((free(state), state = admin_value(admin, sql)) != NULL &&
	               strcmp(state, "active") != 0,
	           500);
	t0 = now_ms() - t0;
	ok(run.ret == -1 && run.took_ms < 1500,
	   "the client leaves: db_query returns at once (%lld ms)",
	   run.took_ms);
	ok(state != NULL && strcmp(state, "active") != 0 && t0 <= 500,
	   "  its backend is no longer active within 500 ms (%s, %lld ms)",
	   state != NULL ? state : "?", t0);
	ok(stats(slow).discarded == 1,
	   "  and its connection is discarded, never reused");
	free(state);
	reply_release(&run.rep);
	close(fds[0]);
	close(fds[1]);
}

/*
 * Pipelined: a client leaves while its statement waits behind another
 * request's on the one connection (sent right after it, or queued once it
 * runs): its handler is answered at once, the other request is served, and
 * the connection stays.
 */
static void
test_query_gone_pipelined(struct request *req, struct db_pool *slow,
                          PGconn *admin)
{
	const char *const one[] = {"1"}, *const seven[] = {"7"};
	struct runtime rt = {.db = slow};

	for (int wait_first = 0; wait_first < 2; wait_first++) {
		struct request ra = *req, rb = *req;
		struct runner a = {.req = &ra, .st = Q_SLEEP, .values = one};
		struct runner b = {.req = &rb, .st = Q_INT, .values = seven};
		unsigned long long before = stats(slow).discarded;
		int fds[2] = {-1, -1}, gone;
		pthread_t ta, tb;
		long pid = 0;

		if (pipe(fds) != 0) {
			ok(0, "pipe");
			return;
		}
		gone = fds[0];
		ra.runtime = rb.runtime = &rt;
		ra.gone_fd = NULL;
		rb.gone_fd = &gone;
		pthread_create(&ta, NULL, runner_main, &a);
		/* a's batch in the lane first (its connection taken), so b's
		 * comes behind it. */
		WAIT_UNTIL(stats(slow).used == 1, 2000);
		if (wait_first)
			pid =
			    active_backend(admin, "SELECT true AS slept", 2000);
		pthread_create(&tb, NULL, runner_main, &b);
		if (!wait_first)
			pid =
			    active_backend(admin, "SELECT true AS slept", 2000);
		ssize_t n = write(fds[1], "x", 1); /* b's client leaves */
		(void)n;
		pthread_join(tb, NULL);
		pthread_join(ta, NULL);
		is_str(b.ret == -1 ? detail_of(&b.rep) : "(served)",
		       "the client left; the statement was cancelled",
		       "a client leaves behind a 1 s statement on the one "
		       "connection (%s): 503",
		       wait_first ? "queued once it runs"
		                  : "sent right after it");
		ok(pid > 0 && b.took_ms < a.took_ms - 300,
		   "  its handler answered before the other ends (%lld ms, the "
		   "other %lld ms)",
		   b.took_ms, a.took_ms);
		ok(a.ret == 0 && stats(slow).discarded == before,
		   "  the other request is served, the connection kept (%d)",
		   a.ret);
		reply_release(&a.rep);
		reply_release(&b.rep);
		close(fds[0]);
		close(fds[1]);
	}
}

/* The backend is ended under a running statement: a connection failure. */
static void
test_query_terminated(struct request *req, struct db_pool *slow, PGconn *admin)
{
	const char *const two[] = {"2"};
	struct runtime rt = {.db = slow};
	struct request r2 = *req;
	struct runner run = {.req = &r2, .st = Q_SLEEP, .values = two};
	unsigned long long before = stats(slow).discarded;
	pthread_t t;
	long pid;
	char sql[96], *done;

	r2.runtime = &rt;
	r2.gone_fd = NULL;
	pthread_create(&t, NULL, runner_main, &run);
	pid = active_backend(admin, "SELECT true AS slept", 2000);
	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%ld)", pid);
	done = admin_value(admin, sql);
	pthread_join(t, NULL);
	ok(pid > 0 && done != NULL && strcmp(done, "t") == 0,
	   "pg_terminate_backend(%ld) under a running statement", pid);
	ok(run.ret == -1 && run.rep.status == 503 && run.rep.retry_after == 1,
	   "  a connection failure: 503 with Retry-After: 1 (%u, %u)",
	   run.rep.status, run.rep.retry_after);
	is_str(detail_of(&run.rep), "the database connection failed",
	       "  the detail");
	ok(stats(slow).discarded == before + 1,
	   "  the connection is discarded");
	ok(metrics_has(slow, "microd_db_errors_total{statement=\"q_sleep\","
	                     "class=\"57\"} 1"),
	   "  counted as class 57 (57P01: the server says goodbye first)");
	free(done);
	reply_release(&run.rep);
}

static void
test_query_exhausted(struct request *req, struct db_pool *p)
{
	struct db_conn *c[SIZE] = {NULL};
	const char *const one[] = {"1"};
	struct db_result *res = NULL;
	struct reply rep;
	long long t0;
	int ret;

	WAIT_UNTIL(stats(p).idle == SIZE, 3000);
	for (int i = 0; i < SIZE; i++)
		db_acquire(p, &c[i]);
	t0 = now_ms();
	ret = query(req, Q_GET, one, &res, &rep);
	t0 = now_ms() - t0;
	ok(ret == -1 && rep.status == 503 && rep.retry_after == 1,
	   "the pool exhausted: 503 with Retry-After: 1 (%u)", rep.status);
	ok(t0 >= ACQUIRE_MS - 5 && t0 <= ACQUIRE_MS + SLACK_MS,
	   "  within the acquire timeout + 100 ms: %lld ms", t0);
	is_str(detail_of(&rep), "no database connection within 300 ms",
	       "  the detail names the acquire timeout");
	ok(metrics_has(p, "microd_db_acquire_seconds_count"),
	   "  microd_db_acquire_seconds counts it");
	reply_release(&rep);
	for (int i = 0; i < SIZE; i++)
		db_release(p, c[i], 0);
}

/* "N migrations pending: a.sql, b.sql": what the built-in files give. */
static void
pending_names(char *buf, size_t len)
{
	size_t used;

	snprintf(buf, len, "%u migration%s pending: ", app_migrations_count,
	         app_migrations_count == 1 ? "" : "s");
	for (unsigned int i = 0; i < app_migrations_count; i++) {
		used = strlen(buf);
		snprintf(buf + used, len - used, "%s%s", i > 0 ? ", " : "",
		         app_migrations[i].name);
	}
}

static void
test_schema(struct db_pool *p, PGconn *admin, const char *uri)
{
	static const struct db_column c_typo[] = {{"titel", DB_TEXT}};
	static const struct db_column c_name[] = {{"nom", DB_TEXT}};
	static const struct db_column c_type[] = {{"id", DB_INT8}};
	static const struct db_statement bad[] = {
	    {"s_typo", "SELECT titel FROM t_items WHERE id = $1", p_int, 1,
	     c_typo, 1},
	    {"s_name", "SELECT name FROM t_items WHERE id = $1", p_int, 1,
	     c_name, 1},
	    {"s_type", "SELECT id FROM t_items WHERE id = $1", p_int, 1, c_type,
	     1},
	    {"s_count", "SELECT id, name FROM t_items WHERE id = $1", p_int, 1,
	     c_type, 1},
	    {"s_params", "SELECT id FROM t_items WHERE id = $1 AND name = $2",
	     p_int, 1, c_type, 1},
	};
	static const char *const want[] = {
	    "statement s_typo: column \"titel\" does not exist",
	    "statement s_name: column 1 is \"name\", the table says \"nom\"",
	    "statement s_type: column id is integer, the table says bigint",
	    "statement s_count: the SQL returns 2 columns, the table says 1",
	    "statement s_params: the SQL takes 2 parameters, the table gives 1",
	};
	struct db_conn *c = NULL;
	char why[256], pending[256];
	int got;

	(void)admin;
	pending_names(pending, sizeof(pending));
	db_acquire(p, &c);
	got = db_statements_check(db_conn_pg(c), q_table, Q_N, now_ms() + 5000,
	                          -1, why, sizeof(why));
	ok(got == 0, "db_statements_check: the test's table matches (%s)",
	   got == 0 ? "" : why);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		got =
		    db_statements_check(db_conn_pg(c), &bad[i], 1,
		                        now_ms() + 5000, -1, why, sizeof(why));
		ok(got == -1 && strcmp(why, want[i]) == 0,
		   "  a mismatch: %s (%d: %s)", want[i], got, why);
	}
	db_release(p, c, 0);

	got = (int)db_schema_check(uri, q_table, Q_N, NULL, 0, 5000, why,
	                           sizeof(why));
	ok(got == DB_SCHEMA_OK, "db_schema_check (the start's): all match");
	got =
	    (int)db_schema_check(uri, bad, 1, NULL, 0, 5000, why, sizeof(why));
	ok(got == DB_SCHEMA_MISMATCH && strcmp(why, want[0]) == 0,
	   "  a mismatch: DB_SCHEMA_MISMATCH naming it (%s)", why);
	got =
	    (int)db_schema_check(uri, bad, 1, app_migrations,
	                         app_migrations_count, 5000, why, sizeof(why));
	ok(got == DB_SCHEMA_SKIPPED && strcmp(why, pending) == 0,
	   "  with migrations pending: not checked, naming them (%s)", why);
}

/* The database check (db_ping) names pending migrations and a mismatch. */
static void
test_ping_schema(const char *uri)
{
	static const struct db_column c_typo[] = {{"titel", DB_TEXT}};
	static const struct db_statement bad[] = {
	    {"note_get", "SELECT titel FROM t_items WHERE id = $1", p_int, 1,
	     c_typo, 1},
	};
	struct db_pool_options o = {.conninfo = uri,
	                            .size = 1,
	                            .acquire_timeout_ms = ACQUIRE_MS,
	                            .statements = bad,
	                            .n_statements = 1,
	                            .migrations = app_migrations,
	                            .n_migrations = app_migrations_count};
	struct db_pool *p = db_pool_open(&o);
	char why[256] = "", want[300];
	int got;

	pending_names(want, sizeof(want) - 40);
	snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s",
	         " (microd migrate, or --migrate)");
	WAIT_UNTIL(stats(p).idle == 1, 3000);
	got = db_ping(p, 2000, -1, why, sizeof(why));
	ok(got == -1 && strcmp(why, want) == 0,
	   "the database check with migrations pending names them (%s)", why);
	{
		char small[90];
		const char *end = " (microd migrate, or --migrate)";
		size_t n;

		got = db_ping(p, 2000, -1, small, sizeof(small));
		n = strlen(small);
		ok(got == -1 && strstr(small, "...") != NULL &&
		       n > strlen(end) &&
		       strcmp(small + n - strlen(end), end) == 0,
		   "  too many names for the reason: the names are cut, not "
		   "the advice (%s)",
		   small);
	}
	db_pool_close(p);
	o.n_migrations = 0;
	p = db_pool_open(&o);
	WAIT_UNTIL(stats(p).idle == 1, 3000);
	got = db_ping(p, 2000, -1, why, sizeof(why));
	ok(got == -1 &&
	       strcmp(why, "statement note_get: column \"titel\" does not "
	                   "exist") == 0,
	   "  none pending, a statement that does not match: fails naming "
	   "it (%s)",
	   why);
	db_pool_close(p);
	o.statements = q_table;
	o.n_statements = Q_N;
	p = db_pool_open(&o);
	WAIT_UNTIL(stats(p).idle == 1, 3000);
	got = db_ping(p, 2000, -1, why, sizeof(why));
	ok(got == 0, "  with a table that matches: passes (%s)",
	   got == 0 ? "" : why);
	db_pool_close(p);
}

/* A pool that cannot connect: 503 at once; the error classes' bound. */
static void
test_query_down(struct request *req)
{
	struct db_pool_options o = {.conninfo =
	                                "host=127.0.0.1 port=1 user=x dbname=x",
	                            .size = 1,
	                            .acquire_timeout_ms = ACQUIRE_MS,
	                            .statements = q_table,
	                            .n_statements = Q_N};
	struct db_pool *p = db_pool_open(&o);
	struct runtime rt = {.db = p};
	struct request r2 = *req;
	const char *const one[] = {"1"};
	struct db_result *res = NULL;
	struct reply rep;
	char cls[8];
	long long t0;
	int ret;

	r2.runtime = &rt;
	WAIT_UNTIL(stats(p).down, 3000);
	t0 = now_ms();
	ret = query(&r2, Q_GET, one, &res, &rep);
	t0 = now_ms() - t0;
	ok(ret == -1 && rep.status == 503 && rep.retry_after == 1 && t0 < 50,
	   "the database down: 503 with Retry-After: 1 at once (%u, %lld ms)",
	   rep.status, t0);
	is_str(detail_of(&rep), "the database cannot be reached",
	       "  the detail");
	reply_release(&rep);
	for (int i = 0; i < 20; i++) {
		snprintf(cls, sizeof(cls), "%02dxxx", i);
		db_pool_count_error(p, 0, cls);
	}
	db_pool_count_error(p, 1, NULL);
	ok(metrics_has(p, "microd_db_errors_total{statement=\"q_insert\","
	                  "class=\"14\"} 1\n"
	                  "microd_db_errors_total{statement=\"q_insert\","
	                  "class=\"other\"} 5\n"),
	   "microd_db_errors_total: 15 classes of a statement, then other");
	ok(metrics_has(p, "microd_db_errors_total{statement=\"q_get\","
	                  "class=\"08\"} 1"),
	   "  a failure without a SQLSTATE counts as class 08");
	db_pool_close(p);
}

/* Several requests' batches at once, from threads of their own. */
struct pipeline_run {
	struct request *req;
	unsigned int id, wrong;
};

static void *
pipeline_thread(void *arg)
{
	struct pipeline_run *run = arg;
	char text[5][16];
	const char *values[5][1];
	struct db_call calls[5];

	for (int round = 0; round < 100; round++) {
		struct reply rep;

		memset(&rep, 0, sizeof(rep));
		for (int k = 0; k < 5; k++) {
			snprintf(text[k], sizeof(text[k]), "%u",
			         run->id * 100000 + (unsigned)round * 10 +
			             (unsigned)k);
			values[k][0] = text[k];
			calls[k] = (struct db_call){Q_INT, values[k], NULL};
		}
		if (db_pipeline(run->req, calls, 5, &rep) != 0) {
			run->wrong++;
			reply_release(&rep);
			continue;
		}
		for (int k = 0; k < 5; k++) {
			const char *v = db_result_value(calls[k].res, 0, 0);

			if (v == NULL || strcmp(v, text[k]) != 0)
				run->wrong++;
			db_result_free(calls[k].res);
		}
	}
	return NULL;
}

static void
test_pipeline(struct request *req, int pipeline)
{
	char text[20][8];
	const char *values[20][1];
	struct db_call calls[20];
	struct reply rep;
	struct db_result *res = NULL;
	const char *const ins1[] = {"500", "first", "{}", NULL, NULL};
	const char *const ins2[] = {"501", "second", "{}", NULL, NULL};
	const char *const id500[] = {"500"};
	const char *const one[] = {"1"}, *const bad[] = {"x"};
	struct pipeline_run runs[8];
	pthread_t t[8];
	unsigned int wrong = 0, good = 0;
	int ret;

	for (int k = 0; k < 20; k++) {
		snprintf(text[k], sizeof(text[k]), "%d", k + 1);
		values[k][0] = text[k];
		calls[k] = (struct db_call){Q_INT, values[k], NULL};
	}
	memset(&rep, 0, sizeof(rep));
	ret = db_pipeline(req, calls, 20, &rep);
	for (int k = 0; ret == 0 && k < 20; k++) {
		const char *v = db_result_value(calls[k].res, 0, 0);

		good += v != NULL && strcmp(v, text[k]) == 0;
		db_result_free(calls[k].res);
	}
	ok(ret == 0 && good == 20,
	   "db_pipeline: 20 statements, each result its own, in order (%u)",
	   good);
	reply_release(&rep);

	/* One transaction: the second INSERT's failure undoes the first. */
	calls[0] = (struct db_call){Q_INSERT, ins1, NULL};
	calls[1] = (struct db_call){Q_INSERT, ins2, NULL};
	calls[2] = (struct db_call){Q_INSERT, ins1, NULL};
	memset(&rep, 0, sizeof(rep));
	ret = db_pipeline(req, calls, 3, &rep);
	ok(ret == -1 && rep.status == 409 && calls[0].res == NULL &&
	       calls[1].res == NULL && calls[2].res == NULL,
	   "  a batch whose third INSERT repeats the first's key: 409, no "
	   "result set (%u)",
	   rep.status);
	reply_release(&rep);
	ret = query(req, Q_GET, id500, &res, &rep);
	if (pipeline)
		ok(ret == 0 && res != NULL && db_result_rows(res) == 0,
		   "  and the first INSERT is rolled back with it (one "
		   "transaction)");
	else /* each statement a transaction of its own */
		ok(ret == 0 && res != NULL && db_result_rows(res) == 1,
		   "  and the first INSERT stays (pipeline off: each statement "
		   "a transaction)");
	db_result_free(res);
	reply_release(&rep);

	/* q_count's PREPARE goes with the batch (its first use), behind a
	 * statement that fails: the server skips it, and the connection
	 * must not count it prepared. */
	calls[0] = (struct db_call){Q_INT, bad, NULL};
	calls[1] = (struct db_call){Q_COUNT, one, NULL};
	memset(&rep, 0, sizeof(rep));
	ret = db_pipeline(req, calls, 2, &rep);
	ok(ret == -1 && rep.status == 400,
	   "  a batch failing before a statement's first PREPARE: 400 (%u)",
	   rep.status);
	reply_release(&rep);
	ret = query(req, Q_COUNT, one, &res, &rep);
	ok(ret == 0 && res != NULL && db_result_rows(res) == 1,
	   "  the skipped statement is prepared at its next use (%u %s)",
	   rep.status, ret == 0 ? "" : detail_of(&rep));
	db_result_free(res);
	res = NULL;
	reply_release(&rep);

	calls[0] = (struct db_call){Q_INT, one, NULL};
	calls[1] = (struct db_call){Q_INT, bad, NULL};
	calls[2] = (struct db_call){Q_INT, one, NULL};
	memset(&rep, 0, sizeof(rep));
	ret = db_pipeline(req, calls, 3, &rep);
	is_str(ret == -1 ? detail_of(&rep) : "(ran)",
	       "a value is not valid input for its type",
	       "  the second of three fails (22P02): 400 for the batch");
	reply_release(&rep);
	memset(&rep, 0, sizeof(rep));
	ret = db_pipeline(req, calls, 0, &rep);
	ok(ret == -1 && rep.status == 500, "  no statement at all: 500");
	reply_release(&rep);

	for (unsigned int i = 0; i < 8; i++) {
		runs[i] = (struct pipeline_run){req, i + 1, 0};
		if (pthread_create(&t[i], NULL, pipeline_thread, &runs[i]) != 0)
			runs[i].wrong = 1000;
	}
	for (unsigned int i = 0; i < 8; i++) {
		if (runs[i].wrong < 1000)
			pthread_join(t[i], NULL);
		wrong += runs[i].wrong;
	}
	ok(wrong == 0,
	   "  8 threads, 100 batches of 5 each at once: every result is its "
	   "own statement's (%u wrong)",
	   wrong);
}

static void
test_queries(const char *uri, int pipeline)
{
	struct db_pool_options o = {.conninfo = uri,
	                            .size = SIZE,
	                            .acquire_timeout_ms = ACQUIRE_MS,
	                            .statement_timeout_ms = STATEMENT_MS,
	                            .backoff_min_ms = 20,
	                            .backoff_max_ms = 500,
	                            .statements = q_table,
	                            .n_statements = Q_N,
	                            .pipeline = pipeline};
	struct db_pool *p, *slow;
	struct runtime rt = {.db = NULL};
	struct request req = {.method = "GET", .path = "/t"};
	PGconn *admin = PQconnectdb(uri);
	PGresult *r;

	diag("the statements, --database-pipeline %s", pipeline ? "on" : "off");
	if (!pipeline)
		test_formats();
	p = db_pool_open(&o);
	o.statement_timeout_ms = 10000;
	o.size = 1;
	slow = db_pool_open(&o);
	ok(p != NULL && slow != NULL && PQstatus(admin) == CONNECTION_OK,
	   "pools with the test's statement table, before its table exists");
	if (p == NULL || slow == NULL || PQstatus(admin) != CONNECTION_OK)
		goto out;
	WAIT_UNTIL(stats(p).idle == SIZE && stats(slow).idle == 1, 5000);
	r = PQexec(admin, q_schema);
	ok(PQresultStatus(r) == PGRES_COMMAND_OK, "t_items, t_seq, t_flaky");
	PQclear(r);
	rt.db = p;
	req.runtime = &rt;
	{
		struct db_result *res = NULL;
		struct reply rep;
		const char *const one[] = {"1"};

		memset(&rep, 0, sizeof(rep));
		ok(db_query(&req, Q_GET, one, &res, &rep) == -1 &&
		       rep.status == 500 && res == NULL &&
		       strcmp(json_string_value(
		                  json_object_get(rep.body, "detail")),
		              "a database statement outside the handler "
		              "pool") == 0,
		   "db_query on a request not on the handler pool "
		   "(queued_ms 0, an I/O thread's): refused, 500");
		reply_release(&rep);
	}
	/* As the handler pool runs them: queued, then started. */
	req.queued_ms = req.started_ms = now_ms();
	test_query_values(&req, p);
	test_pipeline(&req, pipeline);
	test_query_retry(&req, p, admin);
	test_query_deadline(&req, p, admin);
	test_query_gone(&req, p, admin, slow);
	if (pipeline)
		test_query_gone_pipelined(&req, slow, admin);
	test_query_terminated(&req, slow, admin);
	test_query_exhausted(&req, p);
	test_query_down(&req);
	test_schema(p, admin, uri);
	ok(metrics_has(p, "microd_db_operation_duration_seconds_count{"
	                  "statement=\"q_get\"}"),
	   "microd_db_operation_duration_seconds{statement=\"q_get\"}");
	test_ping_schema(uri);
	r = PQexec(admin, "DROP TABLE t_items; DROP SEQUENCE t_seq; "
	                  "DROP FUNCTION t_flaky");
	PQclear(r);
out:
	db_pool_close(p);
	db_pool_close(slow);
	PQfinish(admin);
}

static char *
slurp(int fd)
{
	size_t len = 0, cap = 1 << 16;
	char *buf = malloc(cap + 1);
	ssize_t n;

	if (buf == NULL)
		return NULL;
	lseek(fd, 0, SEEK_SET);
	while ((n = read(fd, buf + len, cap - len)) > 0) {
		len += (size_t)n;
		if (len == cap) {
			char *more = realloc(buf, cap * 2 + 1);

			if (more == NULL)
				break;
			buf = more;
			cap *= 2;
		}
	}
	buf[len] = '\0';
	return buf;
}

int
main(void)
{
	char logpath[] = "/tmp/microd-db-log-XXXXXX";
	char *uri = NULL, *pass = NULL, *wrong = NULL, *logged = NULL;
	struct db_pool *p = NULL;
	int logfd, saved = -1;

	pg_py = getenv("MICROD_PG_PY") ? getenv("MICROD_PG_PY") : "tests/pg.py";
	snprintf(pg_dir, sizeof(pg_dir), "/tmp/microd-db-XXXXXX");
	if (mkdtemp(pg_dir) == NULL) {
		ok(0, "mkdtemp: %s", strerror(errno));
		return done_testing();
	}
	/* Every log line of the pool goes to a file, searched at the end. */
	logfd = mkstemp(logpath);
	if (logfd < 0) {
		ok(0, "mkstemp: %s", strerror(errno));
		goto out;
	}
	/* Kept until the end: a sanitizer's report lands there too. */
	diag("the pool's log: %s", logpath);
	log_setup(LOG_DEBUG, LOG_FORMAT_TEXT, 0);
	uri = pg_start();
	ok(uri != NULL, "a PostgreSQL cluster from %s in %s", pg_py, pg_dir);
	if (uri == NULL)
		goto out;
	pass = password_of(uri);
	wrong = wrong_password(uri);
	saved = dup(2);
	dup2(logfd, 2);
	{
		struct db_pool_options o = {.conninfo = uri,
		                            .size = SIZE,
		                            .acquire_timeout_ms = ACQUIRE_MS,
		                            .statement_timeout_ms =
		                                STATEMENT_MS,
		                            .backoff_min_ms = 20,
		                            .backoff_max_ms = 500};

		p = db_pool_open(&o);
	}
	ok(p != NULL, "db_pool_open");
	if (p == NULL)
		goto out;
	test_queries(uri, 0);
	test_queries(uri, 1);
	test_acquire(p);
	test_transactions(p);
	test_deadline(p);
	test_killed_idle(p);
	test_pending(p, uri);
	test_restart(p);
	db_pool_close(p);
	p = NULL;
	test_down_at_open(uri);
	test_replacing(uri);
	test_wrong_password(wrong);

	fflush(stderr);
	dup2(saved, 2);
	logged = slurp(logfd);
	ok(logged != NULL && strstr(logged, "user='microd'") != NULL &&
	       strstr(logged, "host='127.0.0.1'") != NULL,
	   "the log names the database without its password");
	ok(logged != NULL &&
	       strstr(logged, "password authentication failed") != NULL,
	   "  and says why the wrong password failed");
	ok(logged != NULL &&
	       strstr(logged, "database: statement q_insert: SQLSTATE 23505 "
	                      "(409): duplicate key value violates unique "
	                      "constraint \\\"t_items_pkey\\\"") != NULL,
	   "a failed statement's log line: its name, SQLSTATE, status and "
	   "the server's message");
	ok(logged != NULL &&
	       strstr(logged, "database: statement q_get: db_query on an I/O "
	                      "thread: mark the route ROUTE_BLOCKING") != NULL,
	   "the refusal on an I/O thread is logged with the statement's "
	   "name");
	ok(logged != NULL && pass != NULL && strlen(pass) >= 16 &&
	       strstr(logged, pass) == NULL && strstr(logged, "7Hq2") == NULL,
	   "  and neither the password nor the wrong one is in it");
	if (check_failed > 0 && logged != NULL) {
		diag("the pool's log:");
		for (char *l = strtok(logged, "\n"); l != NULL;
		     l = strtok(NULL, "\n"))
			diag("  %s", l);
	}
out:
	if (saved >= 0) {
		dup2(saved, 2);
		close(saved);
	}
	db_pool_close(p);
	if (logfd >= 0) {
		close(logfd);
		if (check_failed == 0)
			unlink(logpath);
	}
	pg_run("clean");
	free(uri);
	free(pass);
	free(wrong);
	free(logged);
	return done_testing();
}
