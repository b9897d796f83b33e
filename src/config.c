/* SPDX-License-Identifier: MIT */
/* config.c -- command line and environment -> struct config, by one table */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "db/db.h"
#include "health.h"
#include "log.h"
#include "option.h"
#include "resources.h"

/* A row's kind, its field of struct config and its bounds (option.h). */
#define FIELD(f) OPTION_FIELD(struct config, f)
#define RANGE(k, f, lo, hi) .kind = (k), FIELD(f), .min = (lo), .max = (hi)
#define UINT(f, lo, hi) RANGE(OPTION_UINT, f, lo, hi)
#define SIZE(f, lo, hi) RANGE(OPTION_SIZE, f, lo, hi)
/* The least in milliseconds, the most in whole seconds. */
#define SECONDS(f, lo_ms, hi_s)                                                \
	RANGE(OPTION_SECONDS, f, lo_ms, 1000 * (uintmax_t)(hi_s))
#define BOOL(f) .kind = OPTION_BOOL, FIELD(f)
#define WORD(f, fn) .kind = OPTION_WORD, FIELD(f), .word = (fn)
#define ADDRESS(f) .kind = OPTION_ADDRESS, FIELD(f)
#define STRING(f, longest) .kind = OPTION_STRING, FIELD(f), .max = (longest)
#define LIST(f, fn, why)                                                       \
	.kind = OPTION_LIST, FIELD(f), .add = (fn), .none = (why)

/* An unsigned int field stores a flag or an enum as well. */
_Static_assert(sizeof(enum event_loop) == sizeof(unsigned int),
               "event_loop is stored as an unsigned int");

static int
parse_event_loop(const char *s)
{
	if (strcmp(s, "poll") == 0)
		return EVENT_LOOP_POLL;
	if (strcmp(s, "epoll") == 0)
		return EVENT_LOOP_EPOLL;
	return -1;
}

static int
parse_on_off(const char *s)
{
	if (strcmp(s, "on") == 0)
		return 1;
	if (strcmp(s, "off") == 0)
		return 0;
	return -1;
}

/* Room for the longest check a value can hold, and one byte over. */
#define CHECK_SPEC_MAX                                                         \
	(HEALTH_NAME_MAX + HEALTH_HOST_MAX + HEALTH_PATH_MAX + 32)

_Static_assert(CHECK_SPEC_MAX <= OPTION_WORD_MAX, "a check fits in a word");

/* One check (n bytes as given), appended. */
static int
add_check(void *base, const char *one, size_t n, const char **why)
{
	struct config *cfg = base;
	struct health_target t;

	if (cfg->n_checks == CONFIG_CHECKS_MAX) {
		*why = "16 checks at most";
		return -1;
	}
	if (n >= CHECK_SPEC_MAX) {
		*why = "longer than a check can be";
		return -1;
	}
	if (health_parse_target(one, &t, why) != 0)
		return -1;
	if (strcmp(t.name, "pool") == 0 || strcmp(t.name, "drain") == 0) {
		*why = "pool and drain are the built-in checks' names";
		return -1;
	}
	for (size_t i = 0; i < cfg->n_checks; i++)
		if (strcmp(cfg->checks[i].name, t.name) == 0) {
			*why = "a check of that name is given already";
			return -1;
		}
	cfg->checks[cfg->n_checks++] = t;
	return 0;
}

/* One proxy address block (n bytes as given), appended. */
static int
add_proxy(void *base, const char *one, size_t n, const char **why)
{
	struct config *cfg = base;

	if (cfg->n_trusted == CONFIG_TRUSTED_MAX) {
		*why = "16 trusted proxy blocks at most";
		return -1;
	}
	if (n >= 64) {
		*why = "longer than an address block can be";
		return -1;
	}
	if (ratelimit_parse_cidr(one, &cfg->trusted[cfg->n_trusted], why) != 0)
		return -1;
	cfg->n_trusted++;
	return 0;
}

/*
 * Each row: the flag, its variable, the value's name in --help (NULL: a
 * switch) and the help; then its kind, field and bounds, its default, and
 * what errors say it accepts (after a range's own words).
 */
