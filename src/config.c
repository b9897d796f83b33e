/* SPDX-License-Identifier: MIT */
/* config.c -- command line and environment -> struct config */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "health.h"
#include "log.h"
#include "number.h"
#include "resources.h"

typedef int parse_fn(struct config *, const char *);

struct option {
	const char *flag; /* without the leading "--" */
	const char *env;
	const char *alt_env; /* consulted when env is unset */
	const char *metavar;
	const char *accepts; /* finishes "expected ..." in errors */
	const char *help;
	parse_fn *parse;
};

static int
parse_bind(struct config *cfg, const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	if (inet_pton(AF_INET, s, buf) != 1 && inet_pton(AF_INET6, s, buf) != 1)
		return -1;
	cfg->bind = s;
	return 0;
}

static int
parse_port(struct config *cfg, const char *s)
{
	uintmax_t v;

	if (number_parse(s, 65535, &v) != 0)
		return -1;
	cfg->port = (unsigned int)v;
	return 0;
}

static int
parse_threads(struct config *cfg, const char *s)
{
	uintmax_t v;

	if (number_parse(s, 256, &v) != 0 || v == 0)
		return -1;
	cfg->threads = (unsigned int)v;
	return 0;
}

static int
parse_body_budget(struct config *cfg, const char *s)
{
	uintmax_t v;

	if (number_parse_size(s, (uintmax_t)64 << 10, (uintmax_t)4 << 30, &v) !=
	    0)
		return -1;
	cfg->body_budget = (size_t)v;
	return 0;
}

static int
parse_max_body(struct config *cfg, const char *s)
{
	uintmax_t v;

	if (number_parse_size(s, 1, (uintmax_t)1 << 30, &v) != 0)
		return -1;
	cfg->max_body = (size_t)v;
	return 0;
}

static int
parse_connection_memory(struct config *cfg, const char *s)
{
	uintmax_t v;

	if (number_parse_size(s, 2048, (uintmax_t)1 << 20, &v) != 0)
		return -1;
	cfg->connection_memory = (size_t)v;
	return 0;
}

static int
parse_connection_limit(struct config *cfg, const char *s)
{
	uintmax_t v;

	if (number_parse(s, 1000000, &v) != 0 || v == 0)
		return -1;
	cfg->connection_limit = (unsigned int)v;
	return 0;
}

static int
parse_per_ip_limit(struct config *cfg, const char *s)
{
	uintmax_t v;

	if (number_parse(s, 1000000, &v) != 0)
		return -1;
	cfg->per_ip_limit = (unsigned int)v;
	return 0;
}

static int
parse_idle_timeout(struct config *cfg, const char *s)
{
	uintmax_t v;

	if (number_parse(s, 3600, &v) != 0 || v == 0)
		return -1;
	cfg->idle_timeout_s = (unsigned int)v;
	return 0;
}

static int
parse_event_loop(struct config *cfg, const char *s)
{
	if (strcmp(s, "poll") == 0)
		cfg->event_loop = EVENT_LOOP_POLL;
	else if (strcmp(s, "epoll") == 0)
		cfg->event_loop = EVENT_LOOP_EPOLL;
	else
		return -1;
	return 0;
}

static int
parse_log_format(struct config *cfg, const char *s)
{
	int format = log_format_parse(s);

	if (format < 0)
		return -1;
	cfg->log_format = format;
	return 0;
}

static int
parse_bool(const char *s, int *out)
{
	if (strcmp(s, "1") == 0 || strcasecmp(s, "true") == 0 ||
	    strcasecmp(s, "yes") == 0)
		*out = 1;
	else if (strcmp(s, "0") == 0 || strcasecmp(s, "false") == 0 ||
	         strcasecmp(s, "no") == 0)
		*out = 0;
	else
		return -1;
	return 0;
}

static int
parse_handler_threads(struct config *cfg, const char *s)
{
	uintmax_t v;

	if (number_parse(s, 256, &v) != 0 || v == 0)
		return -1;
	cfg->handler_threads = (unsigned int)v;
	return 0;
}

