/* SPDX-License-Identifier: MIT */
/*
 * unit.c -- the pure modules without a server: router, config, reply, and the
 * environment parsing of socket activation and sd_notify
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "activation.h"
#include "check.h"
#include "config.h"
#include "handlers.h"
#include "log.h"
#include "notify.h"
#include "reply.h"
#include "router.h"

static void
test_router(void)
{
	const struct route *rt = NULL;
	struct request req = {.method = "PUT", .path = "/health"};
	struct reply rep = {0};

	is(router_find("GET", "/health", &rt), ROUTE_FOUND, "GET /health");
	ok(rt != NULL && rt->handler == handle_health, "-> handle_health");
	rt = NULL;
	is(router_find("HEAD", "/health", &rt), ROUTE_FOUND,
	   "HEAD is served by the GET route");
	ok(rt != NULL && rt->handler == handle_health, "-> handle_health");
	is(router_find("POST", "/echo", &rt), ROUTE_FOUND, "POST /echo");
	ok((rt->flags & ROUTE_JSON_BODY) != 0, "/echo takes a JSON body");
	rt = NULL;
	is(router_find("HEAD", "/echo", &rt), ROUTE_BAD_METHOD,
	   "HEAD /echo: no GET route to stand in");
	ok(rt != NULL && strcmp(rt->path, "/echo") == 0,
	   "a wrong method still names the path's route (for metrics)");
	rt = NULL;
	is(router_find("get", "/health", &rt), ROUTE_BAD_METHOD,
	   "methods are case-sensitive");
	is(router_find("GET", "/health/", &rt), ROUTE_NOT_FOUND,
	   "a trailing slash is another path");
	is(router_find("GET", "/HEALTH", &rt), ROUTE_NOT_FOUND,
	   "paths are case-sensitive");
	ok(rt != NULL && strcmp(rt->path, "/health") == 0,
	   "ROUTE_NOT_FOUND leaves *out alone");
	is(router_find("GET", "", &rt), ROUTE_NOT_FOUND, "empty path");

	router_reply_unmatched(ROUTE_BAD_METHOD, &req, &rep);
	is(rep.status, 405, "bad method -> 405");
	is_str(rep.allow, "GET, HEAD", "Allow lists GET and HEAD");
	ok(rep.problem, "405 is problem details");
	reply_clear(&rep);
	memset(&rep, 0, sizeof(rep));
	req.path = "/nowhere";
	router_reply_unmatched(ROUTE_NOT_FOUND, &req, &rep);
	is(rep.status, 404, "no route -> 404");
	is_str(json_string_value(json_object_get(rep.body, "detail")),
	       "no route for PUT /nowhere", "404 detail");
	is_str(rep.allow, "", "404 has no Allow");
	reply_clear(&rep);
}

static void
test_reply(void)
{
	struct reply rep = {0};
	char buf[256], small[8];
	size_t n;

	reply_error(&rep, 413, "body over %d bytes", 10);
	is(rep.status, 413, "reply_error sets the status");
	ok(rep.problem, "and marks problem details");
	is_str(reply_content_type(&rep), "application/problem+json",
	       "problem content type");
	n = reply_render(&rep, buf, sizeof(buf));
	ok(n > 0 && n < sizeof(buf), "renders");
	buf[n < sizeof(buf) ? n : 0] = '\0';
	is_str(buf,
	       "{\"type\":\"about:blank\",\"title\":\"Content Too Large\","
	       "\"status\":413,\"detail\":\"body over 10 bytes\"}\n",
	       "RFC 9457 members in order, then a newline");
	is(reply_render(&rep, small, sizeof(small)), n,
	   "a short buffer reports the length needed");
	reply_clear(&rep);

	reply_json(&rep, 200, NULL);
	is(rep.status, 500, "a NULL body (out of memory) becomes a 500");
	ok(rep.problem, "as problem details");
	reply_clear(&rep);

	reply_json(&rep, 200, json_pack("{s:s}", "status", "ok"));
	is_str(reply_content_type(&rep), "application/json", "JSON type");
	ok(!rep.problem, "not a problem");
	n = reply_render(&rep, buf, sizeof(buf));
	buf[n] = '\0';
	is_str(buf, "{\"status\":\"ok\"}\n", "compact JSON and a newline");
	reply_clear(&rep);

	is_str(reply_title(404), "Not Found", "title 404");
	is_str(reply_title(599), "Unknown", "unknown status title");
}

/*
 * Runs config_parse on "microd" followed by args (NULL-terminated). The
 * strings are copied into writable storage that outlives the call, as argv
 * does in a real process: cfg points into it.
 */
static enum config_result
parse_args(struct config *cfg, char *err, size_t len, const char *const *args)
{
	static char storage[16][64];
	char *argv[16];
	int argc = 0;

	snprintf(storage[0], sizeof(storage[0]), "microd");
	argv[argc] = storage[argc];
	argc++;
	for (; *args != NULL && argc < 16; args++, argc++) {
		snprintf(storage[argc], sizeof(storage[argc]), "%s", *args);
		argv[argc] = storage[argc];
	}
	return config_parse(cfg, argc, argv, err, len);
}