static const struct option options[] = {
    {"bind", "MICROD_BIND", "ADDR",
     "address to listen on; '::' for IPv6 dual-stack (default 0.0.0.0)",
     ADDRESS(bind), .dflt = "0.0.0.0",
     .accepts = "a numeric IPv4 or IPv6 address"},
    {"port", "MICROD_PORT", "N",
     "TCP port; 0 picks a free one, logged at start (default 8080). A "
     "Kubernetes service link (MICROD_PORT=tcp://...) is ignored",
     UINT(port, 0, 65535), .dflt = "8080", .alt_env = "PORT", .link = 1},
    {"threads", "MICROD_THREADS", "N",
     "worker threads in the pool (default: the CPUs microd may use: "
     "the affinity mask and the cgroup CPU quota, rounded up)",
     UINT(threads, 1, 256)},
    {"max-body", "MICROD_MAX_BODY", "BYTES",
     "largest request body accepted; larger gets 413 (default 1m)",
     SIZE(max_body, 1, (uintmax_t)1 << 30), .dflt = "1m",
     .accepts = ", e.g. 4096, 64k, 1m"},
    {"body-budget", "MICROD_BODY_BUDGET", "BYTES",
     "request-body bytes buffered at once over all connections; a body "
     "that would pass it gets 503 with Retry-After before it is read "
     "(default 8m, or twice --max-body if that is more; under a cgroup "
     "memory limit at most a quarter of what it leaves)",
     SIZE(body_budget, (uintmax_t)64 << 10, (uintmax_t)4 << 30),
     .accepts = ", at least --max-body"},
    {"event-loop", "MICROD_EVENT_LOOP", "LOOP",
     "how each thread waits for its connections: epoll (default) costs "
     "nothing per idle connection; poll walks every connection on every "
     "wake-up, so idle ones slow the busy ones. HTTPS always polls (see "
     "microd(8), BUGS)",
     WORD(event_loop, parse_event_loop), .dflt = "epoll",
     .accepts = "poll or epoll"},
    {"connection-limit", "MICROD_CONNECTION_LIMIT", "N",
     "client connections open at most, over all threads; more are "
     "refused at accept (default 10000, or what fits in the cgroup "
     "memory limit: see microd(8), LIMITS)",
     UINT(connection_limit, 1, 1000000), .dflt = "10000"},
    {"per-ip-limit", "MICROD_PER_IP_LIMIT", "N",
     "open connections at most from one client address; 0 = no limit "
     "(default 0: clients behind a proxy or node share one address)",
     UINT(per_ip_limit, 0, 1000000), .dflt = "0"},
    {"idle-timeout", "MICROD_IDLE_TIMEOUT", "SECONDS",
     "a connection with nothing received for this long is closed "
     "(default 15)",
     UINT(idle_timeout_s, 1, 3600), .dflt = "15", .noun = "whole seconds"},
    {"header-timeout", "MICROD_HEADER_TIMEOUT", "SECONDS",
     "a request head (and a TLS handshake) must arrive whole within this "
     "long of the accept or of the previous request's end, however its "
     "bytes trickle; else the connection is closed (default 10)",
     SECONDS(header_timeout_ms, 100, 3600), .dflt = "10"},
    {"connection-memory", "MICROD_CONNECTION_MEMORY", "BYTES",
     "memory per connection; bounds the request line plus headers, "
     "larger gets 431 (default 10k: heads of 9 KiB)",
     SIZE(connection_memory, 2048, (uintmax_t)1 << 20), .dflt = "10k"},
    {"log-level", "MICROD_LOG_LEVEL", "LEVEL",
     "error, warn, info or debug (default info)",
     WORD(log_level, log_level_parse), .dflt = "info",
     .accepts = "one of error, warn, info, debug"},
    {"log-format", "MICROD_LOG_FORMAT", "FORMAT",
     "json (one object per line) or text (logfmt); default json, or "
     "text when stderr is a terminal",
     WORD(log_format, log_format_parse), .accepts = "json or text"},
    {"log-probes", "MICROD_LOG_PROBES", NULL,
     "access-log every probe request (by default successful probes are "
     "not logged, and failed ones once a second at most)",
     BOOL(log_probes)},
    {"shutdown-timeout", "MICROD_SHUTDOWN_TIMEOUT", "SECONDS",
     "on SIGTERM/SIGINT, how long requests in flight may take to "
     "finish (default 10)",
     SECONDS(shutdown_timeout_ms, 0, 3600), .dflt = "10",
     .accepts = ", e.g. 10 or 2.5"},
    {"handler-threads", "MICROD_HANDLER_THREADS", "N",
     "threads that run the routes that may block (ROUTE_BLOCKING), apart "
     "from the threads that serve connections, so probes never wait "
     "behind them (default 8)",
     UINT(handler_threads, 1, 256), .dflt = "8"},
    {"handler-queue", "MICROD_HANDLER_QUEUE", "N",
     "requests for those routes that may wait for a handler thread; "
     "past that they get 503 with Retry-After at once (default 64)",
     UINT(handler_queue, 0, 100000), .dflt = "64"},
    {"example-routes", "MICROD_EXAMPLE_ROUTES", NULL,
     "serve the example routes: GET /status/{code}, GET /delay/{ms} and "
     "GET /resolve/{host} (on the handler pool), POST /count, GET /json "
     "and /plaintext, and /notes, /db, /queries and /updates with "
     "--database (off by default: not for production)",
     BOOL(example_routes)},
    {"check", "MICROD_CHECKS", "NAME=URL",
     "a readiness check of a dependency, run in the background: connect "
     "(tcp://), or GET with a 2xx or 3xx answer (http://); repeatable",
     LIST(n_checks, add_check, "no check given"),
     .accepts = "NAME=tcp://HOST:PORT or NAME=http://HOST:PORT/PATH, NAME "
                "1 to 32 of a-z 0-9 _ -, not pool or drain, each name once "
                "(the variable: several, separated by spaces)"},
    {"check-interval", "MICROD_CHECK_INTERVAL", "SECONDS",
     "how often each check runs (default 5)",
     SECONDS(check_interval_ms, 100, 3600), .dflt = "5"},
    {"check-timeout", "MICROD_CHECK_TIMEOUT", "SECONDS",
     "how long one run of a check may take before it fails (default 1; "
     "the pool check's never less than 1, or half the watchdog interval "
     "under one)",
     SECONDS(check_timeout_ms, 10, 60), .dflt = "1"},
    {"check-threshold", "MICROD_CHECK_THRESHOLD", "N",
     "failed runs in a row before a --check that passed fails (default "
     "1)",
     UINT(check_threshold, 1, 100), .dflt = "1"},
    {"health-details", "MICROD_HEALTH_DETAILS", NULL,
     "show why a check fails in the ?verbose body of /livez and /readyz "
     "(by default only in the log, as callers need not be trusted)",
     BOOL(health_details)},
    {"tls-cert", "MICROD_TLS_CERT", "FILE",
     "serve HTTPS on --tls-port with this certificate (with --tls-key); "
     "reloaded when the file changes and on SIGHUP",
     STRING(tls_cert, 4096),
     .accepts = "a path to a PEM certificate chain, leaf first"},
    {"tls-key", "MICROD_TLS_KEY", "FILE",
     "the certificate's private key (with --tls-cert)", STRING(tls_key, 4096),
     .accepts = "a path to a PEM private key"},
    {"tls-port", "MICROD_TLS_PORT", "N",
     "HTTPS port, beside HTTP on --port; 0 picks a free one (default "
     "8443). A Kubernetes service link (tcp://...) is ignored",
     UINT(tls_port, 0, 65535), .dflt = "8443", .link = 1},
    {"tls-priorities", "MICROD_TLS_PRIORITIES", "STRING",
     "the TLS versions and ciphers offered (default "
     "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2: TLS 1.2 and 1.3 only)",
     STRING(tls_priorities, 1024),
     .dflt = CONFIG_TLS_PRIORITIES, /* checked by GnuTLS at start */
     .accepts = "a GnuTLS priority string"},
    {"auth-token-file", "MICROD_AUTH_TOKEN_FILE", "FILE",
     "require \"Authorization: Bearer TOKEN\" with one of the file's "
     "tokens on every request but the probes (and /metrics, unless "
     "--auth-metrics); 401 otherwise. Lines that are empty or start "
     "with # are skipped; read again on SIGHUP",
     STRING(auth_token_file, 4096),
     .accepts = "a path to a file of bearer tokens, one a line"},
    {"auth-metrics", "MICROD_AUTH_METRICS", NULL,
     "/metrics needs a bearer token too (default off: a scraper often "
     "has none)",
     BOOL(auth_metrics)},
    {"rate-limit", "MICROD_RATE_LIMIT", "RATE",
     "requests a second each client may make, on average, on every "
     "request but the probes; more get 429 with Retry-After. 0 = no limit "
     "(default 0)",
     /* Thousandths, as seconds are read into milliseconds. */
     SECONDS(rate_milli, 0, 1000000), .dflt = "0", .noun = "requests a second",
     .accepts = ", up to 3 decimals, e.g. 50 or 0.5"},
    {"rate-burst", "MICROD_RATE_BURST", "N",
     "requests a client may make at once before --rate-limit holds it "
     "back (default: the rate, rounded up)",
     UINT(rate_burst, 1, RATELIMIT_BURST_MAX)},
    {"rate-limit-clients", "MICROD_RATE_LIMIT_CLIENTS", "N",
     "clients the rate limit remembers, in a table of fixed size (about "
     "40 bytes each); past it the idlest are forgotten (default 16384)",
     UINT(rate_clients, RATELIMIT_SET_SIZE, RATELIMIT_SLOTS_MAX),
     .dflt = "16384"},
    {"trusted-proxy", "MICROD_TRUSTED_PROXIES", "CIDR",
     "a proxy whose X-Forwarded-For is believed: a request from it is "
     "rate-limited by the first address in that field, from the right, "
     "that is not a trusted proxy; repeatable, 16 at most",
     LIST(n_trusted, add_proxy, "no address block given"),
     .accepts = "an address or address/prefix (10.0.0.0/8, ::1), no host "
                "bits past the prefix (the variable: several, separated "
                "by spaces)"},
    {"database", "MICROD_DATABASE", "URL",
     "PostgreSQL for the handlers that may block (ROUTE_BLOCKING): a libpq "
     "URI (postgresql://USER:PASSWORD@HOST:PORT/DB) or key=value string; "
     "libpq's PG* variables fill what it leaves out. Adds the readiness "
     "check database. The password is never shown (default: none)",
     STRING(database, 4096), .alt_env = "DATABASE_URL", .secret = 1,
     .accepts = "a libpq URI or key=value connection string"},
    {"database-pool", "MICROD_DATABASE_POOL", "N",
     "connections to the database, made in the background (default: "
     "--handler-threads)",
     UINT(database_pool, 1, 1024)},
    {"database-acquire-timeout", "MICROD_DATABASE_ACQUIRE_TIMEOUT", "SECONDS",
     "how long a handler waits for a free connection before it gets 503 "
     "(default 1)",
     SECONDS(database_acquire_timeout_ms, 1, 60), .dflt = "1",
     .accepts = ", e.g. 1 or 0.25"},
    {"database-timeout", "MICROD_DATABASE_TIMEOUT", "SECONDS",
     "each statement's deadline, set on every connection as "
     "statement_timeout (default 5)",
     SECONDS(database_timeout_ms, 1, 3600), .dflt = "5",
     .accepts = ", e.g. 5 or 0.5"},
    {"database-pipeline", "MICROD_DATABASE_PIPELINE", "on|off",
     "on (default): the statements of several requests travel together on "
     "each connection, a request's statements in one round trip; off: one "
     "statement a round trip, one request at a time on a connection (see "
     "microd(8), DATABASE)",
     WORD(database_pipeline, parse_on_off), .dflt = "on",
     .accepts = "on or off"},
    {"migrate", "MICROD_MIGRATE", NULL,
     "with --database, apply the pending migrations (as microd migrate "
     "does) before serving; a failure stops the start with microd "
     "migrate's exit status. Without it pending migrations fail the "
     "database check, naming them",
     BOOL(migrate)},
    {"drain-delay", "MICROD_DRAIN_DELAY", "SECONDS",
     "on SIGTERM/SIGINT, how long /ready answers 503 while serving goes "
     "on, so load balancers notice, before the drain starts (default 0)",
     SECONDS(drain_delay_ms, 0, 3600), .dflt = "0",
     .accepts = ", e.g. 5 or 0.5"},
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

/*
 * Each row's default, read as a value is, and the fields no row sets: 0, or
 * -1 with err set (a row's default out of its own bounds).
 */
static int
set_defaults(struct config *cfg, char *err, size_t errlen)
{
	*cfg = (struct config){
	    .threads = 1,     /* until resources_fit */
	    .log_format = -1, /* by stderr, in main */
	};
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (options[i].dflt != NULL &&
		    option_parse(cfg, &options[i], options[i].flag,
		                 options[i].dflt, err, errlen) != 0)
			return -1;
	snprintf(cfg->threads_from, sizeof(cfg->threads_from), "default");
	snprintf(cfg->connections_from, sizeof(cfg->connections_from),
	         "default");
	snprintf(cfg->budget_from, sizeof(cfg->budget_from), "default");
	return 0;
}

static const struct option *
find_flag(const char *name, size_t len)
{
	for (size_t i = 0; i < N_OPTIONS; i++)
		if (strlen(options[i].flag) == len &&
		    strncmp(options[i].flag, name, len) == 0)
			return &options[i];
	return NULL;
}

static size_t
index_of(const char *flag)
{
	return (size_t)(find_flag(flag, strlen(flag)) - options);
}

/* What a parse reads: everything, or one command's few options. */
enum parse_scope { PARSE_ALL, PARSE_ADDRESS, PARSE_DATABASE };

/* Whether scope reads opt: --bind and --port are all the probe reads,
 * --database all that microd migrate does. */
static int
in_scope(enum parse_scope scope, const struct option *opt)
{
	switch (scope) {
	case PARSE_ADDRESS:
		return opt->off == offsetof(struct config, bind) ||
		       opt->off == offsetof(struct config, port);
	case PARSE_DATABASE:
		return opt->off == offsetof(struct config, database);
	case PARSE_ALL:
	default:
		return 1;
	}
}

/*
 * Kubernetes gives every pod started after a Service NAME the variable
 * NAME_PORT=tcp://ADDR:PORT (a docker link): a Service named microd sets
 * MICROD_PORT, one named microd-tls MICROD_TLS_PORT. Such a value is never
 * a port.
 */
static int
is_service_link(const char *v)
{
	size_t n = strspn(v, "abcdefghijklmnopqrstuvwxyz");

	return n > 0 && strncmp(v + n, "://", 3) == 0;
}

/*
 * The environment's value for an option that no flag set: its variable,
 * else its alternative; a service link counts as unset. *name is the
 * variable read.
 */
static const char *
env_value(struct config *cfg, const struct option *opt, const char **name)
{
	const char *v = getenv(opt->env);

	*name = opt->env;
	if (v != NULL && opt->link && is_service_link(v)) {
		cfg->ignored_env = opt->env;
		cfg->ignored_value = v;
		v = NULL;
	}
	if (v == NULL && opt->alt_env != NULL) {
		*name = opt->alt_env;
		v = getenv(opt->alt_env);
	}
	return v;
}

/*
 * --database parses as libpq reads it (its message is not shown: it may
 * quote the password), and no --check takes the name of its check. The pool
 * is as large as the handler pool unless set. 0, or -1 with err set.
 */
static int
check_database(struct config *cfg, const char *from, char *err, size_t errlen)
{
	char *shown;

	if (cfg->database == NULL)
		return 0;
	shown = db_conninfo_redact(cfg->database);
	if (shown == NULL) {
		snprintf(err, errlen,
		         "%s: invalid value (not shown: it may hold a "
		         "password): not a libpq URI or key=value connection "
		         "string",
		         from);
		return -1;
	}
	free(shown);
	for (size_t i = 0; i < cfg->n_checks; i++)
		if (strcmp(cfg->checks[i].name, "database") == 0) {
			snprintf(err, errlen,
			         "--check database=...: with %s, database is "
			         "the built-in check's name",
			         from);
			return -1;
		}
	if (cfg->database_pool == 0)
		cfg->database_pool = cfg->handler_threads;
	return 0;
}

/*
 * argv first: a flag sets its option, and the environment is read only for
 * the options no flag set. A scope other than PARSE_ALL reads only its
 * options; the other flags are passed over.
 */
static enum config_result
parse(struct config *cfg, int argc, char **argv, const struct resources *res,
      enum parse_scope scope, char *err, size_t errlen)
{
	const char *given[N_OPTIONS] = {NULL}, *from[N_OPTIONS] = {NULL};
	char flags[N_OPTIONS][40];

	err[0] = '\0';
	if (set_defaults(cfg, err, errlen) != 0)
		return CONFIG_ERROR;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *value, *eq;
		const struct option *opt;
		struct config scratch = {.bind = NULL};
		size_t len;

		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
			return CONFIG_HELP;
		if (strcmp(arg, "--version") == 0)
			return CONFIG_VERSION;
		if (strcmp(arg, "--check-config") == 0) {
			cfg->check_only = 1;
			continue;
		}
		if (strncmp(arg, "--", 2) != 0) {
			snprintf(err, errlen,
			         "unexpected argument '%s' (see --help)", arg);
			return CONFIG_ERROR;
		}
		eq = strchr(arg + 2, '=');
		len = eq != NULL ? (size_t)(eq - arg - 2) : strlen(arg + 2);
		opt = find_flag(arg + 2, len);
		if (opt == NULL) {
			snprintf(err, errlen,
			         "unknown option '%.*s' (see --help)",
			         (int)(len + 2), arg);
			return CONFIG_ERROR;
		}
		snprintf(flags[opt - options], sizeof(flags[0]), "--%s",
		         opt->flag);
		if (eq != NULL) {
			value = eq + 1;
		} else if (opt->kind == OPTION_BOOL) {
			/* A switch: present means on, unless a boolean
			 * follows ("--log-probes false"). */
			value = "true";
			if (i + 1 < argc && option_bool(argv[i + 1]) >= 0)
				value = argv[++i];
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			char accepts[160];

			snprintf(err, errlen,
			         "--%s: missing value (expected %s)", opt->flag,
			         option_accepts(opt, accepts, sizeof(accepts)));
			return CONFIG_ERROR;
		}
		/* Every value given is checked, in order; the last one
		 * counts, but a list's add up, flag by flag (and a check's
		 * name must be new). The probe reads only the address. */
		if (in_scope(scope, opt) &&
		    option_parse(opt->kind == OPTION_LIST ? cfg : &scratch, opt,
		                 flags[opt - options], value, err, errlen) != 0)
			return CONFIG_ERROR;
		given[opt - options] = value;
	}

	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option *opt = &options[i];
		const char *name = flags[i], *v = given[i];

		if (!in_scope(scope, opt))
			continue;
		if (v != NULL && opt->kind == OPTION_LIST) {
			from[i] = name; /* taken in the loop above */
			continue;
		}
		if (v == NULL)
			v = env_value(cfg, opt, &name);
		if (v == NULL)
			continue;
		if (option_parse(cfg, opt, name, v, err, errlen) != 0)
			return CONFIG_ERROR;
		from[i] = name;
		if (opt->off == offsetof(struct config, threads))
			snprintf(cfg->threads_from, sizeof(cfg->threads_from),
			         "%.100s", name);
	}
	if (scope == PARSE_DATABASE)
		return check_database(cfg, from[index_of("database")], err,
		                      errlen) != 0
		           ? CONFIG_ERROR
		           : CONFIG_RUN;
	if (scope != PARSE_ALL)
		return CONFIG_RUN;
	resources_fit(cfg, res, from[index_of("threads")],
	              from[index_of("connection-limit")],
	              from[index_of("body-budget")]);
	if (cfg->tls_cert != NULL && cfg->tls_port != 0 &&
	    cfg->tls_port == cfg->port) {
		snprintf(
		    err, errlen,
		    "--tls-port %u is the HTTP port too: HTTPS needs a port "
		    "of its own",
		    cfg->tls_port);
		return CONFIG_ERROR;
	}
	if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
		snprintf(err, errlen,
		         "%s without %s: HTTPS needs both the certificate and "
		         "its key",
		         from[index_of(cfg->tls_cert != NULL ? "tls-cert"
		                                             : "tls-key")],
		         cfg->tls_cert != NULL ? "--tls-key" : "--tls-cert");
		return CONFIG_ERROR;
	}
	if (check_database(cfg, from[index_of("database")], err, errlen) != 0)
		return CONFIG_ERROR;
	if (cfg->rate_milli > 0 && cfg->rate_burst == 0)
		cfg->rate_burst = (cfg->rate_milli + 999) / 1000;
	if (cfg->body_budget < cfg->max_body) {
		snprintf(err, errlen,
		         "%s (%zu bytes) is below %s (%zu bytes): no body of "
		         "the largest size could be read",
		         from[index_of("body-budget")], cfg->body_budget,
		         from[index_of("max-body")] != NULL
		             ? from[index_of("max-body")]
		             : "the default --max-body",
		         cfg->max_body);
		return CONFIG_ERROR;
	}
	/* More threads than connections can never all be busy. */
	if (cfg->threads > cfg->connection_limit) {
		if (from[index_of("threads")] != NULL)
			cfg->threads_asked = cfg->threads; /* main warns */
		cfg->threads = cfg->connection_limit;
		snprintf(cfg->threads_from + strlen(cfg->threads_from),
		         sizeof(cfg->threads_from) - strlen(cfg->threads_from),
		         ", at most the connection limit");
	}
	return CONFIG_RUN;
}