static int
parse_handler_queue(struct config *cfg, const char *s)
{
	uintmax_t v;

	if (number_parse(s, 100000, &v) != 0)
		return -1;
	cfg->handler_queue = (unsigned int)v;
	return 0;
}

static int
parse_example_routes(struct config *cfg, const char *s)
{
	return parse_bool(s, &cfg->example_routes);
}

/* Room for the longest check a value can hold, and one byte over. */
#define CHECK_SPEC_MAX                                                         \
	(HEALTH_NAME_MAX + HEALTH_HOST_MAX + HEALTH_PATH_MAX + 32)

/*
 * Calls add(cfg, word, why) for each word of s, words separated by blanks
 * or newlines (a variable's form, as a YAML block leaves it; none says
 * why an empty s is refused): 0, or -1 with *why the rule broken and bad
 * the word that broke it (CHECK_SPEC_MAX bytes: cut if longer). A word
 * longer than CHECK_SPEC_MAX - 1 bytes is passed on cut, and refused by
 * add for its length.
 */
static int
each_word(struct config *cfg, const char *s, const char *none,
          int (*add)(struct config *, const char *, size_t, const char **),
          const char **why, char *bad)
{
	char word[CHECK_SPEC_MAX];
	int any = 0;

	snprintf(bad, CHECK_SPEC_MAX, "%s", s);
	for (;;) {
		size_t n;

		s += strspn(s, " \t\r\n");
		n = strcspn(s, " \t\r\n");
		if (n == 0) {
			*why = none;
			return any ? 0 : -1;
		}
		snprintf(bad, CHECK_SPEC_MAX, "%.*s", (int)n, s);
		snprintf(word, sizeof(word), "%.*s", (int)n, s);
		if (add(cfg, word, n, why) != 0)
			return -1;
		any = 1;
		s += n;
	}
}

