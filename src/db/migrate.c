/* SPDX-License-Identifier: MIT */
/*
 * migrate.c -- the service's numbered migrations: each applied once, in
 * order, in its own transaction, under an advisory lock, its checksum kept
 */
#include "db.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"

/* pg_advisory_lock's key, "microd" in ASCII: the same for every runner. */
#define MIGRATE_LOCK "SELECT pg_advisory_lock(120299407437668)"

/* Without the server's notice that the table exists already. */
#define MIGRATE_TABLE                                                          \
	"SET client_min_messages = warning; "                                  \
	"CREATE TABLE IF NOT EXISTS microd_migrations ("                       \
	"name text PRIMARY KEY, checksum text NOT NULL, "                      \
	"applied_at timestamptz NOT NULL DEFAULT now()); "                     \
	"RESET client_min_messages"

enum { MIGRATE_OK = 0, MIGRATE_FAILED = 1, MIGRATE_REFUSED = 2 };

int
db_migration_checksum(const struct db_migration *m, char hex[65])
{
	static const char digits[] = "0123456789abcdef";
	unsigned char d[32];

	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, m->sql, m->len, d) != 0)
		return -1;
	for (size_t i = 0; i < sizeof(d); i++) {
		hex[2 * i] = digits[d[i] >> 4];
		hex[2 * i + 1] = digits[d[i] & 15];
	}
	hex[64] = '\0';
	return 0;
}

/* libpq's message on one line (it spans several, with tabs). */
static void
migrate_flat(char *buf, size_t len, const char *msg)
{
	size_t n;

	snprintf(buf, len, "%s", msg != NULL && *msg != '\0' ? msg : "?");
	for (char *c = buf; *c != '\0'; c++)
		if (*c == '\n' || *c == '\t')
			*c = ' ';
	n = strlen(buf);
	while (n > 0 && buf[n - 1] == ' ')
		buf[--n] = '\0';
}

/* A notice or warning of the server's (a migration's RAISE NOTICE): one
 * log line instead of libpq's own to stderr. */
static void
migrate_notice(void *arg, const char *msg)
{
	char line[512];

	(void)arg;
	migrate_flat(line, sizeof(line), msg);
	log_info("migrate: server: %s", line);
}

/* sql has no result rows and succeeded; else logged with what. */
static int
migrate_exec(PGconn *pg, const char *sql, ExecStatusType want, const char *what)
{
	PGresult *r = PQexec(pg, sql);
	char msg[512];
	int ret = 0;

	if (PQresultStatus(r) != want) {
		migrate_flat(msg, sizeof(msg),
		             r != NULL ? PQresultErrorMessage(r)
		                       : PQerrorMessage(pg));
		log_error("migrate: %s: %s", what, msg);
		ret = -1;
	}
	PQclear(r);
	return ret;
}

/*
 * The rows of microd_migrations (name, checksum), none when it does not
 * exist; NULL when a query fails (logged when log is set).
 */
static PGresult *
migrate_applied(PGconn *pg, int log)
{
	PGresult *r;
	char msg[512];
	int exists;

	r = PQexec(pg, "SELECT to_regclass('microd_migrations') IS NOT NULL");
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		goto fail;
	exists = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	r = PQexec(pg, exists ? "SELECT name, checksum FROM microd_migrations"
	                      : "SELECT NULL::text, NULL::text WHERE false");
	if (PQresultStatus(r) == PGRES_TUPLES_OK)
		return r;
fail:
	if (log) {
		migrate_flat(msg, sizeof(msg),
		             r != NULL ? PQresultErrorMessage(r)
		                       : PQerrorMessage(pg));
		log_error("migrate: cannot read microd_migrations: %s", msg);
	}
	PQclear(r);
	return NULL;
}

/* The checksum name was applied with, or NULL when it was not. */
static const char *
migrate_recorded(const PGresult *applied, const char *name)
{
	for (int i = 0; i < PQntuples(applied); i++)
		if (strcmp(PQgetvalue(applied, i, 0), name) == 0)
			return PQgetvalue(applied, i, 1);
	return NULL;
}