enum config_result
config_parse_with(struct config *cfg, int argc, char **argv,
                  const struct resources *res, char *err, size_t errlen)
{
	return parse(cfg, argc, argv, res, PARSE_ALL, err, errlen);
}

enum config_result
config_parse(struct config *cfg, int argc, char **argv, char *err,
             size_t errlen)
{
	struct resources res;

	resources_read(&res);
	return parse(cfg, argc, argv, &res, PARSE_ALL, err, errlen);
}

enum config_result
config_parse_address(struct config *cfg, int argc, char **argv, char *err,
                     size_t errlen)
{
	const struct resources unread = {.cpus = 1, .memory = 0};

	return parse(cfg, argc, argv, &unread, PARSE_ADDRESS, err, errlen);
}

enum config_result
config_parse_database(struct config *cfg, int argc, char **argv, char *err,
                      size_t errlen)
{
	const struct resources unread = {.cpus = 1, .memory = 0};

	return parse(cfg, argc, argv, &unread, PARSE_DATABASE, err, errlen);
}

void
config_usage(FILE *out)
{
	fputs("Usage: microd [OPTION]...\n"
	      "       microd probe [--url URL] [--timeout SECONDS] [--cacert "
	      "FILE]\n"
	      "A small JSON-over-HTTP service: GET /health, GET /ready,\n"
	      "GET /livez[/NAME] and /readyz[/NAME] (liveness and readiness\n"
	      "checks; ?verbose, ?exclude=NAME), GET /version, GET /metrics\n"
	      "(Prometheus), POST /echo.\n"
	      "'microd probe --help' explains the probe.\n"
	      "\n"
	      "Each option can also be set through the environment variable\n"
	      "shown; a flag wins over the environment (a variable is read\n"
	      "only for an option no flag sets), which wins over the\n"
	      "default. --flag VALUE and --flag=VALUE both work.\n"
	      "\n",
	      out);
	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option *opt = &options[i];

		fprintf(out, "  --%s%s%s\n      %s\n      env: %s%s%s\n",
		        opt->flag, opt->metavar != NULL ? " " : "",
		        opt->metavar != NULL ? opt->metavar : "", opt->help,
		        opt->env, opt->alt_env != NULL ? ", then " : "",
		        opt->alt_env != NULL ? opt->alt_env : "");
	}
	fputs("  --check-config\n      check the flags and environment, print "
	      "the settings they\n      give, exit 0 if they are valid, 2 if "
	      "not; serve nothing\n"
	      "  --help, -h\n      print this help and exit\n"
	      "  --version\n      print the version and exit\n"
	      "\n"
	      "Signals: SIGTERM or SIGINT turns /ready to 503, keeps serving\n"
	      "for --drain-delay, then stops accepting connections, lets\n"
	      "requests in flight finish (up to --shutdown-timeout), and\n"
	      "exits 0; a second signal exits at once with status 1.\n"
	      "Exit status: 0 clean stop, 1 runtime failure, 2 bad usage.\n"
	      "\n"
	      "Under systemd: NOTIFY_SOCKET gets READY=1, STOPPING=1 and\n"
	      "EXTEND_TIMEOUT_USEC; with WATCHDOG_USEC, WATCHDOG=1 is sent\n"
	      "every half interval while GET /health through the worker\n"
	      "pool succeeds; LISTEN_FDS (socket activation) serves the\n"
	      "passed socket named 'http' instead of --bind/--port. See\n"
	      "microd(8).\n",
	      out);
}

