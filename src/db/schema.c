/* SPDX-License-Identifier: MIT */
/*
 * schema.c -- the statement table against the live schema: each statement
 * prepared and described by the server, compared with its row (sqlx's
 * compile-time check, done at start and by the database check)
 */
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "db.h"
#include "internal.h"
#include "query.h"

/* A type's name as SQL writes it, for the differences' words. */
static const char *
type_name(Oid oid, char *buf, size_t len)
{
	static const struct {
		Oid oid;
		const char *name;
	} names[] = {{16, "boolean"},       {20, "bigint"},
	             {21, "smallint"},      {23, "integer"},
	             {25, "text"},          {114, "json"},
	             {700, "real"},         {701, "double precision"},
	             {1009, "text[]"},      {1043, "varchar"},
	             {1082, "date"},        {1114, "timestamp"},
	             {1184, "timestamptz"}, {1700, "numeric"},
	             {2950, "uuid"},        {3802, "jsonb"}};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].oid == oid)
			return names[i].name;
	snprintf(buf, len, "the type of OID %u", oid);
	return buf;
}

/* The server's primary message, or libpq's first line when none came. */
static void
server_error(char *why, size_t len, const char *name, const PGresult *r,
             const PGconn *pg)
{
	const char *m =
	    r != NULL ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;

	if (m == NULL)
		m = PQerrorMessage(pg);
	snprintf(why, len, "statement %s: %.*s", name, (int)strcspn(m, "\n"),
	         m);
}

/* d (a description) against st's row: 0, or -1 with why. */
static int
compare(const struct db_statement *st, const PGresult *d, char *why, size_t len)
{
	char a[48], b[48];

	if (PQnparams(d) != (int)st->n_params) {
		snprintf(why, len,
		         "statement %s: the SQL takes %d parameters, the table "
		         "gives %u",
		         st->name, PQnparams(d), st->n_params);
		return -1;
	}
	for (unsigned int j = 0; j < st->n_params; j++)
		if (PQparamtype(d, (int)j) != db_type_oid(st->params[j])) {
			snprintf(
			    why, len,
			    "statement %s: parameter $%u is %s, the table "
			    "says %s",
			    st->name, j + 1,
			    type_name(PQparamtype(d, (int)j), a, sizeof(a)),
			    type_name(db_type_oid(st->params[j]), b,
			              sizeof(b)));
			return -1;
		}
	/* A row without columns reads no result: nothing to compare. */
	if (st->columns == NULL) {
		if (st->n_columns == 0)
			return 0;
		snprintf(why, len, "statement %s: %u columns, none listed",
		         st->name, st->n_columns);
		return -1;
	}
	if (PQnfields(d) != (int)st->n_columns) {
		snprintf(why, len,
		         "statement %s: the SQL returns %d columns, the table "
		         "says %u",
		         st->name, PQnfields(d), st->n_columns);
		return -1;
	}
	for (unsigned int c = 0; c < st->n_columns; c++) {
		const struct db_column *col = &st->columns[c];

		if (strcmp(PQfname(d, (int)c), col->name) != 0) {
			snprintf(why, len,
			         "statement %s: column %u is \"%s\", the table "
			         "says \"%s\"",
			         st->name, c + 1, PQfname(d, (int)c),
			         col->name);
			return -1;
		}
		if (PQftype(d, (int)c) != db_type_oid(col->type)) {
			snprintf(
			    why, len,
			    "statement %s: column %s is %s, the table says "
			    "%s",
			    st->name, col->name,
			    type_name(PQftype(d, (int)c), a, sizeof(a)),
			    type_name(db_type_oid(col->type), b, sizeof(b)));
			return -1;
		}
	}
	return 0;
}

int
db_statements_check(struct pg_conn *pg, const struct db_statement *st,
                    unsigned int n, long long deadline_ms, int stop_fd,
                    char *why, size_t len)
{
	for (unsigned int i = 0; i < n; i++) {
		PGresult *r = NULL;
		enum db_wait w;
		int got, ret;

		got = db_prepare(pg, &st[i], deadline_ms, stop_fd, &r);
		if (got == -2 || got == -3) {
			snprintf(why, len, "statement %s: %s", st[i].name,
			         got == -2 ? "no answer in time" : "halted");
			return -2;
		}
		if (got != 0) {
			const char *state =
			    r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE)
			              : NULL;
			int locked =
			    state != NULL && strcmp(state, "55P03") == 0;

			server_error(why, len, st[i].name, r, pg);
			PQclear(r);
			if (locked)
				return -3;
			return PQstatus(pg) == CONNECTION_OK ? -1 : -2;
		}
		if (!PQsendDescribePrepared(pg, st[i].name)) {
			server_error(why, len, st[i].name, NULL, pg);
			return -2;
		}
		w = db_result_wait(pg, deadline_ms, stop_fd, &r);
		if (w != DB_WAIT_DONE || r == NULL ||
		    PQresultStatus(r) != PGRES_COMMAND_OK) {
			server_error(why, len, st[i].name, r, pg);
			PQclear(r);
			return w == DB_WAIT_DONE ? -1 : -2;
		}
		ret = compare(&st[i], r, why, len);
		PQclear(r);
		if (ret != 0)
			return -1;
	}
	return 0;
}

enum db_schema_result
db_schema_check(const char *conninfo, const struct db_statement *st,
                unsigned int n, const struct db_migration *m, unsigned int n_m,
                unsigned int timeout_ms, char *why, size_t len)
{
	char secs[16], names[256];
	/* Keys before dbname are defaults the conninfo may override. */
	const char *const keys[] = {"connect_timeout",
	                            "fallback_application_name", "dbname",
	                            "client_encoding", NULL};
	const char *const vals[] = {secs, "microd", conninfo, "UTF8", NULL};
	enum db_schema_result ret = DB_SCHEMA_SKIPPED;
	PGconn *pg;
	int pending, got;

	why[0] = '\0';
	/* libpq's connect_timeout: whole seconds, 2 at least. */
	snprintf(secs, sizeof(secs), "%u",
	         timeout_ms < 2000 ? 2 : (timeout_ms + 999) / 1000);
	pg = PQconnectdbParams(keys, vals, 1);
	if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
		const char *e = pg != NULL ? PQerrorMessage(pg) : "no memory";

		snprintf(why, len, "the database cannot be reached: %.*s",
		         (int)strcspn(e, "\n"), e);
		goto out;
	}
	pending =
	    n_m > 0 ? db_migrate_changed(pg, m, n_m, names, sizeof(names)) : 0;
	if (pending > 0) {
		snprintf(why, len, "%s: checksum changed", names);
		goto out;
	}
	pending =
	    n_m > 0 ? db_migrate_pending(pg, m, n_m, names, sizeof(names)) : 0;
	if (pending != 0) {
		if (pending < 0)
			server_error(why, len, "microd_migrations", NULL, pg);
		else
			snprintf(why, len, "%d migration%s pending: %s",
			         pending, pending == 1 ? "" : "s", names);
		goto out;
	}
	got =
	    db_statements_check(pg, st, n, now_ms() + timeout_ms, -1, why, len);
	if (got == 0)
		ret = DB_SCHEMA_OK;
	else if (got == -1)
		ret = DB_SCHEMA_MISMATCH;
out:
	PQfinish(pg); /* NULL-safe */
	return ret;
}
