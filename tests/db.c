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
#include "log.h"

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
 * checksum pending again, and a short buffer cut with "...".
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
	ok(got == 1 && strcmp(buf, "0001_notes.sql") == 0,
	   "  makes that file pending again: %d, %s", got, buf);
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
	struct db_conn *c = NULL;
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
	/* Closed with c in use: c's release frees the pool. */
	db_pool_close(p);
	db_release(p, c, 0);
	ok(1, "closed with a connection in use, then that one released");
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
	test_acquire(p);
	test_transactions(p);
	test_deadline(p);
	test_killed_idle(p);
	test_pending(p, uri);
	test_restart(p);
	db_pool_close(p);
	p = NULL;
	test_down_at_open(uri);
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
