/* SPDX-License-Identifier: MIT */
/* config.h -- command line and environment -> struct config */
#ifndef MICROD_CONFIG_H
#define MICROD_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "health.h"
#include "ratelimit.h"

enum event_loop { EVENT_LOOP_POLL, EVENT_LOOP_EPOLL };

/* Most --check dependency checks. */
#define CONFIG_CHECKS_MAX 16
/* Most --trusted-proxy blocks. */
#define CONFIG_TRUSTED_MAX 16

struct config {
	const char *bind;     /* numeric IPv4 or IPv6 address */
	unsigned int port;    /* 0 asks the kernel for a free port */
	unsigned int threads; /* libmicrohttpd pool size */
	size_t max_body;      /* bytes */
	size_t body_budget;   /* body bytes buffered at once, all connections */
	enum event_loop event_loop;
	unsigned int connection_limit; /* open connections, all threads */
	unsigned int per_ip_limit;     /* 0: none */
	unsigned int idle_timeout_s;   /* close connections idle this long */
	/* A request head must arrive whole within this long of the accept or
	 * of the previous request's end. */
	unsigned int header_timeout_ms;
	size_t connection_memory;     /* per-connection pool: bounds headers */
	int log_level;                /* enum log_level */
	int log_format;               /* enum log_format, or -1: by stderr */
	int log_probes;               /* access-log successful probes too */
	unsigned int handler_threads; /* the pool for ROUTE_BLOCKING */
	unsigned int handler_queue;   /* requests waiting for it, at most */
	int example_routes;           /* serve the ROUTE_EXAMPLE rows */
	struct health_target checks[CONFIG_CHECKS_MAX]; /* --check */
	size_t n_checks;
	unsigned int check_interval_ms, check_timeout_ms;
	unsigned int check_threshold;
	int health_details;             /* failure reasons in ?verbose bodies */
	const char *tls_cert, *tls_key; /* HTTPS when set (both or none) */
	unsigned int tls_port;
	const char *tls_priorities; /* GnuTLS's syntax */
	/* The before-handler chain (src/middleware.c). */
	const char *auth_token_file; /* NULL: no bearer-token check */
	int auth_metrics;            /* /metrics needs a token too */
	unsigned int rate_milli;     /* requests a second per client, in
	                              * thousandths; 0: no rate limit */
	unsigned int rate_burst;     /* at once; 0 until decided: the rate,
	                              * rounded up */
	size_t rate_clients;         /* clients the table remembers */
	struct cidr trusted[CONFIG_TRUSTED_MAX]; /* --trusted-proxy */
	size_t n_trusted;
	/* --database: a libpq URI or key=value string, password and all;
	 * NULL: no database. Never logged or printed as it is (src/db's
	 * db_conninfo_redact). */
	const char *database;
	unsigned int database_pool; /* connections; 0 until decided: as many
	                             * as handler threads */
	unsigned int database_acquire_timeout_ms;
	unsigned int database_timeout_ms; /* each statement's deadline */
	int database_pipeline;            /* --database-pipeline on: 1 */
	int migrate; /* --migrate: apply pending migrations before serving */
	unsigned int shutdown_timeout_ms;
	unsigned int drain_delay_ms; /* ready turns 503 this long before */
	int check_only; /* --check-config: validate, serve nothing */
	/* A variable set to something that is not for microd (a Kubernetes
	 * service link), and so ignored: for one warning. NULL: none. */
	const char *ignored_env, *ignored_value;
	/* Where these came from, for the log: a flag, a variable, "default",
	 * or the limit they were fitted to. */
	char threads_from[160];
	char connections_from[200];
	char budget_from[200];
	unsigned int threads_asked; /* set above the connection limit: 0 or
	                             * what was asked, before the clamp */
};

struct resources;

/* TLS 1.2 and 1.3 only: GnuTLS's NORMAL alone offers 1.0 and 1.1 too. */
#define CONFIG_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

enum config_result { CONFIG_RUN, CONFIG_HELP, CONFIG_VERSION, CONFIG_ERROR };

/*
 * Fills cfg from argv, then, for each option no flag set, the environment,
 * then the defaults, some of which follow from the CPUs and memory the
 * process may use (resources_read). A variable is never read for an option
 * a flag sets, so it cannot fail the start. On CONFIG_ERROR, err holds one
 * line naming the flag or variable, the value and what is accepted. String
 * fields point into argv or the environment, which outlive the program's
 * use of them.
 */
enum config_result config_parse(struct config *cfg, int argc, char **argv,
                                char *err, size_t errlen);

/* The same, with the resources given (tests). */
enum config_result config_parse_with(struct config *cfg, int argc, char **argv,
                                     const struct resources *res, char *err,
                                     size_t errlen);

/*
 * Only --bind and --port (flag, else variable), for `microd probe`: every
 * other flag is passed over unread and no other variable is looked at.
 */
enum config_result config_parse_address(struct config *cfg, int argc,
                                        char **argv, char *err, size_t errlen);

/*
 * Only --database (flag, else MICROD_DATABASE, else DATABASE_URL), checked
 * as the server checks it, for `microd migrate`: every other flag is passed
 * over unread; an unknown one is an error.
 */
enum config_result config_parse_database(struct config *cfg, int argc,
                                         char **argv, char *err, size_t errlen);

/* Writes the --help text, generated from the option table. */
void config_usage(FILE *out);

/* --check-config: what a start with cfg would use, to out. */
void config_print(const struct config *cfg, FILE *out);

/* The start's report of cfg, once the log is set up: the version, threads,
 * body and connection limits, and a warning for each setting ignored or cut
 * down. */
void config_log(const struct config *cfg, const char *version);

#endif