#define PARSE(cfg, ...)                                                        \
	parse_args((cfg), err, sizeof(err), (const char *[]){__VA_ARGS__, NULL})

static void
test_config(void)
{
	struct config cfg;
	char err[256];

	unsetenv("MICROD_PORT");
	unsetenv("PORT");
	unsetenv("MICROD_BIND");
	unsetenv("MICROD_MAX_BODY");
	is(parse_args(&cfg, err, sizeof(err), (const char *[]){NULL}),
	   CONFIG_RUN, "no arguments");
	is_str(cfg.bind, "0.0.0.0", "default bind 0.0.0.0");
	is(cfg.port, 8080, "default port 8080");
	is(cfg.max_body, 1 << 20, "default max body 1 MiB");
	ok(cfg.threads >= 1, "default threads >= 1");
	is(cfg.shutdown_timeout_ms, 10000, "default shutdown timeout 10 s");
	is(cfg.log_level, LOG_INFO, "default log level info");

	is(PARSE(&cfg, "--port", "0", "--bind", "::", "--threads=4",
	         "--max-body", "64k", "--log-level", "debug",
	         "--shutdown-timeout", "2.5"),
	   CONFIG_RUN, "every flag");
	is(cfg.port, 0, "--port 0");
	is_str(cfg.bind, "::", "--bind ::");
	is(cfg.threads, 4, "--threads=4");
	is(cfg.max_body, 65536, "--max-body 64k");
	is(cfg.log_level, LOG_DEBUG, "--log-level debug");
	is(cfg.shutdown_timeout_ms, 2500, "--shutdown-timeout 2.5");

	PARSE(&cfg, "--max-body", "1m");
	is(cfg.max_body, 1 << 20, "1m");
	PARSE(&cfg, "--max-body", "1G");
	is(cfg.max_body, 1 << 30, "1G is the largest");
	is(PARSE(&cfg, "--max-body", "2g"), CONFIG_ERROR, "2g is too large");
	is(PARSE(&cfg, "--max-body", "0"), CONFIG_ERROR, "0 is refused");
	is(PARSE(&cfg, "--max-body", "k"), CONFIG_ERROR,
	   "a bare suffix is refused");

	parse_args(&cfg, err, sizeof(err), (const char *[]){NULL});
	ok(cfg.connection_limit == 10000 && cfg.per_ip_limit == 0 &&
	       cfg.idle_timeout_s == 15 && cfg.connection_memory == 16384,
	   "limit defaults: 10000 connections, no per-ip, 15 s idle, 16k");
	PARSE(&cfg, "--connection-memory", "8k");
	is(cfg.connection_memory, 8192, "--connection-memory 8k");
	is(PARSE(&cfg, "--connection-memory", "1k"), CONFIG_ERROR,
	   "--connection-memory below 2k is refused");
	is(PARSE(&cfg, "--connection-memory", "2m"), CONFIG_ERROR,
	   "--connection-memory above 1m is refused");
	is(PARSE(&cfg, "--connection-limit", "0"), CONFIG_ERROR,
	   "--connection-limit 0 is refused");
	PARSE(&cfg, "--per-ip-limit", "16");
	is(cfg.per_ip_limit, 16, "--per-ip-limit 16");
	is(PARSE(&cfg, "--idle-timeout", "0"), CONFIG_ERROR,
	   "--idle-timeout 0 (never) is refused");
	setenv("MICROD_IDLE_TIMEOUT", "30", 1);
	parse_args(&cfg, err, sizeof(err), (const char *[]){NULL});
	is(cfg.idle_timeout_s, 30, "MICROD_IDLE_TIMEOUT is read");
	unsetenv("MICROD_IDLE_TIMEOUT");

	setenv("PORT", "9000", 1);
	parse_args(&cfg, err, sizeof(err), (const char *[]){NULL});
	is(cfg.port, 9000, "PORT is read");
	setenv("MICROD_PORT", "9001", 1);
	parse_args(&cfg, err, sizeof(err), (const char *[]){NULL});
	is(cfg.port, 9001, "MICROD_PORT wins over PORT");
	PARSE(&cfg, "--port", "9002");
	is(cfg.port, 9002, "the flag wins over the environment");
	setenv("MICROD_PORT", "x", 1);
	is(PARSE(&cfg, "--port", "1"), CONFIG_ERROR,
	   "a bad variable is an error even when a flag is given");
	ok(strstr(err, "MICROD_PORT") != NULL && strstr(err, "'x'") != NULL,
	   "naming the variable and value: %s", err);
	unsetenv("MICROD_PORT");
	unsetenv("PORT");

	is(PARSE(&cfg, "--port", "65536"), CONFIG_ERROR, "port 65536");
	ok(strstr(err, "--port") && strstr(err, "'65536'") &&
	       strstr(err, "0 to 65535"),
	   "error names flag, value and range: %s", err);
	is(PARSE(&cfg, "--port", "-1"), CONFIG_ERROR, "port -1");
	is(PARSE(&cfg, "--port", " 80"), CONFIG_ERROR, "port with a space");
	is(PARSE(&cfg, "--port"), CONFIG_ERROR, "a flag without its value");
	ok(strstr(err, "missing value") != NULL, "says the value is missing");
	is(PARSE(&cfg, "--bind", "localhost"), CONFIG_ERROR,
	   "bind takes numeric addresses");
	is(PARSE(&cfg, "--threads", "0"), CONFIG_ERROR, "zero threads");
	is(PARSE(&cfg, "--log-level", "loud"), CONFIG_ERROR,
	   "unknown log level");
	is(PARSE(&cfg, "--shutdown-timeout", "1.2345"), CONFIG_ERROR,
	   "more than millisecond precision");
	is(PARSE(&cfg, "--shutdown-timeout", "3601"), CONFIG_ERROR,
	   "over an hour");
	is(PARSE(&cfg, "--shutdown-timeout", "1."), CONFIG_ERROR,
	   "a dot without decimals");
	is(PARSE(&cfg, "--porty", "1"), CONFIG_ERROR,
	   "a flag that only starts like one");
	is(PARSE(&cfg, "extra"), CONFIG_ERROR, "a stray argument");
	is(PARSE(&cfg, "--help"), CONFIG_HELP, "--help");
	is(PARSE(&cfg, "--version"), CONFIG_VERSION, "--version");
}