/* One file in its own transaction, with its row: 0, or -1 rolled back. */
static int
migrate_apply(PGconn *pg, const struct db_migration *m, const char *sum)
{
	const char *params[2] = {m->name, sum};
	long long t0 = now_ms();
	PGresult *r;
	char msg[512];

	if (migrate_exec(pg, "BEGIN", PGRES_COMMAND_OK, m->name) != 0)
		return -1;
	/* PQexec runs every statement of the file, stopping at an error. */
	r = PQexec(pg, m->sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

		migrate_flat(msg, sizeof(msg),
		             r != NULL ? PQresultErrorMessage(r)
		                       : PQerrorMessage(pg));
		log_error("migrate: %s failed (SQLSTATE %s), rolled back: %s",
		          m->name, state != NULL ? state : "none", msg);
		PQclear(r);
		(void)migrate_exec(pg, "ROLLBACK", PGRES_COMMAND_OK, m->name);
		return -1;
	}
	PQclear(r);
	r = PQexecParams(pg,
	                 "INSERT INTO microd_migrations (name, checksum) "
	                 "VALUES ($1, $2)",
	                 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		migrate_flat(msg, sizeof(msg),
		             r != NULL ? PQresultErrorMessage(r)
		                       : PQerrorMessage(pg));
		log_error("migrate: %s: recording it: %s", m->name, msg);
		PQclear(r);
		(void)migrate_exec(pg, "ROLLBACK", PGRES_COMMAND_OK, m->name);
		return -1;
	}
	PQclear(r);
	if (migrate_exec(pg, "COMMIT", PGRES_COMMAND_OK, m->name) != 0)
		return -1;
	log_info("migrate: applied %s (sha256 %s) in %lld ms", m->name, sum,
	         now_ms() - t0);
	return 0;
}

/* m is in strictly increasing name order, each text without a NUL. */
static int
migrate_valid(const struct db_migration *m, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		if (strlen(m[i].sql) != m[i].len) {
			log_error("migrate: %s holds a NUL byte", m[i].name);
			return -1;
		}
		if (i > 0 && strcmp(m[i - 1].name, m[i].name) >= 0) {
			log_error("migrate: %s comes after %s: the files are "
			          "not in increasing name order",
			          m[i].name, m[i - 1].name);
			return -1;
		}
	}
	return 0;
}

/* Goes through the files with the lock held (or dry_run): 0, 1 or 2. */
static int
migrate_files(PGconn *pg, const struct db_migration *m, unsigned int n,
              int dry_run)
{
	PGresult *applied = migrate_applied(pg, 1);
	unsigned int done = 0, already = 0;
	char sum[65];
	int ret = MIGRATE_FAILED;

	if (applied == NULL)
		return MIGRATE_FAILED;
	for (unsigned int i = 0; i < n; i++) {
		const char *was = migrate_recorded(applied, m[i].name);

		if (db_migration_checksum(&m[i], sum) != 0) {
			log_error("migrate: %s: no SHA-256", m[i].name);
			goto out;
		}
		if (was != NULL && strcmp(was, sum) == 0) {
			already++;
			continue;
		}
		if (was != NULL) {
			log_error("migrate: %s was applied with checksum %s, "
			          "but the file's is %s: an applied migration "
			          "is never edited, add a new one",
			          m[i].name, was, sum);
			ret = MIGRATE_REFUSED;
			goto out;
		}
		if (dry_run) {
			log_info("migrate: %s is pending", m[i].name);
			done++;
			continue;
		}
		if (migrate_apply(pg, &m[i], sum) != 0)
			goto out;
		done++;
	}
	for (int i = 0; i < PQntuples(applied); i++) {
		const char *name = PQgetvalue(applied, i, 0);
		unsigned int j = 0;

		while (j < n && strcmp(m[j].name, name) != 0)
			j++;
		if (j == n)
			log_warn("migrate: %s is applied but not in this "
			         "binary (a newer microd's?)",
			         name);
	}
	if (dry_run)
		log_info("migrate: %u pending, %u applied already", done,
		         already);
	else if (done == 0)
		log_info("migrate: nothing to apply, all %u applied already",
		         already);
	else
		log_info("migrate: applied %u, %u applied already", done,
		         already);
	ret = MIGRATE_OK;
out:
	PQclear(applied);
	return ret;
}

