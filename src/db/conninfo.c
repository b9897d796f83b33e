/* SPDX-License-Identifier: MIT */
/* conninfo.c -- a connection string as logs may show it: no password */
#include "db.h"

#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

static int
conninfo_secret(const char *keyword)
{
	return strcmp(keyword, "password") == 0 ||
	       strcmp(keyword, "sslpassword") == 0;
}

/* Appends " key='value'" (libpq's quoting: \ before ' and \) to buf. */
static void
conninfo_put(char *buf, size_t *len, const char *key, const char *val)
{
	if (*len > 0)
		buf[(*len)++] = ' ';
	memcpy(buf + *len, key, strlen(key));
	*len += strlen(key);
	buf[(*len)++] = '=';
	buf[(*len)++] = '\'';
	for (const char *p = val; *p != '\0'; p++) {
		if (*p == '\'' || *p == '\\')
			buf[(*len)++] = '\\';
		buf[(*len)++] = *p;
	}
	buf[(*len)++] = '\'';
	buf[*len] = '\0';
}

char *
db_conninfo_redact(const char *conninfo)
{
	PQconninfoOption *opts;
	char *err = NULL, *out = NULL;
	size_t need = 1, len = 0;

	opts = PQconninfoParse(conninfo, &err);
	if (opts == NULL) {
		PQfreemem(err); /* may quote the string: not shown */
		return NULL;
	}
	for (const PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (o->val != NULL && !conninfo_secret(o->keyword))
			need += strlen(o->keyword) + 2 * strlen(o->val) + 4;
	out = malloc(need);
	if (out == NULL)
		goto out;
	out[0] = '\0';
	for (const PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (o->val != NULL && !conninfo_secret(o->keyword))
			conninfo_put(out, &len, o->keyword, o->val);
out:
	PQconninfoFree(opts);
	return out;
}