/* Only cases that return before any descriptor is touched. */
static void
test_activation(void)
{
	char err[256] = "", pid[32];

	is(activation_listen_fd(err, sizeof(err)), ACTIVATION_NONE,
	   "activation: nothing passed");
	setenv("LISTEN_PID", "1", 1);
	setenv("LISTEN_FDS", "1", 1);
	is(activation_listen_fd(err, sizeof(err)), ACTIVATION_NONE,
	   "LISTEN_PID of another process: ignored");
	ok(getenv("LISTEN_PID") == NULL && getenv("LISTEN_FDS") == NULL,
	   "and the variables are removed");
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "two", 1);
	is(activation_listen_fd(err, sizeof(err)), ACTIVATION_ERROR,
	   "LISTEN_FDS=two is an error");
	is_str(err, "LISTEN_FDS: invalid value 'two'", "naming the variable");
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "0", 1);
	setenv("LISTEN_FDNAMES", "", 1);
	is(activation_listen_fd(err, sizeof(err)), ACTIVATION_NONE,
	   "LISTEN_FDS=0: nothing passed");
	ok(getenv("LISTEN_FDNAMES") == NULL, "LISTEN_FDNAMES removed too");
}

static void
test_notify(void)
{
	struct notifier n;
	char err[256] = "";

	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	is(notify_open(&n, err, sizeof(err)), 0, "notify: no NOTIFY_SOCKET");
	ok(n.fd < 0 && n.watchdog_usec == 0, "nothing to send to, no watchdog");
	is(notify_send(&n, "READY=1"), 0, "sending is then a no-op");

	setenv("NOTIFY_SOCKET", "@microd-unit", 1);
	is(notify_open(&n, err, sizeof(err)), 0, "an abstract name");
	ok(n.fd >= 0 && n.addr.sun_path[0] == '\0' &&
	       strncmp(n.addr.sun_path + 1, "microd-unit", 11) == 0 &&
	       n.addr_len == offsetof(struct sockaddr_un, sun_path) + 12,
	   "leading NUL, no terminator counted");
	notify_close(&n);
	setenv("NOTIFY_SOCKET", "/run/x/notify", 1);
	is(notify_open(&n, err, sizeof(err)), 0, "a path");
	ok(n.addr_len == offsetof(struct sockaddr_un, sun_path) + 14,
	   "its terminator counted");
	notify_close(&n);
	setenv("NOTIFY_SOCKET", "run/notify", 1);
	is(notify_open(&n, err, sizeof(err)), -1, "a relative path is refused");
	ok(strstr(err, "NOTIFY_SOCKET") != NULL, "naming the variable: %s",
	   err);
	unsetenv("NOTIFY_SOCKET");

	setenv("WATCHDOG_USEC", "5000000", 1);
	is(notify_open(&n, err, sizeof(err)), 0, "WATCHDOG_USEC alone");
	ok(n.watchdog_usec == 5000000, "is ours");
	setenv("WATCHDOG_PID", "1", 1);
	is(notify_open(&n, err, sizeof(err)), 0, "WATCHDOG_PID of another");
	ok(n.watchdog_usec == 0, "is not ours");
	unsetenv("WATCHDOG_PID");
	setenv("WATCHDOG_USEC", "soon", 1);
	is(notify_open(&n, err, sizeof(err)), -1, "WATCHDOG_USEC=soon refused");
	unsetenv("WATCHDOG_USEC");
}

int
main(void)
{
	test_router();
	test_reply();
	test_config();
	test_activation();
	test_notify();
	return done_testing();
}
