/* SPDX-License-Identifier: MIT */
/* sqlstate.c -- what a statement's SQLSTATE means for the HTTP answer */
#include "db.h"

#include <string.h>

static int
sqlstate_valid(const char *s)
{
	for (int i = 0; i < 5; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		      (s[i] >= 'A' && s[i] <= 'Z')))
			return 0;
	return s[5] == '\0';
}

/*
 * The table. Beside class 08, the server's own "this connection is
 * going away" states (57P01 admin shutdown, 57P02 crash shutdown, 57P03
 * cannot connect now) are the database restarting under a request: a 503
 * the client may retry, not a 500.
 */
struct db_verdict
db_sqlstate_verdict(const char *sqlstate)
{
	static const struct db_verdict unavailable = {503, 0, 1};
	static const struct db_verdict internal = {500, 0, 0};

	if (sqlstate == NULL)
		return unavailable;
	if (!sqlstate_valid(sqlstate))
		return internal;
	if (strncmp(sqlstate, "08", 2) == 0 || strcmp(sqlstate, "57P01") == 0 ||
	    strcmp(sqlstate, "57P02") == 0 || strcmp(sqlstate, "57P03") == 0)
		return unavailable;
	if (strcmp(sqlstate, "23505") == 0)
		return (struct db_verdict){409, 0, 0};
	if (strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0)
		return (struct db_verdict){503, 1, 1};
	if (strcmp(sqlstate, "57014") == 0)
		return (struct db_verdict){504, 0, 0};
	if (strcmp(sqlstate, "22P02") == 0)
		return (struct db_verdict){400, 0, 0};
	return internal;
}
