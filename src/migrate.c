/* SPDX-License-Identifier: MIT */
/* migrate.c -- `microd migrate`: apply the service's pending migrations */
#include "migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
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
	const char *fmt = env("MICROD_LOG_FORMAT");
	int dry_run = 0, f = fmt != NULL ? log_format_parse(fmt) : -1, rest = 1;
	struct config cfg = {.database = NULL};
	char **args, err[256];

	log_setup(LOG_INFO,
	          f >= 0                  ? (enum log_format)f
	          : isatty(STDERR_FILENO) ? LOG_FORMAT_TEXT
	                                  : LOG_FORMAT_JSON,
	          0);
	/* Our own switches out; what is left is the server's --database,
	 * read by its option row (flag, MICROD_DATABASE, DATABASE_URL). */
	args = calloc((size_t)argc + 1, sizeof(*args));
	if (args == NULL)
		return 1;
	args[0] = argv[0];
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			free(args);
			return 0;
		}
		if (strcmp(a, "--dry-run") == 0)
			dry_run = 1;
		else
			args[rest++] = argv[i];
	}
	switch (config_parse_database(&cfg, rest, args, err, sizeof(err))) {
	case CONFIG_RUN:
		break;
	case CONFIG_HELP:
	case CONFIG_VERSION:
	case CONFIG_ERROR:
	default:
		fprintf(stderr, "microd migrate: %s\n",
		        err[0] != '\0' ? err
		                       : "unexpected argument (see --help)");
		free(args);
		return 2;
	}
	free(args);
	if (cfg.database == NULL) {
		/* As the server without --database: no database, nothing
		 * to do (an init container whose Secret is not there). */
		log_warn("migrate: no database (--database, MICROD_DATABASE, "
		         "DATABASE_URL): nothing to migrate");
		return 0;
	}
	return db_migrate(cfg.database, m, n, dry_run);
}
