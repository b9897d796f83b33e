/* SPDX-License-Identifier: MIT */
/* migrate.c -- `microd migrate`: apply the service's pending migrations */
#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db/db.h"
#include "log.h"

static void
usage(FILE *out)
{
	fputs("Usage: microd migrate [--database URL] [--dry-run]\n"
	      "Applies the migrations built into microd (src/app/sql/*.sql) "
	      "that the\n"
	      "database has not seen, in name order, each in its own "
	      "transaction, under\n"
	      "an advisory lock, and records each name and SHA-256 in "
	      "microd_migrations.\n"
	      "Exits 0 when all are applied, 1 when the database cannot be "
	      "reached or a\n"
	      "migration fails, 2 when an applied file's checksum changed or "
	      "for bad usage.\n"
	      "\n"
	      "  --database URL  a libpq URI or key=value string (else "
	      "MICROD_DATABASE,\n"
	      "                  else DATABASE_URL); libpq's PG* variables "
	      "fill what it\n"
	      "                  leaves out\n"
	      "  --dry-run       apply nothing: log the pending ones\n"
	      "\n"
	      "With no database given at all there is nothing to migrate: "
	      "exit 0.\n",
	      out);
}

/* The environment variable's value, NULL when unset or empty. */
static const char *
env(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? v : NULL;
}

int
migrate_main(int argc, char **argv, const struct db_migration *m,
             unsigned int n)
{
	const char *url = NULL, *fmt = env("MICROD_LOG_FORMAT");
	int dry_run = 0, f = fmt != NULL ? log_format_parse(fmt) : -1;

	log_setup(LOG_INFO,
	          f >= 0                  ? (enum log_format)f
	          : isatty(STDERR_FILENO) ? LOG_FORMAT_TEXT
	                                  : LOG_FORMAT_JSON,
	          0);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--dry-run") == 0) {
			dry_run = 1;
		} else if (strcmp(a, "--database") == 0 && i + 1 < argc) {
			url = argv[++i];
		} else if (strncmp(a, "--database=", 11) == 0) {
			url = a + 11;
		} else {
			fprintf(
			    stderr, "microd migrate: %s '%s' (see --help)\n",
			    strcmp(a, "--database") == 0 ? "no value for"
			                                 : "unknown argument",
			    a);
			return 2;
		}
	}
	if (url == NULL)
		url = env("MICROD_DATABASE");
	if (url == NULL)
		url = env("DATABASE_URL");
	if (url == NULL) {
		/* As the server without --database: no database, nothing
		 * to do (an init container whose Secret is not there). */
		log_warn("migrate: no database (--database, MICROD_DATABASE, "
		         "DATABASE_URL): nothing to migrate");
		return 0;
	}
	if (*url == '\0') {
		fputs("microd migrate: --database is empty (see --help)\n",
		      stderr);
		return 2;
	}
	return db_migrate(url, m, n, dry_run);
}