/* The database's settings, its connection string without the password. */
static void
print_database(const struct config *cfg, FILE *out)
{
	char *shown;

	if (cfg->database == NULL) {
		fprintf(out, "database: off\n");
		return;
	}
	shown = db_conninfo_redact(cfg->database); /* parsed before */
	fprintf(out,
	        "database %s: %u connections, acquire timeout %u ms, "
	        "statement timeout %u ms, pipeline %s\n",
	        shown != NULL ? shown : "(not shown)", cfg->database_pool,
	        cfg->database_acquire_timeout_ms, cfg->database_timeout_ms,
	        cfg->database_pipeline ? "on" : "off");
	free(shown);
}

/* --check-config: what a start with these settings would use. */
void
config_print(const struct config *cfg, FILE *out)
{
	fprintf(out,
	        "microd: the configuration is valid\n"
	        "threads %u (from %s)\n"
	        "connection limit %u (from %s)\n"
	        "body budget %zu bytes (from %s), max body %zu bytes\n"
	        "listen %s port %u (unless a socket is passed)\n"
	        "idle timeout %u s, header timeout %u ms, %zu bytes per "
	        "connection, %u per client address\n"
	        "shutdown timeout %u ms, drain delay %u ms\n"
	        "handler pool %u threads, queue %u (started when a route "
	        "served may block); example routes %s\n",
	        cfg->threads, cfg->threads_from, cfg->connection_limit,
	        cfg->connections_from, cfg->body_budget, cfg->budget_from,
	        cfg->max_body, cfg->bind, cfg->port, cfg->idle_timeout_s,
	        cfg->header_timeout_ms, cfg->connection_memory,
	        cfg->per_ip_limit, cfg->shutdown_timeout_ms,
	        cfg->drain_delay_ms, cfg->handler_threads, cfg->handler_queue,
	        cfg->example_routes ? "on" : "off");
	for (size_t i = 0; i < cfg->n_checks; i++) {
		const struct health_target *t = &cfg->checks[i];

		fprintf(out, "check %s: %s://%s%s%s:%u%s\n", t->name,
		        t->kind == HEALTH_HTTP ? "http" : "tcp",
		        strchr(t->host, ':') != NULL ? "[" : "", t->host,
		        strchr(t->host, ':') != NULL ? "]" : "", t->port,
		        t->path);
	}
	fprintf(out,
	        "checks every %u ms, timeout %u ms, %u failures in a row\n",
	        cfg->check_interval_ms, cfg->check_timeout_ms,
	        cfg->check_threshold);
	if (cfg->tls_cert != NULL)
		fprintf(out,
		        "https on port %u: certificate %s, key %s, priorities "
		        "%s\n",
		        cfg->tls_port, cfg->tls_cert, cfg->tls_key,
		        cfg->tls_priorities);
	if (cfg->auth_token_file != NULL)
		fprintf(out,
		        "bearer tokens from %s, on every request but the "
		        "probes%s\n",
		        cfg->auth_token_file,
		        cfg->auth_metrics ? "" : " and /metrics");
	else
		fprintf(out, "bearer tokens: off\n");
	if (cfg->rate_milli > 0)
		fprintf(
		    out,
		    "rate limit %u.%03u a second and %u at once per client, "
		    "%zu clients, %zu trusted proxy blocks\n",
		    cfg->rate_milli / 1000, cfg->rate_milli % 1000,
		    cfg->rate_burst, cfg->rate_clients, cfg->n_trusted);
	else
		fprintf(out, "rate limit: off\n");
	print_database(cfg, out);
	if (cfg->ignored_env != NULL)
		fprintf(out, "ignored %s=%s (a Kubernetes service link)\n",
		        cfg->ignored_env, cfg->ignored_value);
}