/* One check (n bytes as given), appended. */
static int
add_check(struct config *cfg, const char *one, size_t n, const char **why)
{
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

/* each_word without the reasons: for the options table's parse. */
static int
each_word_of(struct config *cfg, const char *s,
             int (*add)(struct config *, const char *, size_t, const char **))
{
	const char *why;
	char bad[CHECK_SPEC_MAX];

	return each_word(cfg, s, "", add, &why, bad);
}

static int
parse_check(struct config *cfg, const char *s)
{
	return each_word_of(cfg, s, add_check);
}

static int
parse_check_interval(struct config *cfg, const char *s)
{
	return number_parse_seconds(s, 3600, &cfg->check_interval_ms) != 0 ||
	               cfg->check_interval_ms < 100
	           ? -1
	           : 0;
}

static int
parse_check_timeout(struct config *cfg, const char *s)
{
	return number_parse_seconds(s, 60, &cfg->check_timeout_ms) != 0 ||
	               cfg->check_timeout_ms < 10
	           ? -1
	           : 0;
}

static int
parse_check_threshold(struct config *cfg, const char *s)
{
	uintmax_t v;

	if (number_parse(s, 100, &v) != 0 || v == 0)
		return -1;
	cfg->check_threshold = (unsigned int)v;
	return 0;
}

/* A path as given: only an empty one is refused here; tls_open reads it. */
static int
parse_path(const char *s, const char **out)
{
	if (*s == '\0' || strlen(s) >= 4096)
		return -1;
	*out = s;
	return 0;
}

static int
parse_tls_cert(struct config *cfg, const char *s)
{
	return parse_path(s, &cfg->tls_cert);
}

static int
parse_tls_key(struct config *cfg, const char *s)
{
	return parse_path(s, &cfg->tls_key);
}

static int
parse_tls_port(struct config *cfg, const char *s)
{
	uintmax_t v;

	if (number_parse(s, 65535, &v) != 0)
		return -1;
	cfg->tls_port = (unsigned int)v;
	return 0;
}

static int
parse_tls_priorities(struct config *cfg, const char *s)
{
	if (*s == '\0' || strlen(s) >= 1024)
		return -1;
	cfg->tls_priorities = s; /* checked by GnuTLS at start */
	return 0;
}

/* One proxy address block (n bytes as given), appended. */
static int
add_proxy(struct config *cfg, const char *one, size_t n, const char **why)
{
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

static int
parse_trusted_proxy(struct config *cfg, const char *s)
{
	return each_word_of(cfg, s, add_proxy);
}

static int
parse_auth_token_file(struct config *cfg, const char *s)
{
	return parse_path(s, &cfg->auth_token_file);
}

static int
parse_auth_metrics(struct config *cfg, const char *s)
{
	return parse_bool(s, &cfg->auth_metrics);
}

static int
parse_rate_limit(struct config *cfg, const char *s)
{
	/* Thousandths, as seconds are read into milliseconds. */
	return number_parse_seconds(s, 1000000, &cfg->rate_milli);
}

static int
parse_rate_burst(struct config *cfg, const char *s)
{
	uintmax_t v;

	if (number_parse(s, RATELIMIT_BURST_MAX, &v) != 0 || v == 0)
		return -1;
	cfg->rate_burst = (unsigned int)v;
	return 0;
}

static int
parse_rate_clients(struct config *cfg, const char *s)
{
	uintmax_t v;

	if (number_parse(s, RATELIMIT_SLOTS_MAX, &v) != 0 ||
	    v < RATELIMIT_SET_SIZE)
		return -1;
	cfg->rate_clients = (size_t)v;
	return 0;
}

static int
parse_health_details(struct config *cfg, const char *s)
{
	return parse_bool(s, &cfg->health_details);
}

static int
parse_log_probes(struct config *cfg, const char *s)
{
	return parse_bool(s, &cfg->log_probes);
}

static int
parse_log_level(struct config *cfg, const char *s)
{
	int level = log_level_parse(s);

	if (level < 0)
		return -1;
	cfg->log_level = level;
	return 0;
}

static int
parse_shutdown_timeout(struct config *cfg, const char *s)
{
	return number_parse_seconds(s, 3600, &cfg->shutdown_timeout_ms);
}

static int
parse_drain_delay(struct config *cfg, const char *s)
{
	return number_parse_seconds(s, 3600, &cfg->drain_delay_ms);
}

static const struct option options[] = {
    {"bind", "MICROD_BIND", NULL, "ADDR", "a numeric IPv4 or IPv6 address",
     "address to listen on; '::' for IPv6 dual-stack (default 0.0.0.0)",
     parse_bind},
    {"port", "MICROD_PORT", "PORT", "N", "an integer from 0 to 65535",
     "TCP port; 0 picks a free one, logged at start (default 8080). A "
     "Kubernetes service link (MICROD_PORT=tcp://...) is ignored",
     parse_port},
    {"threads", "MICROD_THREADS", NULL, "N", "an integer from 1 to 256",
     "worker threads in the pool (default: the CPUs microd may use: "
     "the affinity mask and the cgroup CPU quota, rounded up)",
     parse_threads},
    {"max-body", "MICROD_MAX_BODY", NULL, "BYTES",
     "a size from 1 byte to 1g, e.g. 4096, 64k, 1m",
     "largest request body accepted; larger gets 413 (default 1m)",
     parse_max_body},
    {"body-budget", "MICROD_BODY_BUDGET", NULL, "BYTES",
     "a size from 64k to 4g, at least --max-body",
     "request-body bytes buffered at once over all connections; a body "
     "that would pass it gets 503 with Retry-After before it is read "
     "(default 8m, or twice --max-body if that is more; under a cgroup "
     "memory limit at most a quarter of what it leaves)",
     parse_body_budget},
    {"event-loop", "MICROD_EVENT_LOOP", NULL, "LOOP", "poll or epoll",
     "how each thread waits for its connections: poll (default) never "
     "stalls but costs more per idle connection; epoll suits many idle "
     "connections but stalls a thread that gets 128 or more requests at "
     "once (a libmicrohttpd 0.9.75 bug, see the README)",
     parse_event_loop},
    {"connection-limit", "MICROD_CONNECTION_LIMIT", NULL, "N",
     "an integer from 1 to 1000000",
     "client connections open at most, over all threads; more are "
     "refused at accept (default 10000, or what fits in the cgroup "
     "memory limit: see the README)",
     parse_connection_limit},
    {"per-ip-limit", "MICROD_PER_IP_LIMIT", NULL, "N",
     "an integer from 0 to 1000000",
     "open connections at most from one client address; 0 = no limit "
     "(default 0: clients behind a proxy or node share one address)",
     parse_per_ip_limit},
    {"idle-timeout", "MICROD_IDLE_TIMEOUT", NULL, "SECONDS",
     "whole seconds from 1 to 3600",
     "a connection with nothing received for this long is closed "
     "(default 15)",
     parse_idle_timeout},
    {"connection-memory", "MICROD_CONNECTION_MEMORY", NULL, "BYTES",
     "a size from 2k to 1m",
     "memory per connection; bounds the request line plus headers, "
     "larger gets 431 (default 16k)",
     parse_connection_memory},
    {"log-level", "MICROD_LOG_LEVEL", NULL, "LEVEL",
     "one of error, warn, info, debug",
     "error, warn, info or debug (default info)", parse_log_level},
    {"log-format", "MICROD_LOG_FORMAT", NULL, "FORMAT", "json or text",
     "json (one object per line) or text (logfmt); default json, or "
     "text when stderr is a terminal",
     parse_log_format},
    {"log-probes", "MICROD_LOG_PROBES", NULL, NULL,
     "true or false (also 1/0, yes/no; any case)",
     "access-log every probe request (by default successful probes are "
     "not logged, and failed ones once a second at most)",
     parse_log_probes},
    {"shutdown-timeout", "MICROD_SHUTDOWN_TIMEOUT", NULL, "SECONDS",
     "seconds from 0 to 3600, e.g. 10 or 2.5",
     "on SIGTERM/SIGINT, how long requests in flight may take to "
     "finish (default 10)",
     parse_shutdown_timeout},
    {"handler-threads", "MICROD_HANDLER_THREADS", NULL, "N",
     "an integer from 1 to 256",
     "threads that run the routes that may block (ROUTE_BLOCKING), apart "
     "from the threads that serve connections, so probes never wait "
     "behind them (default 8)",
     parse_handler_threads},
    {"handler-queue", "MICROD_HANDLER_QUEUE", NULL, "N",
     "an integer from 0 to 100000",
     "requests for those routes that may wait for a handler thread; "
     "past that they get 503 with Retry-After at once (default 64)",
     parse_handler_queue},
    {"example-routes", "MICROD_EXAMPLE_ROUTES", NULL, NULL,
     "true or false (also 1/0, yes/no; any case)",
     "serve the example routes: GET /status/{code}, GET /delay/{ms} and "
     "GET /resolve/{host} (on the handler pool), PUT/GET /notes/{name} "
     "(off by default: not for production)",
     parse_example_routes},
    {"check", "MICROD_CHECKS", NULL, "NAME=URL",
     "NAME=tcp://HOST:PORT or NAME=http://HOST:PORT/PATH, NAME 1 to 32 of "
     "a-z 0-9 _ -, not pool or drain, each name once (the variable: "
     "several, separated by spaces)",
     "a readiness check of a dependency, run in the background: connect "
     "(tcp://), or GET with a 2xx or 3xx answer (http://); repeatable",
     parse_check},
    {"check-interval", "MICROD_CHECK_INTERVAL", NULL, "SECONDS",
     "seconds from 0.1 to 3600", "how often each check runs (default 5)",
     parse_check_interval},
    {"check-timeout", "MICROD_CHECK_TIMEOUT", NULL, "SECONDS",
     "seconds from 0.01 to 60",
     "how long one run of a check may take before it fails (default 1; "
     "the pool check's never less than 1, or half the watchdog interval "
     "under one)",
     parse_check_timeout},
    {"check-threshold", "MICROD_CHECK_THRESHOLD", NULL, "N",
     "an integer from 1 to 100",
     "failed runs in a row before a --check that passed fails (default "
     "1)",
     parse_check_threshold},
    {"health-details", "MICROD_HEALTH_DETAILS", NULL, NULL,
     "true or false (also 1/0, yes/no; any case)",
     "show why a check fails in the ?verbose body of /livez and /readyz "
     "(by default only in the log, as callers need not be trusted)",
     parse_health_details},
    {"tls-cert", "MICROD_TLS_CERT", NULL, "FILE",
     "a path to a PEM certificate chain, leaf first",
     "serve HTTPS on --tls-port with this certificate (with --tls-key); "
     "reloaded when the file changes and on SIGHUP",
     parse_tls_cert},
    {"tls-key", "MICROD_TLS_KEY", NULL, "FILE", "a path to a PEM private key",
     "the certificate's private key (with --tls-cert)", parse_tls_key},
    {"tls-port", "MICROD_TLS_PORT", NULL, "N", "an integer from 0 to 65535",
     "HTTPS port, beside HTTP on --port; 0 picks a free one (default "
     "8443). A Kubernetes service link (tcp://...) is ignored",
     parse_tls_port},
    {"tls-priorities", "MICROD_TLS_PRIORITIES", NULL, "STRING",
     "a GnuTLS priority string",
     "the TLS versions and ciphers offered (default "
     "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2: TLS 1.2 and 1.3 only)",
     parse_tls_priorities},
    {"auth-token-file", "MICROD_AUTH_TOKEN_FILE", NULL, "FILE",
     "a path to a file of bearer tokens, one a line",
     "require \"Authorization: Bearer TOKEN\" with one of the file's "
     "tokens on every request but the probes (and /metrics, unless "
     "--auth-metrics); 401 otherwise. Lines that are empty or start "
     "with # are skipped; read again on SIGHUP",
     parse_auth_token_file},
    {"auth-metrics", "MICROD_AUTH_METRICS", NULL, NULL,
     "true or false (also 1/0, yes/no; any case)",
     "/metrics needs a bearer token too (default off: a scraper often "
     "has none)",
     parse_auth_metrics},
    {"rate-limit", "MICROD_RATE_LIMIT", NULL, "RATE",
     "requests a second from 0 to 1000000, up to 3 decimals, e.g. 50 "
     "or 0.5",
     "requests a second each client may make, on average, on every "
     "request but the probes; more get 429 with Retry-After. 0 = no limit "
     "(default 0)",
     parse_rate_limit},
    {"rate-burst", "MICROD_RATE_BURST", NULL, "N",
     "an integer from 1 to 1000000",
     "requests a client may make at once before --rate-limit holds it "
     "back (default: the rate, rounded up)",
     parse_rate_burst},
    {"rate-limit-clients", "MICROD_RATE_LIMIT_CLIENTS", NULL, "N",
     "an integer from 8 to 16777216",
     "clients the rate limit remembers, in a table of fixed size (about "
     "40 bytes each); past it the idlest are forgotten (default 16384)",
     parse_rate_clients},
    {"trusted-proxy", "MICROD_TRUSTED_PROXIES", NULL, "CIDR",
     "an address or address/prefix (10.0.0.0/8, ::1), no host bits past "
     "the prefix (the variable: several, separated by spaces)",
     "a proxy whose X-Forwarded-For is believed: a request from it is "
     "rate-limited by the first address in that field, from the right, "
     "that is not a trusted proxy; repeatable, 16 at most",
     parse_trusted_proxy},
    {"drain-delay", "MICROD_DRAIN_DELAY", NULL, "SECONDS",
     "seconds from 0 to 3600, e.g. 5 or 0.5",
     "on SIGTERM/SIGINT, how long /ready answers 503 while serving goes "
     "on, so load balancers notice, before the drain starts (default 0)",
     parse_drain_delay},
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static void
set_defaults(struct config *cfg)
{
	cfg->bind = "0.0.0.0";
	cfg->port = 8080;
	cfg->threads = 1;
	cfg->max_body = (size_t)1 << 20;
	cfg->body_budget = 0; /* decided once --max-body is known */
	cfg->event_loop = EVENT_LOOP_POLL;
	cfg->connection_limit = 10000;
	cfg->per_ip_limit = 0;
	cfg->idle_timeout_s = 15;
	cfg->connection_memory = (size_t)16 << 10;
	cfg->log_level = LOG_INFO;
	cfg->log_format = -1;
	cfg->log_probes = 0;
	cfg->handler_threads = 8;
	cfg->handler_queue = 64;
	cfg->example_routes = 0;
	cfg->n_checks = 0;
	cfg->health_details = 0;
	cfg->tls_cert = NULL;
	cfg->tls_key = NULL;
	cfg->tls_port = 8443;
	cfg->tls_priorities = CONFIG_TLS_PRIORITIES;
	cfg->check_interval_ms = 5000;
	cfg->check_timeout_ms = 1000;
	cfg->check_threshold = 1;
	cfg->auth_token_file = NULL;
	cfg->auth_metrics = 0;
	cfg->rate_milli = 0;
	cfg->rate_burst = 0;
	cfg->rate_clients = 16384;
	cfg->n_trusted = 0;
	cfg->shutdown_timeout_ms = 10000;
	cfg->drain_delay_ms = 0;
	cfg->check_only = 0;
	cfg->ignored_env = NULL;
	cfg->ignored_value = NULL;
	cfg->threads_asked = 0;
	snprintf(cfg->threads_from, sizeof(cfg->threads_from), "default");
	snprintf(cfg->connections_from, sizeof(cfg->connections_from),
	         "default");
	snprintf(cfg->budget_from, sizeof(cfg->budget_from), "default");
}

static const struct option *
option_find(const char *name, size_t len)
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
	return (size_t)(option_find(flag, strlen(flag)) - options);
}

/* The options that add up, flag by flag, and several to a variable. */
static int
is_list(const struct option *opt)
{
	return opt == &options[index_of("check")] ||
	       opt == &options[index_of("trusted-proxy")];
}

static int
parse_list(struct config *cfg, const struct option *opt, const char *s,
           const char **why, char *bad)
{
	return opt == &options[index_of("check")]
	           ? each_word(cfg, s, "no check given", add_check, why, bad)
	           : each_word(cfg, s, "no address block given", add_proxy, why,
	                       bad);
}

/* "WHAT: invalid value 'VALUE' (expected ...)", or with why instead of
 * what the option expects: the rule the value broke. */
static enum config_result
bad_value_why(char *err, size_t errlen, const char *what, const char *value,
              const struct option *opt, const char *why)
{
	char shown[80];
	size_t n = 0;
	const unsigned char *p = (const unsigned char *)value;
	const char *cut;

	/* The value as printable ASCII, bounded: the error stays one line,
	 * with no byte that could pose as a journald priority or break the
	 * JSON of a refusal. */
	for (; *p != '\0' && n + 5 < sizeof(shown); p++) {
		if (*p >= 0x20 && *p < 0x7f && *p != '\\')
			shown[n++] = (char)*p;
		else
			n += (size_t)snprintf(shown + n, sizeof(shown) - n,
			                      "\\x%02x", *p);
	}
	shown[n] = '\0';
	cut = *p != '\0' ? "..." : "";
	if (why != NULL)
		snprintf(err, errlen, "%s: invalid value '%s%s': %s", what,
		         shown, cut, why);
	else
		snprintf(err, errlen, "%s: invalid value '%s%s' (expected %s)",
		         what, shown, cut, opt->accepts);
	return CONFIG_ERROR;
}

static enum config_result
bad_value(char *err, size_t errlen, const char *what, const char *value,
          const struct option *opt)
{
	return bad_value_why(err, errlen, what, value, opt, NULL);
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
	if (v != NULL &&
	    (opt->alt_env != NULL || opt == &options[index_of("tls-port")]) &&
	    is_service_link(v)) {
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
 * argv first: a flag sets its option, and the environment is read only for
 * the options no flag set. With address_only, only --bind and --port are
 * read (the probe); the other flags are passed over.
 */
static enum config_result
parse(struct config *cfg, int argc, char **argv, const struct resources *res,
      int address_only, char *err, size_t errlen)
{
	const char *given[N_OPTIONS] = {NULL}, *from[N_OPTIONS] = {NULL};
	char flags[N_OPTIONS][40];

	set_defaults(cfg);
	err[0] = '\0';

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
		opt = option_find(arg + 2, len);
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
		} else if (opt->metavar == NULL) {
			int unused;

			/* A switch: present means on, unless a boolean
			 * follows ("--log-probes false"). */
			value = "true";
			if (i + 1 < argc &&
			    parse_bool(argv[i + 1], &unused) == 0)
				value = argv[++i];
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			snprintf(err, errlen,
			         "--%s: missing value (expected %s)", opt->flag,
			         opt->accepts);
			return CONFIG_ERROR;
		}
		/* --check and --trusted-proxy add up, flag by flag: every
		 * one must be valid (and a check's name new). */
		if (!address_only && is_list(opt)) {
			const char *why;
			char bad[CHECK_SPEC_MAX];

			if (parse_list(cfg, opt, value, &why, bad) != 0)
				return bad_value_why(err, errlen,
				                     flags[opt - options], bad,
				                     opt, why);
			given[opt - options] = value;
			continue;
		}
		/* Every value given is checked, in order; the last one
		 * counts. The probe reads only the address. */
		if ((!address_only || opt == &options[index_of("bind")] ||
		     opt == &options[index_of("port")]) &&
		    opt->parse(&scratch, value) != 0)
			return bad_value(err, errlen, flags[opt - options],
			                 value, opt);
		given[opt - options] = value;
	}

	for (size_t i = 0; i < N_OPTIONS; i++) {
		const struct option *opt = &options[i];
		const char *name = NULL, *v = given[i];

		if (address_only && i != index_of("bind") &&
		    i != index_of("port"))
			continue;
		if (v != NULL && is_list(opt)) {
			from[i] = flags[i]; /* taken in the loop above */
			continue;
		}
		if (v != NULL)
			name = flags[i];
		else
			v = env_value(cfg, opt, &name);
		if (v == NULL)
			continue;
		if (is_list(opt)) {
			const char *why;
			char bad[CHECK_SPEC_MAX];

			if (parse_list(cfg, opt, v, &why, bad) != 0)
				return bad_value_why(err, errlen, name, bad,
				                     opt, why);
		} else if (opt->parse(cfg, v) != 0)
			return bad_value(err, errlen, name, v, opt);
		from[i] = name;
		if (i == index_of("threads"))
			snprintf(cfg->threads_from, sizeof(cfg->threads_from),
			         "%.100s", name);
	}
	if (address_only)
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
	return parse(cfg, argc, argv, res, 0, err, errlen);
}

enum config_result
config_parse(struct config *cfg, int argc, char **argv, char *err,
             size_t errlen)
{
	struct resources res;

	resources_read(&res);
	return parse(cfg, argc, argv, &res, 0, err, errlen);
}

enum config_result
config_parse_address(struct config *cfg, int argc, char **argv, char *err,
                     size_t errlen)
{
	const struct resources unread = {.cpus = 1, .memory = 0};

	return parse(cfg, argc, argv, &unread, 1, err, errlen);
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