int
db_migrate(const char *conninfo, const struct db_migration *m, unsigned int n,
           int dry_run)
{
	/* Keys before dbname are defaults the conninfo may override. */
	const char *const keys[] = {"connect_timeout",
	                            "fallback_application_name", "dbname",
	                            "client_encoding", NULL};
	const char *const vals[] = {"10", "microd-migrate", conninfo, "UTF8",
	                            NULL};
	char *shown = db_conninfo_redact(conninfo);
	PGconn *pg = NULL;
	char msg[512];
	int ret = MIGRATE_REFUSED;

	if (shown == NULL) {
		/* libpq's message may quote the string, password and all. */
		log_error("migrate: the database URL does not parse (not "
		          "shown: it may hold a password)");
		return MIGRATE_REFUSED;
	}
	if (migrate_valid(m, n) != 0)
		goto out;
	ret = MIGRATE_FAILED;
	log_info("migrate: %u migrations in this binary, database %s%s", n,
	         shown, dry_run ? " (dry run: nothing is applied)" : "");
	pg = PQconnectdbParams(keys, vals, 1);
	if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
		migrate_flat(msg, sizeof(msg),
		             pg != NULL ? PQerrorMessage(pg) : "out of memory");
		log_error("migrate: cannot connect to %s: %s", shown, msg);
		goto out;
	}
	PQsetNoticeProcessor(pg, migrate_notice, NULL);
	if (!dry_run && migrate_exec(pg, MIGRATE_LOCK, PGRES_TUPLES_OK,
	                             "advisory lock") != 0)
		goto out;
	if (!dry_run && migrate_exec(pg, MIGRATE_TABLE, PGRES_COMMAND_OK,
	                             "microd_migrations") != 0)
		goto out;
	ret = migrate_files(pg, m, n, dry_run);
out:
	PQfinish(pg); /* NULL-safe; ends the session and so the lock */
	free(shown);
	return ret;
}

/*
 * Appends name to buf after ", ", or ", ..." ("..." first) once the name
 * would not leave room for that: 0, or -1 when cut (nothing more goes in).
 */
static int
migrate_list(char *buf, size_t len, size_t *used, const char *name)
{
	const char *sep = *used > 0 ? ", " : "";
	int w;

	if (len < 6) /* not even ", ..." */
		return -1;
	w = snprintf(buf + *used, len - *used, "%s%s", sep, name);
	if (w >= 0 && (size_t)w + 6 <= len - *used) {
		*used += (size_t)w;
		return 0;
	}
	snprintf(buf + *used, len - *used, "%s...", sep);
	return -1;
}

/* m[0..n) not applied (changed: applied with another checksum), as
 * db_migrate_pending and db_migrate_changed say. */
static int
migrate_scan(struct pg_conn *pg, const struct db_migration *m, unsigned int n,
             char *buf, size_t len, int changed)
{
	PGresult *applied = migrate_applied(pg, 0);
	size_t used = 0;
	char sum[65];
	int found = 0, cut = 0;

	if (len > 0)
		buf[0] = '\0';
	if (applied == NULL)
		return -1;
	for (unsigned int i = 0; i < n; i++) {
		const char *was = migrate_recorded(applied, m[i].name);

		if (changed ? was == NULL ||
		                  (db_migration_checksum(&m[i], sum) == 0 &&
		                   strcmp(was, sum) == 0)
		            : was != NULL)
			continue;
		found++;
		if (!cut)
			cut = migrate_list(buf, len, &used, m[i].name) != 0;
	}
	PQclear(applied);
	return found;
}

int
db_migrate_pending(struct pg_conn *pg, const struct db_migration *m,
                   unsigned int n, char *buf, size_t len)
{
	return migrate_scan(pg, m, n, buf, len, 0);
}

int
db_migrate_changed(struct pg_conn *pg, const struct db_migration *m,
                   unsigned int n, char *buf, size_t len)
{
	return migrate_scan(pg, m, n, buf, len, 1);
}