void
config_log(const struct config *cfg, const char *version)
{
	if (cfg->ignored_env != NULL)
		log_warn("%s=%s is a Kubernetes service link (a Service named "
		         "after microd), not a port: ignored; set "
		         "enableServiceLinks: false in the pod spec",
		         cfg->ignored_env, cfg->ignored_value);
	if (cfg->threads_asked > 0)
		log_warn(
		    "%u threads asked for is more than the connection "
		    "limit %u: more threads than connections cannot all be "
		    "busy; running %u threads",
		    cfg->threads_asked, cfg->connection_limit, cfg->threads);
	log_info("microd %s: %u threads (%s; from %s), max body %zu bytes, "
	         "body budget %zu bytes (from %s), shutdown timeout %u ms",
	         version, cfg->threads,
	         cfg->event_loop == EVENT_LOOP_EPOLL ? "epoll" : "poll",
	         cfg->threads_from, cfg->max_body, cfg->body_budget,
	         cfg->budget_from, cfg->shutdown_timeout_ms);
	log_info("limits: %u connections over all threads, %u per client "
	         "address%s, idle timeout %u s, header timeout %u ms, %zu "
	         "bytes per connection (request line + headers); connection "
	         "limit from %s",
	         cfg->connection_limit, cfg->per_ip_limit,
	         cfg->per_ip_limit == 0 ? " (none)" : "", cfg->idle_timeout_s,
	         cfg->header_timeout_ms, cfg->connection_memory,
	         cfg->connections_from);
}
